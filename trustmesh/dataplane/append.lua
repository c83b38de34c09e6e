-- Idempotent append of one submission record to a round (DESIGN §4), run by the iot-data TP.
-- apply() may run many times for one transaction: the seen HASH keeps one list entry per txn id.
-- KEYS[1] the round's federated LIST   KEYS[2] the seen HASH (txn id -> list index)
-- KEYS[3] the federation_state HASH (a mirror for dashboards; the chain stays the truth)
-- ARGV[1] txn id   ARGV[2] record bytes   ARGV[3] expected_nodes   ARGV[4] now (block time)
-- ARGV[5] seconds the round's keys live after its last append (0: forever)
-- Returns { 1 if appended now else 0, the record's list index, submissions seen so far,
--           how many of the three keys now expire }
local index = redis.call('HGET', KEYS[2], ARGV[1])
local appended = 0
if index then
  index = tonumber(index)
else
  index = redis.call('RPUSH', KEYS[1], ARGV[2]) - 1
  redis.call('HSET', KEYS[2], ARGV[1], index)
  appended = 1
end
local submitted = redis.call('HLEN', KEYS[2])
local expected = tonumber(ARGV[3]) or 0
redis.call('HSET', KEYS[3], 'expected_nodes', ARGV[3], 'submitted_nodes', submitted,
  'last_submission_time', ARGV[4])
redis.call('HSETNX', KEYS[3], 'round_start_time', ARGV[4])
local status = redis.call('HGET', KEYS[3], 'status')
if (not status) or status == 'open' or status == 'collecting' then
  if expected > 0 and submitted >= expected then
    status = 'all_submitted'
  else
    status = 'collecting'
  end
  redis.call('HSET', KEYS[3], 'status', status)
end
-- The chain keeps every hash and CouchDB the models: a round's list, seen hash and mirror are
-- caches, so they expire. pcall: a user not allowed EXPIRE still appends (the caller is told).
local expiring = 0
local ttl = tonumber(ARGV[5]) or 0
if ttl > 0 then
  for i = 1, 3 do
    if type(redis.pcall('EXPIRE', KEYS[i], ttl)) == 'number' then
      expiring = expiring + 1
    end
  end
end
return { appended, index, submitted, expiring }
