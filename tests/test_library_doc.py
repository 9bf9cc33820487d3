"""Every Python example of docs/library.md runs, as written, in a folder with photos/ and
painting.jpg, at 32 px and 2 steps (its `max_side=` and `steps=` are rewritten, as
tests/test_doc_commands.py shrinks the shell commands), each in a fresh process.

A new example needs an entry in OUTPUTS: what it must leave behind, so that an example that
runs but makes nothing still fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import CONTENT, ROOT, sample

DOC = ROOT / "docs" / "library.md"
SIZES = re.compile(r"""(\b(?:max_side|steps)["']?\s*[=:]\s*)\d+""")

#: a phrase of the example → the folder of pictures it must write (3 photos each)
OUTPUTS = {
    "stylizer.stylize(photos, style)": "styled",
    "stylepipe.run(": "styled-run",
    "StylizeBatch": "styled-ray",
    "DataLoader(": "styled-loader",
}


def examples() -> list[tuple[int, str]]:
    text = DOC.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m[1]) for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)]


def small(code: str) -> str:
    shrunk, count = re.subn(SIZES, lambda m: m[1] + ("32" if "max_side" in m[1] else "2"), code)
    assert count >= 2, "an example without max_side= and steps= would run at full size"
    return shrunk


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "photos").mkdir()
    for path in CONTENT[:3]:
        shutil.copy(path, tmp_path / "photos" / path.name)
    shutil.copy(sample("the_scream"), tmp_path / "painting.jpg")
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"content": ["photos/"], "styles": ["painting.jpg"]}))
    return tmp_path


def run_example(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_DISABLE_USAGE_STATS": "1"}
    proc = subprocess.run([sys.executable, "-c", small(code)], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def pictures(out: Path) -> list[Path]:
    return [path for path in out.glob("*") if path.suffix in (".png", ".jpg")] if out.is_dir() else []


def test_every_example_is_known() -> None:
    found = [code for _, code in examples()]
    assert len(found) == len(OUTPUTS)
    for phrase in OUTPUTS:
        assert sum(phrase in code for code in found) == 1, phrase


@pytest.mark.parametrize(("line", "code"), examples(), ids=[f"library.md:{line}" for line, _ in examples()])
def test_example_runs_and_writes_its_pictures(line: int, code: str, folder: Path) -> None:
    proc = run_example(code, folder)
    (out,) = [name for phrase, name in OUTPUTS.items() if phrase in code]
    assert len(pictures(folder / out)) == 3, (out, sorted(p.name for p in folder.rglob("*")))
    if out == "styled":  # the page says what a second run prints
        assert "targets computed: 1; taken from the cache: False" in proc.stdout
        again = run_example(code, folder)
        assert "targets computed: 0; taken from the cache: True" in again.stdout
    if out == "styled-run":
        assert proc.stdout.startswith("3 done, 0 skipped, 0 failed")
        assert len(pictures(folder / "styled-dict")) == 3
