"""`campaigns demo` as the README runs it: from the project folder, on the embedded defaults."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def demo(db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MAIL_URL", "SECRET_KEY")}
    env["DATABASE_URL"] = f"sqlite:///{db}"
    env["MAIL_URL"] = (
        # the default outbox is in the working folder: not the checkout's
        f"file://{db.parent / 'outbox'}"
    )
    return subprocess.run(
        [sys.executable, "-m", "campaigns", "demo", "--date", "2026-11-23", "--weeks", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_seeds_tiers_and_deploys_every_playbook_and_can_run_again(tmp_path):
    first = demo(tmp_path / "demo.db")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert re.search(r"imported accounts: \d+ new, 0 updated, 0 skipped", out)
    assert re.search(r"imported contacts: \d+ new, 0 updated, 0 skipped", out)
    for tier in ("high_touch", "low_touch", "tech_touch"):
        row = re.search(rf"^{tier}\s+(\d+)\s+(\d+)", out, re.M)
        assert row and int(row.group(1)) > 0 and int(row.group(2)) > 0, (tier, out)
    journeys = sorted(
        p.stem
        for p in (ROOT / "journeys").glob("*.yaml")
        if p.stem not in ("segments", "triggers", "scorecards")
    )
    for key in journeys:
        assert re.search(rf"^{key}\s+v1\s", out, re.M), (key, out)
    assert "Traceback" not in first.stderr

    second = demo(tmp_path / "demo.db")
    assert second.returncode == 0, second.stderr
    assert re.search(r"imported accounts: 0 new, \d+ updated, 0 skipped", second.stdout)
    for key in journeys:
        assert re.search(rf"^{key}\s+v1\s", second.stdout, re.M)


def campaigns(db: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SECRET_KEY")}
    environ.update(DATABASE_URL=f"sqlite:///{db}", MAIL_URL=f"file://{db.parent / 'outbox'}", **env)
    return subprocess.run(
        [sys.executable, "-m", "campaigns", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def sent_by_journeys(db: Path) -> int:
    """Emails the journeys sent to customers (owner notices aside), bounced later or not."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM messages WHERE sent_at IS NOT NULL AND channel = 'email'"
            ).fetchone()[0]
        )


def message_count(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


def test_demo_delivers_first_steps_then_simulate_writes_nothing_and_tick_runs(tmp_path):
    db = tmp_path / "demo.db"
    result = campaigns(db, "demo", "--date", "2026-11-24", "--weeks", "1", "--arrivals", "10")
    assert result.returncode == 0, result.stderr
    sent = int(re.search(r"emails sent: (\d+)", result.stdout).group(1))
    assert sent > 0 and len(list((tmp_path / "outbox").glob("*.eml"))) == sent
    # It ends with the report (the emails just sent, summed over the journeys) and the dashboard.
    reported = [
        int(m.group(1))
        for m in re.finditer(
            r"^(?:high|low|tech)_touch_\w+\s+\d+ (?:accounts|contacts)\s+(\d+)\s",
            result.stdout,
            re.M,
        )
    ]
    assert len(reported) == 8 and sum(reported) == sent_by_journeys(db), result.stdout
    assert "Simulated 1 week, 2026-11-17 01:00 to 2026-11-24 01:00 UTC" in result.stdout
    assert "Dashboard: http://127.0.0.1:5000/journeys" in result.stdout
    before = message_count(db)

    simulated = campaigns(
        db, "simulate", "low_touch_nps", "--days", "3", "--start", "2026-11-24T00:00"
    )
    assert simulated.returncode == 0, simulated.stderr
    assert "nothing is sent or written" in simulated.stdout
    assert (
        re.search(r"ask_nps \(email\)\s+\d+", simulated.stdout)
        or "nobody would get anything" in simulated.stdout
    )
    assert message_count(db) == before
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == sent

    unknown = campaigns(db, "simulate", "low_touch_nsp")
    assert unknown.returncode == 2 and "did you mean 'low_touch_nps'?" in unknown.stderr

    ticked = campaigns(db, "tick")
    assert ticked.returncode == 0, ticked.stderr
    assert re.search(r"ran \d+ due enrollments? in \d+ batch", ticked.stdout)


def test_run_serves_the_web_app_and_stops_on_ctrl_c(tmp_path):
    import signal
    import time
    import urllib.request

    from conftest import free_port

    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SECRET_KEY")}
    environ.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'run.db'}", MAIL_URL=f"file://{tmp_path / 'outbox'}"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "campaigns", "run", "--port", str(port), "--interval", "1"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz", timeout=2
                ) as response:
                    body = response.read().decode()
                    break
            except OSError:
                time.sleep(0.1)
        assert '"status":"ok"' in body.replace(" ", "")
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "web on http://127.0.0.1:" in out and "stopping" in out
    assert "Traceback" not in err


def test_demo_serve_prints_the_address_and_a_sign_in_kept_in_the_instance_folder(tmp_path):
    import signal
    import urllib.parse
    import urllib.request
    from http.cookiejar import CookieJar

    from conftest import free_port

    port = free_port()
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "SECRET_KEY", "CAMPAIGNS_INSTANCE")
    }
    environ.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}", MAIL_URL=f"file://{tmp_path / 'outbox'}"
    )

    def serve() -> tuple[str, str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "campaigns",
                "demo",
                "--weeks",
                "0",
                "--serve",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            lines = []
            for line in process.stdout:
                lines.append(line)
                if line.startswith("campaigns running: web on"):
                    break
            out = "".join(lines)
            assert f"Dashboard: http://127.0.0.1:{port}/journeys" in out, out
            signed = re.search(r"Sign in as demo@example.com with the password (\S+)", out)
            assert signed, out
            password = signed.group(1)
            jar = CookieJar()
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            page = opener.open(f"http://127.0.0.1:{port}/login", timeout=5).read().decode()
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            form = {"email": "demo@example.com", "password": password, "next": "/journeys"}
            if csrf:
                form["csrf"] = csrf.group(1)
            landed = opener.open(
                f"http://127.0.0.1:{port}/login",
                data=urllib.parse.urlencode(form).encode(),
                timeout=10,
            )
            assert landed.status == 200 and urllib.parse.urlsplit(landed.url).path == "/journeys"
            return password, out
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)

    first, _ = serve()
    kept = tmp_path / "instance" / "demo-password"
    assert kept.read_text().strip() == first and kept.stat().st_mode & 0o777 == 0o600
    second, _ = serve()
    assert second == first
