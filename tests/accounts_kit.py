"""Seed data for the account page's tests (tests/test_accounts*.py, the browser tests): a
Japanese account with contacts, mail, hits, tasks, journeys, NPS answers, an account-level
event, and daily health rows in the scorer's shape."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.store.enums import (
    Classification,
    EnrollmentState,
    EventKind,
    MessageStatus,
    TaskStatus,
)
from campaigns.store.models import (
    Account,
    Contact,
    Enrollment,
    Event,
    HealthScore,
    Journey,
    JourneyVersion,
    Message,
    Task,
)

ROOT = Path(__file__).resolve().parent.parent

MEASURES = {
    "usage": ("Product usage", "製品の利用", 0.5),
    "nps": ("NPS answers", "NPS回答", 0.3),
    "renewal": ("Days to renewal", "更新までの日数", 0.2),
}
"""The sample scorecard's measures: (English label, Japanese label, weight)."""


def measures(usage: float, nps: float, renewal: float) -> dict[str, Any]:
    """A day's measures JSON as the scorer writes it, from each measure's 0-100 score."""
    scores = {"usage": usage, "nps": nps, "renewal": renewal}
    return {
        name: {
            "value": round(score / 10, 1),
            "score": score,
            "weight": weight,
            "contribution": round(score * weight, 2),
            "label": {"en": en, "ja": ja},
        }
        for name, (en, ja, weight) in MEASURES.items()
        for score in [scores[name]]
    }


def band_of(score: float) -> str:
    return "red" if score < 40 else "yellow" if score < 70 else "green"


def health_rows(account_id: int, today: date, days: int = 60) -> list[HealthScore]:
    """``days`` daily rows up to ``today``: usage falls from 100 to 20 over the last 30 days
    (the score from 75 to 35: green to red), NPS and renewal stay at 50."""
    rows = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        usage = 100.0 if back >= 30 else 20.0 + 80.0 * back / 30
        m = measures(usage, 50.0, 50.0)
        score = round(sum(v["contribution"] for v in m.values()), 2)
        rows.append(
            HealthScore(
                account_id=account_id,
                day=day,
                scorecard="default",
                score=score,
                band=band_of(score),
                measures=m,
            )
        )
    return rows


@dataclass
class Seeded:
    account_id: int
    contacts: dict[str, int]
    journey_id: int


