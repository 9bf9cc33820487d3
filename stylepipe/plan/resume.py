"""The resume protocol in one place: what an output's fingerprint covers, where its sidecar lives,
and when an output counts as done.

Every finished output has a sidecar, `<out>/.stylepipe/<name>.json`, written after the picture
(both atomically) and holding the job's fingerprint: a sha256 over the input bytes, the style's
fingerprint, every setting that changes pixels, the terms with all their parameters and the
network's weights. A later run skips a job only when its output exists and the sidecar holds
the same fingerprint, so a changed photo, setting or algorithm redoes exactly the outputs it
changes. `ALGORITHM_VERSION` is part of every fingerprint: bump it when the optimiser or a term
changes pictures for the same settings.

A second, narrower hash covers only what paints the picture (`PAINTING_SETTINGS`, not how it is
encoded or named). Each painted picture is kept at 16 bits per channel in
`<out>/.stylepipe/paintings/<painting hash>.png`, so a job whose painting hash has a stored
picture is re-encoded from it instead of optimised again (a change of format, quality, bit depth,
dpi, metadata or name pattern). The sidecar keeps the painting settings, so a repaint can name
the keys that changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..extend.plugins import plugin_code_sha
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
#: The part of PICTURE_SETTINGS that only says how a painted picture is encoded: changing one
#: re-encodes the stored painting instead of repainting (the output's name counts by its path).
OUTPUT_SETTINGS = ("output_format", "output_quality", "keep_metadata", "output_bit_depth", "output_dpi")
#: What changes the painted pixels: a job's painting hash covers these (plus inputs, terms, network).
PAINTING_SETTINGS = tuple(name for name in PICTURE_SETTINGS if name not in OUTPUT_SETTINGS)
#: Settings that change where, how fast and in what pieces a job runs, never what its output should be
#: (tiles give the whole picture's gradient, so tiled and untiled outputs agree to float tolerance).
NOT_PICTURE_SETTINGS = ("device", "network_weights", "init_path", "batch_size", "tile", "max_memory_mb", "compile",
                        "keep_painting", "precision_reason")
#: Where painted pictures are kept at full precision, inside the output folder's state folder.
PAINTINGS_DIR = "paintings"
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


def settings_digest(settings: RunSettings, terms: list[LossTerm], sizing: StyleSizing, init_sha: str | None,
                    keys: tuple[str, ...] = PICTURE_SETTINGS) -> dict[str, Any]:
    """The part of a fingerprint that every job of a run shares (`keys`: PAINTING_SETTINGS for the painting hash)."""
    missing = undeclared_settings(type(settings))
    if missing:
        raise TypeError(f"declare {sorted(missing)} in PICTURE_SETTINGS or NOT_PICTURE_SETTINGS (stylepipe.plan.resume)")
    data = {name: value for name, value in asdict(settings).items() if name in keys}
    for key, as_before in _ADDED_LATER.items():
        if key in data and as_before(data[key]):
            del data[key]
    return {
        "algorithm": ALGORITHM_VERSION,
        "settings": json.loads(json.dumps(data, default=str)),
        # every parameter counts here (layer weights change pixels), unlike in the cache key
        "terms": [_term_entry(term) for term in terms],
        "sizing": sizing.fingerprint(),  # `detail` only where it reaches a picture: see style_sizing
        "init_sha": init_sha,
    }


def _term_entry(term: LossTerm) -> dict[str, Any]:
    """A term in the fingerprint: every parameter, and a folder plugin's file bytes (built-ins: none, as before)."""
    entry = dict(term.fingerprint(), weight=term.weight, params=term.params.model_dump(mode="json"))
    code = plugin_code_sha(term)
    return entry if code is None else entry | {"code": code}


def job_fingerprint(content_sha: str | None, style: StyleSource | None, digest: dict[str, Any], weights_id: str,
                    sweep: dict[str, Any] | None = None) -> str:
    """Hash of everything that made an output: inputs' bytes, style, settings, network (and
    in reconstruct mode the layers it was rebuilt from)."""
    return sha256_json(fingerprint_payload(content_sha, style, digest, weights_id, sweep))


def fingerprint_payload(content_sha: str | None, style: StyleSource | None, digest: dict[str, Any], weights_id: str,
                        sweep: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a fingerprint hashes, as plain JSON values (the painting's is kept in the sidecar to name changes)."""
    payload = {
        "content": content_sha,
        "style": style.fingerprint() if style else None,
        "settings": digest,
        "weights": weights_id,
    }
    if sweep is not None:
        payload["sweep"] = sweep
    style_code = plugin_code_sha(style) if style else None
    if style_code is not None:  # a folder plugin's style source: its file's bytes count
        payload["style_code"] = style_code
    return json.loads(json.dumps(payload, default=str))


def painting_path(out_dir: Path, painting: str) -> Path:
    """Where the full-precision picture of a painting hash is kept."""
    return out_dir.resolve() / STATE_DIR / PAINTINGS_DIR / f"{painting}.png"


def flat_keys(payload: dict[str, Any]) -> dict[str, Any]:
    """A painting payload as `name: value` pairs a user can read (`optimize.steps`, `content`, `terms`)."""
    settings = payload.get("settings", {})
    flat = {key: value for key, value in payload.items() if key != "settings"}
    flat.update({key: value for key, value in settings.items() if key != "settings"})
    for name, value in settings.get("settings", {}).items():
        if isinstance(value, dict):
            flat.update({f"{name}.{key}": inner for key, inner in value.items()})
        else:
            flat[name] = value
    return flat


def changed_keys(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The painting keys whose values differ between two flat payloads, in a stable order."""
    return sorted(key for key in set(before) | set(now) if before.get(key) != now.get(key))


def todo_reason(out_dir: Path, output: Path, painting: str | None, painting_keys: dict[str, Any] | None,
                keep_painting: bool = True) -> tuple[str, Path | None]:
    """Why a job that is not done is to be done, and the stored picture to re-encode (None: paint).

    `painting_keys` are the job's flat painting payload; the sidecar's recorded ones name what changed.
    """
    stored = painting_path(out_dir, painting) if painting and keep_painting else None
    if stored is not None and stored.is_file():
        return "output settings changed: re-encode", stored
    recorded = read_sidecar(out_dir, output)
    if recorded is None:
        return "new", None
    if painting is not None and recorded.get("painting") == painting:
        return ("the stored picture is missing" if keep_painting else "output settings changed: repaint "
                "(output.keep_painting is off)"), None
    before = recorded.get("painting_keys")
    if isinstance(before, dict) and painting_keys is not None:
        keys = changed_keys(before, painting_keys)
        if keys:
            return f"painting settings changed: {', '.join(keys)}", None
    return "painting settings changed", None
