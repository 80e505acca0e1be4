-- Claim one shop's nonce until the caller's `expires_at`, atomically; refuse it while a claim holds.
--
-- The stored expiry decides, compared with the caller's `now` (both the gateway's clock, as for every
-- backend); the key's own expiry, on Redis's clock, only lets Redis forget it some time after that.
-- Times are compared as numbers parsed from the caller's strings, never written back from Lua.
--
-- KEYS[1]  gw:n:<n>:<shop>:<nonce>, holding "<expires_at> <claim token>"
-- ARGV[1]  expires_at    ARGV[2]  now
-- ARGV[3]  this claim's random token: the same claim sent again (a reply lost) is answered as before
-- ARGV[4]  how long Redis keeps the key, in milliseconds
-- Returns  1 claimed, 0 refused (nothing written)

local held = redis.call('GET', KEYS[1])
if held then
    local expires_at, token = string.match(held, '^(%S+) (%S+)$')
    if token == ARGV[3] then
        return 1
    end
    if tonumber(expires_at) > tonumber(ARGV[2]) then
        return 0
    end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[3], 'PX', ARGV[4])
return 1
