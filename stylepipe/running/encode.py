"""From a painted picture to an output file: encoded as the run's output settings say, its sidecar
written after it, and the painting kept for later re-encodes.

The one place where an output is written, whether it was just painted or is re-encoded from a
kept painting (`output.keep_painting`), so both give the same file for the same settings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from ..core.errors import StylepipeError
from ..core.geometry import resize
from ..io.alpha import ALPHA_FORMATS, FLATTEN_COLOUR, read_alpha
from ..io.atomic import write_json_atomic
from ..io.images import load_image, read_exif, save_image
from ..io.paintings import load_painting, save_painting
from ..plan.jobs import Job
from ..plan.resume import painting_path, write_sidecar
from ..plan.run_settings import RunSettings
from ..report.record import ItemReport, failed_item


def write_output(image: torch.Tensor, job: Job, settings: RunSettings, out_dir: Path, dpi: tuple[int, int] | None,
                 record: dict[str, Any]) -> str | None:
    """Encode `image` (3, H, W) into the job's output (with the photo's alpha where the format holds
    one), keep the painting, then record the sidecar. Returns a note for the report, or None."""
    exif = read_exif(job.content) if settings.keep_metadata and job.content else None
    dpi = (settings.output_dpi, settings.output_dpi) if settings.output_dpi else dpi
    encoded, note = with_alpha(image, job.content, settings.output_format)
    save_image(encoded, job.output, settings.output_format, settings.output_quality, exif,
               bit_depth=settings.output_bit_depth, dpi=dpi)
    if settings.keep_painting and job.painting:
        stored = painting_path(out_dir, job.painting)
        if not stored.is_file():
            save_painting(image, stored)
            write_json_atomic({"loss": record.get("loss"), "history": record.get("history")}, stored.with_suffix(".json"))
    write_sidecar(out_dir, job.output, record | {"fingerprint": job.fingerprint, "painting": job.painting,
                                                  "painting_keys": job.painting_keys})
    return note


def with_alpha(image: torch.Tensor, content: Path | None, output_format: str) -> tuple[torch.Tensor, str | None]:
    """The painted RGB with the content photo's alpha, resized to it, for formats that hold alpha;
    unchanged for the others, with a note that the transparency was flattened."""
    alpha = read_alpha(content) if content else None
    if alpha is None:
        return image, None
    if output_format not in ALPHA_FORMATS:
        return image, (f"the photo's transparency is flattened onto {FLATTEN_COLOUR}: {output_format} has no alpha "
                       f"channel (png, webp and tiff keep it)")
    size = (image.shape[-2], image.shape[-1])
    return torch.cat([image, resize(alpha.expand(3, -1, -1), size)[:1]]), None


def reencode(job: Job, stored: Path, settings: RunSettings, out_dir: Path, reason: str) -> ItemReport:
    """Make a job's output from its kept painting: no optimisation, the losses it was painted with."""
    start = time.perf_counter()
    try:
        image = load_painting(stored)
        dpi = load_image(job.content).dpi if job.content and not settings.output_dpi else None
        try:  # the losses it was painted with, kept beside it (an old or missing record: none)
            painted = json.loads(stored.with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            painted = {}
        painted = painted if isinstance(painted, dict) else {}
        record: dict[str, Any] = {"content": job.content_ref, "style": job.style_ref, "loss": painted.get("loss"),
                                  "history": painted.get("history")}
        note = write_output(image, job, settings, out_dir, dpi, record)
    except (OSError, ValueError, StylepipeError) as exc:  # a kept painting or photo gone unreadable since the plan
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return failed_item(job, f"{job.output}: cannot re-encode from {stored} ({cause})")
    return ItemReport(content=job.content_ref, style=job.style_ref, output=str(job.output), status="done",
                      seconds=round(time.perf_counter() - start, 3), loss=record["loss"], steps=0, job=job.index,
                      history=record["history"], note=note, layers=job.layers, reason=reason, reencoded=True)
