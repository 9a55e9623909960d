"""A journey's YAML on the dashboard through Flask's test client, on SQLite and PostgreSQL:
the source page numbers the running text and lists every version with who deployed it; the
diff shows what changed between two versions; the editor validates with the checks of
``campaigns validate``, shows each problem under its line with the text kept as typed, and
deploys a valid text as a new version through the CLI's path, audited with the signed-in
user. Bad parameters and garbage get a 4xx or a page of problems, never a 500."""

from __future__ import annotations

import html
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from campaigns.clock import FakeClock
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.store import audit
from campaigns.store.enums import AuditAction
from campaigns.store.models import Journey, JourneyVersion
from campaigns.store.users import add_user
from campaigns.web import editor
from tests.kit import EVERYONE, ROOT

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
MARKETER = "mika@example.com"
VIEWER = "viktor@example.com"
KEY = "welcome"
V1 = textwrap.dedent(
    """\
    journey: welcome
    name: ようこそ
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: hello, email: {template: onboarding_welcome, subject: ようこそ}}
      - {id: rest, wait: 2 days}
      - {id: tips, email: {template: onboarding_tips, subject: Tips}}
    """
)
V2 = V1.replace("wait: 2 days", "wait: 3 days").replace("subject: Tips", "subject: 使い方のコツ")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A journeys folder of its own (the segments file, and the journey's file as deployed)."""
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "segments.yaml").write_text(EVERYONE, encoding="utf-8")
    (folder / "welcome.yaml").write_text(V1, encoding="utf-8")
    return folder


@pytest.fixture
def app(build_app, project):
    return build_app(journeys_dir=project, templates_dir=ROOT / "templates")


@pytest.fixture
def deployed(db, project):
    """Version 1 deployed from the CLI (audited as the CLI does), version 2 by a marketer."""
    with db.session() as s, s.begin():
        add_user(s, MARKETER, PASSWORD, NOW, name="三上 美香", role="marketer")
        add_user(s, VIEWER, PASSWORD, NOW, role="viewer")
        first = deploy(s, parse_journey(V1, "journeys/welcome.yaml"), V1, "journeys/welcome.yaml")
        audit.record(s, "cli:ops", AuditAction.DEPLOY, KEY, detail={"version": first.version})
        second = deploy(s, parse_journey(V2, "journeys/welcome.yaml"), V2, "journeys/welcome.yaml")
        audit.record(s, MARKETER, AuditAction.DEPLOY, KEY, detail={"version": second.version})
    return KEY


@pytest.fixture
def client(app, deployed):
    """The marketer, signed in."""
    return signed_in(app)


