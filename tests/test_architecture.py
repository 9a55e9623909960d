"""The arrows between the parts hold (docs/architecture.md), and the check that holds them
can fail: import-linter's contracts in pyproject.toml, run on the package and on a copy of
it with one forbidden import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the package found in ``project`` with that folder's pyproject."""
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(project / "pyproject.toml"), "--no-cache"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package and its pyproject, to add a bad import to."""
    shutil.copytree(
        ROOT / "campaigns",
        tmp_path / "campaigns",
        ignore=shutil.ignore_patterns("__pycache__", "static", "templates"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, line: str) -> None:
    module.write_text(module.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_package_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_unchanged_copy_keeps_every_contract(copy: Path) -> None:
    result = lint_imports(copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_journey_language_importing_the_store_breaks_the_layers(copy: Path) -> None:
    add_import(copy / "campaigns/journeys/durations.py", "import campaigns.store.models  # bad")
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "campaigns.journeys.durations -> campaigns.store.models" in result.stdout
    assert "BROKEN" in result.stdout


def test_the_journey_language_importing_sqlalchemy_breaks_purity(copy: Path) -> None:
    add_import(copy / "campaigns/journeys/durations.py", "import sqlalchemy  # bad")
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "campaigns.journeys is not allowed to import sqlalchemy" in result.stdout


def test_the_engine_importing_flask_breaks_the_edges_rule(copy: Path) -> None:
    add_import(copy / "campaigns/engine/leases.py", "import flask  # bad")
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "campaigns.engine is not allowed to import flask" in result.stdout


def test_a_cycle_inside_a_part_breaks_the_acyclic_rule(copy: Path) -> None:
    # tracking.hits already imports tracking.classify; the way back closes a circle.
    add_import(copy / "campaigns/tracking/classify.py", "import campaigns.tracking.hits  # bad")
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "No cycles are allowed in campaigns.tracking" in result.stdout


def parts() -> list[str]:
    """The package's parts: its subpackages and its top-level modules."""
    package = ROOT / "campaigns"
    folders = [p.name + "/" for p in package.iterdir() if (p / "__init__.py").exists()]
    modules = [p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    return sorted(folders + modules)


def test_every_part_is_placed_in_docs_architecture_and_the_readme_layout() -> None:
    architecture = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing_doc = [part for part in parts() if part not in architecture]
    missing_readme = [part for part in parts() if part.endswith("/") and part not in layout]
    assert not missing_doc, f"docs/architecture.md does not name {missing_doc}"
    assert not missing_readme, f"the README's Layout does not name {missing_readme}"


def test_docs_architecture_answers_where_to_add_a_channel_a_step_type_and_a_metric() -> None:
    answers = (ROOT / "docs/architecture.md").read_text(encoding="utf-8").split("## Where", 1)[1]
    for question, folder in [
        ("a channel", "campaigns/channels/"),
        ("a step type", "campaigns/engine/steps/"),
        ("a report metric", "campaigns/insight/"),
    ]:
        item = answers.split(f"**{question}**", 1)[1].split("\n- **", 1)[0]
        assert folder in item, f"'where do I add {question}' names no {folder}"
        assert (ROOT / folder).is_dir(), f"{folder} named in docs/architecture.md does not exist"
