"""The shipped playbooks validate against the shipped segments and templates, and each one
does what the domain asks of its tier."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from campaigns import config
from campaigns.content.project import Project
from campaigns.journeys.model import (
    BranchStep,
    Journey,
    StepType,
    SurveyStep,
    TaskStep,
    Trigger,
    WaitUntilDateStep,
    WaitUntilStep,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checked():
    project = Project(config.load({}, root=ROOT))
    return project.check()


@pytest.fixture(scope="module")
def playbooks(checked) -> dict[str, Journey]:
    return {journey.key: journey for journey, _ in checked.journeys}


def types(journey: Journey) -> list[StepType]:
    return [t for s in journey.steps for t in (StepType(b) for b in s.blocks)]


def test_every_shipped_file_validates(checked):
    assert checked.problems == []
    assert checked.segments is not None
    assert [t.name for t in checked.segments.tiers] == ["high_touch", "low_touch", "tech_touch"]
    not_journeys = ("segments.yaml", "triggers.yaml", "scorecards.yaml")
    files = sorted(p.name for p in (ROOT / "journeys").glob("*.yaml") if p.name not in not_journeys)
    assert sorted(path.name for _, path in checked.journeys) == files
    assert len(files) >= 7


def test_high_touch_renewal_brings_the_csm_in_at_120_days_and_invites_to_a_qbr(playbooks):
    journey = playbooks["high_touch_renewal"]
    assert journey.entry.trigger == Trigger.DATE and journey.entry.field == "renewal_date"
    assert journey.entry.offset == -timedelta(days=120)
    assert "high_touch" in journey.segments
    first_task = next(s for s in journey.steps if s.type == StepType.TASK)
    assert isinstance(first_task.config, TaskStep) and first_task.config.assignee == "owner"
    assert StepType.INVITE in types(journey)
    assert journey.goal is not None and journey.goal.event == "renewed"
    # one plan per account: an account journey, its notice on the date, 60 days out
    assert journey.per_account
    anchors = [s.config for s in journey.steps if isinstance(s.config, WaitUntilDateStep)]
    assert [(a.date, a.offset) for a in anchors][:1] == [("renewal_date", -timedelta(days=60))]
    assert not [s for s in journey.steps if s.type == StepType.WAIT]


def test_low_touch_webinar_reminds_those_who_did_not_answer(playbooks):
    journey = playbooks["low_touch_webinar"]
    invite = next(s for s in journey.steps if s.type == StepType.INVITE)
    waits = [s.config for s in journey.steps if isinstance(s.config, WaitUntilStep)]
    assert any(w.signal == "answered" and w.target == invite.id for w in waits)
    assert sum(1 for s in journey.steps if s.type in (StepType.EMAIL, StepType.INVITE)) >= 2
    # and those who said yes the day before the event
    anchors = [s.config for s in journey.steps if isinstance(s.config, WaitUntilDateStep)]
    assert (f"{invite.id}.starts_at", -timedelta(days=1)) in [(a.date, a.offset) for a in anchors]


def test_low_touch_nps_sends_detractors_to_the_csm(playbooks):
    journey = playbooks["low_touch_nps"]
    survey = next(s for s in journey.steps if s.type == StepType.SURVEY)
    assert isinstance(survey.config, SurveyStep) and survey.config.scale == "nps"
    branch = next(s.config for s in journey.steps if isinstance(s.config, BranchStep))
    detractor = next(a for a in branch.arms if "<= 6" in a.condition or "< 7" in a.condition)
    assert StepType.TASK in straight_path(journey, detractor.goto)


def straight_path(journey: Journey, start: str) -> list[StepType]:
    """The step types from ``start`` on, following order until a branch or an exit."""
    ids = [s.id for s in journey.steps]
    path = []
    for step in journey.steps[ids.index(start) :]:
        path.append(step.type)
        if step.type in (StepType.EXIT, StepType.BRANCH):
            break
    return path


def test_low_touch_renewal_reminds_at_90_60_and_30_days(playbooks):
    journey = playbooks["low_touch_renewal"]
    assert journey.entry.offset == -timedelta(days=90)
    assert journey.per_account
    emails = [s for s in journey.steps if "email" in s.blocks]
    assert len(emails) >= 3
    anchors = [s.config for s in journey.steps if isinstance(s.config, WaitUntilDateStep)]
    assert [(a.date, a.offset.days) for a in anchors] == [
        ("renewal_date", -90),
        ("renewal_date", -60),
        ("renewal_date", -30),
    ]
    assert any(s.best_of == ("email", "task") for s in journey.steps)
    assert journey.sending_window is not None and journey.sending_window.days == (0, 1, 2, 3, 4)


def test_tech_touch_playbooks_are_automated_with_an_escalation_path(playbooks):
    onboarding = playbooks["tech_touch_onboarding"]
    assert any(len(s.config.variants) >= 2 for s in onboarding.steps if s.type == StepType.EMAIL)  # type: ignore[union-attr]
    assert StepType.IN_APP in types(onboarding)
    usage = playbooks["tech_touch_usage_drop"]
    assert usage.entry.trigger == Trigger.EVENT and usage.entry.event == "usage_dropped"
    assert StepType.TASK in types(usage) and StepType.WEBHOOK in types(usage)
    csat = playbooks["tech_touch_csat"]
    assert any(isinstance(s.config, SurveyStep) and s.config.scale == "csat" for s in csat.steps)
    for journey in (onboarding, usage, csat):
        assert set(journey.segments) & {"tech_touch", "tech_touch_onboarding"}


def test_every_playbook_speaks_english_and_japanese(playbooks):
    for journey in playbooks.values():
        for step in journey.steps:
            for block in step.blocks.values():
                subject = getattr(block, "subject", None)
                if subject is not None:
                    assert isinstance(subject, dict) and {"en", "ja"} <= set(subject), (
                        journey.key,
                        step.id,
                    )
