"""The Lua scripts of the job store (indexer/jobs/store.py): each one change of a job record, atomic in
Redis. KEYS and ARGV are documented above each script."""

from __future__ import annotations

PRUNE_BATCH = 100  # index entries of expired jobs dropped per finish
# The hash keys of the jobs not yet in a final state (queued or running): what the sweeper walks
# (indexer/jobs/sweep.py). A job joins it when created and leaves it in the script that ends it.
UNFINISHED = "clipsearch:jobs:unfinished"

# Shared Lua: move a job to a final state (ARGV: state, now, ttl) and give every key of the job a TTL.
# KEYS[1..5] are the job's keys (PARTS: KEYS[1] the job hash), KEYS[6] the ACTIVE hash, KEYS[7] INDEX;
# the sorted set of a final state is ENDED .. state.
FINISH = """
local function finish(keys, state, now, ttl, prefix, ended)
  local old = redis.call('HGET', keys[1], 'state')
  if old == state then return end
  if old == 'queued' or old == 'running' then
    redis.call('HINCRBY', keys[6], old, -1)
  elseif old then
    redis.call('ZREM', ended .. old, keys[1])
  end
  redis.call('HSET', keys[1], 'state', state, 'finished_at', now)
  redis.call('SREM', '{unfinished}', keys[1])
  local set = ended .. state
  redis.call('ZADD', set, now, keys[1])
  redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. (tonumber(now) - tonumber(ttl)))
  for i = 1, 5 do redis.call('EXPIRE', keys[i], ttl) end
  -- the index of jobs by creation time: drop a few entries whose records are gone
  local cut = tonumber(now) - tonumber(ttl)
  local old_ids = redis.call('ZRANGEBYSCORE', keys[7], '-inf', cut, 'LIMIT', 0, {batch})
  for _, id in ipairs(old_ids) do
    if redis.call('EXISTS', prefix .. id) == 0 then redis.call('ZREM', keys[7], id) end
  end
end
""".replace("{batch}", str(PRUNE_BATCH)).replace("{unfinished}", UNFINISHED)

# Lua: a job's hold (Hold): the `hold` field, or for a record written before it, the `open` flag that
# meant the same ("1": an open upload, "step": held for its final step).
HOLD = """
local function hold_of(key)
  local hold = redis.call('HGET', key, 'hold')
  if hold then return hold end
  local flag = redis.call('HGET', key, 'open')
  if flag == '1' then return 'open' end
  if flag == 'step' then return 'step' end
  return 'none'
end
"""


# KEYS: as FINISH. ARGV: item index, outcome, error JSON or "", now, ttl, PREFIX, ENDED.
RECORD = (
    FINISH
    + HOLD
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
-- progress: what the sweeper measures a stall by; a job that records outcomes is no longer paused
redis.call('HSET', KEYS[1], 'progress_at', ARGV[4])
redis.call('HDEL', KEYS[1], 'paused', 'paused_until')
if ARGV[3] ~= '' then redis.call('HSET', KEYS[4], ARGV[1], ARGV[3]) end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local seen = redis.call('HLEN', KEYS[3])
local state = redis.call('HGET', KEYS[1], 'state')
-- an open upload job (JobStore.create(open_ended=True)) and a job held for its final step (a kind with a
-- final step) complete only once they are closed
if seen >= total and hold_of(KEYS[1]) == 'none' and (state == 'running' or state == 'queued') then
  finish(KEYS, 'completed', ARGV[4], ARGV[5], ARGV[6], ARGV[7])
elseif state ~= 'running' and state ~= 'queued' then
  -- an outcome recorded after the job ended (a late chunk): its keys keep the TTL
  for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
end
return 1
"""
)

# KEYS: as FINISH. ARGV: state, now, ttl, PREFIX, ENDED, failure reason, only_if_active ("1"/"0").
# Returns the state before the call.
END = (
    FINISH
    + """
local old = redis.call('HGET', KEYS[1], 'state')
if not old then return false end
if ARGV[7] == '1' and old ~= 'queued' and old ~= 'running' then return old end
finish(KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'failure', ARGV[6]) end
return old
"""
)

# KEYS[1]: job hash, KEYS[2]: ACTIVE. ARGV: now. Only a queued job starts running.
RUN = """
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[1])
if redis.call('HGET', KEYS[1], 'state') == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running')
  redis.call('HINCRBY', KEYS[2], 'queued', -1)
  redis.call('HINCRBY', KEYS[2], 'running', 1)
end
"""

# KEYS[1]: the job's content hash, KEYS[2]: the job hash. ARGV: sha256, item index. A key made after the
# job ended takes the job's remaining TTL.
CLAIM = """
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return redis.call('HGET', KEYS[1], ARGV[1])
"""

# KEYS[1]: job hash, KEYS[2]: items list. ARGV: the items' JSON. Returns the new total, -1 when the job
# is not open (closed, or never was), -2 when it is not active (cancelled, failed), -3 when it is gone.
APPEND = (
    HOLD
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -3 end
if state ~= 'queued' and state ~= 'running' then return -2 end
if hold_of(KEYS[1]) ~= 'open' then return -1 end
local n = redis.call('RPUSH', KEYS[2], unpack(ARGV))
redis.call('HSET', KEYS[1], 'total', n)
return n
"""
)

# KEYS: as FINISH. ARGV: now, ttl, PREFIX, ENDED. Releases the job's hold; returns the state before (false:
# no job).
CLOSE = (
    FINISH
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
redis.call('HSET', KEYS[1], 'hold', 'none')
if state == 'queued' or state == 'running' then
  local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
  if redis.call('HLEN', KEYS[3]) >= total then
    finish(KEYS, 'completed', ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  end
end
return state
"""
)
