-- Apply one event's writes atomically, at most once per event id.
-- KEYS[1] dedupe marker; KEYS[2..] the customer's view keys (one hash tag, one slot).
-- ARGV[1] dedupe TTL in seconds, ARGV[2] the views' TTLs in seconds ("p,b,c,h"; 0: none),
-- ARGV[3] the event time (stamped as ``_ts`` on every hash view written);
-- then groups of four: op, key index, field, value. ``stamp``'s value is [time, keep].
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return 0
end
local touched = {}
local i = 4
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
  elseif op == 'window' then
    -- value: "<time>;<width>,<width>,...;<slots>"; field value: "w" then, per window,
    -- the newest bucket's index and <slots> counts, newest first, as little-endian
    -- 32-bit integers (see windows.py)
    local at, widths, slots = string.match(ARGV[i + 3], '^([^;]+);([^;]+);([^;]+)$')
    at = tonumber(at)
    slots = tonumber(slots)
    local width = {}
    for w in string.gmatch(widths, '[^,]+') do table.insert(width, tonumber(w)) end
    local fmt = '<' .. string.rep('i4', #width * (slots + 1))
    local raw = redis.call('HGET', key, ARGV[i + 2])
    local old = nil
    if raw and string.len(raw) == 1 + 4 * #width * (slots + 1) then
      old = {struct.unpack(fmt, raw, 2)}
    end
    local out = {}
    for k = 1, #width do
      local base = (k - 1) * (slots + 1)
      local idx = math.floor(at / width[k])
      local head = old and old[base + 1] or idx
      local counts = {}
      for j = 1, slots do counts[j] = old and old[base + 1 + j] or 0 end
      if idx > head then
        local shift = idx - head
        for j = slots, 1, -1 do
          counts[j] = (j - shift >= 1) and counts[j - shift] or 0
        end
        head = idx
      end
      local pos = head - idx + 1
      if pos >= 1 and pos <= slots then counts[pos] = counts[pos] + 1 end
      out[#out + 1] = head
      for j = 1, slots do out[#out + 1] = counts[j] end
    end
    redis.call('HSET', key, ARGV[i + 2], 'w' .. struct.pack(fmt, unpack(out)))
  elseif op == 'session' then
    local at, gap = string.match(ARGV[i + 3], '^([^;]+);([^;]+)$')
    local last = tonumber(redis.call('HGET', key, 'last_seen') or '')
    if last and tonumber(at) - last <= tonumber(gap) then
      redis.call('HINCRBY', key, ARGV[i + 2], 1)
    else
      redis.call('HSET', key, ARGV[i + 2], 1)
      redis.call('HSET', key, 'session_start', at)
    end
  elseif op == 'append' then
    redis.call('LPUSH', key, ARGV[i + 3])
    redis.call('LTRIM', key, 0, tonumber(ARGV[i + 2]) - 1)
  end
  touched[idx] = op ~= 'append'
  i = i + 4
end
local ttls = {}
for t in string.gmatch(ARGV[2], '[^,]+') do table.insert(ttls, tonumber(t)) end
for idx, is_hash in pairs(touched) do
  if is_hash then redis.call('HSET', KEYS[idx], '_ts', ARGV[3]) end
  local ttl = ttls[idx - 1] or 0
  if ttl > 0 then redis.call('EXPIRE', KEYS[idx], ttl) end
end
return 1
