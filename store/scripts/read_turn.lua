-- The read half of a conversation turn in ONE round trip (store/turns.py Turns.read_turn).
--
-- KEYS: [1] conversation HASH, [2] idempotency mark, [3] in-flight lock.
-- ARGV: [1] lock token ('' = do not lock: a retry after a version conflict already holds it),
--       [2] lock TTL in ms, [3] a ticket key with [4] standing for the id (built by store/keys.py),
--       [5] how many of the state's most recent filed tickets to read (0 = none),
--       [6] n, then n ids never to read (placeholders), then the ids the caller asks for itself.
--
-- Returns {version, state, stored reply or false, locked (0/1), ids read, their hashes}. A replay
-- (stored reply) and a turn already in flight (lock held) return before reading any ticket.
-- The tickets a turn may need are named by the state itself: the open ticket a message may
-- supplement, a pending survey or staff question, the ticket awaiting a rating comment and, for
-- status questions, the recent filed tickets. The state is decoded here with cjson; damaged JSON
-- only means no ticket is read for it (the caller reads what it finds missing).
local conv = redis.call('HMGET', KEYS[1], 'version', 'state')
local version, state = conv[1] or '0', conv[2]
local stored = redis.call('GET', KEYS[2])
if stored then return {version, state or '', stored, 0, {}, {}} end
if ARGV[1] ~= '' and not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {version, state or '', false, 0, {}, {}}
end

local skip, wanted, seen = {}, {}, {}
local n_skip = tonumber(ARGV[6])
for i = 7, 6 + n_skip do skip[ARGV[i]] = true end
local function want(id)
  if type(id) == 'string' and id ~= '' and not skip[id] and not seen[id]
      and not string.find(id, '[{}]') then  -- braces would leave the tenant's hash tag
    seen[id] = true
    wanted[#wanted + 1] = id
  end
end
for i = 7 + n_skip, #ARGV do want(ARGV[i]) end

local function field(t, name, index)  -- a dict's name, or a list's index-th item
  if type(t) ~= 'table' then return t end
  if t[name] ~= nil then return t[name] end
  return t[index]
end

if state then
  local ok, data = pcall(cjson.decode, state)
  if ok and type(data) == 'table' then
    local recent = tonumber(ARGV[5])
    if recent > 0 and type(data.tickets) == 'table' then
      local n = #data.tickets
      for i = math.max(1, n - recent + 1), n do want(field(data.tickets[i], 'id', 1)) end
    end
    want(data.current_ticket)
    want(field(data.pending_survey, 'ticket_id', 1))
    want(field(data.pending_question, 'ticket_id', 1))
    want(field(data.comment_for, 'ticket_id', 1))
  end
end

local a, b = string.find(ARGV[3], ARGV[4], 1, true)
local before, after = string.sub(ARGV[3], 1, a - 1), string.sub(ARGV[3], b + 1)
local hashes = {}
for i, id in ipairs(wanted) do hashes[i] = redis.call('HGETALL', before .. id .. after) end
return {version, state or '', false, 1, wanted, hashes}
