"""Deterministic sample accounts and contacts: the demo's data and the benchmarks' big files.

A third of the companies are Japanese (株式会社… names, people like 山田 太郎 with locale
``ja`` in Asia/Tokyo), the rest English-speaking across the Americas, Europe and APAC. ARR is
spread so that every touch tier exists: about 10% high touch (ARR ≥ 5,000,000 JPY or the
enterprise plan), 30% low touch (ARR ≥ 1,000,000) and 60% tech touch. Japanese companies
pay in yen, the others in the currency of their place (USD, CAD, GBP, EUR, AUD, SGD), their
amounts being the same yen figures at the embedded rates. Renewal dates spread
over the 13 months after ``today``. Contacts have job titles that go with their roles
(情報システム部 課長 / IT Manager for an admin, 代表取締役 / CEO for an executive...).

:func:`usage_for` and :func:`nps_for` give each account's product usage over the past weeks
(growing, flat or dropping, by its number) and its NPS answers, so that the demo's health
scores come out in all three bands and move between them. Every address is at example.com or
example.jp, domains reserved for examples, so nothing can reach a real person.

The same seed and day always give the same files, byte for byte; rows are written as they
are made, so files of a million rows need no memory.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

from campaigns.currency import DEFAULT as DEFAULT_CURRENCIES

ACCOUNT_COLUMNS = (
    "external_id",
    "name",
    "arr",
    "ltv",
    "currency",
    "plan",
    "contract_status",
    "contract_start",
    "renewal_date",
    "industry",
    "company_size",
    "owner_email",
    "health_score",
    "region",
)
CONTACT_COLUMNS = (
    "email",
    "account_external_id",
    "name",
    "role",
    "title",
    "locale",
    "time_zone",
    "subscribed",
    "tags",
    "department",
)

INDUSTRIES = ("manufacturing", "retail", "software", "finance", "healthcare", "logistics")
ROLES = ("admin", "user", "billing", "executive")

_JP_COMPANIES = (
    "山田製作所",
    "さくら物流",
    "東京精機",
    "富士ソフト",
    "みなと商事",
    "北斗フーズ",
    "青葉メディカル",
    "大和ファイナンス",
    "ひかり電機",
    "桜井リテール",
    "関西ロジテック",
    "中央システム",
    "日本橋ホールディングス",
    "浪速工業",
    "千代田ネットワークス",
    "横浜マリン",
    "名古屋テクノ",
    "札幌乳業",
    "博多ロジスティクス",
    "京都データ",
)
_EN_COMPANIES = (
    "Northwind",
    "Bluebird",
    "Summit",
    "Harbor",
    "Evergreen",
    "Redwood",
    "Lighthouse",
    "Keystone",
    "Pioneer",
    "Riverside",
    "Silverline",
    "Granite",
    "Maple",
    "Horizon",
    "Cobalt",
    "Juniper",
    "Beacon",
    "Falcon",
    "Orchard",
    "Atlas",
)
_EN_SUFFIX = {
    "manufacturing": "Manufacturing Inc.",
    "retail": "Retail Co.",
    "software": "Software Ltd",
    "finance": "Financial Group",
    "healthcare": "Health",
    "logistics": "Logistics",
}
_JP_FAMILY = (
    ("山田", "yamada"),
    ("佐藤", "sato"),
    ("鈴木", "suzuki"),
    ("高橋", "takahashi"),
    ("田中", "tanaka"),
    ("伊藤", "ito"),
    ("渡辺", "watanabe"),
    ("中村", "nakamura"),
    ("小林", "kobayashi"),
    ("加藤", "kato"),
)
_JP_GIVEN = (
    ("太郎", "taro"),
    ("花子", "hanako"),
    ("健", "ken"),
    ("美咲", "misaki"),
    ("翔太", "shota"),
    ("陽子", "yoko"),
    ("大輔", "daisuke"),
    ("恵", "megumi"),
    ("直樹", "naoki"),
    ("愛", "ai"),
)
_EN_FAMILY = (
    "Smith",
    "Johnson",
    "Brown",
    "Garcia",
    "Miller",
    "Davis",
    "Wilson",
    "Taylor",
    "Clark",
    "Lewis",
)
_EN_GIVEN = ("Emily", "James", "Olivia", "Noah", "Ava", "Liam", "Sophia", "Mason", "Chloe", "Ethan")
# (locale, time zone, region) of the English-speaking companies
_EN_PLACES = (
    ("en-US", "America/New_York", "NA"),
    ("en-US", "America/Chicago", "NA"),
    ("en-US", "America/Los_Angeles", "NA"),
    ("en-CA", "America/Toronto", "NA"),
    ("en-GB", "Europe/London", "EMEA"),
    ("en", "Europe/Dublin", "EMEA"),
    ("en-AU", "Australia/Sydney", "APAC"),
    ("en-SG", "Asia/Singapore", "APAC"),
)
_CURRENCIES = {
    "America/New_York": "USD",
    "America/Chicago": "USD",
    "America/Los_Angeles": "USD",
    "America/Toronto": "CAD",
    "Europe/London": "GBP",
    "Europe/Dublin": "EUR",
    "Australia/Sydney": "AUD",
    "Asia/Singapore": "SGD",
}
"""The currency an English-speaking account pays in, by its time zone (Japanese ones: JPY)."""
_JP_OWNERS = ("csm.sato@example.com", "csm.suzuki@example.com", "csm.tanaka@example.com")
_EN_OWNERS = ("csm.jones@example.com", "csm.garcia@example.com", "csm.lee@example.com")
_DEPARTMENTS = {
    "admin": ("情報システム部", "IT"),
    "user": ("営業部", "Sales"),
    "billing": ("経理部", "Finance"),
    "executive": ("経営企画室", "Management"),
}
_TAGS = ("beta", "webinar", "newsletter", "champion")
_TITLES = {
    "admin": (("情報システム部 課長", "IT Manager"), ("システム管理者", "Systems Administrator")),
    "user": (("営業担当", "Account Executive"), ("マーケティング担当", "Marketing Specialist")),
    "billing": (("経理部 主任", "Accounts Payable Lead"), ("経理担当", "Finance Manager")),
    "executive": (("代表取締役", "CEO"), ("執行役員 事業部長", "VP of Operations")),
}
"""Job titles by role (Japanese, English): personas read role and title together."""


@dataclass(frozen=True)
class SampleAccount:
    """One generated company: its CSV row and what its contacts are made from."""

    number: int
    tier: str  # high_touch, low_touch or tech_touch (what the samples aim for)
    row: tuple[str, ...]


def _tier(number: int) -> str:
    # 7919 is prime to 10, so any ten consecutive accounts hold exactly 1 high, 3 low, 6 tech.
    residue = number * 7919 % 10
    return "high_touch" if residue == 0 else "low_touch" if residue <= 3 else "tech_touch"


def _japanese(number: int) -> bool:
    return number % 3 == 0


def _place(number: int) -> tuple[str, str, str]:
    """(locale, time zone, region) of account ``number``."""
    if _japanese(number):
        return "ja", "Asia/Tokyo", "APAC"
    return _EN_PLACES[number % len(_EN_PLACES)]


def _local(yen: int, code: str) -> str:
    """``yen`` written in ``code`` at the embedded rate, rounded up to the cent, so the account
    converts back to at least ``yen`` and stays in its tier."""
    rate = DEFAULT_CURRENCIES.rate(code)
    assert rate is not None
    if rate == 1:
        return str(yen)
    cents = (Decimal(yen) * 100 / rate).to_integral_value(ROUND_CEILING)
    return str(cents / 100)


def _external_id(number: int) -> str:
    return f"ACC-{number + 1:05d}"


def make_account(number: int, today: date, seed: int = 7) -> SampleAccount:
    """Account ``number`` (0-based) of the samples for ``seed``, as of ``today``."""
    rng = random.Random(f"{seed}:account:{number}")
    tier = _tier(number)
    industry = rng.choice(INDUSTRIES)
    if _japanese(number):
        stem = _JP_COMPANIES[(number // 3) % len(_JP_COMPANIES)]
        name = f"株式会社{stem}" if number % 2 == 0 else f"{stem}株式会社"
        owner = rng.choice(_JP_OWNERS)
    else:
        name = f"{_EN_COMPANIES[(number * 7) % len(_EN_COMPANIES)]} {_EN_SUFFIX[industry]}"
        owner = rng.choice(_EN_OWNERS)
    statuses: tuple[tuple[str, int], ...]
    if tier == "high_touch":
        plan = "enterprise" if rng.random() < 0.7 else "business"
        arr = rng.randrange(50, 300) * 100_000
        size = rng.randrange(500, 5000)
        statuses = (("active", 85), ("renewing", 15))
    elif tier == "low_touch":
        plan = rng.choice(("business", "growth"))
        arr = rng.randrange(100, 490) * 10_000
        size = rng.randrange(100, 1000)
        statuses = (("active", 80), ("renewing", 10), ("churned", 10))
    else:
        plan = rng.choice(("starter", "growth"))
        arr = rng.randrange(12, 99) * 10_000
        size = rng.randrange(5, 200)
        statuses = (("active", 70), ("trial", 20), ("churned", 10))
    status = rng.choices([s for s, _ in statuses], weights=[w for _, w in statuses])[0]
    # 211 is prime to 395: the first 395 accounts renew on 395 different days.
    offset = 1 + (number * 211 + 37) % 395
    if tier == "tech_touch" and status == "active" and number % 5 == 0:
        # New customers, in their first month: what the onboarding journey is for.
        start = today - timedelta(days=number % 25)
        renewal = start + timedelta(days=365)
    elif status == "trial":
        start = today - timedelta(days=number % 14)
        renewal = start + timedelta(days=30)
    elif status == "churned":
        renewal = today - timedelta(days=1 + offset % 180)
        start = renewal - timedelta(days=365)
    else:
        renewal = today + timedelta(days=offset)
        years = rng.randint(1, 3)
        while (start := renewal - timedelta(days=365 * years)) > today:
            years += 1
    health = rng.randint(20, 45) if rng.random() < 0.2 else rng.randint(55, 98)
    ltv = arr * rng.randint(2, 5)
    code = _CURRENCIES.get(_place(number)[1], "JPY")
    row = (
        *(_external_id(number), name, _local(arr, code), _local(ltv, code), code, plan, status),
        *(start.isoformat(), renewal.isoformat(), industry, str(size), owner, str(health)),
        _place(number)[2],
    )
    return SampleAccount(number, tier, row)


def make_arrival(number: int, start: date, seed: int = 7) -> SampleAccount:
    """A new tech-touch customer whose contract starts on ``start``: the demo's simulated
    weeks sign these up as they go, so the onboarding journey gets entrants all along. Named
    and placed as account ``number`` of :func:`make_account`, on the starter or growth plan,
    active, renewing a year after ``start``."""
    base = make_account(number, start, seed)
    rng = random.Random(f"{seed}:arrival:{number}")
    arr = rng.randrange(12, 99) * 10_000
    code = base.row[4]
    renewal = start + timedelta(days=365)
    row = (
        *base.row[:2],
        _local(arr, code),
        _local(arr * rng.randint(2, 5), code),
        code,
        rng.choice(("starter", "growth")),
        "active",
        start.isoformat(),
        renewal.isoformat(),
        *base.row[9:12],
        str(rng.randint(55, 90)),
        base.row[13],
    )
    return SampleAccount(number, "tech_touch", row)


def write_arrivals(folder: Path, arrivals: list[SampleAccount], seed: int = 7) -> tuple[Path, Path]:
    """``accounts.csv`` and ``contacts.csv`` of ``arrivals`` (from :func:`make_arrival`) in
    ``folder``, as :func:`write_samples` writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    accounts_csv, contacts_csv = folder / "accounts.csv", folder / "contacts.csv"
    with (
        accounts_csv.open("w", encoding="utf-8-sig", newline="") as a,
        contacts_csv.open("w", encoding="utf-8-sig", newline="") as c,
    ):
        account_writer = csv.writer(a, lineterminator="\r\n")
        contact_writer = csv.writer(c, lineterminator="\r\n")
        account_writer.writerow(ACCOUNT_COLUMNS)
        contact_writer.writerow(CONTACT_COLUMNS)
        for account in arrivals:
            account_writer.writerow(account.row)
            contact_writer.writerows(contacts_for(account, seed))
    return accounts_csv, contacts_csv


