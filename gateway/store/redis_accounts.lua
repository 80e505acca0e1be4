-- The shop guards' record of one (shop, account) (CONTRACT.md §7): reserve, confirm or release, each one
-- atomic step on one key. The rules are those of gateway/store/reservations.py (`decide`,
-- `confirmation`, `release`), which this script must agree with.
--
-- KEYS[1]  gw:a:<n>:<shop>:<account>: a hash, order id -> "<state> <lease_until> <at> <expires_at>
--          <value_cents> <product>", state pending | confirmed | released.
-- Times and amounts arrive as the caller's decimal strings and are stored as they came: Lua only
-- compares them as numbers (its number-to-string conversion keeps 14 digits and would change them).
-- Entries past their expires_at (the caller's `now`) are deleted whenever the record is read; the key
-- itself expires, on Redis's clock, some time after its longest-lived entry.
--
-- reserve  ARGV[2] order id  ARGV[3] product  ARGV[4] value_cents  ARGV[5] now, the new entry's at
--          ARGV[6] lease_until  ARGV[7] expires_at  ARGV[8] duplicate_since, or ''  ARGV[9] day_start
--          ARGV[10] max orders per day, or ''  ARGV[11] max value_cents per day, or ''
--          ARGV[12] how long the key must live, in milliseconds
--          Returns {'reserved'} (written), or {refusal, order id, entry, ...}: the counted entries that
--          made the rule refuse, nothing written.
-- confirm  ARGV[2] order id  ARGV[3] product  ARGV[4] value_cents  ARGV[5] at  ARGV[6] expires_at
--          ARGV[7] how long the key must live, in milliseconds. Returns 1 written, 0 not.
-- release  ARGV[2] order id  ARGV[3] failed | abandoned | lapsed  ARGV[4] now. Returns 1 changed, 0 not.
--
-- A reply lost and the call sent again is answered harmlessly: a second reserve of one order id finds
-- its own entry and passes, a second confirm or release changes nothing more.

local key, op = KEYS[1], ARGV[1]

local function parse(id, text)
    local state, lease, at, expires, value, product =
        string.match(text, '^(%S+) (%S+) (%S+) (%S+) (%S+) (.*)$')
    return {
        id = id, text = text, state = state, product = product,
        lease_text = lease, at_text = at, expires_text = expires, value_text = value,
        lease = tonumber(lease), at = tonumber(at), expires = tonumber(expires), value = tonumber(value),
    }
end

local function write(id, state, lease, at, expires, value, product)
    local text = state .. ' ' .. lease .. ' ' .. at .. ' ' .. expires .. ' ' .. value .. ' ' .. product
    redis.call('HSET', key, id, text)
    return text
end

local function keep(ms)
    -- PTTL is -1 for a key without expiry: below any wanted time, so it gets one.
    if redis.call('PTTL', key) < tonumber(ms) then
        redis.call('PEXPIRE', key, ms)
    end
end

-- The record's live entries by order id; the expired ones are deleted.
local function live(now)
    local flat = redis.call('HGETALL', key)
    local entries = {}
    for i = 1, #flat, 2 do
        local entry = parse(flat[i], flat[i + 1])
        if entry.expires <= now then
            redis.call('HDEL', key, flat[i])
        else
            entries[flat[i]] = entry
        end
    end
    return entries
end

local function refuse(refusal, found)
    local reply = {refusal}
    for _, entry in ipairs(found) do
        reply[#reply + 1] = entry.id
        reply[#reply + 1] = entry.text
    end
    return reply
end

if op == 'reserve' then
    local id, product, value, now, lease, expires = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
    local entries = live(tonumber(now))
    local own = entries[id]
    if own and own.state ~= 'released' then
        -- Another request for this very order: it passes, counted once; a pending lease is extended.
        if own.state == 'pending' and own.lease < tonumber(lease) then
            write(id, 'pending', lease, own.at_text, own.expires_text, own.value_text, own.product)
        end
        return {'reserved'}
    end
    if ARGV[8] ~= '' then
        local since, earlier = tonumber(ARGV[8]), {}
        for other, entry in pairs(entries) do
            if entry.state ~= 'released' and other ~= id and entry.product == product and entry.at > since then
                earlier[#earlier + 1] = entry
            end
        end
        if #earlier > 0 then
            return refuse('duplicate', earlier)
        end
    end
    local day_start, today, total = tonumber(ARGV[9]), {}, 0
    for other, entry in pairs(entries) do
        if entry.state ~= 'released' and other ~= id and entry.at >= day_start then
            today[#today + 1] = entry
            total = total + entry.value
        end
    end
    if ARGV[10] ~= '' and #today + 1 > tonumber(ARGV[10]) then
        return refuse('orders_per_day', today)
    end
    if ARGV[11] ~= '' and total + tonumber(value) > tonumber(ARGV[11]) then
        return refuse('value_per_day', today)
    end
    write(id, 'pending', lease, now, expires, value, product)
    keep(ARGV[12])
    return {'reserved'}
end

if op == 'confirm' then
    local id, product, value = ARGV[2], ARGV[3], ARGV[4]
    local held = redis.call('HGET', key, id)
    if held then
        local entry = parse(id, held)
        if entry.state == 'released' then
            return 0
        end
        -- The reservation's time stays: the rules judged it at that time.
        local text = 'confirmed 0 ' .. entry.at_text .. ' ' .. entry.expires_text .. ' ' .. value .. ' ' .. product
        if text == held then
            return 0
        end
        redis.call('HSET', key, id, text)
        return 1
    end
    write(id, 'confirmed', '0', ARGV[5], ARGV[6], value, product)
    keep(ARGV[7])
    return 1
end

if op == 'release' then
    local id, how, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
    local entry = live(now)[id]
    if not entry then
        return 0
    end
    if how == 'failed' then
        if entry.state == 'released' then
            return 0
        end
        write(id, 'released', entry.lease_text, entry.at_text, entry.expires_text, entry.value_text, entry.product)
        return 1
    end
    if entry.state ~= 'pending' or (how == 'lapsed' and entry.lease > now) then
        return 0
    end
    redis.call('HDEL', key, id)
    return 1
end

return redis.error_reply('unknown operation ' .. tostring(op))
