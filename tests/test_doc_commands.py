"""Every command line that README.md and docs/ show is run, on a copy of the project at a tiny size.

The extractor is generic, so commands added to the docs later are picked up without editing this
file: shell blocks (```bash, ```sh, ```console and plain ``` blocks, for lines that start with a
known program), `$ ` lines of ```text transcripts, the command of a ```cron line, `ExecStart=` of
```ini units, strings of ```yaml manifests that call stylepipe, and inline `stylepipe …` / `make …`
spans in the prose (synopses with [OPTIONS] or PLACEHOLDERS are not commands). A command that cannot
run here must be in SKIP with its reason; every SKIP entry must still match a documented command.

Each `stylepipe` runs through a shim that appends `--set size.max_side=32 --set optimize.steps=2`
and one content photo to the commands that read a pipeline (later `--set`s win), so the
documented options are all exercised while the work stays tiny. Paths of the examples' machines (/srv/stylepipe, /data,
/var/log, /cache) point into the copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SMALL = ["--set", "size.max_side=32", "--set", "optimize.steps=2", "--set", "content=samples/content/chelsea.jpg"]
PROGRAMS = {"stylepipe", "make", "python", "python3", "pip", "ray", "nvidia-smi", "srun", "jq"}

#: command pattern (regex, searched) → why it cannot run in CI
SKIP = {
    r"^make test\b": "runs this test suite itself",
    r"\bpip install\b": "installs packages from the network",
    r"^python3 -m venv\b": "creates a virtualenv for a benchmark peer (network installs follow)",
    r"\bbenchmarks[./]": "a benchmark: minutes to hours by design; results are in docs/benchmarks.md",
    r"converge\.py": "measures 500-step loss curves of eleven reconstructions (half an hour on two CPU cores); results in the README",
    r"^ray start\b": "starts a node of a Ray cluster",
    r"ray\.address=auto": "needs a running Ray cluster",
    r"^nvidia-smi\b": "needs an NVIDIA GPU",
    r"^srun\b": "needs Slurm (the same command without srun is run from docs/scheduling.md's cron line)",
}


@dataclass(frozen=True)
class Command:
    text: str
    where: str  # file:line of its first appearance


def _joined(lines: list[str]) -> list[tuple[int, str]]:
    """Lines with `\\` continuations joined, each with its offset in the block."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for i, line in enumerate(lines):
        if not pending:
            start = i
        if line.rstrip().endswith("\\"):
            pending += line.strip()[:-1].strip() + " "
            continue
        out.append((start, pending + (line.strip() if pending else line)))
        pending = ""
    return out


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` outside quotes, after a blank)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip()
    return line.strip()


def _program(command: str) -> str:
    words = command.split()
    while words and re.fullmatch(r"\w+=\S*", words[0]):
        words = words[1:]
    return Path(words[0]).name if words and not words[0].endswith("/") else ""


def _commands_in_block(language: str, body: str) -> list[tuple[int, str]]:
    lines = body.splitlines()
    found: list[tuple[int, str]] = []
    if language in ("", "bash", "sh", "shell", "console", "text"):
        for offset, line in _joined(lines):
            text = line.strip()
            if language in ("text", "console") and not text.startswith("$ "):
                continue  # a transcript's output
            text = _strip_comment(text.removeprefix("$ "))
            if not text or (language == "" and _program(text) not in PROGRAMS):
                continue  # a diagram or a file listing, not a command
            found.append((offset, text))
    elif language == "cron":
        for offset, line in enumerate(lines):
            if line.strip() and not line.startswith("#"):
                found.append((offset, line.split(None, 5)[5]))
    elif language == "ini":
        for offset, line in enumerate(lines):
            if line.startswith("ExecStart="):
                found.append((offset, line.removeprefix("ExecStart=")))
    elif language == "yaml":
        for document in yaml.safe_load_all(body):
            for value in _strings(document):
                if re.match(r"(\S*/)?stylepipe \w", value):
                    found.append((next((i for i, l in enumerate(lines) if value[:30] in l), 0), value))
    return found


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _is_synopsis(span: str) -> bool:
    return "[" in span or "…" in span or re.search(r"\b[A-Z]{2,}\b", span) is not None


def extract(paths: list[Path] = DOCS, root: Path = ROOT) -> list[Command]:
    """Every distinct command line in the given Markdown files, in order of first appearance."""
    commands: dict[str, Command] = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(root)
        for match in re.finditer(r"^( *)```(\w*)\n(.*?)^ *```", text, flags=re.S | re.M):
            first = text.count("\n", 0, match.start(3)) + 1
            for offset, command in _commands_in_block(match[2], match[3]):
                commands.setdefault(command, Command(command, f"{name}:{first + offset}"))
        prose = re.sub(r"^ *```.*?^ *```", lambda m: "\n" * m[0].count("\n"), text, flags=re.S | re.M)
        for match in re.finditer(r"`([^`\n]+)`", prose):
            span = match[1].strip()
            if re.match(r"(\.venv/bin/)?stylepipe \w|make \w", span) and not _is_synopsis(span):
                commands.setdefault(span, Command(span, f"{name}:{prose.count(chr(10), 0, match.start()) + 1}"))
    return list(commands.values())


def skip_reason(command: str) -> str | None:
    return next((reason for pattern, reason in SKIP.items() if re.search(pattern, command)), None)


COMMANDS = extract()


# --- the extractor itself ------------------------------------------------------------------------------


def test_extractor_finds_commands_of_every_kind(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Run `stylepipe validate x.yaml`; the synopsis `stylepipe run PIPELINE [--force]` is not a command.\n"
        "```\nmake run    # comment\nsrc/    a folder listing\n```\n"
        "```bash\n.venv/bin/stylepipe run p.yaml \\\n    --json | jq .summary\n```\n"
        "```text\n$ stylepipe plugins list p.yaml\nkind  name\n```\n"
        "```cron\n0 1 * * * cd /srv/x && stylepipe run p.yaml\n```\n"
        "```ini\n[Service]\nExecStart=/x/stylepipe run p.yaml\n```\n"
        "```yaml\nspec: {command: [sh, -c, 'stylepipe run /data/p.yaml --shard 0/4']}\n```\n", encoding="utf-8")
    found = [c.text for c in extract([doc], root=tmp_path)]
    assert found == ["make run", ".venv/bin/stylepipe run p.yaml --json | jq .summary", "stylepipe plugins list p.yaml",
                     "cd /srv/x && stylepipe run p.yaml", "/x/stylepipe run p.yaml",
                     "stylepipe run /data/p.yaml --shard 0/4", "stylepipe validate x.yaml"]


def test_every_skip_entry_still_matches_a_documented_command() -> None:
    for pattern in SKIP:
        assert any(re.search(pattern, c.text) for c in COMMANDS), f"stale SKIP entry {pattern!r}"


def test_the_docs_show_commands_to_run() -> None:
    runnable = [c for c in COMMANDS if skip_reason(c.text) is None]
    assert len(runnable) >= 15


# --- running them ----------------------------------------------------------------------------------


SHIM = '''#!{python}
"""stylepipe at a tiny size: the documented options, then --set overrides that make it fast."""
import sys
from stylepipe.cli import main
READS_A_PIPELINE = {{"run", "validate", "plan", "info", "check", "clear", "list"}}
if READS_A_PIPELINE & set(sys.argv[1:]) and "--help" not in sys.argv:
    sys.argv += {small!r}
main()
'''


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of the project's runnable parts: pipelines, pictures, plugins, docs, Makefile."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("samples", "plugins", "docs"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.jpg.json"))
    for name in ("pipeline.yaml", "Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    (root / "cache").mkdir()
    (root / "log").mkdir()
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "stylepipe"
    shim.write_text(SHIM.format(python=sys.executable, small=SMALL))
    shim.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    (root / ".venv" / ".stamp-install").touch()  # newer than pyproject.toml: make skips the install
    return root


def _localised(command: str, root: Path) -> str:
    """The examples' machine paths, pointed into the copy."""
    for remote, local in (("/srv/stylepipe", root), ("/var/log", root / "log"), ("/data", root), ("/cache", root / "cache")):
        command = re.sub(rf"(?<![\w/.]){re.escape(remote)}(?=/|\b)", str(local), command)
    return command


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_runs(command: Command, project: Path) -> None:
    reason = skip_reason(command.text)
    if reason:
        pytest.skip(reason)
    if "| jq" in command.text and shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    env = {**os.environ, "PATH": f"{project / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "JOB_COMPLETION_INDEX": "0", "SLURM_ARRAY_TASK_ID": "0", "COLUMNS": "200"}
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", _localised(command.text, project)], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{command.where}: {command.text}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
