"""The docs keep up with the code: every step type, top-level key, condition field and
setting is documented."""

from __future__ import annotations

from pathlib import Path

from campaigns.journeys import vocabulary
from campaigns.journeys.expressions import ENGAGEMENT
from campaigns.journeys.fields import ACCOUNT_FIELDS, CONTACT_FIELDS
from campaigns.journeys.model import StepType

ROOT = Path(__file__).resolve().parent.parent
DSL_DOC = (ROOT / "docs" / "dsl.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_step_type_has_a_section():
    for step_type in StepType:
        assert f"### `{step_type.value}`" in DSL_DOC, step_type


def test_every_top_level_key_and_step_option_is_documented():
    for key in (
        *vocabulary.TOP_KEYS,
        *vocabulary.STEP_COMMON,
        *vocabulary.WAIT_SIGNALS,
        *vocabulary.STEP_GOALS,
        *vocabulary.CATEGORIES,
        *vocabulary.TASK_KINDS,
        *vocabulary.DATE_WAIT_KEYS,
        *vocabulary.IF_PAST,
        *vocabulary.UNITS,
        *vocabulary.RECIPIENT_WORDS,
        *vocabulary.RECIPIENT_KEYS,
        *vocabulary.TASK_PER,
    ):
        assert f"`{key}`" in DSL_DOC or f"{key}:" in DSL_DOC or f"| {key}" in DSL_DOC, key


def test_account_journeys_recipients_and_date_anchors_have_sections_with_examples():
    for heading in ("## Account journeys", "### Recipients", "### `wait_until_date`"):
        section = DSL_DOC.split(heading, 1)[1].split("\n## ", 1)[0]
        assert "```yaml" in section, heading
    assert "enrol: account" in DSL_DOC and "recipients: [billing, executive]" in DSL_DOC
    assert "`per: contact`" in DSL_DOC and "`roles:`" in DSL_DOC


def test_the_worked_account_journey_example_is_a_valid_journey():
    from campaigns.journeys.parse import parse_journey

    section = DSL_DOC.split("## Account journeys", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    journey = parse_journey(example, "docs/dsl.md")
    assert journey.per_account and journey.recipients.roles == ("billing", "executive")


def test_every_condition_field_and_function_is_documented():
    for name in ACCOUNT_FIELDS:
        assert f"`{name}`" in DSL_DOC, name
    for name in CONTACT_FIELDS:
        assert f"`contact.{name}`" in DSL_DOC, name
    for name in ENGAGEMENT:
        assert f"`{name}('step')`" in DSL_DOC, name


def test_every_setting_is_in_the_readme():
    for variable in (
        "DATABASE_URL",
        "REDIS_URL",
        "MAIL_URL",
        "SECRET_KEY",
        "BASE_URL",
        "MAIL_FROM",
        "FREQUENCY_CAP",
        "DOMAIN_RATE_LIMITS",
        "BASE_CURRENCY",
        "CURRENCY_RATES",
        "GLOBAL_CONTROL_PERCENT",
    ):
        assert f"`{variable}`" in README, variable
