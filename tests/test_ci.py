"""What ``make test`` needs on a fresh machine, and how it gets it: ``.ci/services`` (which
``make test`` and ``.ci/run`` both run first) installs what is missing when it can, and
otherwise says in one line what to install; the README says what the tests need."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / ".ci" / "services"
PACKAGES = ["redis-server", "postgresql", "make", "chromium", "chromium-driver", "spamassassin"]


def fake_machine(tmp_path: Path, uid: int, apt_get: str | None = None) -> Path:
    """A PATH with a shell and a few tools but none of the services, the browser or its
    driver: a fresh machine. ``id -u`` says ``uid``; ``apt-get`` is the script given."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("bash", "mktemp", "grep", "tail", "rm", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_ / tool).symlink_to(found)
    (bin_ / "id").write_text(f"#!/bin/sh\necho {uid}\n", encoding="utf-8")
    (bin_ / "id").chmod(0o755)
    if apt_get is not None:
        (bin_ / "apt-get").write_text(f"#!/bin/sh\n{apt_get}\n", encoding="utf-8")
        (bin_ / "apt-get").chmod(0o755)
    return bin_


def services(bin_: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_ / "bash"), str(SERVICES)],
        env={"PATH": str(bin_), "HOME": str(bin_.parent), "CI_ROOT": str(bin_.parent), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=bin_.parent,
    )


def test_services_names_what_to_install_in_one_line_when_it_may_not(tmp_path):
    done = services(fake_machine(tmp_path, uid=1000))
    assert done.returncode == 2 and done.stdout == ""
    wanted = " ".join(PACKAGES)
    assert done.stderr == f"the tests need: {wanted} (install them: apt-get install {wanted})\n"


def test_services_says_in_one_line_when_apt_get_fails(tmp_path):
    apt_get = (
        'echo "Reading package lists..."; echo "Building dependency tree..."; '
        'echo "E: Unable to locate package chromium-driver" >&2; exit 100'
    )
    done = services(fake_machine(tmp_path, uid=0, apt_get=apt_get))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == f"installing {' '.join(PACKAGES)} (apt-get)"
    assert lines[1:] == [
        f"the tests need: {' '.join(PACKAGES)} (apt-get install failed:"
        " E: Unable to locate package chromium-driver)"
    ]


def test_services_looks_for_the_browser_and_spamassassin_where_the_tests_do():
    from tests.browser import CHROMEDRIVER, CHROMIUM

    script = SERVICES.read_text(encoding="utf-8")
    assert f'[ -x "${{CI_ROOT:-}}{CHROMIUM}" ] || need_apt+=(chromium)' in script
    assert f'[ -x "${{CI_ROOT:-}}{CHROMEDRIVER}" ] || need_apt+=(chromium-driver)' in script
    assert '[ -x "${CI_ROOT:-}/usr/bin/spamassassin" ] || need_apt+=(spamassassin)' in script


def test_services_can_be_skipped(tmp_path):
    done = services(fake_machine(tmp_path, uid=1000), TEST_SERVICES="skip")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_make_test_and_ci_run_bring_the_services_up_first():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "no test target"
    steps = [line.strip() for line in recipe.group(1).splitlines()]
    assert steps[0] == ".ci/services" and "pytest" in steps[-1]
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert run.index("\n.ci/services\n") < run.index("\nmake test")
    assert os.access(SERVICES, os.X_OK) and os.access(ROOT / ".ci" / "run", os.X_OK)


@pytest.mark.parametrize("package", PACKAGES[:2] + PACKAGES[3:])
def test_the_readme_says_what_the_tests_need(package):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("`make test` runs pytest", 1)[1].split("\n## ", 1)[0]
    assert package in section
