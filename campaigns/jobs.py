"""RQ jobs: plain functions RQ imports by name. Each worker process builds its engine once
(database pool, compiled templates, one SMTP connection) and reuses it for every job."""

from __future__ import annotations

from functools import cache

from campaigns import config as settings
from campaigns.engine import Engine


@cache
def _engine() -> Engine:
    from campaigns.runtime import build_engine

    return build_engine(settings.load())


def advance(ids: list[int]) -> dict[str, int]:
    """Advance one batch of claimed enrollments; returns the counts for the job's result."""
    result = _engine().advance(ids)
    return {"advanced": result.advanced, "sent": result.sent, "deferred": result.deferred, "failed": result.failed, "finished": result.finished}


def tick() -> dict[str, int]:
    """One scheduler pass; batches go to the queue when the worker has one."""
    from rq import get_current_job

    engine = _engine()
    job = get_current_job()
    if job is not None and engine.enqueue is None:
        from rq import Queue

        queue = Queue(job.origin, connection=job.connection)

        def enqueue(ids: list[int]) -> None:
            queue.enqueue(advance, ids, job_timeout=600, result_ttl=3600)

        engine.enqueue = enqueue
    result = engine.tick()
    return {"entered": sum(result.entered.values()), "claimed": result.claimed, "batches": result.batches}
