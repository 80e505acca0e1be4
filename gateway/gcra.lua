-- GCRA for one supplier, atomically, on this Redis server's clock, shared by every gateway instance.
--
-- Times are integer microseconds: exact in Lua's doubles (below 2^53, until the year 2255), which
-- nanoseconds since the epoch would not be. The caller's clock is never used, only durations.
--
-- KEYS[1]  the supplier's theoretical arrival time (TAT). Absent or past means "free now", so the key
--          expires at its TAT and an idle supplier leaves nothing behind.
-- ARGV[1]  "reserve" | "release" | "pause" | "ready"
-- ARGV[2]  interval: one request per interval
-- ARGV[3]  tolerance: the burst, as time ahead of the pace
-- ARGV[4]  reserve: the longest wait accepted; pause: its length; otherwise unused
-- Returns  {value, now}: reserve: the wait for the slot, or -1 if refused (nothing reserved);
--          ready: the wait a request would have; release and pause: 0. `now` is the TIME used.

local key = KEYS[1]
local op = ARGV[1]
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local argument = tonumber(ARGV[4])

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', key) or now)
if tat < now then
    tat = now
end

-- Written with %d: Lua's own number-to-string keeps 14 digits and would round a microsecond time.
-- The expiry is in milliseconds, rounded up and one more, so it never fires before the TAT.
local function save(new_tat)
    if new_tat > now then
        local ttl = math.floor((new_tat - now + 999) / 1000) + 1
        redis.call('SET', key, string.format('%d', new_tat), 'PX', string.format('%d', ttl))
    else
        redis.call('DEL', key)
    end
end

if op == 'reserve' then
    local wait = tat - tolerance - now
    if wait > argument then
        return {-1, now}
    end
    save(tat + interval)
    return {math.max(wait, 0), now}
elseif op == 'ready' then
    return {math.max(tat - tolerance - now, 0), now}
elseif op == 'release' then
    save(tat - interval)
elseif op == 'pause' then
    -- Past the pause's end by the tolerance: nothing before it, then the steady pace with no burst.
    local until_tat = now + argument + tolerance
    if until_tat > tat then
        save(until_tat)
    end
else
    return redis.error_reply('gcra.lua: unknown operation ' .. tostring(op))
end
return {0, now}
