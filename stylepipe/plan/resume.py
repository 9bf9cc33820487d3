"""The resume protocol in one place: what an output's fingerprint covers, where its sidecar lives,
and when an output counts as done.

Every finished output has a sidecar, `<out>/.stylepipe/<name>.json`, written after the picture
(both atomically) and holding the job's fingerprint: a sha256 over the input bytes, the style's
fingerprint, every setting that changes pixels, the terms with all their parameters and the
network's weights. A later run skips a job only when its output exists and the sidecar holds
the same fingerprint, so a changed photo, setting or algorithm redoes exactly the outputs it
changes. `ALGORITHM_VERSION` is part of every fingerprint: bump it when the optimiser or a term
changes pictures for the same settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io.atomic import write_json_atomic
from ..io.hashing import sha256_json
from .outputs import STATE_DIR

if TYPE_CHECKING:
    from ..core.target_fns import StyleSizing
    from ..extend.sources import StyleSource
    from ..extend.terms import LossTerm
    from .run_settings import RunSettings

ALGORITHM_VERSION = 2  # 2: the paper's summed style term, projected and trust-region L-BFGS steps
#: The run settings that change a picture: every one is in each output's fingerprint, so changing
#: it redoes the outputs. (The network's weights and an init picture count by their bytes' hash.)
PICTURE_SETTINGS = (
    "mode", "size_max_side", "size_max_pixels", "optimize", "pyramid", "precision", "init", "noise", "seed",
    "preserve_colors", "output_format", "output_quality", "max_input_pixels", "network", "pooling", "keep_metadata",
    "output_bit_depth", "output_dpi", "levels",
)
#: Settings that change where, how fast and in what pieces a job runs, never what its output should be
#: (tiles give the whole picture's gradient, so tiled and untiled outputs agree to float tolerance).
NOT_PICTURE_SETTINGS = ("device", "network_weights", "init_path", "batch_size", "tile", "max_memory_mb", "compile",
                        "precision_reason")
#: Settings added after outputs existed, left out of the hash where they make what the older
#: version made: upgrading then redoes no finished picture, while setting one (16 bits, a dpi,
#: levels above the composition) redoes every output it changes.
_ADDED_LATER: dict[str, Callable[[Any], bool]] = {
    "output_bit_depth": lambda value: value == 8,
    "output_dpi": lambda value: value is None,
    "levels": lambda value: len(value) <= 1,  # one level at the output size: 1.2's single scale
}


def sidecar_path(out_dir: Path, output: Path) -> Path:
    """Where the hash of what made an output lives: `<out>/.stylepipe/<name>.json`."""
    return out_dir.resolve() / STATE_DIR / (str(Path(output).resolve().relative_to(out_dir.resolve())) + ".json")


def read_sidecar(out_dir: Path, output: Path) -> dict[str, Any] | None:
    """What the sidecar of an output recorded (its fingerprint, losses, curve), if it is readable."""
    try:  # ValueError: not JSON, or an output outside out_dir
        recorded = json.loads(sidecar_path(out_dir, output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def write_sidecar(out_dir: Path, output: Path, record: dict[str, Any]) -> None:
    """Record what made an output, after the output itself is in place."""
    write_json_atomic(record, sidecar_path(out_dir, output))


def is_done(out_dir: Path, output: Path, fingerprint: str | None) -> bool:
    """An output counts as done when it exists and its sidecar holds this job's fingerprint."""
    if fingerprint is None or not output.is_file():
        return False
    recorded = read_sidecar(out_dir, output)
    return recorded is not None and recorded.get("fingerprint") == fingerprint


def undeclared_settings(settings_type: type) -> set[str]:
    """Fields of a settings dataclass that are in neither list: the fingerprint must not guess."""
    return {field.name for field in fields(settings_type)} - set(PICTURE_SETTINGS) - set(NOT_PICTURE_SETTINGS)


def settings_digest(settings: RunSettings, terms: list[LossTerm], sizing: StyleSizing, init_sha: str | None) -> dict[str, Any]:
    """The part of a fingerprint that every job of a run shares."""
    missing = undeclared_settings(type(settings))
    if missing:
        raise TypeError(f"declare {sorted(missing)} in PICTURE_SETTINGS or NOT_PICTURE_SETTINGS (stylepipe.plan.resume)")
    data = {name: value for name, value in asdict(settings).items() if name in PICTURE_SETTINGS}
    for key, as_before in _ADDED_LATER.items():
        if as_before(data[key]):
            del data[key]
    return {
        "algorithm": ALGORITHM_VERSION,
        "settings": json.loads(json.dumps(data, default=str)),
        # every parameter counts here (layer weights change pixels), unlike in the cache key
        "terms": [dict(term.fingerprint(), weight=term.weight, params=term.params.model_dump(mode="json")) for term in terms],
        "sizing": asdict(sizing),
        "init_sha": init_sha,
    }


def job_fingerprint(content_sha: str | None, style: StyleSource | None, digest: dict[str, Any], weights_id: str,
                    sweep: dict[str, Any] | None = None) -> str:
    """Hash of everything that made an output: inputs' bytes, style, settings, network (and
    in reconstruct mode the layers it was rebuilt from)."""
    payload = {
        "content": content_sha,
        "style": style.fingerprint() if style else None,
        "settings": digest,
        "weights": weights_id,
    }
    if sweep is not None:
        payload["sweep"] = sweep
    return sha256_json(payload)