def signed_in(app, email: str = MARKETER):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"csrf": token, "email": email, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def csrf(client, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def post_edit(client, text: str, action: str = "validate", key: str = KEY):
    token = csrf(client, f"/journeys/{key}/source")
    return client.post(
        f"/journeys/{key}/edit", data={"csrf": token, "source": text, "action": action}
    )


def current(db) -> tuple[int, str]:
    with db.session() as s:
        row = s.scalars(select(Journey).where(Journey.key == KEY)).one()
        assert row.current_version is not None
        return row.current_version.number, row.current_version.source_text


def code_lines(page: str, table: str = "source") -> list[str]:
    body = page.split(f'<table class="{table}', 1)[1].split("</table>", 1)[0]
    return [html.unescape(m) for m in re.findall(r'<td class="code"><code>(.*?)</code>', body)]


# ---------------------------------------------------------------------------- the source page


def test_the_source_page_numbers_the_running_version_and_lists_who_deployed_each(app, deployed):
    page = signed_in(app, VIEWER).get(f"/journeys/{KEY}/source")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert code_lines(text) == V2.rstrip("\n").split("\n")
    assert 'id="L6"' in text and "使い方のコツ" in text
    versions = re.findall(
        r'<tr data-version="(\d+)".*?<td class="by">(.*?)</td>', text, flags=re.DOTALL
    )
    assert versions == [("2", MARKETER), ("1", "cli:ops")]
    assert "journeys/welcome.yaml" in text
    assert "differs from the running version" in text  # the folder holds v1's text
    assert "/journeys/welcome/edit" not in text  # a viewer may not edit: no link


def test_an_older_version_is_shown_on_request_and_an_unknown_one_is_a_404(app, deployed):
    client = signed_in(app)
    assert code_lines(client.get(f"/journeys/{KEY}/source?version=1").get_data(as_text=True)) == (
        V1.rstrip("\n").split("\n")
    )
    assert client.get(f"/journeys/{KEY}/source?version=9").status_code == 404
    assert client.get(f"/journeys/{KEY}/source?version=x").status_code == 400
    assert client.get("/journeys/nope/source").status_code == 404


def test_the_source_page_says_when_the_file_holds_the_running_text(app, deployed, project):
    (project / "welcome.yaml").write_text(V2, encoding="utf-8")
    text = signed_in(app).get(f"/journeys/{KEY}/source").get_data(as_text=True)
    assert "holds the running version" in text


def test_the_download_is_the_running_text(app, deployed):
    response = signed_in(app, VIEWER).get(f"/journeys/{KEY}/source.yaml")
    assert response.status_code == 200 and response.get_data(as_text=True) == V2
    assert response.headers["Content-Disposition"] == 'attachment; filename="welcome.yaml"'


def test_the_yaml_is_escaped(app, db, deployed):
    hostile = V2.replace("name: ようこそ", 'name: "<script>alert(1)</script>"')
    with db.session() as s, s.begin():
        deploy(s, parse_journey(hostile, "w.yaml"), hostile, "w.yaml")
    text = signed_in(app).get(f"/journeys/{KEY}/source").get_data(as_text=True)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


# ---------------------------------------------------------------------------- the diff


def test_the_diff_shows_the_changed_lines_side_by_side(app, deployed):
    response = signed_in(app, VIEWER).get(f"/journeys/{KEY}/diff?from=1&to=2")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    rows = re.findall(
        r'<tr class="(replace|delete|insert)">.*?<td class="old code">(.*?)</td>.*?'
        r'<td class="new code">(.*?)</td>',
        text,
        flags=re.DOTALL,
    )
    assert [
        (kind, html.unescape(re.sub("<.*?>", "", old)), html.unescape(re.sub("<.*?>", "", new)))
        for kind, old, new in rows
    ] == [
        ("replace", "  - {id: rest, wait: 2 days}", "  - {id: rest, wait: 3 days}"),
        (
            "replace",
            "  - {id: tips, email: {template: onboarding_tips, subject: Tips}}",
            "  - {id: tips, email: {template: onboarding_tips, subject: 使い方のコツ}}",
        ),
    ]
    assert "-  - {id: rest, wait: 2 days}" in html.unescape(text)  # the unified diff too


def test_the_diff_defaults_to_the_running_version_against_the_one_before(app, deployed):
    text = signed_in(app).get(f"/journeys/{KEY}/diff").get_data(as_text=True)
    assert "version 1 → 2" in text


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("from=0&to=2", 400),
        ("from=-1&to=2", 400),
        ("from=a&to=2", 400),
        ("from=1&to=２", 400),  # a full-width digit
        ("from=1&to=99999999999", 400),
        ("from=1&to=3", 404),
        ("from=1&to=2&x=1", 400),
    ],
)
def test_bad_diff_parameters_are_a_4xx(app, deployed, query, status):
    assert signed_in(app).get(f"/journeys/{KEY}/diff?{query}").status_code == status


def test_side_by_side_folds_long_unchanged_runs():
    old = [f"line {n}" for n in range(1, 21)]
    new = [*old[:10], "changed", *old[11:]]
    rows = editor.side_by_side(old, new)
    kinds = [r.kind for r in rows]
    assert kinds == [
        "fold",
        "equal",
        "equal",
        "equal",
        "replace",
        "equal",
        "equal",
        "equal",
        "fold",
    ]
    assert rows[0].old == "7 unchanged lines" and rows[4].new == "changed"
    assert rows[4].old_number == rows[4].new_number == 11


def test_side_by_side_pairs_inserts_and_deletes_with_their_numbers():
    rows = editor.side_by_side(["a", "b"], ["a", "b", "c"])
    assert rows[-1] == editor.DiffRow("insert", None, "", 3, "c")
    rows = editor.side_by_side(["a", "b"], ["b"])
    assert rows[0] == editor.DiffRow("delete", 1, "a", None, "")