def _contact_row(number: int, rng: random.Random, role: str, suffix: str) -> tuple[str, ...]:
    """A contact at account ``number``; ``suffix`` keeps the address unique."""
    japanese = _japanese(number)
    locale, time_zone, _ = _place(number)
    if japanese:
        (family, family_latin), (given, given_latin) = rng.choice(_JP_FAMILY), rng.choice(_JP_GIVEN)
        name, local = f"{family} {given}", f"{given_latin}.{family_latin}"
    else:
        family, given = rng.choice(_EN_FAMILY), rng.choice(_EN_GIVEN)
        name, local = f"{given} {family}", f"{given.lower()}.{family.lower()}"
    email = f"{local}.{suffix}@{'example.jp' if japanese else 'example.com'}"
    subscribed = "false" if rng.random() < 0.05 else "true"
    tags = ";".join(sorted(rng.sample(_TAGS, k=rng.choice((0, 0, 0, 1, 2)))))
    department = _DEPARTMENTS[role][0 if japanese else 1]
    # A generator of its own: the other columns stay what they were before titles came.
    title = random.Random(f"title:{suffix}").choice(_TITLES[role])[0 if japanese else 1]
    external_id = _external_id(number)
    return (email, external_id, name, role, title, locale, time_zone, subscribed, tags, department)


