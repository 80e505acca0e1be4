-- One order's create or compare-and-set save, with its shard's listing entries, in one atomic step;
-- and the claim of a shard's due checks.
--
-- Every key is in the order's shard (one hash tag, one Cluster slot); the layout is described in
-- redis_keys.py, whose listing prefixes must agree with `entries` below. Times arrive as sortable
-- hex strings and versions as decimal strings, and are only ever compared as strings: Lua's
-- number-to-string conversion keeps 14 digits and would change them.
--
-- create / save:
-- KEYS[1]   the order's hash, named by (shop, order_id): its existence is the idempotency claim
-- KEYS[2]   the shard's listing index
-- KEYS[3]   create on a single server only: the uid index entry `gw:u:<uid>` (on a Cluster it is in
--           another slot, and the caller claims it before this script runs)
-- ARGV[1]   "create" | "save"
-- ARGV[2]   uid
-- ARGV[3]   create: the order's version; save: the version the save is based on
-- ARGV[4]   the document to store (JSON)
-- ARGV[5]   status        ARGV[6]  reason, or ''
-- ARGV[7]   updated_at    ARGV[8]  notification due, or ''
-- ARGV[9]   check time (when the reconciler should look), or ''
-- ARGV[10]  the entries' tail: uid NUL the order key's tail
-- ARGV[11]  created_at (never changes)
-- ARGV[12]  save: the new version
-- Returns   create: {1} created; {2, document} this very order (same uid) was created before, by a
--           replayed call; {0, document} another order holds (shop, order_id); {-1} the uid belongs
--           to another order. save: {1} saved (or this very save was replayed); {0, stored version}
--           stale; {-1} no such order. Nothing is written unless the answer is {1}.
--
-- claim (the reconciler's due checks in one shard; orders and versions are not touched):
-- KEYS[1]   the shard's listing index
-- ARGV[1]   "claim"
-- ARGV[2]   the shard's order key prefix `{tag}:o:`
-- ARGV[3]   the exclusive upper bound `c NUL <now> \1`: every check entry below it is due
-- ARGV[4]   the claim's end (sortable), the order's new check time
-- ARGV[5]   the most orders to claim
-- Returns   the claimed orders' documents.

if ARGV[1] == 'claim' then
    local index, prefix, upto, claimed_until = KEYS[1], ARGV[2], ARGV[3], ARGV[4]
    local due = redis.call('ZRANGE', index, '[c\0', '(' .. upto, 'BYLEX', 'LIMIT', 0, tonumber(ARGV[5]))
    local documents = {}
    for _, entry in ipairs(due) do
        -- c NUL <16 hex digits> NUL <uid> NUL <order key tail>
        local tail = string.sub(entry, 20)
        local order = prefix .. string.sub(tail, string.find(tail, '\0', 1, true) + 1)
        redis.call('ZREM', index, entry)
        local document = redis.call('HGET', order, 'd')
        if document then
            redis.call('ZADD', index, 0, 'c\0' .. claimed_until .. '\0' .. tail)
            redis.call('HSET', order, 'c', claimed_until)
            documents[#documents + 1] = document
        end
    end
    return documents
end

local order = KEYS[1]
local index = KEYS[2]
local op = ARGV[1]
local uid = ARGV[2]
local document = ARGV[4]
local status, reason, updated, due, check, tail = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local created = ARGV[11]

local function entries(s, r, t, n, c)
    local found = {a = 'a\0' .. t .. '\0' .. tail, s = 's\0' .. s .. '\0' .. t .. '\0' .. tail,
        k = 'k\0' .. created .. '\0' .. tail}
    if r ~= '' then
        found.r = 'r\0' .. r .. '\0' .. t .. '\0' .. tail
        found.x = 'x\0' .. s .. '\0' .. r .. '\0' .. t .. '\0' .. tail
    end
    if n ~= '' then
        found.n = 'n\0' .. n .. '\0' .. tail
    end
    if c and c ~= '' then
        found.c = 'c\0' .. c .. '\0' .. tail
    end
    return found
end

local LISTINGS = {'a', 's', 'r', 'x', 'n', 'c', 'k'}

-- Only the entries that change are touched: a save that keeps the status and reason moves two or three.
local function reindex(old, new)
    for _, listing in ipairs(LISTINGS) do
        local before, after = old[listing], new[listing]
        if before ~= after then
            if before then
                redis.call('ZREM', index, before)
            end
            if after then
                redis.call('ZADD', index, 0, after)
            end
        end
    end
end

local function store(version)
    redis.call('HSET', order, 'v', version, 'd', document, 's', status, 'r', reason, 't', updated, 'n', due,
        'c', check)
end

if op == 'create' then
    local held = redis.call('HMGET', order, 'u', 'd')
    if held[1] then
        if held[1] == uid then
            return {2, held[2]}
        end
        return {0, held[2]}
    end
    if KEYS[3] then
        local owner = redis.call('GET', KEYS[3])
        if owner and owner ~= order then
            return {-1}
        end
        redis.call('SET', KEYS[3], order)
    end
    redis.call('HSET', order, 'u', uid)
    store(ARGV[3])
    reindex({}, entries(status, reason, updated, due, check))
    return {1}
end

if op == 'save' then
    local held = redis.call('HMGET', order, 'u', 'v', 's', 'r', 't', 'n', 'c')
    if held[1] ~= uid then
        return {-1}
    end
    if held[2] ~= ARGV[3] then
        -- A reply lost after the save landed makes the client send it again: same version, same bytes.
        if held[2] == ARGV[12] and redis.call('HGET', order, 'd') == document then
            return {1}
        end
        return {0, held[2]}
    end
    local new = entries(status, reason, updated, due, check)
    reindex(entries(held[3], held[4], held[5], held[6], held[7]), new)
    -- An order stored before the creation listing existed gains its entry at its next save.
    if not redis.call('ZSCORE', index, new.k) then
        redis.call('ZADD', index, 0, new.k)
    end
    store(ARGV[12])
    return {1}
end

return redis.error_reply('unknown operation ' .. tostring(op))
