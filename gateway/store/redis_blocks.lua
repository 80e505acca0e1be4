-- Operators' blocked accounts (CONTRACT.md §7): keep a block, or remove all of an account's, together
-- with the index of blocked accounts, in one atomic step. Both keys carry the hash tag {gw:blocks}, so
-- they share one Cluster slot.
--
-- KEYS[1]  {gw:blocks}:i, a set: the accounts that have a block
-- KEYS[2]  {gw:blocks}:a:<account>, a hash: product glob -> the block as JSON (stored as it came)
-- block    ARGV[2] account  ARGV[3] product glob  ARGV[4] the block. Returns 1.
-- unblock  ARGV[2] account. Returns the removed blocks as {glob, block, glob, block, ...}.

if ARGV[1] == 'block' then
    redis.call('SADD', KEYS[1], ARGV[2])
    redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
    return 1
end

if ARGV[1] == 'unblock' then
    local removed = redis.call('HGETALL', KEYS[2])
    redis.call('DEL', KEYS[2])
    redis.call('SREM', KEYS[1], ARGV[2])
    return removed
end

return redis.error_reply('unknown operation ' .. tostring(ARGV[1]))
