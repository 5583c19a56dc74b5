"""A running job that waits on something outside it (a vector store without quorum) says why.

`pause` writes the reason and how long it holds (`paused`, `paused_until` on the job hash); `GET /jobs/<id>`
shows the reason while it holds, the sweeper (indexer/jobs/sweep.py) leaves a paused job alone, and the
job's next new outcome clears both fields (the record script of indexer/jobs/store.py). A worker that
keeps waiting renews the pause each time it tries again, so a pause whose worker died runs out by itself.
"""

from __future__ import annotations

import time

from indexer.jobs.store import JobStore

# KEYS[1]: the job hash. ARGV: reason, until. Only a queued or running job pauses (never creates a hash).
_PAUSE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'paused', ARGV[1], 'paused_until', ARGV[2])
return 1
"""


def pause(jobs: JobStore, job_id: str, reason: str, for_s: float) -> bool:
    """Mark the job as waiting for `for_s` seconds with `reason`; False when it is not active."""
    script = jobs.redis.register_script(_PAUSE)
    return bool(script(keys=[jobs.keys(job_id)[0]], args=[reason, time.time() + for_s]))
