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
    return subprocess.run([sys.executable, "-m", "campaigns", "demo", "--date", "2026-11-23"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_demo_seeds_tiers_and_deploys_every_playbook_and_can_run_again(tmp_path):
    first = demo(tmp_path / "demo.db")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert re.search(r"imported accounts: \d+ new, 0 updated, 0 skipped", out)
    assert re.search(r"imported contacts: \d+ new, 0 updated, 0 skipped", out)
    for tier in ("high_touch", "low_touch", "tech_touch"):
        row = re.search(rf"^{tier}\s+(\d+)\s+(\d+)", out, re.M)
        assert row and int(row.group(1)) > 0 and int(row.group(2)) > 0, (tier, out)
    journeys = sorted(p.stem for p in (ROOT / "journeys").glob("*.yaml") if p.stem != "segments")
    for key in journeys:
        assert re.search(rf"^{key}\s+v1\s", out, re.M), (key, out)
    assert "Traceback" not in first.stderr

    second = demo(tmp_path / "demo.db")
    assert second.returncode == 0, second.stderr
    assert re.search(r"imported accounts: 0 new, \d+ updated, 0 skipped", second.stdout)
    for key in journeys:
        assert re.search(rf"^{key}\s+v1\s", second.stdout, re.M)
