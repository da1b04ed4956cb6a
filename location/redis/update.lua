-- Applies one location.Update to the hash of one AOR, atomically.
-- KEYS[1]  the AOR's hash: field = Binding.Key(), value = JSON with
--          "e" (expires, Unix ms), "ci" (Call-ID) and "s" (CSeq); values
--          written before the compact format have "expires", "call_id"
--          and "cseq" instead, and are read as well.
-- ARGV     now (Unix ms), Call-ID, CSeq, remove all (0|1), max contacts
--          (0: none), channel, AOR, number of removed keys, the removed
--          keys, then field, expires (Unix ms), value for each set binding.
-- Returns field, value, field, value… of the bindings current afterwards, or the error
-- STALE_CSEQ (RFC 3261 §10.3 steps 6-7) or TOO_MANY_CONTACTS, having
-- changed nothing. (Each error has a message after its code: Redis
-- prefixes ERR to an error reply without one.)
local key = KEYS[1]
local now = tonumber(ARGV[1])
local callid = ARGV[2]
local cseq = tonumber(ARGV[3])
local removeAll = ARGV[4] == '1'
local max = tonumber(ARGV[5])
local nrem = tonumber(ARGV[8])

local touched, removed, sets = {}, {}, {}
for i = 9, 8 + nrem do
  touched[ARGV[i]] = true
  removed[ARGV[i]] = true
end
for i = 9 + nrem, #ARGV, 3 do
  local f, exp = ARGV[i], tonumber(ARGV[i + 1])
  touched[f] = true
  if not removed[f] then
    -- false: set already expired, which removes the binding.
    sets[f] = exp > now and { exp, ARGV[i + 2] }
  end
end

-- Current bindings; expired and undecodable ones are dropped.
local cur = redis.call('HGETALL', key)
local live, nlive, del = {}, 0, {}
for i = 1, #cur, 2 do
  local f, v = cur[i], cur[i + 1]
  local ok, b = pcall(cjson.decode, v)
  local exp = ok and type(b) == 'table' and (b.e or b.expires)
  if type(exp) == 'number' and exp > now then
    if (removeAll or touched[f]) and (b.ci or b.call_id) == callid and cseq <= (tonumber(b.s or b.cseq) or 0) then
      return redis.error_reply('STALE_CSEQ ' .. f)
    end
    live[f] = { exp, v }
    nlive = nlive + 1
  else
    del[#del + 1] = f
  end
end
local ndead = #del

local final, count = {}, 0
if not removeAll then
  for f, v in pairs(live) do
    if not removed[f] and sets[f] == nil then
      final[f] = v
      count = count + 1
    end
  end
end
local hset, added = {}, false
for f, v in pairs(sets) do
  if v then
    final[f] = v
    count = count + 1
    hset[#hset + 1] = f
    hset[#hset + 1] = v[2]
    added = added or live[f] == nil
  end
end
if max > 0 and count > max and count > nlive then
  return redis.error_reply('TOO_MANY_CONTACTS ' .. count .. ' bindings, at most ' .. max)
end

for f in pairs(live) do
  if final[f] == nil then
    del[#del + 1] = f
  end
end
if count == 0 then
  redis.call('DEL', key)
else
  if #del > 0 then
    redis.call('HDEL', key, unpack(del))
  end
  if #hset > 0 then
    redis.call('HSET', key, unpack(hset))
  end
end

local out, latest = {}, 0
for f, v in pairs(final) do
  out[#out + 1] = f
  out[#out + 1] = v[2]
  if v[1] > latest then
    latest = v[1]
  end
end
if count > 0 then
  redis.call('PEXPIREAT', key, latest)
end
-- A device added or removed is news to the other nodes (a call ringing
-- for the AOR gets a branch to a new device); a refresh is not.
if added or #del > ndead then
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
return out
