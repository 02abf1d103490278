"""PostgreSQL fast path: claim and success as one self-contained statement each.

A data-modifying CTE updates the job and inserts its event atomically, so the statement runs on an
autocommit connection with no BEGIN/COMMIT round trips. Semantics are identical to the portable
two-statement path in ``claim.py`` and ``completion.py`` (which SQLite uses): same predicate, same
``FOR UPDATE SKIP LOCKED``, same fence, same event, except that the claim reads the database's clock
(``clock_timestamp()``) for "due" and for the lease, as every PostgreSQL lease computation does.
The success path notifies other workers only when the job held a resource key, since only then can
its end unblock a waiting job.
"""

from __future__ import annotations

from sqlalchemy import JSON, Integer, String, TextualSelect, bindparam, text

from nodewright.db.types import UTCDateTime
from nodewright.jobs.notify import CHANNEL

assert CHANNEL == "nodewright_jobs", "SUCCEED below spells the channel out"

CLAIM: TextualSelect = text(
    """
WITH clock AS (SELECT clock_timestamp() AS now), claimed AS (
    UPDATE jobs SET state = 'running', lease_owner = :owner, attempt = jobs.attempt + 1,
        lease_expires_at = clock.now + CAST(:lease_seconds AS double precision) * interval '1 second',
        started_at = clock.now, updated_at = clock.now,
        event_seq = jobs.event_seq + 1
    FROM clock
    WHERE id = (
        SELECT c.id FROM jobs AS c, clock AS k
        WHERE c.state IN ('queued', 'retry_wait') AND c.run_after <= k.now AND c.kind = ANY(:kinds)
          AND (c.resource_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM jobs AS h
                WHERE h.resource_key = c.resource_key AND h.state IN ('running', 'canceling')))
        ORDER BY c.priority DESC, c.id
        LIMIT 1
        FOR UPDATE OF c SKIP LOCKED)
    RETURNING id, kind, args, attempt, max_attempts, resource_key, created_at, run_after, event_seq,
        started_at
), event AS (
    INSERT INTO job_events (job_id, seq, at, type, level, message, data, attempt)
    SELECT id, event_seq, started_at, 'state', 'info',
           'running (attempt ' || attempt || ' of ' || max_attempts || ')',
           json_build_object('state', 'running', 'worker', CAST(:owner AS text)), attempt
    FROM claimed
)
SELECT id, kind, args, attempt, max_attempts, resource_key, created_at, run_after, event_seq, started_at
FROM claimed
"""
).columns(
    id=Integer,
    kind=String,
    args=JSON,
    attempt=Integer,
    max_attempts=Integer,
    resource_key=String,
    created_at=UTCDateTime,
    run_after=UTCDateTime,
    event_seq=Integer,
    started_at=UTCDateTime,
)

SUCCEED: TextualSelect = (
    text(
        """
WITH done AS (
    UPDATE jobs SET state = 'succeeded', result = CAST(:result AS JSON), error = NULL,
        finished_at = :now, updated_at = :now, lease_expires_at = NULL,
        event_seq = jobs.event_seq + 1
    WHERE id = :f_id AND lease_owner = :f_owner AND attempt = :f_attempt
      AND state IN ('running', 'canceling')
    RETURNING id, event_seq, resource_key, attempt
), event AS (
    INSERT INTO job_events (job_id, seq, at, type, level, message, data, attempt)
    SELECT id, event_seq, :now, 'state', 'info', 'succeeded',
           CAST('{"state": "succeeded"}' AS JSON), attempt
    FROM done
)
SELECT done.id, done.event_seq,
       (SELECT 1 FROM (SELECT pg_notify('nodewright_jobs', '')) AS n
        WHERE done.resource_key IS NOT NULL) AS woke
FROM done
"""
    )
    .bindparams(bindparam("now", type_=UTCDateTime()))
    .columns(id=Integer, event_seq=Integer)
)
