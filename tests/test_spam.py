"""Every shipped customer template, in both locales, scores under 1.0 with SpamAssassin's
local rules (``spamassassin -t -L``, Debian's package): rendered through the real Renderer,
full MIME with every header a sent message has (From, Reply-To, List-Id, Feedback-ID, both
List-Unsubscribe URIs), links tracked. Skipped, saying why, where the command is absent.

All messages go through one ``spamassassin --mbox`` run: loading the rules takes seconds,
scoring a message milliseconds. Mail to account owners (``owner_*``) is staff mail, not
scored here."""

from __future__ import annotations

import mailbox
import re
import shutil
import subprocess
from datetime import timedelta
from email import message_from_bytes, policy

import pytest

from campaigns.content.render import InviteSpec, Origin, SurveySpec
from campaigns.content.templates import TemplateStore
from tests.kit import ROOT, START, make_renderer

SPAMASSASSIN = shutil.which("spamassassin")
LIMIT = 1.0
LINKS = {
    "app": "https://app.example.com/",
    "docs": "https://docs.example.com/ja/getting-started",
    "help": "https://help.example.com/ja/",
    "renew": "https://app.example.com/accounts/A-100/renewal",
    "review": "https://reviews.example.com/products/example",
    "video": "https://www.example.com/ja/tour",
    "webinar": "https://www.example.com/ja/webinars",
}
PEOPLE = {
    "ja": ("山田 太郎", "taro.yamada@example.co.jp", "株式会社サンプル", "ウェビナーのご案内"),
    "en": ("Pat Lee", "pat.lee@example.com", "Acme Inc.", "An update from Example Cloud"),
}


def customer_templates() -> list[tuple[str, str]]:
    store = TemplateStore(ROOT / "templates")
    return [
        (name, locale)
        for name in store.names()
        if not name.startswith("owner_")
        for locale in ("en", "ja")
        if locale in store.locales(name)
    ]


def _message(index: int, name: str, locale: str) -> bytes:
    person, address, account, subject = PEOPLE[locale]
    survey = invite = None
    if name.endswith("_survey"):
        survey = SurveySpec(name.split("_")[0])
    if "invite" in name or name.startswith("webinar_"):
        invite = InviteSpec(
            "Example Cloud 活用ウェビナー" if locale == "ja" else "Example Cloud live",
            START + timedelta(days=14),
            timedelta(hours=1),
            "https://www.example.com/webinars/join",
            "Asia/Tokyo",
        )
    mail = make_renderer().render(
        message=1000 + index,
        message_id=None,
        to=address,
        to_name=person,
        template=name,
        locale=locale,
        subject=subject,
        preheader=None,
        context={
            "contact": {"name": person, "email": address, "role": "admin", "locale": locale},
            "account": {"name": account, "external_id": "A-100", "days_to_renewal": 60},
            "owner": {"name": "佐藤 花子" if locale == "ja" else "Hana Sato"},
            "links": LINKS,
        },
        survey=survey,
        invite=invite,
        now=START,
        origin=Origin(owner_email="hanako.sato@example.com", journey="playbook", step=name),
    )
    return mail.raw


@pytest.mark.skipif(
    SPAMASSASSIN is None,
    reason="spamassassin is not installed (apt-get install spamassassin; .ci/services does)",
)
def test_every_shipped_customer_template_scores_under_one_with_spamassassin(tmp_path):
    cases = customer_templates()
    assert len(cases) >= 30  # both locales of every customer template
    box = mailbox.mbox(tmp_path / "all.mbox")
    for index, (name, locale) in enumerate(cases):
        box.add(message_from_bytes(_message(index, name, locale), policy=policy.compat32))
    box.flush()
    box.close()
    with open(tmp_path / "all.mbox", "rb") as source:
        done = subprocess.run(
            [str(SPAMASSASSIN), "--mbox", "-t", "-L"],
            stdin=source,
            capture_output=True,
            timeout=600,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    assert done.returncode in (0, 1), done.stderr.decode(errors="replace")[-500:]
    (tmp_path / "scored.mbox").write_bytes(done.stdout)
    scored = mailbox.mbox(tmp_path / "scored.mbox", create=False)
    try:
        # Matched by the message's own header, not by order: the report need not keep it.
        statuses = {
            int(str(m["X-Campaigns-Message"])) - 1000: str(m["X-Spam-Status"]) for m in scored
        }
    finally:
        scored.close()
    assert sorted(statuses) == list(range(len(cases)))
    scores: dict[str, tuple[float, str]] = {}
    for index, (name, locale) in enumerate(cases):
        flat = "".join(statuses[index].split())
        found = re.search(r"score=(-?[0-9.]+)", flat)
        assert found, statuses[index]
        hits = re.search(r"tests=(.*?)autolearn", flat)
        scores[f"{locale}/{name}"] = (float(found.group(1)), hits.group(1) if hits else "")
    print("\n".join(f"{key}: {score} {hits}" for key, (score, hits) in sorted(scores.items())))
    over = {key: value for key, value in scores.items() if value[0] >= LIMIT}
    assert not over, over
