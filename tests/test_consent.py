"""Consent to marketing mail: the rule of each country (pure), the gate on marketing steps
through a real engine and SMTP sink on SQLite and PostgreSQL (operational mail passes it, a
suppressed address stops both), the configuration checked at start, and ``purpose`` in the
journey language."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from campaigns import config
from campaigns.engine import consent as rules
from campaigns.engine.deploy import deploy
from campaigns.exceptions import ConfigError, JourneyError
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import ConsentBasis, MessageStatus, SuppressionReason
from campaigns.store.models import Account, Contact, Message, Suppression
from tests.kit import LINKS, START, without_consent

DEFAULT = config.parse_consent_rules(None)

# -- the rules, pure ---------------------------------------------------------------------------


def test_the_bases_the_configuration_knows_are_the_stores():
    assert tuple(b.value for b in ConsentBasis) == config.CONSENT_BASES


def test_japan_accepts_only_an_opt_in_by_default():
    assert rules.refusal(DEFAULT, "JP", "opt_in") is None
    assert rules.refusal(DEFAULT, "JP", None) == (
        "no consent for marketing mail under JP rule (opt_in)"
    )
    assert rules.refusal(DEFAULT, "JP", "business_relationship") == (
        "consent basis business_relationship is not enough for marketing mail under JP rule"
        " (opt_in)"
    )
    assert rules.refusal(DEFAULT, "JP", "published_address") is not None


def test_the_us_accepts_any_basis_and_the_rest_of_the_world_two():
    for basis in ConsentBasis:
        assert rules.refusal(DEFAULT, "US", basis.value) is None
    assert rules.refusal(DEFAULT, "BR", "business_relationship") is None
    assert rules.refusal(DEFAULT, "BR", "published_address") == (
        "consent basis published_address is not enough for marketing mail under"
        " * rule (opt_in|business_relationship) for BR"
    )


def test_a_member_of_the_eu_or_eea_falls_under_the_eu_rule_unless_named():
    assert rules.rule_for(DEFAULT, "DE") == rules.Rule("DE", "EU", ("opt_in",))
    assert rules.rule_for(DEFAULT, "NO").key == "EU"
    assert rules.refusal(DEFAULT, "DE", None) == (
        "no consent for marketing mail under EU rule (opt_in) for DE"
    )
    named = config.parse_consent_rules("EU=opt_in,DE=opt_in|business_relationship")
    assert rules.rule_for(named, "DE").key == "DE" and rules.rule_for(named, "FR").key == "EU"


def test_a_country_no_rule_names_needs_an_opt_in_when_there_is_no_star():
    only_japan = config.parse_consent_rules("JP=opt_in|published_address")
    assert rules.rule_for(only_japan, "BR") == rules.Rule("BR", "*", ("opt_in",))
    assert rules.refusal(only_japan, "JP", "published_address") is None


def test_the_country_is_the_contacts_then_the_accounts_then_the_default():
    assert rules.country_of("us", "JP", "JP") == "US"
    assert rules.country_of(None, "DE", "JP") == "DE"
    assert rules.country_of(" ", None, "JP") == "JP"


# -- the configuration ---------------------------------------------------------------------------


def test_the_rules_and_the_default_country_are_read_from_the_environment():
    cfg = config.load(
        {
            "CONSENT_RULES": " jp = opt_in | published_address , *=opt_in ",
            "CONSENT_DEFAULT_COUNTRY": "us",
            "CONSENT_RETENTION_DAYS": "400",
        }
    )
    assert cfg.consent_rules.rules == {"JP": ("opt_in", "published_address"), "*": ("opt_in",)}
    assert cfg.consent_rules.default_country == "US"
    assert cfg.consent_retention_days == 400
    defaults = config.load({})
    assert defaults.consent_rules == DEFAULT and defaults.consent_rules.default_country == "JP"
    assert defaults.consent_retention_days == 31


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONSENT_RULES": "JP"}, "CONSENT_RULES: 'JP' is not 'COUNTRY=basis|basis'"),
        ({"CONSENT_RULES": "JPN=opt_in"}, "CONSENT_RULES: 'JPN=opt_in' is not"),
        ({"CONSENT_RULES": "JP=optin"}, "CONSENT_RULES: JP: unknown basis 'optin'"),
        ({"CONSENT_RULES": "JP="}, "CONSENT_RULES: JP: unknown basis ''"),
        ({"CONSENT_RULES": "JP=opt_in,jp=opt_in"}, "CONSENT_RULES: JP is given twice"),
        ({"CONSENT_RULES": "JP=opt_in\n"}, "CONSENT_RULES: contains the control character"),
        ({"CONSENT_DEFAULT_COUNTRY": "Japan"}, "CONSENT_DEFAULT_COUNTRY: 'Japan' is not a two"),
        ({"CONSENT_DEFAULT_COUNTRY": "ＪＰ"}, "CONSENT_DEFAULT_COUNTRY: 'ＪＰ' is not"),
        ({"CONSENT_RETENTION_DAYS": "30"}, "CONSENT_RETENTION_DAYS: '30' is not a whole number"),
        ({"CONSENT_RETENTION_DAYS": "a month"}, "CONSENT_RETENTION_DAYS: 'a month' is not"),
    ],
)
def test_bad_consent_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        config.load(env)


@given(
    st.dictionaries(
        st.sampled_from(["CONSENT_RULES", "CONSENT_DEFAULT_COUNTRY", "CONSENT_RETENTION_DAYS"]),
        st.text(max_size=60)
        | st.from_regex(r"[A-Za-z*]{1,3}=[a-z_|]{0,40}(,[A-Z*]{2}=[a-z_|]{0,30})?", fullmatch=True),
    )
)
def test_any_consent_setting_gives_a_config_or_a_one_line_error(env):
    try:
        cfg = config.load(env)
    except ConfigError as exc:
        assert str(exc).split(":")[0] in env and "\n" not in str(exc)
    else:
        for bases in cfg.consent_rules.rules.values():
            assert bases and set(bases) <= set(config.CONSENT_BASES)


def test_a_bad_rule_stops_a_command_with_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENT_", "DATABASE_"))}
    env.update(CONSENT_RULES="JP=maybe", DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}")
    result = subprocess.run(
        [sys.executable, "-m", "campaigns", "segments"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "campaigns: CONSENT_RULES: JP: unknown basis 'maybe'; use opt_in, business_relationship,"
        " published_address joined by |"
    ]


# -- purpose in the journey language --------------------------------------------------------------

JOURNEY = textwrap.dedent(
    """\
    journey: renewal_notice
    name: Renewal notice and tips
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: notice
        purpose: operational
        email:
          template: renewal_reminder
          subject: {en: "Your renewal", ja: "【ご契約更新のご案内】"}
      - id: tips
        category: product
        email:
          template: onboarding_tips
          subject: {en: "Tips", ja: "活用のヒント"}
    """
)


def problems(text: str) -> list[str]:
    with pytest.raises(JourneyError) as caught:
        parse_journey(text, "j.yaml")
    return [str(p) for p in caught.value.problems]


def test_steps_are_marketing_unless_they_say_operational():
    journey = parse_journey(JOURNEY, "j.yaml")
    notice, tips = journey.steps
    assert (notice.purpose, tips.purpose, journey.purpose) == ("operational", None, "marketing")
    assert journey.purpose_of(notice) == "operational" and journey.is_marketing(tips)
    whole = parse_journey(
        JOURNEY.replace("entry:", "purpose: operational\nentry:").replace(
            "    category: product\n", ""
        ),
        "j.yaml",
    )
    assert not whole.is_marketing(whole.steps[1])


def test_a_bogus_purpose_is_reported_at_its_place_with_a_hint():
    text = JOURNEY.replace("purpose: operational", "purpose: operationel")
    [problem] = problems(text)
    assert problem.startswith("j.yaml:7:14: unknown purpose 'operationel'")
    assert "did you mean 'operational'?" in problem and "renewal notices, invoices" in problem
    [problem] = problems(JOURNEY.replace("purpose: operational", "purpose: bogus"))
    assert problem.startswith("j.yaml:7:14: unknown purpose 'bogus'")
    assert "write purpose: operational for renewal notices" in problem
    [problem] = problems(JOURNEY.replace("entry:", "purpose: [a]\nentry:"))
    assert problem.startswith("j.yaml:4:10: 'purpose' must be a word")


def test_purpose_belongs_on_a_step_that_sends_an_email():
    text = JOURNEY + "  - id: later\n    purpose: operational\n    wait: 1 day\n"
    [problem] = problems(text)
    assert problem.startswith(
        "j.yaml:17:5: step 'later': 'purpose' belongs on a step that sends an email"
    )


def test_an_operational_step_takes_no_category_and_no_send_time():
    text = JOURNEY.replace(
        "    purpose: operational\n", "    purpose: operational\n    category: renewal\n"
    )
    [problem] = problems(text)
    assert problem.startswith(
        "j.yaml:8:5: step 'notice' is operational: nobody can opt out of it by category"
    )
    whole = JOURNEY.replace("entry:", "purpose: operational\nentry:")
    [problem] = problems(whole)
    assert "step 'tips' is operational (the journey's purpose)" in problem
    timed = JOURNEY.replace(
        "    purpose: operational\n", "    purpose: operational\n    send_time: best_hour\n"
    )
    assert "it goes when due, not at a learned hour" in problems(timed)[0]


def test_the_shipped_renewal_notices_are_operational_and_the_rest_marketing(project_root):
    operational = set()
    for path in sorted((project_root / "journeys").glob("*.yaml")):
        if path.stem in ("segments", "scorecards", "triggers"):
            continue
        journey = parse_journey(path.read_text(encoding="utf-8"), str(path))
        for step in journey.steps:
            if not journey.is_marketing(step):
                operational.add(f"{journey.key}.{step.id}")
    assert operational == {"high_touch_renewal.renewal_reminder", "low_touch_renewal.reminder_30"}


# -- the gate, through the engine -----------------------------------------------------------------


@pytest.fixture
def people(db):
    """Contacts of a Japanese account, a US account and an account of no country."""
    with db.session() as s, s.begin():
        japan = Account(
            external_id="JP1", name="株式会社アクメ", country="JP", renewal_date=date(2027, 3, 31)
        )
        usa = Account(external_id="US1", name="Globex", country="US", arr=Decimal(1))
        nowhere = Account(external_id="XX1", name="Initech")
        s.add_all([japan, usa, nowhere])
        s.flush()
        contacts = {
            "jp_none": Contact(account_id=japan.id, email="taro@example.jp", locale="ja"),
            "jp_optin": Contact(account_id=japan.id, email="hanako@example.jp", locale="ja"),
            "jp_customer": Contact(account_id=japan.id, email="jiro@example.jp", locale="ja"),
            "us_customer": Contact(account_id=usa.id, email="pat@example.com"),
            "de_in_us": Contact(account_id=usa.id, email="max@example.de", country="DE"),
            "default_none": Contact(account_id=nowhere.id, email="sam@example.com"),
            "bounced": Contact(account_id=japan.id, email="gone@example.jp", locale="ja"),
        }
        s.add_all(contacts.values())
        without_consent(s, contacts["jp_none"], contacts["de_in_us"], contacts["default_none"])
        contacts["jp_customer"].consent_basis = ConsentBasis.BUSINESS_RELATIONSHIP
        contacts["us_customer"].consent_basis = ConsentBasis.BUSINESS_RELATIONSHIP
        s.add(
            Suppression(
                email="gone@example.jp",
                reason=SuppressionReason.HARD_BOUNCE,
                source="test",
                created_at=START,
            )
        )
        deploy(s, parse_journey(JOURNEY, "j.yaml"), JOURNEY, "j.yaml")
    return {name: c.email for name, c in contacts.items()}


def run_journey(build_engine, smtp_sink, clock, *, settings=None) -> None:
    engine = build_engine(
        transport=smtp_sink,
        links={**LINKS, "renew": "https://app.example.com/renew"},
        settings=settings,
    )
    for _ in range(4):  # enter, send the notice, then the tips
        engine.tick()
        clock.advance(timedelta(minutes=5))


def received(smtp_sink) -> dict[str, list[str]]:
    """Who got what: address -> the subjects (in order)."""
    got: dict[str, list[str]] = {}
    for (_, recipients, _), parsed in zip(smtp_sink.messages, smtp_sink.parsed(), strict=True):
        got.setdefault(recipients[0], []).append(str(parsed["Subject"]))
    return got


def rows(db) -> dict[tuple[str, str], Message]:
    with db.session() as s:
        return {(m.to_address, m.step_id): m for m in s.scalars(select(Message))}


def test_a_japanese_contact_without_opt_in_gets_the_operational_notice_and_no_marketing(
    db, people, build_engine, smtp_sink, clock
):
    run_journey(build_engine, smtp_sink, clock)
    got = received(smtp_sink)
    assert got[people["jp_none"]] == ["【ご契約更新のご案内】"]  # the notice, not the tips
    assert got[people["jp_optin"]] == ["【ご契約更新のご案内】", "活用のヒント"]
    assert got[people["jp_customer"]] == ["【ご契約更新のご案内】"]  # JP: opt-in only
    assert people["bounced"] not in got  # suppression binds operational mail too
    by = rows(db)
    skipped = by[(people["jp_none"], "tips")]
    assert (skipped.status, skipped.error) == (
        MessageStatus.SUPPRESSED,
        "no consent for marketing mail under JP rule (opt_in)",
    )
    assert by[(people["jp_customer"], "tips")].error == (
        "consent basis business_relationship is not enough for marketing mail under JP rule"
        " (opt_in)"
    )
    notice = by[(people["jp_none"], "notice")]
    assert (notice.status, notice.category) == (MessageStatus.SENT, "operational")
    assert by[(people["bounced"], "notice")].error == "address suppressed"


def test_a_us_customer_gets_marketing_mail_under_the_us_rule(
    db, people, build_engine, smtp_sink, clock
):
    run_journey(build_engine, smtp_sink, clock)
    got = received(smtp_sink)
    assert got[people["us_customer"]] == ["Your renewal", "Tips"]
    assert got[people["de_in_us"]] == ["Your renewal"]  # the contact's own country: DE, EU rule
    assert rows(db)[(people["de_in_us"], "tips")].error == (
        "no consent for marketing mail under EU rule (opt_in) for DE"
    )
    # An account of no country: the default country's rule (JP)
    assert rows(db)[(people["default_none"], "tips")].error == (
        "no consent for marketing mail under JP rule (opt_in)"
    )


def test_the_rules_come_from_the_engine_settings(db, people, build_engine, smtp_sink, clock):
    loose = config.parse_consent_rules("JP=opt_in|business_relationship", "US")
    run_journey(build_engine, smtp_sink, clock, settings={"consent_rules": loose})
    got = received(smtp_sink)
    assert got[people["jp_customer"]] == ["【ご契約更新のご案内】", "活用のヒント"]
    assert rows(db)[(people["default_none"], "tips")].error == (
        "no consent for marketing mail under * rule (opt_in) for US"
    )


def test_operational_mail_is_neither_held_nor_counted_by_the_frequency_cap(
    db, people, build_engine, smtp_sink, clock
):
    run_journey(build_engine, smtp_sink, clock, settings={"frequency_cap": 1})
    got = received(smtp_sink)
    # With a cap of one marketing email, the notice does not use it up: the tips still go.
    assert got[people["jp_optin"]] == ["【ご契約更新のご案内】", "活用のヒント"]


def test_the_consent_settings_and_commands_are_documented(project_root):
    compliance = (project_root / "docs" / "compliance.md").read_text(encoding="utf-8")
    for needed in (
        "`CONSENT_RULES`",
        "`CONSENT_DEFAULT_COUNTRY`",
        "`CONSENT_RETENTION_DAYS`",
        "campaigns consent show",
        "campaigns consent set",
        "campaigns consent purge",
        "特定電子メール法 §3",
        "purpose: operational",
    ):
        assert needed in compliance, needed
    for basis in config.CONSENT_BASES:
        assert f"`{basis}`" in compliance, basis
