-- Count a response towards the uplift report once per (decision, action, outcome).
-- KEYS[1] the counts hash, KEYS[2] the marker of this (decision, action, outcome);
-- ARGV[1] marker TTL in seconds, ARGV[2] the responders field, ARGV[3] the value field,
-- ARGV[4] the squared-value field, ARGV[5] the value (may be 0).
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
local value = tonumber(ARGV[5])
if value ~= 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[3], value)
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[4], value * value)
end
return 1
