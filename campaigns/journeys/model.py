"""A journey as typed data: what :mod:`campaigns.journeys.parse` builds from a checked YAML file.

One frozen dataclass per step type (the executors in the engine map one-to-one onto them),
plus the journey-level parts: entry, re-entry, exits, goal, sending window.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

Text = str | Mapping[str, str]
"""A text that may differ per locale: one string, or ``{"en": ..., "ja": ...}``."""


def text_for(value: Text | None, locale: str, default_locale: str = "en") -> str | None:
    """The text of ``value`` for ``locale``, falling back to the default locale, then any."""
    if value is None or isinstance(value, str):
        return value
    return value.get(locale) or value.get(default_locale) or next(iter(value.values()), None)


class StepType(enum.StrEnum):
    EMAIL = "email"
    WAIT = "wait"
    WAIT_UNTIL = "wait_until"
    WAIT_UNTIL_DATE = "wait_until_date"
    BRANCH = "branch"
    SURVEY = "survey"
    INVITE = "invite"
    TASK = "task"
    IN_APP = "in_app"
    WEBHOOK = "webhook"
    UPDATE = "update"
    EXIT = "exit"


class Trigger(enum.StrEnum):
    SEGMENT = "segment"
    EVENT = "event"
    DATE = "date"


@dataclass(frozen=True)
class Variant:
    id: str
    template: str | None = None
    subject: Text | None = None
    preheader: Text | None = None


@dataclass(frozen=True)
class PersonaContent:
    """What an email, survey or invite step sends one persona instead of its own content
    (``by_persona``): a template, a subject, a preheader; what is None stays the step's."""

    template: str | None = None
    subject: Text | None = None
    preheader: Text | None = None


@dataclass(frozen=True)
class EmailStep:
    template: str
    subject: Text
    preheader: Text | None = None
    variants: tuple[Variant, ...] = ()
    from_name: str | None = None
    reply_to: str | None = None
    by_persona: Mapping[str, PersonaContent] = field(default_factory=dict)


@dataclass(frozen=True)
class WaitStep:
    duration: timedelta


@dataclass(frozen=True)
class WaitUntilStep:
    signal: str  # answered | opened | clicked | task_done | event
    target: str  # a step id, or an event name
    timeout: timedelta


@dataclass(frozen=True)
class WaitUntilDateStep:
    """Wait until a date anchor: ``date`` (``renewal_date``, ``attributes.<name>``,
    ``contact.attributes.<name>`` or ``<invite step>.starts_at``) plus ``offset``, at the
    local time ``at`` (None: the sending window's opening); see :mod:`.anchors`."""

    date: str
    if_past: str  # skip | now | exit
    offset: timedelta = timedelta(0)
    at: time | None = None


@dataclass(frozen=True)
class Arm:
    condition: str
    goto: str


@dataclass(frozen=True)
class BranchStep:
    arms: tuple[Arm, ...]
    otherwise: str | None = None  # None: the next step


@dataclass(frozen=True)
class SurveyStep:
    scale: str  # nps | csat
    template: str
    subject: Text
    question: Text | None = None
    by_persona: Mapping[str, PersonaContent] = field(default_factory=dict)

    @property
    def scores(self) -> range:
        return range(0, 11) if self.scale == "nps" else range(1, 6)


@dataclass(frozen=True)
class InviteStep:
    event_name: Text
    starts_at: datetime
    template: str
    subject: Text
    duration: timedelta | None = None
    url: str | None = None
    by_persona: Mapping[str, PersonaContent] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskStep:
    title: Text
    kind: str = "call"
    due: timedelta = timedelta(days=3)
    assignee: str = "owner"
    notes: Text | None = None
    per: str = "account"  # account: one open task per account and step; contact: one each


@dataclass(frozen=True)
class InAppStep:
    title: Text
    body: Text
    url: str | None = None
    expires: timedelta | None = None


@dataclass(frozen=True)
class WebhookStep:
    url: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateStep:
    set: Mapping[str, Any] = field(default_factory=dict)
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExitStep:
    reason: str = "completed"


StepConfig = (
    EmailStep
    | WaitStep
    | WaitUntilStep
    | WaitUntilDateStep
    | BranchStep
    | SurveyStep
    | InviteStep
    | TaskStep
    | InAppStep
    | WebhookStep
    | UpdateStep
    | ExitStep
)
"""A step's configuration: a union discriminated by the step's type (:data:`STEP_CONFIGS`);
the engine narrows it once per step with a ``match`` checked exhaustively."""

