-- Apply the writes of one customer's events atomically, each event at most once per
-- event id. One call per customer per batch: the views' keys, the window layouts and the
-- window counters are looked up once per call, not once per event.
-- KEYS[1..4] the customer's views (profile, behaviour, counters, history: one hash tag,
-- one slot); KEYS[4 + n] the dedupe marker of event n.
-- ARGV[1] dedupe TTL in seconds, ARGV[2] the views' TTLs in seconds ("p,b,c,h"; 0: none),
-- ARGV[3] the time stamped as ``_ts`` on every hash view written, ARGV[4] the window
-- layouts, ARGV[4 + n] the writes of event n, packed (see feature_store/apply_codec.py).
-- Returns one 1 (applied) or 0 (seen before) per event.
-- Event time: a "latest" write (op 7) sets its field only if its time is not before the
-- clock field's (recency features never move back), and a session counts a late page only
-- if it lies within the gap of ``last_seen``.
local VIEWS = 4
local ttl = tonumber(ARGV[1])

-- layouts: B count, then per layout B windows, B slots, the bucket widths as doubles
local layouts = {}
do
  local count, pos = struct.unpack('<B', ARGV[4])
  for l = 1, count do
    local n, slots
    n, slots, pos = struct.unpack('<BB', ARGV[4], pos)
    local width = {struct.unpack('<' .. string.rep('d', n), ARGV[4], pos)}
    pos = table.remove(width)
    layouts[l] = {width = width, slots = slots, fmt = '<' .. string.rep('i4', n * (slots + 1))}
  end
end

-- window counters read once per call, updated in place, written back once at the end
local counters = {{}, {}, {}, {}}
local function counter(idx, field, layout)
  local c = counters[idx][field]
  if c then return c end
  local size = #layout.width * (layout.slots + 1)
  local raw = redis.call('HGET', KEYS[idx], field)
  local vals
  if raw and string.len(raw) == 1 + 4 * size then
    vals = {struct.unpack(layout.fmt, raw, 2)}
    vals[size + 1] = nil  -- the position struct.unpack returns last
  end
  c = {idx = idx, field = field, layout = layout, vals = vals}
  counters[idx][field] = c
  return c
end

local function count(c, at)
  local layout = c.layout
  local slots = layout.slots
  local vals = c.vals
  if not vals then
    vals = {}
    for k = 1, #layout.width do
      local base = (k - 1) * (slots + 1)
      vals[base + 1] = math.floor(at / layout.width[k])
      for j = 1, slots do vals[base + 1 + j] = 0 end
    end
    c.vals = vals
  end
  for k = 1, #layout.width do
    local base = (k - 1) * (slots + 1)
    local idx = math.floor(at / layout.width[k])
    local head = vals[base + 1]
    if idx > head then
      local shift = idx - head
      for j = slots, 1, -1 do
        vals[base + 1 + j] = (j - shift >= 1) and vals[base + 1 + j - shift] or 0
      end
      vals[base + 1] = idx
      head = idx
    end
    local p = head - idx + 1
    if p >= 1 and p <= slots then vals[base + 1 + p] = vals[base + 1 + p] + 1 end
  end
end

local function flush(c)
  redis.call('HSET', KEYS[c.idx], c.field, 'w' .. struct.pack(c.layout.fmt, unpack(c.vals)))
end

-- a plain write to (or read of) a field counted above in this call: store the count first
local function settle(idx, field)
  local c = counters[idx][field]
  if c then
    flush(c)
    counters[idx][field] = nil
  end
end

local touched = {}
local applied = {}
for n = 1, #KEYS - VIEWS do
  if not redis.call('SET', KEYS[VIEWS + n], '1', 'NX', 'EX', ttl) then
    applied[n] = 0
  else
    applied[n] = 1
    local data = ARGV[4 + n]
    local pos = 1
    local size = string.len(data)
    while pos <= size do
      local op, idx, field
      op, idx, pos = struct.unpack('<BB', data, pos)
      local key = KEYS[idx]
      if op == 5 then  -- append: keep, value
        local keep, value
        keep, value, pos = struct.unpack('<HI4c0', data, pos)
        redis.call('LPUSH', key, value)
        redis.call('LTRIM', key, 0, keep - 1)
        touched[idx] = touched[idx] or false
      else
        field, pos = struct.unpack('<Hc0', data, pos)
        if op ~= 4 then settle(idx, field) end
        if op == 1 then  -- put: JSON value
          local value
          value, pos = struct.unpack('<I4c0', data, pos)
          redis.call('HSET', key, field, value)
        elseif op == 2 then  -- incr: amount, as text
          local amount
          amount, pos = struct.unpack('<Bc0', data, pos)
          redis.call('HINCRBYFLOAT', key, field, amount)
        elseif op == 4 then  -- window: time, layout number (see windows.py)
          local at, l
          at, l, pos = struct.unpack('<dB', data, pos)
          count(counter(idx, field, layouts[l]), at)
        elseif op == 6 then  -- session: time as text, gap
          local at, gap
          at, gap, pos = struct.unpack('<Bc0d', data, pos)
          settle(idx, 'last_seen')
          settle(idx, 'session_start')
          local last = tonumber(redis.call('HGET', key, 'last_seen') or '')
          local t = tonumber(at)
          if last and math.abs(t - last) <= gap then
            redis.call('HINCRBY', key, field, 1)
          elseif not last or t > last then
            redis.call('HSET', key, field, 1)
            redis.call('HSET', key, 'session_start', at)
          end  -- else a late page of an earlier visit: not in this one
        elseif op == 7 then  -- latest: clock field, time, time as JSON, JSON value
          local clock, at, stamp, value
          clock, at, stamp, value, pos = struct.unpack('<Hc0dBc0I4c0', data, pos)
          settle(idx, clock)
          local kept = tonumber(redis.call('HGET', key, clock) or '')
          if not kept or at >= kept then  -- never back in event time
            redis.call('HSET', key, field, value)
            if clock ~= field then redis.call('HSET', key, clock, stamp) end
          end
        elseif op == 3 then  -- stamp: time, keep
          local at, keep
          at, keep, pos = struct.unpack('<dH', data, pos)
          local raw = redis.call('HGET', key, field)
          local times = {}
          if raw then
            local ok, decoded = pcall(cjson.decode, raw)
            if ok and type(decoded) == 'table' then times = decoded end
          end
          table.insert(times, at)
          table.sort(times)
          while #times > keep do table.remove(times, 1) end
          redis.call('HSET', key, field, cjson.encode(times))
        end
        touched[idx] = true
      end
    end
  end
end
for idx = 1, VIEWS do
  for _, c in pairs(counters[idx]) do flush(c) end
end
local ttls = {}
for t in string.gmatch(ARGV[2], '[^,]+') do table.insert(ttls, tonumber(t)) end
for idx, is_hash in pairs(touched) do
  if is_hash then redis.call('HSET', KEYS[idx], '_ts', ARGV[3]) end
  local view_ttl = ttls[idx] or 0
  if view_ttl > 0 then redis.call('EXPIRE', KEYS[idx], view_ttl) end
end
return applied