# ---------------------------------------------------------------------------- the editor


def test_the_editor_shows_the_running_text_in_a_form(app, deployed):
    response = signed_in(app).get(f"/journeys/{KEY}/edit")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    area = re.search(r"<textarea[^>]*>\n(.*?)</textarea>", text, flags=re.DOTALL).group(1)
    assert html.unescape(area) == V2
    assert 'name="csrf"' in text and 'value="validate"' in text and 'value="deploy"' in text
    assert "<script" not in text


def test_a_problem_is_shown_under_its_line_and_the_text_is_kept(app, db, deployed):
    broken = V2.replace("wait: 3 days", "wait: 3 dayz").replace(
        "template: onboarding_tips", "template: onboarding_tipz"
    )
    response = post_edit(signed_in(app), broken)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    area = re.search(r"<textarea[^>]*>\n(.*?)</textarea>", text, flags=re.DOTALL).group(1)
    assert html.unescape(area) == broken  # nothing lost
    rows = re.findall(
        r'<tr id="L(\d+)" class="line( bad)?">|<tr class="problem" data-line="(\d+)">'
        r'.*?<span class="where">(.*?)</span>: <span class="message">(.*?)</span>',
        text,
        flags=re.DOTALL,
    )
    order = [
        (
            f"L{line}{'!' if bad else ''}"
            if line
            else f"problem@{pline} {where}: {html.unescape(msg)}"
        )
        for line, bad, pline, where, msg in rows
    ]
    seven = order.index("L7!")
    assert order[seven + 1].startswith("problem@7 7:22: bad wait") and "dayz" in order[seven + 1]
    eight = order.index("L8!")
    assert order[eight + 1].startswith("problem@8 8:") and "onboarding_tipz" in order[eight + 1]
    assert order[seven - 1] == "L6"  # a good line is not marked
    assert current(db) == (2, V2)  # nothing deployed


def test_a_problem_carries_its_hint(app, deployed):
    text = post_edit(signed_in(app), V2.replace("segments: [everyone]", "segments: [everyon]"))
    page = html.unescape(text.get_data(as_text=True))
    assert "did you mean 'everyone'" in page


def test_validate_with_no_problem_says_so_and_deploys_nothing(app, db, deployed):
    changed = V2.replace("3 days", "4 days")
    response = post_edit(signed_in(app), changed)
    assert response.status_code == 200
    assert "ready to deploy" in response.get_data(as_text=True)
    assert current(db) == (2, V2)


def test_deploy_stores_a_new_version_audited_with_the_user_and_goes_to_the_journey(
    app, db, deployed
):
    changed = V2.replace("3 days", "4 days").replace("\n", "\r\n")  # as browsers send it
    response = post_edit(signed_in(app), changed, "deploy")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/journeys/{KEY}"
    assert current(db) == (3, V2.replace("3 days", "4 days"))
    with db.session() as s:
        version = s.scalars(select(JourneyVersion).where(JourneyVersion.number == 3)).one()
        assert version.source_path == "journeys/welcome.yaml"
        entries = audit.entries(s, target=KEY, limit=2)
    assert [(e.action, e.actor, e.detail["version"]) for e in entries] == [
        (AuditAction.DEPLOY, MARKETER, 3),
        (AuditAction.EDIT, MARKETER, 3),
    ]
    page = signed_in(app).get(f"/journeys/{KEY}/source").get_data(as_text=True)
    assert re.search(r'data-version="3".*?<td class="by">mika@example.com</td>', page, re.DOTALL)


def test_deploying_the_running_text_again_changes_nothing(app, db, deployed):
    client = signed_in(app)
    response = post_edit(client, V2, "deploy")
    assert response.status_code == 302 and current(db) == (2, V2)
    page = client.get(f"/journeys/{KEY}").get_data(as_text=True)
    assert "Nothing changed" in page


def test_deploy_with_a_problem_deploys_nothing(app, db, deployed):
    response = post_edit(signed_in(app), V2.replace("3 days", "three days"), "deploy")
    assert response.status_code == 200 and current(db) == (2, V2)
    assert "nothing deployed" in response.get_data(as_text=True)


