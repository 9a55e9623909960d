"""The registries are complete: every step type has an executor, and every channel is
registered, implements the one Protocol and is documented in docs/channels.md."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest

from campaigns.channels import registry
from campaigns.channels.base import Channel
from campaigns.channels.transports import FileTransport
from campaigns.content.render import Renderer, Sender
from campaigns.content.templates import TemplateStore
from campaigns.engine import steps
from campaigns.journeys.model import (
    STEP_CONFIGS,
    Arm,
    BranchStep,
    EmailStep,
    ExitStep,
    InAppStep,
    InviteStep,
    StepConfig,
    StepType,
    SurveyStep,
    TaskStep,
    UpdateStep,
    WaitStep,
    WaitUntilDateStep,
    WaitUntilStep,
    WebhookStep,
)
from campaigns.tracking.tokens import Tokens

ROOT = Path(__file__).resolve().parent.parent
CHANNELS_DOC = (ROOT / "docs" / "channels.md").read_text(encoding="utf-8")

SAMPLES: dict[type, StepConfig] = {
    EmailStep: EmailStep(template="t", subject="s"),
    WaitStep: WaitStep(duration=timedelta(days=1)),
    WaitUntilStep: WaitUntilStep(signal="event", target="x", timeout=timedelta(days=1)),
    WaitUntilDateStep: WaitUntilDateStep(date="renewal_date", if_past="skip"),
    BranchStep: BranchStep(arms=(Arm("true", "a"),)),
    SurveyStep: SurveyStep(scale="nps", template="t", subject="s"),
    InviteStep: InviteStep(
        event_name="e", starts_at=datetime(2027, 1, 1, tzinfo=UTC), template="t", subject="s"
    ),
    TaskStep: TaskStep(title="t"),
    InAppStep: InAppStep(title="t", body="b"),
    WebhookStep: WebhookStep(url="https://example.com/hook"),
    UpdateStep: UpdateStep(),
    ExitStep: ExitStep(),
}


def test_every_step_type_names_one_config_class_of_the_union():
    assert set(STEP_CONFIGS) == set(StepType)
    assert set(STEP_CONFIGS.values()) == set(get_args(StepConfig))


@pytest.mark.parametrize("step_type", list(StepType))
def test_every_step_type_has_an_executor(step_type: StepType):
    config = SAMPLES[STEP_CONFIGS[step_type]]
    assert callable(steps.executor(config))


def test_an_unknown_config_has_no_executor():
    with pytest.raises(AssertionError):
        steps.executor(object())  # type: ignore[arg-type]


def test_every_registered_channel_implements_the_protocol_under_its_name(tmp_path):
    renderer = Renderer(
        TemplateStore(ROOT / "templates"),
        Tokens("s" * 24, "https://cs.example.com"),
        Sender("cs@example.com"),
    )
    built = registry.build(renderer, FileTransport(tmp_path / "outbox"), webhook_secret="s")
    named = built.by_name()
    assert tuple(named) == registry.NAMES
    assert set(registry.NAMES) == {"email", "owner", "in_app", "webhook", "task"}
    for name, channel in named.items():
        assert isinstance(channel, Channel), name
        assert channel.name == name


@pytest.mark.parametrize("name", registry.NAMES)
def test_every_registered_channel_is_documented(name: str):
    headings = re.findall(r"^## (\S+)\s*$", CHANNELS_DOC, flags=re.MULTILINE)
    assert name in headings, f"docs/channels.md has no '## {name}' section"
