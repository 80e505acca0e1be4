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
    -- Never changes after the insert; added last, so a file of an earlier version gains it in place.
    created_at REAL,
    UNIQUE (shop, order_id)
);
-- uid ends every index so equal timestamps still list in one stable order.
CREATE INDEX IF NOT EXISTS orders_by_update ON orders (updated_at, uid);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, updated_at, uid);
CREATE INDEX IF NOT EXISTS orders_by_reason ON orders (reason, updated_at, uid);
-- The figures (/admin/stats): orders by the time they were placed, read in pages.
CREATE INDEX IF NOT EXISTS orders_by_creation ON orders (created_at, uid);
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

-- The shop guards' record per (shop, account): one row per order (or reservation for one), see
-- gateway/store/reservations.py. Rows past expires_at are of no use to any rule and are deleted.
CREATE TABLE IF NOT EXISTS account_orders (
    shop        TEXT NOT NULL,
    account     TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    product     TEXT NOT NULL,
    value_cents INTEGER NOT NULL,
    at          REAL NOT NULL,
    expires_at  REAL NOT NULL,
    state       TEXT NOT NULL,
    lease_until REAL NOT NULL,
    PRIMARY KEY (shop, account, order_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS account_orders_by_expiry ON account_orders (expires_at);

-- Operators' blocked accounts: one row per (account, product glob); until NULL holds until deleted.
CREATE TABLE IF NOT EXISTS blocked_accounts (
    account    TEXT NOT NULL,
    product    TEXT NOT NULL,
    until      REAL,
    note       TEXT NOT NULL,
    created_at REAL NOT NULL,
    operator   TEXT,
    PRIMARY KEY (account, product)
) WITHOUT ROWID;

COMMIT;
