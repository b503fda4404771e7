-- Reserve room in contact caps, atomically: every cap must have room, or none is used.
-- KEYS[1] the customer's counters hash; ARGV[1] now, ARGV[2] how many times to keep;
-- then groups of three: field, count, window in seconds.
local now = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local live = {}
for i = 3, #ARGV, 3 do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  local times = {}
  if raw then
    local ok, decoded = pcall(cjson.decode, raw)
    if ok and type(decoded) == 'table' then times = decoded end
  end
  local since = now - tonumber(ARGV[i + 2])
  local kept = {}
  for _, t in ipairs(times) do
    if t > since then table.insert(kept, t) end
  end
  if #kept >= tonumber(ARGV[i + 1]) then return 0 end
  live[i] = kept
end
for i = 3, #ARGV, 3 do
  local kept = live[i]
  table.insert(kept, now)
  while #kept > keep do table.remove(kept, 1) end
  redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(kept))
end
return 1
