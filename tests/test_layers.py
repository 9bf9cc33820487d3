"""The layer contracts hold, cover every module, and really fail when the core reaches outside."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parent.parent
LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LINT, str(cwd / "pyproject.toml"), "--no-cache"], cwd=cwd,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)


def _top_level_modules() -> set[str]:
    package = ROOT / "stylepipe"
    names = {path.stem for path in package.glob("*.py") if path.stem not in ("__init__", "__main__")}
    names |= {path.parent.name for path in package.glob("*/__init__.py")}
    return {f"stylepipe.{name}" for name in names}


def test_the_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_every_pipeline_module_is_forbidden_to_the_core_and_to_io() -> None:
    contracts = _contracts()
    pipeline = _top_level_modules() - {"stylepipe.core", "stylepipe.io"}
    assert pipeline <= set(contracts["core"]["forbidden_modules"]), "add new modules to the core contract"
    assert "stylepipe.io" in contracts["core"]["forbidden_modules"]
    assert pipeline <= set(contracts["io"]["forbidden_modules"]), "add new modules to the io contract"
    assert {"pydantic", "PIL"} <= set(contracts["core"]["forbidden_modules"])


@pytest.mark.parametrize(("module", "line"), [
    ("core/geometry.py", "from ..config import PipelineConfig  # noqa"),
    ("core/losses.py", "import PIL.Image  # noqa"),
    ("io/hashing.py", "from ..cache import TargetCache  # noqa"),
])
def test_a_forbidden_import_breaks_the_suite(tmp_path: Path, module: str, line: str) -> None:
    shutil.copytree(ROOT / "stylepipe", tmp_path / "stylepipe", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "stylepipe" / module
    target.write_text(target.read_text(encoding="utf-8") + "\n" + line + "\n", encoding="utf-8")
    result = _lint(tmp_path)
    assert result.returncode != 0
    offender = "stylepipe." + module.removesuffix(".py").replace("/", ".")
    assert "BROKEN" in result.stdout and f"{offender} -> " in result.stdout, result.stdout
