-- Count a response towards the uplift report: responders once per (decision, action,
-- outcome); value per response, with the sum of squares of each decision's total value.
-- KEYS[1] the counts hash, KEYS[2] the (decision, action) marker hash;
-- ARGV[1] marker TTL in seconds, ARGV[2] the outcome, ARGV[3] the cell's field prefix,
-- ARGV[4] the response's value (may be 0), ARGV[5] the response's event id (a replayed
-- event changes nothing).
if redis.call('HSETNX', KEYS[2], 'e:' .. ARGV[5], 1) == 0 then
  return 0
end
if redis.call('HSETNX', KEYS[2], ARGV[2], 1) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[3] .. '|' .. ARGV[2], 1)
end
local value = tonumber(ARGV[4])
if value ~= 0 then
  local before = tonumber(redis.call('HGET', KEYS[2], 'v') or '0')
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[3] .. '|value', ARGV[4])
  -- the decision's total goes from before to before + value: its square grows by this
  local growth = 2 * before * value + value * value
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[3] .. '|value_sq', string.format('%.17g', growth))
  redis.call('HSET', KEYS[2], 'v', string.format('%.17g', before + value))
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
return 1
