"""Roles, checked on every page and API route: every route of the app names the permission
it needs (so a new one cannot slip by), each role gets 200 or 403 on a representative set
of dashboard pages and API calls, the navigation shows a role only its share, API keys carry
a role, and ``campaigns user add/set --role`` gives one, recorded in the audit log."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from campaigns import config as settings_module
from campaigns.clock import FakeClock
from campaigns.engine.deploy import deploy
from campaigns.exceptions import ConfigError
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import TaskStatus, UserRole
from campaigns.store.models import Account, AuditEntry, Contact, Task, User
from campaigns.store.users import UserError, add_user
from campaigns.web import dashboard_base, roles
from tests.kit import EVERYONE, ROOT

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ROLES = ("admin", "marketer", "csm", "viewer")
EMAIL = {role: f"{role}@example.com" for role in ROLES}
KEYS = {role: f"{role}-key-0123456789abcdef" for role in ROLES}
BARE_KEY = "bare-key-0123456789abcdef"
JOURNEY = textwrap.dedent(
    """\
    journey: onboarding
    name: オンボーディング
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: hello, email: {template: onboarding_welcome, subject: ようこそ}}
    """
)

# ---------------------------------------------------------------------------- who may do what

# Each row: method, path (ACCOUNT, CONTACT, TASK filled in), form, and the roles allowed.
EVERYONE_ROLE = set(ROLES)
PEOPLE = {"admin", "marketer", "csm"}
STEERS = {"admin", "marketer"}
WORKS = {"admin", "csm"}
DASHBOARD = [
    ("GET", "/journeys", None, EVERYONE_ROLE),
    ("GET", "/journeys/onboarding", None, EVERYONE_ROLE),
    ("GET", "/journeys/onboarding/source", None, EVERYONE_ROLE),
    ("GET", "/journeys/onboarding/source.yaml", None, EVERYONE_ROLE),
    ("GET", "/journeys/onboarding/diff", None, EVERYONE_ROLE),
    ("GET", "/nps", None, EVERYONE_ROLE),
    ("GET", "/health", None, EVERYONE_ROLE),
    ("GET", "/settings", None, EVERYONE_ROLE),
    ("GET", "/accounts", None, PEOPLE),
    ("GET", "/accounts/{ACCOUNT}", None, PEOPLE),
    ("GET", "/contacts?q=taro", None, PEOPLE),
    ("GET", "/contacts/{CONTACT}", None, PEOPLE),
    ("GET", "/tasks", None, PEOPLE),
    ("GET", "/preview", None, PEOPLE),
    ("GET", "/journeys/onboarding/edit", None, STEERS),
    ("POST", "/journeys/onboarding/edit", {"source": JOURNEY, "action": "validate"}, STEERS),
    ("POST", "/preview/send", {}, STEERS),
    ("POST", "/tasks/2147483000/complete", {}, WORKS),  # no such task: allowed is a redirect
    ("POST", "/tasks/2147483000/cancel", {}, WORKS),
]
API = [
    ("GET", "/api/v1/reports", None, EVERYONE_ROLE),
    ("GET", "/api/v1/reports/onboarding", None, EVERYONE_ROLE),
    ("GET", "/api/v1/nps", None, EVERYONE_ROLE),
    ("GET", "/api/v1/contacts/taro@example.co.jp", None, PEOPLE),
    ("GET", "/api/v1/contacts/taro@example.co.jp/timeline", None, PEOPLE),
    ("GET", "/api/v1/accounts", None, PEOPLE),
    ("GET", "/api/v1/tasks", None, PEOPLE),
    ("POST", "/api/v1/tasks/{TASK}/complete", {}, WORKS),
    ("POST", "/api/v1/events", {"events": []}, STEERS),  # the product's writes: INGEST
    ("POST", "/api/v1/usage", {"rows": []}, STEERS),
]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "segments.yaml").write_text(EVERYONE, encoding="utf-8")
    return folder


@pytest.fixture
def seeded(db) -> dict[str, int]:
    """A user of each role, a journey, an account with a contact, and a task per role."""
    with db.session() as s, s.begin():
        for role in ROLES:
            add_user(s, EMAIL[role], PASSWORD, NOW, name=f"{role} さん", role=role)
        deploy(s, parse_journey(JOURNEY, "onboarding.yaml"), JOURNEY, "journeys/onboarding.yaml")
        account = Account(external_id="SAKURA", name="株式会社さくら", owner_email=EMAIL["csm"])
        s.add(account)
        s.flush()
        contact = Contact(account_id=account.id, email="taro@example.co.jp", name="山田 太郎")
        s.add(contact)
        s.flush()
        task = Task(
            account_id=account.id,
            contact_id=contact.id,
            owner_email=EMAIL["admin"],
            kind="call",
            title="Call 山田 太郎",
            status=TaskStatus.OPEN,
            due_at=NOW + timedelta(days=1),
            created_at=NOW,
        )
        s.add(task)
        s.flush()
        return {"ACCOUNT": account.id, "CONTACT": contact.id, "TASK": task.id}


@pytest.fixture
def app(build_app, project):
    return build_app(
        journeys_dir=project,
        templates_dir=ROOT / "templates",
        api_keys=(*KEYS.values(), BARE_KEY),
        api_key_roles={KEYS[role]: role for role in ROLES},
    )


def sign_in(app, email: str):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"csrf": token, "email": email, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def token_of(client) -> str:
    page = client.get("/settings").get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


# ---------------------------------------------------------------------------- every route is marked


def test_every_route_of_the_app_names_the_permission_it_needs(app):
    unmarked = sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if roles.marked(app.view_functions[rule.endpoint]) is None
    )
    assert unmarked == [], (
        "each route needs @needs(<permission>) under its @bp.get/post (campaigns/web/roles.py)"
    )


def test_only_the_sign_in_tracking_health_and_openapi_routes_are_public(app):
    public = sorted(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if roles.marked(app.view_functions[rule.endpoint]) == roles.PUBLIC
    )
    assert {e.split(".")[0] for e in public} == {"dashboard", "track", "health", "api"}
    assert [e for e in public if e.startswith(("dashboard.", "api."))] == [
        "api.openapi",
        "dashboard.login",
    ]


def test_an_unmarked_view_needs_read_reports_to_read_and_steer_to_change():
    def view() -> None:
        return None

    assert roles.required(view, "GET") == roles.READ_REPORTS
    assert roles.required(view, "POST") == roles.STEER
    with pytest.raises(ValueError, match="unknown permission"):
        roles.needs("fly")


def test_the_table_grants_each_role_its_share():
    assert roles.may("admin", roles.MANAGE_USERS) and not roles.may("marketer", roles.MANAGE_USERS)
    assert roles.may("marketer", roles.STEER) and not roles.may("csm", roles.STEER)
    assert roles.may("csm", roles.WORK_TASKS) and not roles.may("marketer", roles.WORK_TASKS)
    assert roles.may("viewer", roles.READ_REPORTS) and not roles.may("viewer", roles.READ_PEOPLE)
    assert roles.may("viewer", roles.SIGNED_IN) and not roles.may("intern", roles.SIGNED_IN)
    assert roles.may(None, roles.PUBLIC)
    assert set(roles.GRANTS) == set(UserRole)
    assert set(settings_module.API_KEY_ROLES) == set(UserRole)


# ---------------------------------------------------------------------------- the dashboard


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_its_pages_and_a_403_for_the_rest(app, seeded, role):
    client = sign_in(app, EMAIL[role])
    token = token_of(client)
    got = {}
    for method, path, form, allowed in DASHBOARD:
        url = path.format(**seeded)
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data={**form, "csrf": token})
        got[(method, url)] = response.status_code
        if role in allowed:
            assert response.status_code in (200, 302), (method, url, response.status_code)
        else:
            assert response.status_code == 403, (method, url, response.status_code)
            assert "may not" in response.get_data(as_text=True)
    assert got  # every row was tried


def test_a_user_with_an_unknown_role_may_do_nothing(app, db, seeded):
    client = sign_in(app, EMAIL["viewer"])
    with db.session() as s, s.begin():
        s.execute(text("UPDATE users SET role = 'intern' WHERE email = :e"), {"e": EMAIL["viewer"]})
    assert client.get("/journeys").status_code == 403
    assert client.get("/settings").status_code == 403


def test_a_changed_role_applies_at_the_next_page(app, db, seeded):
    client = sign_in(app, EMAIL["viewer"])
    assert client.get("/accounts").status_code == 403
    with db.session() as s, s.begin():
        s.scalars(select(User).where(User.email == EMAIL["viewer"])).one().role = "csm"
    assert client.get("/accounts").status_code == 200


def test_a_csm_may_complete_someone_elses_task(app, db, seeded):
    client = sign_in(app, EMAIL["csm"])
    response = client.post(
        f"/tasks/{seeded['TASK']}/complete", data={"csrf": token_of(client), "outcome": "話した"}
    )
    assert response.status_code == 302
    with db.session() as s:
        task = s.get(Task, seeded["TASK"])
        assert task is not None and task.status == TaskStatus.DONE


NAV = {
    "admin": ["Journeys", "Tasks", "Accounts", "Health", "Contacts", "NPS", "Preview"],
    "marketer": ["Journeys", "Tasks", "Accounts", "Health", "Contacts", "NPS", "Preview"],
    "csm": ["Journeys", "Tasks", "Accounts", "Health", "Contacts", "NPS", "Preview"],
    "viewer": ["Journeys", "Health", "NPS"],
}


@pytest.mark.parametrize("role", ROLES)
def test_the_navigation_shows_each_role_only_its_pages(app, seeded, role):
    page = sign_in(app, EMAIL[role]).get("/journeys/onboarding").get_data(as_text=True)
    nav = page.split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
    links = [name for name in re.findall(r">([^<>]+)</a>", nav)]
    assert [name for name in links if name in NAV["admin"]] == NAV[role]
    assert ("/journeys/onboarding/edit" in page) == (role in STEERS)
    assert "/journeys/onboarding/source" in page


@pytest.mark.parametrize("role", ROLES)
def test_task_buttons_show_only_to_roles_that_work_tasks(app, seeded, role):
    if role == "viewer":
        return  # no inbox at all (the table above)
    page = sign_in(app, EMAIL[role]).get("/tasks?owner=all").get_data(as_text=True)
    assert "Call 山田 太郎" in page
    assert ("Mark done" in page) == (role in WORKS)


def test_may_refuses_a_permission_that_does_not_exist(app, seeded):
    with app.test_request_context(), pytest.raises(ValueError):
        dashboard_base.may("fly")


# ---------------------------------------------------------------------------- the API


@pytest.mark.parametrize("role", ROLES)
def test_each_api_key_gets_its_roles_calls_and_a_403_for_the_rest(app, seeded, role):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {KEYS[role]}"}
    for method, path, body, allowed in API:
        url = path.format(**seeded)
        response = client.open(url, method=method, headers=headers, json=body)
        if role in allowed:
            assert response.status_code < 400 or response.status_code in (400, 404, 409, 422), (
                method,
                url,
                response.status_code,
            )
            assert response.status_code != 403
        else:
            assert response.status_code == 403, (method, url, response.status_code)
            message = response.get_json()["error"]["message"]
            assert message.startswith(f"this API key's role ({role}) may not")


def test_a_bare_api_key_is_an_admins(app, seeded):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {BARE_KEY}"}
    for method, path, body, _ in API:
        response = client.open(path.format(**seeded), method=method, headers=headers, json=body)
        assert response.status_code != 403, path


def test_the_openapi_document_needs_no_key(app):
    assert app.test_client().get("/api/v1/openapi.json").status_code == 200


def test_api_keys_take_a_role_before_a_colon():
    config = settings_module.load(
        {"API_KEYS": f" marketer:{KEYS['marketer']} , {BARE_KEY}, viewer : {KEYS['viewer']}"}
    )
    assert config.api_keys == (KEYS["marketer"], BARE_KEY, KEYS["viewer"])
    assert dict(config.api_key_roles) == {KEYS["marketer"]: "marketer", KEYS["viewer"]: "viewer"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"boss:{BARE_KEY}", "API_KEYS: unknown role 'boss'"),
        (f"viewer:{BARE_KEY}:x", "API_KEYS: unknown role 'viewer:"),
        ("viewer:short", "API_KEYS: each key must be 16"),
        (f":{BARE_KEY}", "API_KEYS: unknown role ''"),
    ],
)
def test_a_bad_api_key_role_is_one_line_naming_the_setting(value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings_module.load({"API_KEYS": value})


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture
def with_admin(cli):
    assert cli("migrate").exit_code == 0
    result = cli(
        "user", "add", "ami@example.com", "--role", "admin", "--password-stdin",
        input="correct horse!\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return cli


def _audit(cli) -> list[tuple[str, str, dict]]:
    engine = create_engine(f"sqlite:///{cli.folder / 'campaigns.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(AuditEntry.action, AuditEntry.target, AuditEntry.detail).order_by(
                    AuditEntry.id
                )
            ).all()
    finally:
        engine.dispose()
    return [(a, t, d) for a, t, d in rows]


@pytest.mark.parametrize("role", ROLES)
def test_user_add_takes_each_role_and_audits_it(with_admin, role):
    cli = with_admin
    result = cli(
        "user", "add", f"new-{role}@example.com", "--role", role, "--password-stdin",
        input="correct horse!\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"added {role} new-{role}@example.com"
    assert _audit(cli)[-1] == ("user", f"new-{role}@example.com", {"change": "added", "role": role})


def test_user_add_refuses_an_unknown_role(with_admin):
    result = with_admin(
        "user",
        "add",
        "x@example.com",
        "--role",
        "boss",
        "--password-stdin",
        input="correct horse!\n",
    )
    assert result.exit_code == 2 and "boss" in result.output


def test_user_set_role_changes_it_and_audits_the_change(with_admin):
    cli = with_admin
    result = cli("users", "set", "AMI@example.com", "--role", "viewer")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ami@example.com: role viewer"
    assert _audit(cli)[-1] == (
        "user",
        "ami@example.com",
        {"change": "role", "from": "admin", "to": "viewer"},
    )
    again = cli("users", "set", "ami@example.com", "--role", "viewer")
    assert "unchanged" in again.output and len(_audit(cli)) == 2
    assert "viewer" in cli("user", "list").output


def test_user_set_role_of_nobody_is_a_user_error(with_admin):
    # (campaigns.cli.main turns a UserError into one line and exit 2; the runner calls the group)
    result = with_admin("users", "set", "nobody@example.com", "--role", "csm")
    assert isinstance(result.exception, UserError)
    assert str(result.exception) == "no user with email nobody@example.com"
    assert len(_audit(with_admin)) == 1  # only the admin's addition
