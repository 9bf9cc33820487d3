"""The report page: a contact sheet of a run's outputs, rendered from report files on disk.

The JSON report stays the source of truth; the page is derived from it (and from the files it
names), so `stylepipe report DIR` can rebuild it at any time — after several sharded runs into
one folder it shows them all. Everything user-supplied (file names, error messages) goes
through Jinja2's autoescaping, and the page runs no script at all.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from ..core.errors import ConfigError
from ..io.atomic import write_text_atomic
from ..plan.outputs import STATE_DIR
from ..plan.resume import read_sidecar
from .curves import Curve, loss_curves
from .thumbnails import Thumb, ensure_thumbnail, prune_thumbnails

PAGE_NAME = "report.html"
_SHARD_REPORTS = "report.shard-*-of-*.json"
_STATUS_ORDER = ("done", "skipped", "failed", "remaining")


def _display_name(content: str) -> str:
    """A content photo's file name; palette runs have none."""
    return Path(content).name if content != "-" else "(no content photo)"


@dataclass(frozen=True)
class PageImage:
    """A picture the page links to: its full-size address and its thumbnail, if one could be made."""

    href: str | None
    thumb: str | None = None
    width: int = 0
    height: int = 0


@dataclass
class Header:
    """A row (content photo) or column (style) heading."""

    name: str
    title: str
    picture: PageImage


@dataclass
class Cell:
    """One job: its status, its output (or the reason it has none) and its numbers."""

    job: int
    status: str
    content: str
    style: str
    picture: PageImage
    error: str | None = None
    seconds: float | None = None
    steps: int = 0
    loss: dict[str, float] = field(default_factory=dict)
    curves: list[Curve] = field(default_factory=list)

    @property
    def content_name(self) -> str:
        return _display_name(self.content)

    @property
    def reason(self) -> str | None:
        """The error with the content photo's folder left out: the cell is narrow, the cause matters."""
        if not self.error or self.content == "-":
            return self.error
        return self.error.replace(self.content, self.content_name)


@dataclass
class Summary:
    """The runs behind the page, added up."""

    counts: dict[str, int]
    jobs: int
    seconds: float
    stages: dict[str, float]  # seconds per stage (load, targets, optimise, save), over every run
    runs: int
    devices: list[str]
    networks: list[str]
    settings: dict[str, Any]
    targets_computed: int
    targets_cached: int
    stopped: list[str]
    warnings: list[str]
    pipelines: list[str]
    version: str
    generated: str


@dataclass
class Sheet:
    """Everything the template shows: headers, the grid of cells by row, the failures, the summary."""

    columns: list[Header]
    rows: list[tuple[Header, list[Cell | None]]]
    failures: list[Cell]
    summary: Summary
    thumbs: frozenset[Path] = frozenset()  # the thumbnails it shows: the others in the folder are stale


# --- reading reports ------------------------------------------------------------------------------


def report_files(out_dir: Path) -> list[Path]:
    """The folder's run reports (the plain one and every shard's), oldest first."""
    found = [path for path in [out_dir / "report.json", *out_dir.glob(_SHARD_REPORTS)] if path.is_file()]
    return sorted(found, key=lambda path: path.stat().st_mtime_ns)


def read_report(path: Path) -> dict[str, Any]:
    """One report file; a damaged one is an error naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable stylepipe report ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise ConfigError(f"{path}: not a stylepipe report (no items)")
    return data


def merge_items(reports: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per job (content × style): the newest report wins, but `skipped` never hides a real outcome."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for report in reports:  # oldest first: later reports overwrite
        for left in report.get("remaining") or []:
            merged.setdefault((left.get("content") or "-", left.get("style") or "-"), {**left, "status": "remaining", "job": -1})
        for item in report["items"]:
            key = (item.get("content") or "-", item.get("style") or "-")
            previous = merged.get(key)
            if item["status"] == "skipped" and previous and previous["status"] in ("done", "failed"):
                continue  # skipped means done earlier: keep the earlier run's numbers
            merged[key] = item
    return list(merged.values())


# --- building the sheet ---------------------------------------------------------------------------


class _Links:
    """Relative, URL-quoted addresses from the page's folder, and thumbnails made once each."""

    def __init__(self, page_dir: Path, state_dir: Path) -> None:
        self.page_dir = page_dir
        self.state_dir = state_dir
        self.used: set[Path] = set()

    def href(self, path: Path) -> str:
        try:
            relative = os.path.relpath(path, self.page_dir)
        except ValueError:  # another drive (Windows): an absolute file URL
            return path.resolve().as_uri()
        return urllib.parse.quote(Path(relative).as_posix())

    def picture(self, path: str | None) -> PageImage:
        if not path or path == "-":
            return PageImage(None)
        source = Path(path)
        thumb: Thumb | None = ensure_thumbnail(self.state_dir, source)
        if thumb is None:
            return PageImage(self.href(source) if source.is_file() else None)
        self.used.add(thumb.path)
        return PageImage(self.href(source), self.href(thumb.path), thumb.width, thumb.height)


def locate_output(output: str, out_dir: Path) -> str:
    """An output where the report says, or at the same place inside a folder that was moved or copied."""
    path = Path(output)
    if path.exists():
        return output
    parts = path.parts
    for start in range(1, len(parts)):  # the longest tail first, down to the bare name
        candidate = out_dir.joinpath(*parts[start:])
        if candidate.is_file():
            return str(candidate)
    return output


