"""The package's shape holds: one layers contract covering every module, no import cycles, one
file name per module, small modules, and only the faces directly in `stylepipe/`. Each check is
also shown to fail on a copy of the package with the fault added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "stylepipe"
LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
CYCLES = [sys.executable, str(ROOT / "tests" / "import_cycles.py"), "stylepipe"]
MAX_LINES = 400
#: the faces, and the two documented import paths kept as re-export shims (docs/plugins.md)
TOP_LEVEL = {"__init__.py", "__main__.py", "api.py", "ray_data.py", "losses.py", "registry.py"}


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run([*LINT, str(cwd / "pyproject.toml"), "--no-cache"], cwd)


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "stylepipe", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(root: Path, module: str, line: str) -> None:
    target = root / "stylepipe" / module
    target.write_text(target.read_text(encoding="utf-8") + "\n" + line + "\n", encoding="utf-8")


def _modules(package: Path = PACKAGE) -> list[str]:
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _file_names(package: Path) -> list[str]:
    return [path.name for path in package.rglob("*.py") if path.name != "__init__.py"]


def _long_modules(package: Path) -> dict[str, int]:
    lengths = {str(path.relative_to(package)): len(path.read_text(encoding="utf-8").splitlines())
               for path in package.rglob("*.py")}
    return {name: length for name, length in lengths.items() if length > MAX_LINES}


def _duplicates(names: list[str]) -> set[str]:
    return {name for name in names if names.count(name) > 1}


def test_the_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_every_module_is_in_a_layer() -> None:
    layers = [name.strip() for line in _contracts()["layers"]["layers"] for name in line.split("|")]
    outside = [module for module in _modules() if module != "stylepipe"
               and not any(module == f"stylepipe.{layer}" or module.startswith(f"stylepipe.{layer}.") for layer in layers)]
    assert outside == [], "add these modules' folders to the layers contract in pyproject.toml"


def test_the_core_and_io_keep_off_the_pipeline_libraries() -> None:
    contracts = _contracts()
    assert {"pydantic", "PIL", "yaml", "diskcache"} <= set(contracts["core"]["forbidden_modules"])
    assert {"pydantic", "yaml", "diskcache"} <= set(contracts["io"]["forbidden_modules"])


@pytest.mark.parametrize(("module", "line"), [
    ("core/geometry.py", "from ..config.schema import PipelineConfig  # noqa"),  # up three layers
    ("core/loss_fns.py", "import PIL.Image  # noqa"),  # an outside library the core keeps off
    ("io/hashing.py", "from ..targets.cache import TargetCache  # noqa"),
    ("plan/jobs.py", "from ..running.events import RunEvents  # noqa"),  # planning may not reach up to running
])
def test_a_forbidden_import_breaks_the_suite(tmp_path: Path, module: str, line: str) -> None:
    root = _copy(tmp_path)
    _append(root, module, line)
    result = _lint(root)
    assert result.returncode != 0
    offender = "stylepipe." + module.removesuffix(".py").replace("/", ".")
    assert "BROKEN" in result.stdout and f"{offender} -> " in result.stdout, result.stdout


def test_the_import_graph_has_no_cycles() -> None:
    result = _run(CYCLES, ROOT)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_an_import_loop_is_found(tmp_path: Path) -> None:
    """Two modules of one layer importing each other pass the layers contract; the cycle test fails."""
    root = _copy(tmp_path)
    _append(root, "core/geometry.py", "from . import device  # noqa")
    _append(root, "core/device.py", "from . import geometry  # noqa")
    assert _lint(root).returncode == 0, "the layers contract alone does not see a loop inside a layer"
    result = _run(CYCLES, root)
    assert result.returncode == 1
    assert result.stdout.split() == ["stylepipe.core.device", "stylepipe.core.geometry"], result.stdout


def test_no_two_modules_share_a_file_name() -> None:
    assert _duplicates(_file_names(PACKAGE)) == set()


def test_a_shared_file_name_is_found(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "stylepipe" / "running" / "hashing.py").write_text('"""A twin of io/hashing.py."""\n', encoding="utf-8")
    assert _duplicates(_file_names(root / "stylepipe")) == {"hashing.py"}


def test_no_module_is_long() -> None:
    assert _long_modules(PACKAGE) == {}, f"split these modules (at most {MAX_LINES} lines each)"


def test_a_long_module_is_found(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _append(root, "core/geometry.py", "\n" * MAX_LINES)
    assert list(_long_modules(root / "stylepipe")) == ["core/geometry.py"]


def test_only_the_faces_sit_at_the_top() -> None:
    top = {path.name for path in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL and len(top) <= 6, f"move {sorted(top - TOP_LEVEL)} into a layer's folder"
