-- Apply one event's writes atomically, at most once per event id.
-- KEYS[1] dedupe marker; KEYS[2..] the customer's view keys (one hash tag, one slot).
-- ARGV[1] dedupe TTL in seconds, ARGV[2] view TTL in seconds (0: none);
-- then groups of four: op, key index, field, value. ``stamp``'s value is [time, keep].
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return 0
end
local touched = {}
local i = 3
while i <= #ARGV do
  local op = ARGV[i]
  local idx = tonumber(ARGV[i + 1])
  local key = KEYS[idx]
  if op == 'put' then
    redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3])
  elseif op == 'incr' then
    redis.call('HINCRBYFLOAT', key, ARGV[i + 2], ARGV[i + 3])
  elseif op == 'stamp' then
    local spec = cjson.decode(ARGV[i + 3])
    local raw = redis.call('HGET', key, ARGV[i + 2])
    local times = {}
    if raw then
      local ok, decoded = pcall(cjson.decode, raw)
      if ok and type(decoded) == 'table' then times = decoded end
    end
    table.insert(times, spec[1])
    table.sort(times)
    while #times > spec[2] do table.remove(times, 1) end
    redis.call('HSET', key, ARGV[i + 2], cjson.encode(times))
  elseif op == 'append' then
    redis.call('LPUSH', key, ARGV[i + 3])
    redis.call('LTRIM', key, 0, tonumber(ARGV[i + 2]) - 1)
  end
  touched[idx] = true
  i = i + 4
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  for idx, _ in pairs(touched) do
    redis.call('EXPIRE', KEYS[idx], ttl)
  end
end
return 1