def _cell(item: Mapping[str, Any], links: _Links, out_dir: Path) -> Cell:
    status = item.get("status", "failed")
    loss, history = item.get("loss"), item.get("history")
    output = locate_output(item["output"], out_dir) if status in ("done", "skipped") and item.get("output") else None
    if status == "skipped" and output:
        recorded = read_sidecar(out_dir, Path(output)) or {}
        loss, history = loss or recorded.get("loss"), history or recorded.get("history")
    return Cell(
        job=int(item.get("job", -1)),
        status=status,
        content=item.get("content") or "-",  # null: a palette or a style reconstruction has no photo
        style=item.get("style") or "-",
        picture=links.picture(output),
        error=item.get("error"),
        seconds=item.get("seconds") if status == "done" else None,
        steps=int(item.get("steps") or 0),
        loss={k: v for k, v in (loss or {}).items() if isinstance(v, (int, float))},
        curves=loss_curves(history),
    )


def _summary(reports: list[dict[str, Any]], cells: list[Cell]) -> Summary:
    counts = {status: sum(1 for c in cells if c.status == status) for status in _STATUS_ORDER}
    newest = reports[-1] if reports else {}
    settings = dict(newest.get("settings") or {})
    return Summary(
        counts=counts,
        jobs=len(cells),
        seconds=sum(float((r.get("summary") or {}).get("seconds", 0.0)) for r in reports),
        stages=_stage_totals(reports),
        runs=len(reports),
        devices=sorted({str(r.get("device")) for r in reports if r.get("device")}),
        networks=sorted({str(r.get("network")) for r in reports if r.get("network")}),
        settings=settings,
        targets_computed=sum(int((r.get("style_targets") or {}).get("computed", 0)) for r in reports),
        targets_cached=sum(int((r.get("style_targets") or {}).get("cache_hits", 0)) for r in reports),
        stopped=[str(r["stopped"]) for r in reports if r.get("stopped")],
        warnings=list(dict.fromkeys(str(w) for r in reports for w in r.get("warnings") or [])),
        pipelines=list(dict.fromkeys(str(r.get("pipeline")) for r in reports if r.get("pipeline"))),
        version=str(newest.get("stylepipe", "")),
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _stage_totals(reports: list[dict[str, Any]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for report in reports:
        for stage, seconds in ((report.get("summary") or {}).get("stages") or {}).items():
            totals[stage] = totals.get(stage, 0.0) + float(seconds)
    return totals


def build_sheet(reports: list[dict[str, Any]], page_dir: Path, out_dir: Path) -> Sheet:
    """Rows by content photo, columns by style, in job order; thumbnails made where missing."""
    links = _Links(page_dir, out_dir / STATE_DIR)
    cells = [_cell(item, links, out_dir) for item in merge_items(reports)]
    cells.sort(key=lambda c: (c.job < 0, c.job))
    style_files: dict[str, list[str]] = {}
    for report in reports:
        style_files.update(report.get("styles") or {})
    contents = list(dict.fromkeys(c.content for c in cells))
    styles = list(dict.fromkeys(c.style for c in cells))
    grid = {(c.content, c.style): c for c in cells}
    columns = [Header(style, ", ".join(style_files.get(style, [])) or style,
                      links.picture(style_files[style][0] if style_files.get(style) else None)) for style in styles]
    rows = [(Header(_display_name(content), content, links.picture(content)),
             [grid.get((content, style)) for style in styles]) for content in contents]
    failures = [c for c in cells if c.status == "failed"]
    return Sheet(columns, rows, failures, _summary(reports, cells), frozenset(links.used))


# --- rendering --------------------------------------------------------------------------------------


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else ""


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("stylepipe.report", "templates"),
    autoescape=True,  # every file name and message is escaped, in text and in attributes
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["num"] = _number


def render_page(sheet: Sheet) -> str:
    """The page's HTML: one self-contained file, no scripts, no network."""
    return _ENV.get_template("report.html.j2").render(sheet=sheet, summary=sheet.summary)


def write_page(report_paths: list[Path], page: Path, out_dir: Path, *, prune: bool = False) -> Path:
    """Render the reports into `page` (written atomically); thumbnails go under out_dir's state folder.
    With `prune` (the page of every report in the folder), thumbnails that it does not show are removed."""
    reports = [read_report(path) for path in report_paths]
    sheet = build_sheet(reports, page.parent, out_dir)
    write_text_atomic(render_page(sheet), page)
    if prune:
        prune_thumbnails(out_dir / STATE_DIR, sheet.thumbs)
    return page


def page_for_folder(out_dir: Path) -> Path:
    """`<out_dir>/report.html` from every run report in the folder."""
    paths = report_files(out_dir)
    if not paths:
        raise ConfigError(f"{out_dir}: no report.json here; run `stylepipe run` into this folder first")
    return write_page(paths, out_dir / PAGE_NAME, out_dir, prune=True)


def page_for_report(report_path: Path, out_dir: Path) -> Path:
    """The page beside a report written elsewhere (`--report FILE` → FILE with .html)."""
    return write_page([report_path], report_path.with_suffix(".html"), out_dir)