def test_the_journey_id_cannot_change_in_the_editor(app, db, deployed):
    response = post_edit(signed_in(app), V2.replace("journey: welcome", "journey: other"), "deploy")
    assert response.status_code == 200 and current(db) == (2, V2)
    page = html.unescape(re.sub("<.*?>", "", response.get_data(as_text=True)))
    assert "1:1: this page edits journey 'welcome', not 'other'" in page


def test_a_yaml_bomb_through_the_form_is_a_problem_at_its_line(app, db, deployed):
    rows = ["journey: welcome", "name: x", "laughs:", '  a: &a ["lol","lol","lol","lol"]']
    for n in range(1, 12):
        rows.append(f"  b{n}: &b{n} [{','.join(['*' + ('a' if n == 1 else f'b{n - 1}')] * 9)}]")
    response = post_edit(signed_in(app), "\n".join(rows) + "\n", "deploy")
    assert response.status_code == 200 and current(db) == (2, V2)
    page = html.unescape(response.get_data(as_text=True))
    [problem] = re.findall(r'<tr class="problem" data-line="(\d+)">(.*?)</tr>', page, re.DOTALL)
    assert problem[0] == "4" and "YAML anchor '&a' is not allowed" in problem[1]


def test_the_editor_refuses_a_text_over_its_limit_with_413(app, db, deployed):
    client = signed_in(app)
    huge = V2 + "#" * (editor.MAX_SOURCE + 1)
    assert post_edit(client, huge).status_code == 413
    token = csrf(client, f"/journeys/{KEY}/source")
    body = "x" * (editor.MAX_BODY + 10)
    response = client.post(f"/journeys/{KEY}/edit", data={"csrf": token, "source": body})
    assert response.status_code == 413
    assert current(db) == (2, V2)


def test_the_editor_needs_the_csrf_token(app, db, deployed):
    client = signed_in(app)
    response = client.post(f"/journeys/{KEY}/edit", data={"source": V2, "action": "deploy"})
    assert response.status_code == 400


def test_a_viewer_may_not_open_the_editor_nor_deploy(app, db, deployed):
    client = signed_in(app, VIEWER)
    assert client.get(f"/journeys/{KEY}/edit").status_code == 403
    assert post_edit(client, V2.replace("3 days", "5 days"), "deploy").status_code == 403
    assert current(db) == (2, V2)


def test_a_bad_action_is_a_400(app, deployed):
    assert post_edit(signed_in(app), V2, "launch").status_code == 400


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    source=st.text(max_size=300)
    | st.builds(lambda tail: V2 + tail, st.text(max_size=60))
    | st.builds(lambda a, b: V2[:a] + b + V2[a:], st.integers(0, len(V2)), st.text(max_size=20)),
    action=st.sampled_from(["validate", "deploy", "", "x"]),
)
def test_garbage_in_the_editor_is_never_a_500(client, source, action):
    response = post_edit(client, source, action or "validate")
    assert response.status_code in (200, 302, 400, 413), response.get_data(as_text=True)[:500]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    params=st.dictionaries(
        st.sampled_from(["from", "to", "x", "version"]), st.text(max_size=12), max_size=3
    )
)
def test_garbage_diff_parameters_are_never_a_500(client, params):
    for path in ("diff", "source"):
        response = client.get(f"/journeys/{KEY}/{path}", query_string=params)
        assert response.status_code in (200, 400, 404), response.get_data(as_text=True)[:500]


def test_the_source_page_says_when_there_is_no_file(app, deployed, project):
    (project / "welcome.yaml").unlink()
    text = signed_in(app).get(f"/journeys/{KEY}/source").get_data(as_text=True)
    assert "There is no file <code>welcome.yaml</code>" in text


def test_a_problem_in_another_file_is_listed_above_the_text(client, project, db):
    (project / "segments.yaml").write_text("tiers:\n  everyone: {when: tru}\n", encoding="utf-8")
    response = post_edit(client, V2.replace("3 days", "4 days"), "deploy")
    page = html.unescape(re.sub("<.*?>", "", response.get_data(as_text=True)))
    assert response.status_code == 200 and "In the project's other files" in page
    assert str(project / "segments.yaml") + ":2:" in page
    assert current(db) == (2, V2)  # nothing deployed while the project has problems