def seed_account(
    s: Session,
    now: datetime,
    *,
    external_id: str = "SAKURA",
    name: str = "株式会社さくら製作所",
    owner: str = "hanako@example.com",
    arr: Decimal = Decimal(3_600_000),
    currency: str = "JPY",
    tier: str = "high_touch",
    health_days: int = 60,
) -> Seeded:
    """One account with everything its page shows."""
    today = now.date()
    account = Account(
        external_id=external_id,
        name=name,
        arr=arr,
        currency=currency,
        owner_email=owner,
        tier=tier,
        industry="manufacturing",
        plan="enterprise",
        renewal_date=today + timedelta(days=45),
    )
    s.add(account)
    s.flush()
    people = {
        "taro": Contact(
            account_id=account.id,
            email=f"taro.yamada@{external_id.lower()}.example.jp",
            name="山田 太郎",
            role="admin",
            title="情報システム部 部長",
            locale="ja",
            time_zone="Asia/Tokyo",
        ),
        "hana": Contact(
            account_id=account.id,
            email=f"hana.sato@{external_id.lower()}.example.jp",
            name="佐藤 花",
            role="user",
            title="営業",
            locale="ja",
            time_zone="Asia/Tokyo",
        ),
    }
    s.add_all(people.values())
    s.flush()
    journey = s.query(Journey).filter_by(key="renewal_90").one_or_none()
    if journey is None:
        journey = Journey(key="renewal_90", name="更新90日前")
        s.add(journey)
        s.flush()
        version = JourneyVersion(
            journey_id=journey.id,
            number=1,
            source_path="journeys/renewal_90.yaml",
            source_text="x",
            source_hash="h",
            definition={"steps": [{"id": "nps", "blocks": {"survey": {"scale": "nps"}}}]},
        )
        s.add(version)
        s.flush()
    else:
        version = s.query(JourneyVersion).filter_by(journey_id=journey.id).first()
    assert version is not None
    taro, hana = people["taro"], people["hana"]
    running = Enrollment(
        journey_id=journey.id,
        journey_version_id=version.id,
        account_id=account.id,
        state=EnrollmentState.WAITING,
        current_step="wait_call",
        entered_at=now - timedelta(days=10),
    )
    done = Enrollment(
        journey_id=journey.id,
        journey_version_id=version.id,
        contact_id=hana.id,
        state=EnrollmentState.COMPLETED,
        current_step="nps",
        entered_at=now - timedelta(days=40),
        finished_at=now - timedelta(days=20),
    )
    s.add_all([running, done])
    s.flush()
    mail = Message(
        enrollment_id=done.id,
        contact_id=taro.id,
        journey_id=journey.id,
        step_id="nps",
        status=MessageStatus.SENT,
        persona="executive",
        subject="サービスのおすすめ度を教えてください",
        to_address=taro.email,
        created_at=now - timedelta(days=21),
        sent_at=now - timedelta(days=21),
        opened_at=now - timedelta(days=20, hours=20),
        clicked_at=now - timedelta(days=20, hours=20),
    )
    s.add(mail)
    s.flush()
    s.add_all(
        [
            Event(
                kind=EventKind.OPEN,
                message_id=mail.id,
                contact_id=taro.id,
                account_id=account.id,
                journey_id=journey.id,
                step_id="nps",
                occurred_at=now - timedelta(days=20, hours=20),
            ),
            Event(
                kind=EventKind.CLICK,
                message_id=mail.id,
                contact_id=taro.id,
                account_id=account.id,
                journey_id=journey.id,
                step_id="nps",
                classification=Classification.MACHINE,
                reason="link scanner",
                occurred_at=now - timedelta(days=21),
            ),
            Event(
                kind=EventKind.ANSWER,
                message_id=mail.id,
                contact_id=taro.id,
                account_id=account.id,
                journey_id=journey.id,
                step_id="nps",
                value="3",
                occurred_at=now - timedelta(days=20, hours=19),
            ),
            Event(
                kind=EventKind.CUSTOM,
                name="health_band_changed",
                account_id=account.id,
                value="green → red",
                data={"from": "green", "to": "red"},
                occurred_at=now - timedelta(days=2),
            ),
        ]
    )
    s.add_all(
        [
            Task(
                account_id=account.id,
                contact_id=taro.id,
                owner_email=owner,
                kind="call",
                priority="high",
                trigger="detractor",
                title="Call 山田 太郎: NPS 3",
                status=TaskStatus.OPEN,
                due_at=now - timedelta(days=1),
                created_at=now - timedelta(days=3),
                escalated_at=now - timedelta(hours=12),
                escalated_to="manager@example.com",
            ),
            Task(
                account_id=account.id,
                owner_email=owner,
                kind="meeting",
                title="QBRの準備",
                status=TaskStatus.DONE,
                outcome="資料を共有済み",
                created_at=now - timedelta(days=30),
                completed_at=now - timedelta(days=25),
            ),
        ]
    )
    if health_days:
        s.add_all(health_rows(account.id, today, health_days))
        latest = health_rows(account.id, today, 1)[0]
        account.health_score = round(latest.score or 0)
        account.health_band = latest.band
        account.health_change_30d = -30.0
        account.health_change_7d = -7.0
        account.health_scored_on = today
    s.flush()
    return Seeded(account.id, {k: v.id for k, v in people.items()}, journey.id)


# ---------------------------------------------------------------------------- after the demo

DEMO_OWNER = "csm.sato@example.com"
"""One of the demo's account owners (campaigns/imports/samples.py)."""


def run_demo(database_url: str, today: date, folder: Path) -> None:
    """``campaigns demo`` on ``database_url`` (a file outbox under ``folder``), as the README
    runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SECRET_KEY")}
    env.update(DATABASE_URL=database_url, MAIL_URL=f"file://{folder / 'outbox'}")
    done = subprocess.run(
        # One simulated week: mail on the timelines, quickly.
        [sys.executable, "-m", "campaigns", "demo", "--date", today.isoformat(), "--weeks", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode:
        raise RuntimeError(f"campaigns demo failed: {done.stderr[-2000:]}")


def falling_account(s: Session) -> int:
    """The id of :data:`DEMO_OWNER`'s account whose health fell the most over 30 days in the
    demo (which scores the 35 days before its date and the day itself): the page to look at."""
    mailed = select(Contact.account_id).join(Message, Message.contact_id == Contact.id)
    found = s.scalar(
        select(Account.id)
        .where(
            Account.owner_email == DEMO_OWNER,
            Account.health_scored_on.is_not(None),
            Account.id.in_(mailed),  # the playbooks wrote to it: its timeline has mail
        )
        .order_by(Account.health_change_30d.asc().nulls_last(), Account.id)
        .limit(1)
    )
    if found is None:
        raise RuntimeError(f"the demo scored no account of {DEMO_OWNER}")
    return found