def contacts_for(account: SampleAccount, seed: int = 7) -> Iterator[tuple[str, ...]]:
    """The 1-4 contacts of a sample account (3-4 for high touch), the first one its admin."""
    rng = random.Random(f"{seed}:contacts:{account.number}")
    counts = {"high_touch": (3, 4), "low_touch": (2, 3), "tech_touch": (1, 2)}
    count = rng.randint(*counts[account.tier])
    roles = ["admin", *rng.sample(("user", "billing", "executive"), k=count - 1)]
    if account.tier == "high_touch" and "executive" not in roles:
        roles[-1] = "executive"
    for position, role in enumerate(roles):
        yield _contact_row(account.number, rng, role, f"{account.number + 1}{'abcd'[position]}")


def write_samples(
    folder: Path, today: date, *, accounts: int = 60, seed: int = 7
) -> tuple[Path, Path]:
    """Write ``accounts.csv`` and ``contacts.csv`` into ``folder`` (UTF-8 with a BOM and
    CRLF line ends, as Excel's "CSV UTF-8" writes them); return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    accounts_csv, contacts_csv = folder / "accounts.csv", folder / "contacts.csv"
    with (
        accounts_csv.open("w", encoding="utf-8-sig", newline="") as a,
        contacts_csv.open("w", encoding="utf-8-sig", newline="") as c,
    ):
        account_writer = csv.writer(a, lineterminator="\r\n")
        contact_writer = csv.writer(c, lineterminator="\r\n")
        account_writer.writerow(ACCOUNT_COLUMNS)
        contact_writer.writerow(CONTACT_COLUMNS)
        for number in range(accounts):
            account = make_account(number, today, seed)
            account_writer.writerow(account.row)
            contact_writer.writerows(contacts_for(account, seed))
    return accounts_csv, contacts_csv


def generate_accounts_csv(path: Path, n: int, today: date, *, seed: int = 7) -> Path:
    """Write ``n`` sample accounts to ``path`` like :func:`write_samples`, row by row."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(ACCOUNT_COLUMNS)
        for number in range(n):
            writer.writerow(make_account(number, today, seed).row)
    return path


