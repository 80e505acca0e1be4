-- Orders are kept as their to_document() JSON; the columns beside it exist only to find them.
BEGIN IMMEDIATE;

CREATE TABLE IF NOT EXISTS orders (
    uid        TEXT PRIMARY KEY,
    shop       TEXT NOT NULL,
    order_id   TEXT NOT NULL,
    status     TEXT NOT NULL,
    reason     TEXT,
    updated_at REAL NOT NULL,
    version    INTEGER NOT NULL,
    notify_due REAL,
    check_at   REAL,
    document   BLOB NOT NULL,
    UNIQUE (shop, order_id)
);
-- uid ends every index so equal timestamps still list in one stable order.
CREATE INDEX IF NOT EXISTS orders_by_update ON orders (updated_at, uid);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, updated_at, uid);
CREATE INDEX IF NOT EXISTS orders_by_reason ON orders (reason, updated_at, uid);
-- The notification outbox: only orders with a notice to send are in this index.
CREATE INDEX IF NOT EXISTS orders_by_notify_due ON orders (notify_due) WHERE notify_due IS NOT NULL;
-- The reconciler's schedule: only open orders have a check time.
CREATE INDEX IF NOT EXISTS orders_by_check_at ON orders (check_at) WHERE check_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS nonces (
    shop       TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (shop, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expires_at);

COMMIT;
