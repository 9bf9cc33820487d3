"""`stylepipe cache info|check|clear`: the style-target cache, found through a pipeline or `--dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import ConfigError
from .options import PipelineArg, SetOpt, VerboseOpt, cache_app, guard, stdout, verbose_logging

CacheDir = Annotated[Optional[Path], typer.Option("--dir", help="cache folder (default: the pipeline's cache.dir)")]


def _cache_location(pipeline: Path, directory: Optional[Path], overrides: list[str]) -> tuple[Optional[Path], int]:
    """The cache folder and its size limit: `--dir`, else the pipeline's `cache:` section."""
    from ..config.load import load_pipeline
    from ..targets.cache import DEFAULT_SIZE_LIMIT_MB

    if directory is not None:
        if not directory.is_dir():
            raise ConfigError(f"--dir {directory}: no such cache folder (nothing was created); check the path")
        return directory, DEFAULT_SIZE_LIMIT_MB << 20
    try:
        loaded = load_pipeline(pipeline, overrides)
    except ConfigError as exc:
        if pipeline.exists():
            raise
        raise ConfigError(f"{exc}; name a pipeline file, or the cache folder with --dir DIR") from None
    cfg = loaded.config.cache
    return (loaded.resolve(cfg.dir) if cfg.enabled else None), cfg.size_limit_mb * 1024 * 1024


def _open_cache_at(pipeline: Path, directory: Optional[Path], overrides: list[str]):
    from ..targets.cache import TargetCache

    folder, limit = _cache_location(pipeline, directory, overrides)
    return TargetCache(folder, size_limit_bytes=limit)


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


@cache_app.command("info")
def cache_info(pipeline: PipelineArg = Path("pipeline.yaml"), directory: CacheDir = None, set_: SetOpt = None,
               verbose: VerboseOpt = False) -> None:
    """Where the cache is, how many targets it holds and how large it is (changes nothing on disk)."""
    from ..targets.disk import read_info

    verbose_logging(verbose)

    def body() -> None:
        folder, limit = _cache_location(pipeline, directory, set_ or [])
        if folder is None:
            stdout.print("disk cache: off (cache.enabled is false)")
            return
        lines = [f"directory: {folder}"]
        if not folder.is_dir():
            lines.append("entries: 0 (not created yet: the first run creates it)")
        else:
            info = read_info(folder, limit)
            if info.problem:
                lines.append(f"database: unreadable ({info.problem}); the next run or `stylepipe cache check` moves it aside")
            else:
                lines.append(f"entries: {info.entries}")
            lines.append(f"size: {_mib(info.size_bytes)}")
        lines.append(f"limit: {limit / 2**20:.0f} MiB")
        stdout.print("\n".join(lines))

    guard(body)


@cache_app.command("check")
def cache_check(pipeline: PipelineArg = Path("pipeline.yaml"), directory: CacheDir = None, set_: SetOpt = None,
                verbose: VerboseOpt = False) -> None:
    """Verify every entry's checksum and drop the corrupt ones (they are recomputed when needed)."""
    verbose_logging(verbose)

    def body() -> None:
        with _open_cache_at(pipeline, directory, set_ or []) as cache:
            result = cache.check()
        stdout.print(f"checked {result.checked} entr{'y' if result.checked == 1 else 'ies'}, dropped {len(result.dropped)} corrupt")

    guard(body)


@cache_app.command("clear")
def cache_clear(pipeline: PipelineArg = Path("pipeline.yaml"), directory: CacheDir = None, set_: SetOpt = None,
                verbose: VerboseOpt = False) -> None:
    """Remove every cached style target."""
    verbose_logging(verbose)

    def body() -> None:
        with _open_cache_at(pipeline, directory, set_ or []) as cache:
            removed = cache.clear()
        stdout.print(f"removed {removed} entr{'y' if removed == 1 else 'ies'}")

    guard(body)