CONSENT_COLUMNS = ("country", "consent_basis", "consent_source", "consent_at", "consent_wording")
"""The consent columns :func:`generate_contacts_csv` adds when asked to."""


def _consent_row(row: tuple[str, ...]) -> tuple[str, ...]:
    # Japanese contacts opted in on a web form (Japan asks for opt-in); the others are
    # customers' staff, mailed on the business relationship.
    if row[0].endswith(".jp"):
        return ("JP", "opt_in", "web-form", "2026年4月1日", "v1")
    return ("US", "business_relationship", "", "", "")


def generate_contacts_csv(
    path: Path, n: int, *, accounts: int, seed: int = 7, consent: bool = False
) -> Path:
    """Write ``n`` contacts spread evenly over the first ``accounts`` sample accounts, row
    by row, so benchmarks can make files of any size. Import those accounts first.
    ``consent`` adds :data:`CONSENT_COLUMNS` (every row sets a basis)."""
    rng = random.Random(f"{seed}:bulk")
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(CONTACT_COLUMNS + (CONSENT_COLUMNS if consent else ()))
        for k in range(n):
            role = ROLES[k // accounts % len(ROLES)]
            row = _contact_row(k % accounts, rng, role, str(k + 1))
            writer.writerow(row + _consent_row(row) if consent else row)
    return path


TRENDS = ("growing", "flat", "dropping", "flat", "collapsing")
"""How an account's usage moves over the weeks before ``today``, by its number."""


def trend_of(number: int) -> str:
    return TRENDS[number % len(TRENDS)]


def usage_for(
    number: int, tier: str, today: date, days: int = 60
) -> Iterator[tuple[str, date, float]]:
    """Account ``number``'s daily usage for the ``days`` up to ``today``: (metric, day,
    value) for ``active_users``, ``logins`` and ``reports_created``, following its trend: a
    growing one gains a third over the period, a dropping one loses half, a collapsing one
    falls to almost nothing in the last three weeks."""
    rng = random.Random(f"usage:{number}")
    seats = {"high_touch": 30, "low_touch": 12, "tech_touch": 6}[tier]
    seats = max(2, int(seats * rng.uniform(0.6, 1.4)))
    trend = trend_of(number)
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        progress = (days - 1 - back) / max(1, days - 1)  # 0 at the start, 1 today
        if trend == "growing":
            level = 0.7 + 0.3 * progress
        elif trend == "dropping":
            level = 1.0 - 0.5 * progress
        elif trend == "collapsing":
            level = 1.0 if back > 21 else 0.08
        else:
            level = 0.85
        if day.weekday() >= 5:
            level *= 0.3
        users = max(0.0, round(seats * level * rng.uniform(0.85, 1.15)))
        yield "active_users", day, users
        yield "logins", day, round(users * rng.uniform(1.5, 3.0))
        yield "reports_created", day, round(users * rng.uniform(0.0, 0.6))


def nps_for(number: int, contacts: int) -> list[int]:
    """The NPS answers (0-10) of account ``number``'s first contacts: promoters where usage
    grows, detractors where it collapses, a mix elsewhere."""
    rng = random.Random(f"nps:{number}")
    low, high = {
        "growing": (8, 10),
        "flat": (6, 10),
        "dropping": (4, 8),
        "collapsing": (0, 6),
    }[trend_of(number)]
    return [rng.randint(low, high) for _ in range(min(contacts, 2))]
