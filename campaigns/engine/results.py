"""What a tick and a run of the engine did, in counts (logged by jobs, shown by the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaigns.engine.health import HealthRun


@dataclass
class TaskPassResult:
    """What a tick's people pass did (:mod:`campaigns.engine.taskpass`)."""

    opened: dict[str, int] = field(default_factory=dict)  # tasks opened, by trigger
    notices: int = 0
    escalations: int = 0
    digests: int = 0
    sent: int = 0
    failed: int = 0


@dataclass
class TickResult:
    entered: dict[str, int] = field(default_factory=dict)
    claimed: int = 0
    batches: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    due: int = 0  # when jobs carry the work: the due enrollments counted for them
    tasks: TaskPassResult | None = None  # trigger tasks opened, escalations, digests
    health: HealthRun | None = None  # the day's health scores, on the first tick of a day


@dataclass
class AdvanceResult:
    advanced: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    finished: int = 0
    claimed: int = 0  # enrollments claimed (by :meth:`Engine.work`)
    claims: int = 0  # leases taken
    stopped: bool = False  # a batch stopped before its end: the time budget or the lease ran out
    more: bool = False  # :meth:`Engine.work` left due work for the next job

    def add(self, other: AdvanceResult) -> None:
        self.advanced += other.advanced
        self.sent += other.sent
        self.deferred += other.deferred
        self.failed += other.failed
        self.finished += other.finished
        self.claimed += other.claimed
        self.claims += other.claims
        self.stopped = self.stopped or other.stopped
