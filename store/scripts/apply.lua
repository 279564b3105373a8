-- One atomic write of the case store: a conversation turn or a staff action.
--
-- ARGV[1] is a JSON spec built by store/apply.py; ARGV[2] the new conversation state and ARGV[3]
-- the stored reply (kept out of the JSON to avoid re-encoding blobs). Every key lives under one
-- tenant hash tag; KEYS holds the keys known before the call (conversation, idempotency mark)
-- for routing, the rest come in the spec because a new ticket's keys depend on an id drawn here.
--
-- Phases: (1) checks that can fail (idempotency, version, ticket existence, transitions) —
-- nothing is written before they all pass, because Redis does not roll a script back;
-- (2) draw the ticket id and substitute the placeholder everywhere; (3) writes.
--
-- __TRANSITIONS__ is replaced by store/apply.py with the JSON of store.model.TRANSITIONS.
local TRANSITIONS = cjson.decode('__TRANSITIONS__')

local function replace(s, old, new)
  if s == nil or old == nil or old == '' then return s end
  local out, i = {}, 1
  while true do
    local a, b = string.find(s, old, i, true)
    if not a then break end
    out[#out + 1] = string.sub(s, i, a - 1)
    out[#out + 1] = new
    i = b + 1
  end
  out[#out + 1] = string.sub(s, i)
  return table.concat(out)
end

local function luhn(digits)
  local total = 0
  local n = #digits
  for i = n, 1, -1 do
    local d = tonumber(string.sub(digits, i, i))
    if (n - i) % 2 == 0 then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    total = total + d
  end
  return (10 - total % 10) % 10
end

local function allowed(from, to)
  local moves = TRANSITIONS[from]
  if not moves then return false end
  for _, s in ipairs(moves) do if s == to then return true end end
  return false
end

local spec = cjson.decode(ARGV[1])
local state, reply = ARGV[2], ARGV[3]

-- (1) checks ------------------------------------------------------------------------------------
if spec.idem and redis.call('EXISTS', spec.idem.key) == 1 then
  return {'dup', redis.call('GET', spec.idem.key) or ''}
end
if spec.conv then
  local current = tonumber(redis.call('HGET', spec.conv.key, 'version') or '0')
  if current ~= spec.conv.expected then return {'conflict', tostring(current)} end
end

for _, g in ipairs(spec.guards or {}) do
  local updated = redis.call('HGET', g[2], 'updated_at') or ''
  if updated ~= g[4] or redis.call('LLEN', g[3]) ~= g[5] then return {'stale', g[1]} end
end

local sim, skipped = {}, {}
for _, op in ipairs(spec.ops or {}) do
  local t = op.t
  if t ~= '' and sim[t] == nil then  -- '' is a tenant-wide op (a day counter): no ticket
    if t == spec.ph then
      sim[t] = 'new'
    else
      local info = spec.tickets[t]
      local s = info and redis.call('HGET', info.key, 'status')
      if not s then return {'missing', t} end
      sim[t] = s
    end
  end
  if op.op == 'status' then
    if allowed(sim[t], op.to) then
      op.from = sim[t]
      sim[t] = op.to
    elseif op.strict then
      return {'illegal', t, sim[t], op.to}
    else
      skipped[#skipped + 1] = t .. ':' .. op.to
    end
  end
end

-- (2) draw the ticket id -----------------------------------------------------------------------
local ticket_id = ''
if spec.create then
  local c = spec.create
  local seq = redis.call('INCR', c.seq_key)
  redis.call('EXPIRE', c.seq_key, c.seq_ttl)
  local seq_s = string.format('%04d', seq)
  ticket_id = c.prefix .. '-' .. c.date .. '-' .. seq_s .. '-' .. luhn(c.date .. seq_s)
  local ph = spec.ph  -- the decoded spec below has the id in its "ph" field too
  spec = cjson.decode(replace(ARGV[1], ph, ticket_id))
  state = replace(state, ph, ticket_id)
  reply = replace(reply, ph, ticket_id)
end

-- (3) writes -------------------------------------------------------------------------------------
local now_s = spec.now_s
local day_key = spec.day_key
local function count(name, by)
  redis.call('HINCRBY', day_key, name, by or 1)
  redis.call('EXPIRE', day_key, spec.day_ttl)
end
local function push_event(events_key, kind, actor, payload)
  redis.call('RPUSH', events_key, '{"kind":' .. cjson.encode(kind) .. ',"actor":' .. cjson.encode(actor)
    .. ',"at":' .. now_s .. ',"payload":' .. cjson.encode(payload) .. '}')
end
local function unit_key(unit)  -- unit names were checked for braces by store/apply.py
  return replace(spec.unit_tpl, spec.unit_ph, unit)
end

-- Derived indexes (a unit's open work, open tickets by reply deadline) are reconciled once per
-- touched ticket after all ops, from its final fields, so any mix of ops leaves them right.
-- ``spec.derived`` absent (an older caller) leaves them alone.
local derived = spec.derived
local touched, touched_order = {}, {}
local function touch(t, tkey, old_unit)
  if not derived or touched[t] then return end
  touched[t] = {key = tkey, unit = old_unit or redis.call('HGET', tkey, 'unit') or ''}
  touched_order[#touched_order + 1] = t
end
-- Statistics that count tickets, not events: a ticket is answered (replied or resolved) and
-- resolved once, on the day it first happens; each resolution still counts for its unit.
local function count_answers(tkey, to)
  if not derived or (to ~= 'replied' and to ~= 'resolved') then return end
  if redis.call('HSETNX', tkey, 'first_answered_at', now_s) == 1 then count('tickets_answered', 1) end
  if to == 'resolved' then
    if redis.call('HSETNX', tkey, 'first_resolved_at', now_s) == 1 then count('tickets_resolved', 1) end
    local unit = redis.call('HGET', tkey, 'unit') or ''
    if unit ~= '' then count('resolved:' .. unit, 1) end
  end
end

if spec.create then
  local c = spec.create
  local flat = {}
  for k, v in pairs(c.fields) do flat[#flat + 1] = k; flat[#flat + 1] = v end
  redis.call('HSET', c.ticket_key, unpack(flat))
  for _, key in ipairs(c.index_keys) do redis.call('ZADD', key, now_s, ticket_id) end
  for _, name in ipairs(c.counters) do count(name, 1) end
  spec.tickets[ticket_id] = {key = c.ticket_key, events_key = c.events_key}
  push_event(c.events_key, 'created', c.actor, c.event_payload)
  touch(ticket_id, c.ticket_key, '')
end

-- Status ops replay the decisions of phase (1): nothing changed in between (one script).
local sim2 = {}
for i, op in ipairs(spec.ops or {}) do
  local info = spec.tickets[op.t] or {}
  local tkey, ekey = info.key, info.events_key
  if op.op == 'status' then
    local from = sim2[op.t] or redis.call('HGET', tkey, 'status')
    if allowed(from, op.to) then
      touch(op.t, tkey)
      sim2[op.t] = op.to
      local created = redis.call('HGET', tkey, 'created_at')
      redis.call('ZREM', spec.status_keys[from], op.t)
      redis.call('ZADD', spec.status_keys[op.to], created, op.t)
      redis.call('HSET', tkey, 'status', op.to, 'updated_at', now_s)
      local payload = op.payload or {}
      payload['from'] = from
      payload['to'] = op.to
      push_event(ekey, 'status', op.actor, payload)
      local counter = spec.status_counters[op.to]
      if counter then count(counter, 1) end
      count_answers(tkey, op.to)
    end
  elseif op.op == 'set' then
    touch(op.t, tkey)
    if op.values.unit ~= nil then
      local old = redis.call('HGET', tkey, 'unit') or ''
      if old ~= op.values.unit then
        local created = redis.call('HGET', tkey, 'created_at')
        if old ~= '' then redis.call('ZREM', unit_key(old), op.t) end
        if op.values.unit ~= '' then redis.call('ZADD', unit_key(op.values.unit), created, op.t) end
      end
    end
    local flat = {'updated_at', now_s}
    for k, v in pairs(op.values) do flat[#flat + 1] = k; flat[#flat + 1] = v end
    redis.call('HSET', tkey, unpack(flat))
  elseif op.op == 'extend' then
    local raw = redis.call('HGET', tkey, op.name)
    local list = (raw and raw ~= '') and cjson.decode(raw) or {}
    for _, item in ipairs(op.items) do
      local dupe = false
      if op.unique then
        for _, have in ipairs(list) do
          if type(item) == 'table' and type(have) == 'table' then
            if item.media_id ~= nil and item.media_id == have.media_id then dupe = true end
          elseif item == have then dupe = true end
        end
      end
      if not dupe then list[#list + 1] = item end
    end
    if #list > 0 then redis.call('HSET', tkey, op.name, cjson.encode(list), 'updated_at', now_s) end
  elseif op.op == 'incr' then
    redis.call('HINCRBY', tkey, op.name, op.by)
    redis.call('HSET', tkey, 'updated_at', now_s)
  elseif op.op == 'event' then
    redis.call('RPUSH', ekey, op.event)
  elseif op.op == 'count' then
    count(op.name, op.by)
  elseif op.op == 'zadd' then
    redis.call('ZADD', op.key, op.score, op.t)
  elseif op.op == 'zrem' then
    redis.call('ZREM', op.key, op.t)
  end
end

for _, t in ipairs(touched_order) do
  local info = touched[t]
  local f = redis.call('HMGET', info.key, 'status', 'unit', 'reply_deadline', 'created_at')
  local status, unit, deadline = f[1] or '', f[2] or '', f[3] or ''
  local work = derived.work[status] ~= nil and unit ~= ''
  if info.unit ~= '' and (info.unit ~= unit or not work) then
    redis.call('ZREM', replace(derived.unit_open_tpl, spec.unit_ph, info.unit), t)
  end
  if work then redis.call('ZADD', replace(derived.unit_open_tpl, spec.unit_ph, unit), f[4], t) end
  if derived.open[status] ~= nil and deadline ~= '' then
    redis.call('ZADD', derived.deadline_key, deadline, t)
  else
    redis.call('ZREM', derived.deadline_key, t)
  end
end

if spec.conv then
  local v = spec.conv.expected + 1
  redis.call('HSET', spec.conv.key, 'version', v, 'state', state)
  redis.call('EXPIRE', spec.conv.key, spec.conv.ttl)
end
if spec.idem then
  redis.call('SET', spec.idem.key, reply, 'NX', 'EX', spec.idem.ttl)
end
for _, entry in ipairs(spec.outbox or {}) do
  redis.call('XADD', spec.outbox_key, '*', 'o', entry)
end
if spec.timers then
  for _, t in ipairs(spec.timers.cancel) do
    redis.call('ZREM', spec.timers.key, t)
    redis.call('HDEL', spec.timers.payload_key, t)
  end
  for _, t in ipairs(spec.timers.set) do
    redis.call('ZADD', spec.timers.key, t[2], t[1])
    redis.call('HSET', spec.timers.payload_key, t[1], t[3])
  end
end
for _, h in ipairs(spec.hsets or {}) do
  local flat = {}
  for k, v in pairs(h[2]) do flat[#flat + 1] = k; flat[#flat + 1] = v end
  if #flat > 0 then redis.call('HSET', h[1], unpack(flat)) end
  if h[3] > 0 then redis.call('EXPIRE', h[1], h[3]) end
end
for _, s in ipairs(spec.sadds or {}) do
  if #s[2] > 0 then redis.call('SADD', s[1], unpack(s[2])) end
  if s[3] > 0 then redis.call('EXPIRE', s[1], s[3]) end
end
-- Tenant-level ops not tied to a ticket: z = {key, member, score or '' for ZREM}, l = {key, item,
-- cap, ttl}.
for _, z in ipairs(spec.zsets or {}) do
  if z[3] == '' then redis.call('ZREM', z[1], z[2]) else redis.call('ZADD', z[1], 'NX', z[3], z[2]) end
end
for _, l in ipairs(spec.lists or {}) do
  redis.call('RPUSH', l[1], l[2])
  if l[3] > 0 then redis.call('LTRIM', l[1], -l[3], -1) end
  if l[4] > 0 then redis.call('EXPIRE', l[1], l[4]) end
end
return {'ok', ticket_id, spec.conv and tostring(spec.conv.expected + 1) or '', cjson.encode(skipped)}