STEP_CONFIGS: Mapping[StepType, type[StepConfig]] = {
    StepType.EMAIL: EmailStep,
    StepType.WAIT: WaitStep,
    StepType.WAIT_UNTIL: WaitUntilStep,
    StepType.WAIT_UNTIL_DATE: WaitUntilDateStep,
    StepType.BRANCH: BranchStep,
    StepType.SURVEY: SurveyStep,
    StepType.INVITE: InviteStep,
    StepType.TASK: TaskStep,
    StepType.IN_APP: InAppStep,
    StepType.WEBHOOK: WebhookStep,
    StepType.UPDATE: UpdateStep,
    StepType.EXIT: ExitStep,
}
"""The class of each step type's configuration (the union's discriminator)."""


class Unit(enum.StrEnum):
    """What one enrollment of a journey is: a contact, or an account (a company)."""

    CONTACT = "contact"
    ACCOUNT = "account"


@dataclass(frozen=True)
class Recipients:
    """Whom an account journey's message step addresses among the account's contacts:
    ``all`` of them, the ``primary`` contact, or those with one of ``roles`` (any role when
    empty) for whom ``condition`` (over contact fields) holds."""

    pick: str = "all"  # all | primary | roles
    roles: tuple[str, ...] = ()
    condition: str | None = None

    def describe(self) -> str:
        if self.pick == "primary":
            return "the primary contact"
        who = ", ".join(self.roles) if self.roles else "all contacts"
        return f"{who} where {self.condition}" if self.condition else who


@dataclass(frozen=True)
class Step:
    """One step. ``blocks`` holds one config per channel the step may use: a plain step has
    one; a ``channel: best_of [email, task]`` step has one per named channel."""

    id: str
    type: StepType
    blocks: Mapping[str, StepConfig]
    line: int = 0
    best_of: tuple[str, ...] = ()
    goal: str | None = None
    category: str | None = None
    send_time: str | None = (
        None  # "best_hour": sent at the segment's learned hour (campaigns.insight.sendtime)
    )
    recipients: Recipients | None = None  # an account journey's message step: whom it addresses
    purpose: str | None = None  # marketing | operational; None: the journey's

    @property
    def config(self) -> StepConfig:
        return self.blocks[self.type.value]


@dataclass(frozen=True)
class Entry:
    trigger: Trigger
    event: str | None = None
    field: str | None = None
    offset: timedelta = timedelta(0)


@dataclass(frozen=True)
class ReEntry:
    policy: str = "never"  # never | always | after
    after: timedelta | None = None


@dataclass(frozen=True)
class ExitRule:
    event: str | None = None
    condition: str | None = None
    unsubscribed: bool = False


@dataclass(frozen=True)
class Goal:
    event: str
    within: timedelta | None = None


@dataclass(frozen=True)
class SendingWindow:
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)  # Monday = 0
    start: time = time(0, 0)
    end: time = time(23, 59, 59)
    time_zone: str = "contact"


@dataclass(frozen=True)
class Journey:
    key: str
    name: str
    segments: tuple[str, ...]
    entry: Entry
    steps: tuple[Step, ...]
    description: str | None = None
    audience: str | None = None
    re_entry: ReEntry = ReEntry()
    exit_when: tuple[ExitRule, ...] = ()
    goal: Goal | None = None
    sending_window: SendingWindow | None = None
    holdout: float = 0.0
    locale: str = "en"
    unit: Unit = Unit.CONTACT  # `enrol: account`: one enrollment per account
    recipients: Recipients = Recipients()  # the default of an account journey's message steps
    brand: str | None = None  # the sender identity of templates/sender.yaml (None: default)
    purpose: str = "marketing"  # the default of its email steps: marketing | operational

    @property
    def per_account(self) -> bool:
        return self.unit == Unit.ACCOUNT

    def recipients_of(self, step: Step) -> Recipients:
        """Whom ``step`` addresses in an account journey."""
        return step.recipients or self.recipients

    def purpose_of(self, step: Step) -> str:
        """What ``step``'s email is for: ``marketing`` or ``operational`` (docs/compliance.md)."""
        return step.purpose or self.purpose

    def is_marketing(self, step: Step) -> bool:
        return self.purpose_of(step) != "operational"

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def templates(self) -> list[str]:
        """Every template the journey may send, variants included."""
        names: list[str] = []
        for step in self.steps:
            for block in step.blocks.values():
                if isinstance(block, EmailStep | SurveyStep | InviteStep):
                    names.append(block.template)
                    names.extend(c.template for c in block.by_persona.values() if c.template)
                if isinstance(block, EmailStep):
                    names.extend(v.template for v in block.variants if v.template)
        return list(dict.fromkeys(names))

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form for storage with the version (durations in seconds)."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    if isinstance(value, datetime | time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
