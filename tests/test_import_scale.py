"""CSV import at scale and with consent: the COPY path on PostgreSQL gives what the batched
path gives, strict mode writes nothing, consent columns and their history, garbage rows
keep their line numbers; on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from campaigns.exceptions import ImportRowError
from campaigns.imports.importer import ImportReport, RowError, import_csv
from campaigns.store.consent import email_hash
from campaigns.store.models import Account, ConsentRecord, Contact

ACCOUNTS = "external_id,name,country,notes\nACC-1,株式会社サンプル,jp,大口\nACC-2,Example Inc,US,\n"

# line 2..: Japanese names, empty cells, attributes, tags, bad rows, a duplicate key, an
# unknown account, a field far longer than any column, consent columns.
CONTACTS = (
    "email,account_external_id,name,locale,time_zone,subscribed,tags,country,"
    "consent_basis,consent_source,consent_at,consent_wording,team,部署\n"
    "taro@example.jp,ACC-1,山田 太郎,ja,Asia/Tokyo,true,vip;beta,jp,opt_in,web-form,"
    "2026年4月1日,v1,sales,営業部\n"
    "emily@example.com,ACC-2,Emily Wilson,en-US,America/Chicago,,,,business_relationship,,,,,\n"
    "not-an-address,ACC-1,Bad,,,,,,,,,,,\n"
    "hanako@example.jp,ACC-9,佐藤 花子,ja,,,,,,,,,,\n"
    "jiro@example.jp,,鈴木 次郎,ja,,no,,,,,,,support,\n"
    f"long@example.com,,{'名' * 300},,,,,,,,,,,\n"
    "TARO@example.jp,,,,,,gold,,,,,,,経営企画\n"
    "yuki@example.jp,ACC-1,,ja,Asia/Tokio,,,,,,,,,\n"
    "kana@example.jp,,,,,,,,maybe,,,,,\n"
    "sora@example.jp,,,,,,,,,import:crm,,,,\n"
)

UPDATE = (
    "email,name,tags,team,consent_basis\n"
    "taro@example.jp,,newtag,marketing,opt_in\n"
    "emily@example.com,Emily W.,,,opt_in\n"
    "jiro@example.jp,鈴木 二郎,,,\n"
)

FIELDS = (
    "email", "name", "locale", "time_zone", "subscribed", "tags", "country", "consent_basis",
    "consent_source", "consent_at", "consent_wording", "attributes", "opt_out",
)  # fmt: skip


def write(folder: Path, content: str, name: str) -> Path:
    path = folder / name
    path.write_text(content, encoding="utf-8")
    return path


def snapshot(db: Any, since: datetime) -> dict[str, Any]:
    """What the import stored, with times it took from the clock (after ``since``) as "now"."""

    def clocked(value: Any) -> Any:
        return "now" if isinstance(value, datetime) and value >= since else value

    with db.session() as s:
        people = {
            c.email: {
                **{f: clocked(getattr(c, f)) for f in FIELDS},
                "account": c.account.external_id if c.account else None,
            }
            for c in s.scalars(select(Contact))
        }
        companies = {
            a.external_id: (a.name, a.country, a.attributes) for a in s.scalars(select(Account))
        }
        history = sorted(
            (r.email_hash, r.action, r.basis, r.source, r.wording, clocked(r.at), r.detail)
            for r in s.scalars(select(ConsentRecord))
        )
    return {"contacts": people, "accounts": companies, "history": history}


def summary(report: ImportReport) -> tuple[Any, ...]:
    return (
        report.inserted,
        report.updated,
        report.skipped,
        report.committed,
        [str(e) for e in report.errors],
        [str(w) for w in report.warnings],
    )


def run_all(db: Any, folder: Path, copy: bool, batch_size: int | None) -> tuple[Any, ...]:
    reports = [
        import_csv("accounts", write(folder, ACCOUNTS, "accounts.csv"), db.sessions, copy=copy),
        import_csv(
            "contacts",
            write(folder, CONTACTS, "contacts.csv"),
            db.sessions,
            copy=copy,
            batch_size=batch_size,
        ),
        import_csv(
            "contacts",
            write(folder, UPDATE, "update.csv"),
            db.sessions,
            copy=copy,
            batch_size=batch_size,
        ),
    ]
    return tuple(summary(r) for r in reports)


@pytest.mark.parametrize("batch_size", [None, 3], ids=["one-batch", "batches-of-3"])
def test_the_copy_path_gives_what_the_batched_path_gives_for_a_tricky_file(
    db, tmp_path, batch_size
):
    since = datetime.now(UTC).replace(microsecond=0)
    batched = run_all(db, tmp_path, copy=False, batch_size=batch_size)
    stored = snapshot(db, since)
    db.clear()
    copied = run_all(db, tmp_path, copy=True, batch_size=batch_size)
    assert copied == batched
    assert snapshot(db, since) == stored

    contacts_csv = tmp_path / "contacts.csv"
    _, first, second = copied
    assert first[:4] == (3, 0, 6, True), "a repeated key counts once"
    assert first[4] == [
        f"{contacts_csv}:4: email 'not-an-address' is not an e-mail address (no @)",
        f"{contacts_csv}:5: unknown account_external_id 'ACC-9'; import that account first",
        f"{contacts_csv}:7: name is 300 characters long; the most it can hold is 255",
        f"{contacts_csv}:9: unknown time_zone 'Asia/Tokio'; did you mean 'Asia/Tokyo'?",
        f"{contacts_csv}:10: unknown consent_basis 'maybe'; use one of opt_in,"
        " business_relationship, published_address",
        f"{contacts_csv}:11: consent_source without consent_basis; say which basis (opt_in,"
        " business_relationship, published_address) the consent is",
    ]
    assert first[5] == [
        f"{contacts_csv}:8: duplicate email taro@example.jp (first at line 2); the later row wins"
    ]
    assert second[:4] == (0, 3, 0, True) and second[4] == second[5] == []

    people = stored["contacts"]
    taro = people["taro@example.jp"]
    assert (taro["name"], taro["account"], taro["locale"], taro["country"]) == (
        "山田 太郎",
        "ACC-1",
        "ja",
        "JP",
    )
    assert taro["tags"] == ["newtag"], "tags in a cell replace the stored list"
    assert taro["attributes"] == {"team": "marketing", "部署": "経営企画"}, "merged key by key"
    assert (taro["consent_basis"], taro["consent_source"], taro["consent_wording"]) == (
        "opt_in",
        "web-form",
        "v1",
    ), "the same basis without details changes nothing"
    assert taro["consent_at"] == datetime(2026, 4, 1, tzinfo=UTC)
    emily = people["emily@example.com"]
    assert (emily["name"], emily["account"], emily["subscribed"], emily["tags"]) == (
        "Emily W.",
        "ACC-2",
        True,
        [],
    )
    assert (emily["consent_basis"], emily["consent_source"]) == ("opt_in", "import:update.csv")
    jiro = people["jiro@example.jp"]
    assert (jiro["name"], jiro["subscribed"], jiro["consent_basis"]) == ("鈴木 二郎", False, None)
    assert jiro["attributes"] == {"team": "support"} and jiro["opt_out"] == []
    assert set(people) == {"taro@example.jp", "emily@example.com", "jiro@example.jp"}
    assert stored["accounts"]["ACC-1"] == ("株式会社サンプル", "JP", {"notes": "大口"})
    history = stored["history"]
    assert [(h[0], h[2], h[3]) for h in history] == sorted(
        [
            (email_hash("taro@example.jp"), "opt_in", "web-form"),
            (email_hash("emily@example.com"), "business_relationship", "import:contacts.csv"),
            (email_hash("emily@example.com"), "opt_in", "import:update.csv"),
        ]
    )


# Files without consent columns take the COPY path's plain statement, which merges with the
# stored row in its conflict clause and joins the stored row in only for the NOT NULL columns
# a file has: each of these files exercises one shape of it over rows stored by the one before.
PLAIN = {
    "accounts.csv": "external_id,name,plan,currency\nACC-1,株式会社サンプル,pro,jpy\n"
    "ACC-2,Example Inc,,\n",
    "first.csv": "email,account_external_id,name,locale,tags,部署\n"
    "taro@example.jp,ACC-1,山田 太郎,ja,vip;beta,営業部\n"
    "emily@example.com,ACC-2,Emily Wilson,en-US,,\n"
    "hanako@example.jp,ACC-9,佐藤 花子,ja,,\n"
    "jiro@example.jp,,鈴木 次郎,,,\n"
    "TARO@example.jp,,,,gold,経営企画\n",
    # defaulted columns with empty cells over stored rows: the stored values stay
    "defaulted.csv": "email,locale,time_zone,subscribed,tags\n"
    "taro@example.jp,,Asia/Tokyo,,\n"
    "emily@example.com,en-GB,,no,\n"
    "new@example.jp,,,,\n",
    # no NOT NULL column at all (nothing joined) and no attributes: only title and account
    "narrow.csv": "email,title,account_external_id\n"
    "taro@example.jp,課長,\n"
    "jiro@example.jp,,ACC-2\n"
    "emily@example.com,Director,ACC-1\n"
    "jiro@example.jp,部長,\n",
    "accounts-again.csv": "external_id,name,country\nACC-2,Example Incorporated,us\n",
}


@pytest.mark.parametrize("batch_size", [None, 2], ids=["one-batch", "batches-of-2"])
def test_files_without_consent_columns_give_the_same_on_both_paths(db, tmp_path, batch_size):
    since = datetime.now(UTC).replace(microsecond=0)

    def run(copy: bool) -> list[tuple[Any, ...]]:
        return [
            summary(
                import_csv(
                    "accounts" if name.startswith("accounts") else "contacts",
                    write(tmp_path, content, name),
                    db.sessions,
                    copy=copy,
                    batch_size=batch_size,
                )
            )
            for name, content in PLAIN.items()
        ]

    batched = run(copy=False)
    stored = snapshot(db, since)
    db.clear()
    assert run(copy=True) == batched
    assert snapshot(db, since) == stored

    counts = [b[:3] for b in batched]
    assert counts == [(2, 0, 0), (3, 0, 1), (1, 2, 0), (0, 3, 0), (0, 1, 0)]
    people = stored["contacts"]
    taro, emily = people["taro@example.jp"], people["emily@example.com"]
    assert (taro["locale"], taro["time_zone"], taro["tags"]) == ("ja", "Asia/Tokyo", ["gold"])
    assert taro["attributes"] == {"部署": "経営企画"} and taro["account"] == "ACC-1"
    assert (emily["locale"], emily["subscribed"], emily["account"]) == ("en-GB", False, "ACC-1")
    assert emily["attributes"] == {} and emily["name"] == "Emily Wilson"
    new = people["new@example.jp"]
    assert (new["locale"], new["time_zone"], new["subscribed"], new["tags"]) == (
        "en",
        "UTC",
        True,
        [],
    ), "a new row gets each column's default"
    jiro = people["jiro@example.jp"]
    assert (jiro["account"], jiro["name"]) == ("ACC-2", "鈴木 次郎")
    with db.session() as s:
        assert s.scalar(select(Contact.title).where(Contact.email == "jiro@example.jp")) == "部長"
    assert stored["accounts"]["ACC-2"] == ("Example Incorporated", "US", {})


def consent_file(folder: Path, rows: str, name: str = "consent.csv") -> Path:
    header = "email,name,consent_basis,consent_source,consent_at,consent_wording\n"
    return write(folder, header + rows, name)


def records(db: Any) -> list[ConsentRecord]:
    with db.session() as s:
        return list(s.scalars(select(ConsentRecord).order_by(ConsentRecord.id)))


def test_consent_columns_add_one_record_and_an_identical_reimport_adds_none(db, tmp_path):
    path = consent_file(
        tmp_path,
        "a@example.jp,A,opt_in,web-form,2026-04-01T10:00:00+09:00,v2\n"
        "b@example.jp,B,published_address,,,\n"
        "c@example.jp,C,,,,\n",
    )
    before = datetime.now(UTC)
    report = import_csv("contacts", path, db.sessions)
    assert (report.inserted, report.skipped) == (3, 0)
    first = records(db)
    assert len(first) == 2
    a, b = first
    with db.session() as s:
        stored = {c.email: c for c in s.scalars(select(Contact))}
    assert a.contact_id == stored["a@example.jp"].id
    assert (a.email_hash, a.action, a.basis, a.source, a.wording) == (
        email_hash("a@example.jp"),
        "granted",
        "opt_in",
        "web-form",
        "v2",
    )
    assert a.at == datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
    assert a.detail == {"file": "consent.csv", "line": 2}
    assert (b.basis, b.source, b.wording) == ("published_address", "import:consent.csv", None)
    assert b.at >= before.replace(microsecond=0), "no consent_at: the import's time"
    assert stored["c@example.jp"].consent_basis is None

    again = import_csv("contacts", path, db.sessions)
    assert (again.inserted, again.updated) == (0, 3)
    assert len(records(db)) == 2, "an identical re-import must not grow the history"
    with db.session() as s:
        kept = s.scalars(select(Contact).where(Contact.email == "b@example.jp")).one()
    assert kept.consent_at == b.at

    changed = consent_file(tmp_path, "a@example.jp,,opt_in,,,v3\n", "changed.csv")
    import_csv("contacts", changed, db.sessions)
    last = records(db)[-1]
    assert (len(records(db)), last.basis, last.wording, last.source) == (
        3,
        "opt_in",
        "v3",
        "import:changed.csv",
    )


def test_a_strict_import_writes_no_contact_and_no_consent_record(db, tmp_path):
    path = consent_file(
        tmp_path,
        "a@example.jp,A,opt_in,,,\nb@example.jp,B,opt_in,,,\nc@example.jp,C,opt_out,,,\n",
    )
    report = import_csv("contacts", path, db.sessions, strict=True, batch_size=2)
    assert not report.committed and (report.inserted, report.updated) == (0, 0)
    assert [e.line for e in report.errors] == [4]
    assert "use one of opt_in, business_relationship, published_address" in str(report.errors[0])
    assert records(db) == []
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 0


def test_a_reimport_keeps_what_the_contact_chose_on_the_preference_page(db, tmp_path):
    path = write(tmp_path, "email,name\na@example.jp,A\n", "a.csv")
    import_csv("contacts", path, db.sessions)
    with db.session() as s, s.begin():
        s.execute(update(Contact).values(opt_out=["newsletter"]))
    import_csv("contacts", path, db.sessions)
    with db.session() as s:
        assert s.scalars(select(Contact.opt_out)).one() == ["newsletter"]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("JPN", "country 'JPN' is not a 2-letter country code such as JP or US (JP for Japan)"),
        ("ｊｐ", None),
        ("1", "country '1' is not a 2-letter country code such as JP or US"),
    ],
)
def test_country_is_an_upper_case_alpha_2_code(db, tmp_path, cell, reason):
    path = write(tmp_path, f"external_id,name,country\nA,Acme,{cell}\n", "a.csv")
    report = import_csv("accounts", path, db.sessions)
    if reason is None:
        with db.session() as s:
            assert s.scalars(select(Account.country)).one() == "JP"
    else:
        assert [e.reason for e in report.errors] == [reason]


@pytest.mark.parametrize(
    ("cell", "stored"),
    [
        ("2026-04-01", datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026年4月1日", datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026-04-01 09:30", datetime(2026, 4, 1, 9, 30, tzinfo=UTC)),
        ("2026-04-01T09:30:00+09:00", datetime(2026, 4, 1, 0, 30, tzinfo=UTC)),
        ("2026-13-01", None),
        ("2026年13月1日", None),
        ("yesterday", None),
    ],
)
def test_consent_at_reads_iso_and_japanese_dates(db, tmp_path, cell, stored):
    path = consent_file(tmp_path, f"a@example.jp,A,opt_in,,{cell},\n")
    report = import_csv("contacts", path, db.sessions)
    if stored is None:
        assert [e.line for e in report.errors] == [2]
        assert "in consent_at; use YYYY-MM-DD" in report.errors[0].reason
        assert records(db) == []
    else:
        assert [r.at for r in records(db)] == [stored]


def test_garbage_rows_keep_their_line_numbers_on_the_copy_path(db, tmp_path):
    huge = "x" * 200_000
    content = (
        "email,name,consent_basis\n"
        "a@example.jp,A,opt_in\n"
        f'b@example.jp,"{huge}",opt_in\n'
        "c@example.jp,C\x00,opt_in\n"
        'd@example.jp,"never closed\n'
        "e@example.jp,E,opt_in\n"
    )
    path = write(tmp_path, content, "garbage.csv")
    report = import_csv("contacts", path, db.sessions)
    assert [e.line for e in report.errors][:3] == [3, 4, 5]
    assert report.errors[0].reason == (
        "cannot read this row: a field is longer than 131,072 characters"
    )
    with db.session() as s:
        assert "a@example.jp" in set(s.scalars(select(Contact.email)))
    assert all(
        r.detail["line"] == 2 for r in records(db) if r.email_hash == email_hash("a@example.jp")
    )


CELLS = st.one_of(
    st.sampled_from(
        ["", "a@example.com", "A@EXAMPLE.COM", "opt_in", "OPT-IN", "published_address", "none",
         "jp", "JPN", "2026-04-01", "2026年4月1日", "2026-04-01T09:00:00+09:00", "v1", "ACC-1", '"',
         "\n", "\x00", "\t", "山田 太郎", "a;b", "\\", "\\N", "{}", '{"a": 1}', "x" * 300]
    ),
    st.text(max_size=12),
)  # fmt: skip
COLUMNS = st.sampled_from(
    ["name", "country", "consent_basis", "consent_source", "consent_at", "consent_wording",
     "tags", "account_external_id", "locale", "notes", "部署"]
)  # fmt: skip


@st.composite
def contact_files(draw: st.DrawFn) -> str:
    header = ["email", *draw(st.lists(COLUMNS, max_size=6, unique=True))]
    rows = draw(st.lists(st.lists(CELLS, min_size=len(header), max_size=len(header)), max_size=6))
    return "\n".join(",".join(row) for row in [header, *rows]) + "\n"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=contact_files(), strict=st.booleans())
def test_garbage_contact_files_never_crash_either_path(db, tmp_path, content, strict):
    path = write(tmp_path, content, "fuzz.csv")
    try:
        report = import_csv("contacts", path, db.sessions, strict=strict, batch_size=2)
    except ImportRowError as exc:
        assert str(exc)
        return
    lines = content.count("\n") + content.count("\r") + 1
    for problem in report.errors + report.warnings:
        assert isinstance(problem, RowError) and 1 <= problem.line <= lines
    if strict and report.errors:
        assert not report.committed and report.inserted == report.updated == 0


def test_a_file_with_many_odd_attribute_columns_keeps_them_all(db, tmp_path):
    names = [f"col {i}" for i in range(60)] + ["100%", "it's", '"q"', "部署"]
    header = "email," + ",".join(f'"{n}"' if '"' not in n else '"""q"""' for n in names)
    row = "a@example.jp," + ",".join(f"v{i}" for i in range(len(names)))
    import_csv("contacts", write(tmp_path, f"{header}\n{row}\n", "wide.csv"), db.sessions)
    again = "email,部署,col 0\na@example.jp,営業,\n"
    import_csv("contacts", write(tmp_path, again, "again.csv"), db.sessions)
    with db.session() as s:
        stored = s.scalars(select(Contact.attributes)).one()
    assert len(stored) == len(names)
    assert (stored["col_59"], stored["100%"], stored["it's"], stored['"q"']) == (
        "v59",
        "v60",
        "v61",
        "v62",
    )
    assert (stored["部署"], stored["col_0"]) == ("営業", "v0"), "merged; an empty cell keeps"


def test_sample_contacts_with_consent_columns_import_cleanly_and_once(db, tmp_path):
    from datetime import date

    from campaigns.imports.samples import generate_accounts_csv, generate_contacts_csv

    import_csv(
        "accounts", generate_accounts_csv(tmp_path / "a.csv", 10, date(2026, 5, 1)), db.sessions
    )
    path = generate_contacts_csv(tmp_path / "c.csv", 200, accounts=10, consent=True)
    first = import_csv("contacts", path, db.sessions, batch_size=50)
    assert (first.inserted, first.skipped, first.errors) == (200, 0, [])
    again = import_csv("contacts", path, db.sessions, batch_size=50)
    assert (again.updated, again.errors) == (200, [])
    with db.session() as s:
        bases = dict(
            s.execute(select(Contact.country, func.count()).group_by(Contact.country)).all()
        )
        assert s.scalar(select(func.count()).select_from(ConsentRecord)) == 200
        japanese = s.scalars(select(Contact).where(Contact.country == "JP")).first()
    assert sum(bases.values()) == 200 and set(bases) <= {"JP", "US"}
    assert japanese is not None and japanese.consent_basis == "opt_in"
    assert japanese.consent_at == datetime(2026, 4, 1, tzinfo=UTC)


def test_a_reimport_on_postgresql_rewrites_only_the_rows_that_changed(db, tmp_path):
    if db.backend != "postgresql":
        pytest.skip("the COPY path is PostgreSQL's; the batched path rewrites every row")
    header = "email,name,locale,tags,team\n"
    rows = "".join(f"p{i}@example.jp,人{i},ja,vip,sales\n" for i in range(6))
    first = import_csv("contacts", write(tmp_path, header + rows, "a.csv"), db.sessions)
    assert (first.inserted, first.updated) == (6, 0)

    def versions() -> dict[str, Any]:
        with db.session() as s:
            return {e: u for e, u in s.execute(select(Contact.email, Contact.updated_at))}

    before = versions()
    changed = rows.replace("p2@example.jp,人2,ja,vip,sales", "p2@example.jp,人2,ja,vip,support")
    changed = changed.replace("p4@example.jp,人4,ja,vip", "p4@example.jp,人4,,gold")
    again = import_csv("contacts", write(tmp_path, header + changed, "b.csv"), db.sessions)
    assert (again.inserted, again.updated, again.skipped) == (0, 6, 0), "matched rows count"
    after = versions()
    assert {e for e in before if after[e] != before[e]} == {"p2@example.jp", "p4@example.jp"}
    with db.session() as s:
        p4 = s.scalars(select(Contact).where(Contact.email == "p4@example.jp")).one()
        assert (p4.locale, p4.tags, p4.attributes) == ("ja", ["gold"], {"team": "sales"})
