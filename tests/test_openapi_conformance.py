"""The API matches its document: Schemathesis reads ``/api/v1/openapi.json`` and sends every
operation what the document allows and what it forbids (its examples, its coverage cases:
boundaries, missing fields, wrong types, methods the path does not take; then random
inputs), in-process, against a seeded database on SQLite and PostgreSQL. Every answer must be
one the document describes (status, content type, headers, body schema), no input may get a
500, schema-valid input must be accepted and schema-invalid input refused.

The run is bounded and deterministic (a fixed seed, derandomized Hypothesis, no shrinking), so
CI sees the same cases every time; raise ``MAX_EXAMPLES`` (or change the seed) locally to search
harder.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, settings
from schemathesis import Case, CheckContext, Response

import campaigns.config
from campaigns.clock import FakeClock
from campaigns.store.enums import EnrollmentState, MessageStatus, TaskStatus
from campaigns.store.models import (
    Account,
    Contact,
    Enrollment,
    InAppMessage,
    Journey,
    JourneyVersion,
    Message,
    Task,
)
from campaigns.web import (  # noqa: F401 (routes)
    api,
    api_accounts,
    api_crm,
    api_events,
    api_in_app,
    api_input,
    api_people,
    create_app,
)

KEY = "conformance-key-0123456789"
NOW = datetime(2026, 4, 1, tzinfo=UTC)
MAX_EXAMPLES = 12
"""Random cases per operation, after its examples and coverage cases (some 1,500 requests in all
per database; the module runs in about 25 s on two cores)."""

# A 422 on schema-valid input is right only where the document cannot say what is wrong: an event
# naming a contact or account that does not exist (or a contact of another account), a time more
# than a day ahead, properties over 16 KB; a bounce notification inside an SNS Message string; a
# usage row for an account that does not exist, or a day more than a day ahead.
# Anything else refused with 422 is the document and the app disagreeing.
_SEMANTIC_PROBLEMS: dict[str, Callable[[dict[str, Any]], object]] = {
    "POST /api/v1/events": lambda p: re.search(
        r"^no contact with email |^no account with external_id | is not a contact of account |is "
        r"more than a day in the future$|^larger than \d+ bytes as JSON$",
        p["message"],
    ),
    "POST /api/v1/usage": lambda p: re.search(
        r"^no account with external_id | is more than a day ahead$", p["message"]
    ),
    "POST /api/v1/webhooks/bounces": lambda p: re.match(
        r"(\[\d+\]\.)?Message(\.|\[|$)", p["field"]
    ),
}
# The upserts apply the CSV importer's rules, which JSON Schema cannot say (a date that exists,
# an IANA time zone, a currency with a rate, an address the importer takes, a renewal after the
# stored contract start, an account that exists, a non-blank value...); a problem of the shape
# (an unknown field, a wrong type) is still the document and the app disagreeing.
_UPSERT_RULES = re.compile(r"^(?!unknown field|expected an object|expected a string, got null)")
for _operation in (
    "PUT /api/v1/accounts/{external_id}",
    "PUT /api/v1/contacts/{email}",
    "POST /api/v1/accounts",
    "POST /api/v1/contacts",
    "DELETE /api/v1/accounts/{external_id}",
):
    _SEMANTIC_PROBLEMS[_operation] = lambda p: _UPSERT_RULES.match(p["message"])

# Bodies over 1 MB (413) and URLs over 4000 bytes (414) are refused whatever the schema says of
# their content: documented limits that JSON Schema cannot express, so they count as accepting
# valid input and as rejecting invalid input alike.
_LIMITS = ["413", "414"]
_ACCEPTED = [
    "2xx",
    "3xx",
    "401",
    "403",
    "404",
    "409",
    "429",
    *_LIMITS,
]  # schemathesis' own list, and the limits

CONFIG_RAW: dict[str, Any] = {
    "seed": 20260401,
    "cache": {"enabled": False},
    # No NUL in generated strings: the API refuses them with 400 (PostgreSQL cannot store them),
    # as the document's description says, but JSON Schema cannot forbid them in free-form
    # `properties`.
    "generation": {"allow-x00": False},
    "phases": {"stateful": {"enabled": False}},
    "auth": {
        "openapi": {"apiKey": {"bearer": KEY}, "basicKey": {"username": "sns", "password": KEY}}
    },
    "checks": {
        "positive_data_acceptance": {"expected-statuses": _ACCEPTED},
        "negative_data_rejection": {
            "expected-statuses": [
                "400",
                "401",
                "403",
                "404",
                "405",
                "406",
                "409",
                "415",
                "422",
                "428",
                "429",
                *_LIMITS,
            ]
        },
    },
    "operations": [
        {
            # Their 422s may come from what the document cannot say (see _SEMANTIC_PROBLEMS),
            # which only_what_the_schema_cannot_say then holds to exactly that.
            "include-operation-id": [
                "postEvents",
                "postBounces",
                "postUsage",
                "putAccount",
                "putContact",
                "postAccountsBatch",
                "postContactsBatch",
                "deleteAccount",
            ],
            "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
        }
    ],
}
CONFIG = schemathesis.Config.from_dict(CONFIG_RAW)


def _settings() -> Any:
    return dataclasses.replace(campaigns.config.load({}), api_keys=(KEY,))


def _document_app() -> Flask:
    """The API blueprint alone: it serves /api/v1/openapi.json at collection time, before any
    database exists. The operations are then called on the full app of each test."""
    app = Flask(__name__)
    app.config["CAMPAIGNS"] = _settings()
    app.register_blueprint(api.bp)
    return app


schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", _document_app(), config=CONFIG)


def _seed(db: Any) -> None:
    """What the document's examples name (taro@example.co.jp, ACME-1, journey onboarding, in-app
    message 1, task 1), so that cases with those values find something."""
    with db.session() as s, s.begin():
        acme = Account(external_id="ACME-1", name="株式会社アクメ")
        s.add(acme)
        s.flush()
        taro = Contact(
            account_id=acme.id,
            email="taro@example.co.jp",
            name="山田太郎",
            locale="ja",
            time_zone="Asia/Tokyo",
            tags=["管理者"],
            attributes={"部署": "営業"},
        )
        journey = Journey(key="onboarding", name="オンボーディング")
        s.add_all([taro, journey])
        s.flush()
        version = JourneyVersion(
            journey_id=journey.id,
            number=1,
            source_path="journeys/onboarding.yaml",
            source_text="x",
            source_hash="h",
            definition={},
        )
        s.add(version)
        s.flush()
        waiting = Enrollment(
            journey_id=journey.id,
            journey_version_id=version.id,
            contact_id=taro.id,
            state=EnrollmentState.WAITING,
            current_step="wait",
            next_run_at=NOW + timedelta(days=1),
        )
        s.add(waiting)
        s.flush()
        s.add_all(
            [
                Message(
                    enrollment_id=waiting.id,
                    contact_id=taro.id,
                    journey_id=journey.id,
                    step_id="welcome",
                    message_id="<1@example.co.jp>",
                    status=MessageStatus.SENT,
                    to_address=taro.email,
                    subject="ようこそ",
                ),
                InAppMessage(
                    contact_id=taro.id,
                    journey_id=journey.id,
                    enrollment_id=waiting.id,
                    step_id="tip",
                    title="ヒント",
                    body="本文",
                    created_at=NOW - timedelta(hours=1),
                ),
                Task(
                    account_id=acme.id,
                    contact_id=taro.id,
                    journey_id=journey.id,
                    enrollment_id=waiting.id,
                    step_id="call",
                    owner_email="suzuki@example.com",
                    title="電話",
                    status=TaskStatus.OPEN,
                    due_at=NOW,
                    created_at=NOW,
                ),
            ]
        )


@pytest.fixture(scope="module")
def seeded_app(_engines: Any) -> Iterator[Flask]:
    """One app per database for the module (building one runs the migrations check)."""
    app = create_app(
        {
            "DATABASE_URL": _engines.url,
            "CAMPAIGNS": _settings(),
            "TESTING": True,
            "CLOCK": FakeClock(NOW),
        }
    )
    yield app
    app.extensions["campaigns.sessions"].kw["bind"].dispose()


@pytest.fixture
def app(seeded_app: Flask, db: Any) -> Flask:
    """The app over a freshly seeded database: each operation starts from the same data."""
    _seed(db)
    return seeded_app


def only_what_the_schema_cannot_say(ctx: CheckContext, response: Response, case: Case) -> None:
    """A schema-valid request refused with 422 lists only problems the document cannot express."""
    if (
        response.status_code != 422
        or case.meta is None
        or not case.meta.generation.mode.is_positive
    ):
        return
    semantic = _SEMANTIC_PROBLEMS.get(case.operation.label)
    problems = response.json()["error"].get("items") or [
        {"field": "", "message": response.json()["error"]["message"]}
    ]
    unexplained = [p for p in problems if semantic is None or not semantic(p)]
    assert not unexplained, (
        f"schema-valid request refused for reasons the document could state: {unexplained}"
    )


def every_error_has_the_one_shape(ctx: CheckContext, response: Response, case: Case) -> None:
    """Every refusal is {"error": {"code", "message"[, "items"]}} with the status as its code,
    the 405s and 404s the routing answers included (they have no operation to document them)."""
    if response.status_code < 400:
        return
    body = response.json()
    assert (
        set(body) == {"error"}
        and body["error"]["code"] == response.status_code
        and isinstance(body["error"]["message"], str)
    ), body
    if response.status_code == 405:
        assert response.headers.get("allow"), "405 without Allow"


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[
        Phase.explicit,
        Phase.generate,
    ],  # no shrinking: a failure is reported as generated, at once
    # The cases of one operation share its app and seeded data on purpose (the fixture runs once
    # per operation, not per case); a loaded CI machine is no reason to fail.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_answers_as_its_openapi_document_says(case: Case, app: Flask) -> None:
    case.call_and_validate(
        app=app, additional_checks=[only_what_the_schema_cannot_say, every_error_has_the_one_shape]
    )


def test_the_document_under_test_is_the_one_the_app_serves(app: Flask) -> None:
    """The schema is read from the API blueprint alone at collection; the full app serves the
    same."""
    served = app.test_client().get("/api/v1/openapi.json").get_json()
    assert {k: v for k, v in served.items() if k != "servers"} == {
        k: v for k, v in schema.raw_schema.items() if k != "servers"
    }


def test_the_documents_patterns_are_the_rules_the_app_applies() -> None:
    schemas = api.openapi_document()["components"]["schemas"]
    assert schemas["EmailAddress"]["pattern"] == api_input.EMAIL_PATTERN
    assert schemas["EventIn"]["properties"]["id"]["pattern"] == api_input.NOT_BLANK_PATTERN
    assert schemas["EventIn"]["properties"]["name"]["pattern"] == f"^{api.EVENT_NAME.pattern}$"
