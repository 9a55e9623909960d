"""The journey language is pure: plain data in, plain data out, no database and no web.

It owns the names it checks rules against (fields, contract statuses), so these tests also
hold those names to the store's columns and enums, and every step type to its parser.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

from sqlalchemy import inspect

import campaigns.journeys
from campaigns.journeys import segments as seg
from campaigns.journeys.fields import (
    ACCOUNT_FIELDS,
    CONTACT_FIELDS,
    CONTRACT_STATUSES,
    DAY_COUNTS,
    LOCAL_AMOUNTS,
)
from campaigns.journeys.flow import PARSERS
from campaigns.journeys.model import StepType
from campaigns.journeys.rules import AllOf, Column, Compare, DaysFromToday, TierOf
from campaigns.store.enums import ContractStatus
from campaigns.store.models import Account, Contact

FORBIDDEN = ("sqlalchemy", "flask", "werkzeug", "click", "redis", "rq", "campaigns.store")


def journey_modules() -> list[str]:
    package = campaigns.journeys
    return [f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)]


def test_importing_every_module_of_the_language_loads_no_database_and_no_web():
    modules = journey_modules()
    assert {"campaigns.journeys.parse", "campaigns.journeys.segments"} <= set(modules)
    script = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {modules!r}:
            importlib.import_module(name)
        loaded = sorted(
            m for m in sys.modules
            if any(m == f or m.startswith(f + ".") for f in {FORBIDDEN!r})
        )
        print(",".join(loaded))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_the_fields_of_conditions_are_columns_of_the_store():
    account_columns = set(inspect(Account).columns.keys())
    contact_columns = set(inspect(Contact).columns.keys())
    assert set(ACCOUNT_FIELDS) - set(DAY_COUNTS) - set(LOCAL_AMOUNTS) <= account_columns
    assert set(LOCAL_AMOUNTS.values()) <= account_columns
    assert set(DAY_COUNTS.values()) <= account_columns
    assert set(CONTACT_FIELDS) <= contact_columns


def test_the_contract_statuses_of_the_language_are_the_stores():
    assert tuple(s.value for s in ContractStatus) == CONTRACT_STATUSES


def test_every_step_type_has_a_parser():
    assert set(PARSERS) == set(StepType)


def test_rules_are_lowered_to_plain_data_without_a_database():
    segset = seg.parse_segments(
        "tiers:\n  high:\n    when: arr >= 5000000\n"
        "segments:\n"
        "  soon:\n    when: days_to_renewal <= 90.5\n"
        "  started:\n    when: 30 < days_since_start\n"
        "  high_admins:\n    when: tier == 'high' and contact.email == 'Admin@X.example'\n"
        "  undated:\n    when: renewal_date == none\n"
    )
    lowering = seg.Lowering(segset)
    renewal, start = Column("account", "renewal_date"), Column("account", "contract_start")
    assert lowering.where("soon") == DaysFromToday(renewal, "lteq", 90)
    assert lowering.where("started") == DaysFromToday(start, "lt", -30)
    assert lowering.where("high") == Compare(TierOf(), "eq", "high")
    tier_rule, name = lowering.tiers()[0]
    assert (tier_rule, name) == (Compare(Column("account", "arr"), "gteq", 5000000), "high")
    assert lowering.where("high_admins") == AllOf(
        (
            Compare(TierOf(), "eq", "high"),
            Compare(Column("contact", "email"), "eq", "admin@x.example"),
        )
    )
    assert lowering.where("undated") == Compare(renewal, "eq", None)
