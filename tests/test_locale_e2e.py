"""The renewal reminder end to end, over real SMTP (aiosmtpd) on SQLite and PostgreSQL: the
renewal date in each recipient's words, and a subject whose day count is the body's, both
counted on the day the message goes out in the recipient's time zone."""

from __future__ import annotations

import email
import json
import re
import textwrap
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

from campaigns.clock import FakeClock
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.store.models import Account, Contact

ROOT = Path(__file__).resolve().parent.parent
RENEWAL = date(2027, 1, 8)  # a Friday
SATURDAY = datetime(2026, 10, 17, 3, 0, tzinfo=UTC)  # Sat 12:00 in Tokyo, Fri 23:00 in New York
TOKYO_MONDAY = datetime(2026, 10, 19, 0, 0, tzinfo=UTC)  # Mon 09:00 in Tokyo
NEW_YORK_MONDAY = datetime(2026, 10, 19, 13, 0, tzinfo=UTC)  # Mon 09:00 in New York (EDT)
DAYS_ON_MONDAY = (RENEWAL - date(2026, 10, 19)).days  # 81; on entry it was 83 and 84


def shipped_reminder_subjects() -> list[dict[str, str]]:
    """The subjects of the renewal reminders in the shipped low-touch playbook, wherever its
    steps put them."""
    found: list[dict[str, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("template") == "renewal_reminder" and isinstance(node.get("subject"), dict):
                found.append(node["subject"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((ROOT / "journeys" / "low_touch_renewal.yaml").read_text("utf-8")))
    return found


def journey(subject: dict[str, str]) -> str:
    return textwrap.dedent(
        f"""\
        journey: renewal_words
        name: Renewal in the reader's words
        segments: [everyone]
        entry: {{trigger: segment}}
        sending_window: {{days: weekdays, hours: "09:00-18:00", time_zone: contact}}
        steps:
          - id: reminder
            category: renewal
            email:
              template: renewal_reminder
              subject: {json.dumps(subject, ensure_ascii=False)}
        """
    )


def populate(db: Any) -> None:
    with db.session() as s, s.begin():
        account = Account(
            external_id="ACME", name="株式会社アクメ", renewal_date=RENEWAL, currency="JPY"
        )
        s.add(account)
        s.flush()
        s.add_all(
            [
                Contact(
                    account_id=account.id,
                    email="taro@example.jp",
                    name="山田 太郎",
                    locale="ja",
                    time_zone="Asia/Tokyo",
                ),
                Contact(
                    account_id=account.id,
                    email="pat@example.com",
                    name="Pat Lee",
                    locale="en-US",
                    time_zone="America/New_York",
                ),
            ]
        )


def received(sink: Any) -> dict[str, tuple[bytes, EmailMessage]]:
    """Each recipient's message: the raw bytes and the parsed message."""
    return {
        tos[0]: (raw, email.message_from_bytes(raw, policy=policy.default))  # type: ignore[misc]
        for _, tos, raw in sink.messages
    }


def parts(message: EmailMessage) -> tuple[str, str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return str(message["Subject"]), text.get_content(), html.get_content()


def test_renewal_email_shows_the_date_in_each_readers_words_and_one_day_count(
    db: Any, smtp_sink: Any, build_engine: Any
) -> None:
    subjects = shipped_reminder_subjects()
    assert subjects, "the low-touch playbook has renewal reminders"
    for subject in subjects:  # the copy counts, it does not say a number of days
        assert not re.search(r"\d", subject["en"] + subject["ja"]), subject
    text = journey(subjects[0])
    populate(db)
    with db.session() as s, s.begin():
        deploy(s, parse_journey(text, "renewal_words.yaml"), text, "renewal_words.yaml")
    clock = FakeClock(SATURDAY)
    engine = build_engine(
        transport=smtp_sink, clock=clock, links={"renew": "https://app.example.com/renew"}
    )

    engine.tick()  # entered on Saturday: the sending window holds both until Monday 09:00
    assert smtp_sink.messages == []
    clock.set(TOKYO_MONDAY)
    engine.tick()
    assert list(received(smtp_sink)) == ["taro@example.jp"]  # Sunday evening in New York
    clock.set(NEW_YORK_MONDAY)
    engine.tick()
    mail = received(smtp_sink)
    assert sorted(mail) == ["pat@example.com", "taro@example.jp"]

    raw, ja = mail["taro@example.jp"]
    subject, body, html = parts(ja)
    assert "2027年1月8日（金）" in body and "2027年1月8日（金）" in html
    assert "2027-01-08" not in body + html
    assert re.findall(r"更新日まで(\d+)日", subject) == [str(DAYS_ON_MONDAY)]
    assert re.findall(r"本日から(\d+)日後", body) == [str(DAYS_ON_MONDAY)]
    assert re.findall(r"本日から(\d+)日後", html) == [str(DAYS_ON_MONDAY)]
    # Japanese survives MIME: an RFC 2047 subject, ASCII headers, UTF-8 parts.
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert headers.isascii() and b"=?utf-8?" in headers.lower()
    assert "山田 太郎" in body and ja.get_body(("plain",))["Content-Type"].params["charset"] == (
        "utf-8"
    )

    _, en = mail["pat@example.com"]
    subject, body, html = parts(en)
    assert "January 8, 2027" in body and "January 8, 2027" in html
    assert "2027-01-08" not in body + html
    [subject_days] = re.findall(r"(\d+) days?\b", subject)
    assert subject_days == str(DAYS_ON_MONDAY)
    assert re.findall(r"(\d+) days from today", body) == [str(DAYS_ON_MONDAY)]
    assert re.findall(r"(\d+) days from today", html) == [str(DAYS_ON_MONDAY)]
