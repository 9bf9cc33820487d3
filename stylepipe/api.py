"""stylepipe as a library: a `Stylizer` that keeps the network loaded and styles pictures in
memory, and `run`, a whole pipeline (what `stylepipe run` does, without the terminal).

Nothing here has its own algorithm or its own settings. Keyword settings are the keys of
pipeline.yaml (`config.keywords`), validated by the same models with the same messages; they
become the same plain objects the plan makes for a file (`plan.run_settings.shared_settings`); style targets
come from the same cache under the same keys (`targets.store.TargetStore`); pictures are decoded as
files are (`extend.pictures.to_tensor`); and every batch runs through the worker's own
`running.stylize.stylize_batch`, OOM halving included (`running.batcher`). So the same settings give the same pixels through
the CLI, this API and the Ray Data stage, and a style computed by one is a cache hit for the others.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Union, overload

import numpy as np
import torch
from PIL import Image

from .config.keywords import STYLIZER_SECTIONS, overrides
from .config.load import validate_model
from .config.overrides import Override
from .config.positions import SourceMap
from .config.schema import StyleEntry
from .core.device import resolve_precision
from .core.errors import ConfigError, StylepipeError
from .core.loss_fns import Targets
from .core.network import is_out_of_memory
from .core.target_fns import StyleSizing, WeightedImage, targets_to
from .extend.networks import build_extractor
from .extend.pictures import InMemory, PathLike, Picture, PictureSource, is_path, is_picture, to_tensor
from .extend.sources import StyleContext, StyleSource
from .io.images import to_pil
from .plan.api_setup import Setup
from .plan.run_settings import RunSettings, level_sizings
from .plan.styles import entry_sources
from .report.record import RunReport
from .running.batcher import in_batches
from .running.context import WorkerContext, WorkerSpec, resolve_batch_size
from .running.runner import load_checked, open_cache, run_device, run_pipeline, target_store
from .running.step_bar import ProgressLike, StepReport, step_reporter
from .running.stylize import stylize_batch
from .running.worker import fit_content
from .targets.cache import TargetCache
from .targets.keys import target_key

if TYPE_CHECKING:
    from .running.events import RunEvents
    from .running.schedule import RunBounds, Shard

__all__ = ["InMemory", "Picture", "Style", "StyleLike", "Stylizer", "run"]

#: What `Stylizer.style` takes: a picture or its path, (picture, weight) pairs blended into one
#: style, a style entry as in pipeline.yaml's `styles:` (`{"source": "tiled", "path": …, "grid": 3}`),
#: or a Style made earlier (by this Stylizer or another: its targets travel with it).
StyleLike = Union[Picture, Sequence[tuple[Picture, float]], Mapping[str, Any], "Style"]

#: Keys a Stylizer is made with: its network, where it runs and what it reads are fixed for its life.
_FIXED = ("network", "cache", "plugins", "override_plugins")


@dataclass(frozen=True, eq=False)  # compared by identity: field-wise `==` on tensors has no single answer
class Style:
    """A style's targets, ready to use: CPU tensors (picklable, so a driver can compute them once
    and ship them to workers), the cache key they are filed under, and whether they came from the
    cache rather than being computed."""

    label: str
    key: str  # the cache key: a picture file gets the same key here as in a pipeline run
    cached: bool  # True when the cache (memory or disk) had them: nothing was computed
    targets: Targets  # term → name → tensor, on the CPU
    fingerprint: Mapping[str, Any]  # the source's fingerprint: keys for other settings, without its files
    source: StyleSource  # where to recompute them from when other settings need other targets


class Stylizer:
    """Styles pictures in memory, with the network loaded once and style targets from the cache.

    Keyword settings are the keys of pipeline.yaml, named by their last part(s) (`max_side` is
    `size.max_side`, `steps` is `optimize.steps`, `style_weight` is `losses.style.weight`; see
    docs/library.md for the table and the rule), or whole sections as dicts
    (`losses={"style": {"weight": 300}}`). A misspelt or ambiguous one is a ConfigError, with
    the same message (and did-you-mean) as in a pipeline file.

    `cache_dir` is the cache of `stylepipe run` (the same keys: a style one of them computed, the
    other finds); without it targets are kept in memory for this Stylizer only.

    >>> from PIL import Image
    >>> from stylepipe import Stylizer
    >>> stylizer = Stylizer(max_side=32, steps=2)
    >>> stylizer.settings.optimize.steps, stylizer.settings.size_max_side
    (2, 32)
    >>> Stylizer(stesp=2)
    Traceback (most recent call last):
    ...
    stylepipe.core.errors.ConfigError: Stylizer(stesp=…): stesp: Extra inputs are not permitted (did you mean `steps`?)
    """

    def __init__(self, network: str = "vgg19-gatys", device: str = "auto", cache_dir: str | os.PathLike[str] | None = None,
                 **settings: Any) -> None:
        given = [Override(("network", "name"), network, "Stylizer(network=…)"),
                 Override(("network", "device"), device, "Stylizer(device=…)")]
        if cache_dir is not None:
            given.append(Override(("cache", "dir"), os.fspath(cache_dir), "Stylizer(cache_dir=…)"))
        else:
            given.append(Override(("cache", "enabled"), False, "Stylizer(cache_dir=…)"))  # unless `enabled=True`
        self._given = given + overrides(settings, "Stylizer", STYLIZER_SECTIONS)
        self._setup = Setup.from_keywords(self._given, "Stylizer()")
        run_settings = self._setup.settings
        self.device: torch.device = run_device(run_settings.device)
        extractor = build_extractor(run_settings.network, run_settings.network_weights, run_settings.pooling, self.device)  # type: ignore[arg-type]
        spec = WorkerSpec(self._setup.terms, run_settings, out_dir=Path.cwd())  # outputs are returned, never written
        self._context = WorkerContext.from_spec(spec, extractor, self.device)
        self._cache: TargetCache = open_cache(self._setup.pipeline)
        self._on_device: dict[str, Targets] = {}
        self.targets_computed = 0  # style targets this Stylizer computed (the others came from the cache)
        self.targets_cache_hits = 0

    @property
    def settings(self) -> RunSettings:
        """The resolved settings (as the plan resolves a file's): steps, sizes, precision…"""
        return self._setup.settings

    # -- styles ------------------------------------------------------------------------------------

    def style(self, style: StyleLike, *, name: str | None = None) -> Style:
        """A style's targets, from the cache when it has them (`Style.cached`), else computed once.

        `style` is a picture (PIL image, (3, H, W) tensor in [0, 1], (H, W, 3) array) or its path,
        a list of (picture, weight) pairs blended into one style, a style entry as written under
        `styles:` in pipeline.yaml (`{"source": "tiled", "path": "photo.jpg", "grid": 3}`; plugin
        sources too), or a Style from another Stylizer. `name` is its label.

        >>> from PIL import Image
        >>> from stylepipe import Stylizer
        >>> stylizer = Stylizer(max_side=32, steps=2)
        >>> painting = Image.radial_gradient("L").convert("RGB")  # a 256 × 256 picture
        >>> style = stylizer.style(painting, name="rings")
        >>> style.label, style.cached, stylizer.targets_computed
        ('rings', False, 1)
        >>> stylizer.style(painting).cached  # the same pixels: the same key
        True
        """
        if isinstance(style, Style):
            return self._adopt(style)
        return self._style_of(self._source(style, name), self._setup)

    def _source(self, style: Any, name: str | None) -> StyleSource:
        setup = self._setup
        context = setup.style_context()
        if is_path(style):
            style = {"source": "image", "path": os.fspath(style)}
        if isinstance(style, Mapping):
            return self._source_of_entry({**style, **({"name": name} if name else {})}, context)
        if is_picture(style):
            style = [(style, 1.0)]
        if isinstance(style, Sequence) and style and all(isinstance(p, tuple) and len(p) == 2 for p in style):
            if all(is_path(picture) for picture, _ in style):  # files: a `blend`, the key a pipeline would use
                parts = [{"path": os.fspath(picture), "weight": weight} for picture, weight in style]
                return self._source_of_entry({"source": "blend", "styles": parts, **({"name": name} if name else {})}, context)
            pictures = [WeightedImage(self._style_picture(picture, i), float(weight)) for i, (picture, weight) in enumerate(style)]
            return PictureSource(pictures, context, name)
        raise TypeError("style: expected a picture, a path, a list of (picture, weight) pairs, a style entry "
                        f"(dict) or a Style, not {type(style).__name__}")

    def _style_picture(self, picture: Picture, index: int) -> torch.Tensor:
        sizing = self._setup.sizing
        return to_tensor(picture, (sizing.max_side, sizing.max_pixels), self._setup.settings.max_input_pixels, f"style picture {index}")

    def _source_of_entry(self, raw: Mapping[str, Any], context: StyleContext) -> StyleSource:
        """A style entry, checked as the plan checks one under `styles:` (errors name `style`);
        its paths are relative to the working directory of the call."""
        where = "Stylizer.style()"
        pipeline = replace(self._setup.pipeline, path=Path.cwd() / where, source_map=SourceMap(where, None))
        entry = validate_model(StyleEntry, raw, pipeline.source_map, ("style",))
        sources = entry_sources(pipeline, context, entry, ("style",))
        if len(sources) != 1:
            raise ConfigError(f"Stylizer.style(): style: {raw.get('path')!r} names {len(sources)} pictures; "
                              "give one, or blend them: [(path, weight), …]")
        return sources[0]

    def _style_of(self, source: StyleSource, setup: Setup) -> Style:
        settings = setup.settings
        store = target_store(self._cache, self._context.extractor, setup.terms, setup.sizing, settings, self.device)
        fingerprint = source.fingerprint()
        targets = store.get(source)
        self.targets_computed += store.computed
        self.targets_cache_hits += store.cache_hits
        key = target_key(fingerprint, self._context.extractor.fingerprint(), setup.terms, setup.sizing)
        return Style(source.label, key, store.cache_hits > 0, targets, fingerprint, source)

    def _adopt(self, style: Style) -> Style:
        """A Style made elsewhere: its targets as they are when the key matches, else recomputed here."""
        if self._key(style, self._setup) == style.key:
            return style
        return self._style_of(style.source, self._setup)

    def _key(self, style: Style, setup: Setup, sizing: StyleSizing | None = None) -> str:
        return target_key(style.fingerprint, self._context.extractor.fingerprint(), setup.terms, sizing or setup.sizing)

    def _targets(self, style: Style, setup: Setup) -> list[Targets]:
        """The style's targets for these settings, one per level, on the device (moved once per key).
        The Style carries the output level's; the smaller levels' come from the cache or are computed."""
        if self._key(style, setup) != style.key:  # other layers or another style size: other statistics
            style = self._style_of(style.source, setup)
        out = []
        for sizing in level_sizings(setup.sizing, setup.settings.levels):
            key = self._key(style, setup, sizing)
            if key not in self._on_device:
                if len(self._on_device) >= 16:
                    self._on_device.pop(next(iter(self._on_device)))
                self._on_device[key] = targets_to(style.targets if key == style.key else self._level(style, setup, sizing),
                                                  self.device)
            out.append(self._on_device[key])
        return out

    def _level(self, style: Style, setup: Setup, sizing: StyleSizing) -> Targets:
        """A style's targets at a smaller level's size (docs/sizes.md), through the same cache."""
        store = target_store(self._cache, self._context.extractor, setup.terms, sizing, setup.settings, self.device)
        targets = store.get(style.source)
        self.targets_computed += store.computed
        self.targets_cache_hits += store.cache_hits
        return targets

    # -- stylizing ---------------------------------------------------------------------------------

    @overload
    def stylize(self, contents: torch.Tensor, style: StyleLike, *, as_tensor: Literal[True] | None = None,
                **settings: Any) -> torch.Tensor: ...

    @overload
    def stylize(self, contents: list[torch.Tensor], style: StyleLike, *, as_tensor: Literal[True] | None = None,
                **settings: Any) -> list[torch.Tensor]: ...

    @overload
    def stylize(self, contents: Image.Image | np.ndarray | PathLike, style: StyleLike, *,
                as_tensor: Literal[False] | None = None, **settings: Any) -> Image.Image: ...

    @overload
    def stylize(self, contents: list[Image.Image] | list[np.ndarray] | list[PathLike] | list[Picture], style: StyleLike, *,
                as_tensor: Literal[False] | None = None, **settings: Any) -> list[Image.Image]: ...

    @overload
    def stylize(self, contents: Picture | list[Picture], style: StyleLike, *, as_tensor: bool | None = None,
                **settings: Any) -> Any: ...

    def stylize(self, contents: Picture | list[Any], style: StyleLike, *, as_tensor: bool | None = None,
                progress: ProgressLike = None, **settings: Any) -> Any:
        """Style one picture or a list of them; pictures of one size are optimised together in
        batches on the device (`batch_size`, halved for good on out-of-memory).

        `contents`: PIL images, (3, H, W) tensors in [0, 1] (or one (B, 3, H, W) batch), (H, W, 3)
        arrays or paths. Returns the same shape of answer: a picture for a picture, a list for a
        list, a (B, 3, H, W) tensor for a batch; PIL images (8-bit, as saved by the CLI) unless
        given tensors or `as_tensor=True` (float (3, H, W) in [0, 1]). Each output is the size the
        content is worked at (`max_side`, `max_pixels`). `style` is a Style, or anything
        `style()` takes. `settings` override this Stylizer's for this call (`steps=10`,
        `style_weight=500`, `seed=1`…); the network, cache and plugins stay as made. `progress`:
        a callable `(step, steps, loss)` called after each step, or True for a bar on stderr.

        >>> from PIL import Image
        >>> from stylepipe import Stylizer
        >>> stylizer = Stylizer(max_side=32, steps=2)
        >>> style = stylizer.style(Image.radial_gradient("L").convert("RGB"))
        >>> photos = [Image.linear_gradient("L").convert("RGB").resize((48, 32)) for _ in range(2)]
        >>> [picture.size for picture in stylizer.stylize(photos, style)]
        [(32, 21), (32, 21)]
        >>> import torch
        >>> stylizer.stylize(torch.rand(4, 3, 40, 40), style, steps=1).shape
        torch.Size([4, 3, 32, 32])
        """
        batch = isinstance(contents, torch.Tensor) and contents.dim() == 4
        many = isinstance(contents, (list, tuple)) or batch
        items: list[Any] = list(contents) if many else [contents]  # type: ignore[arg-type]
        if not items:
            return []
        tensors_in = all(isinstance(item, torch.Tensor) for item in items)
        want_tensor = tensors_in if as_tensor is None else as_tensor
        setup, context = self._for_call(settings)
        handle = style if isinstance(style, Style) else self.style(style)
        targets = self._targets(handle, setup)
        pictures = [fit_content(to_tensor(item, setup.fit, setup.settings.max_input_pixels, _name(item, i)),
                                setup.settings, _name(item, i)) for i, item in enumerate(items)]
        with step_reporter(progress) as on_step:
            results = self._optimise(pictures, targets, context, on_step)
        outputs: list[Any] = results if want_tensor else [to_pil(image) for image in results]
        if batch and want_tensor:
            return torch.stack(outputs)
        return outputs if many else outputs[0]

    def _for_call(self, settings: Mapping[str, Any]) -> tuple[Setup, WorkerContext]:
        """This Stylizer's setup and device context, or new ones for a call's own settings."""
        if not settings:
            return self._setup, self._context
        extra = overrides(settings, "stylize", STYLIZER_SECTIONS)
        fixed = [o for o in extra if o.parts[0] in _FIXED]
        if fixed:
            raise ConfigError(f"{fixed[0].label}: {'.'.join(map(str, fixed[0].parts))} is set when the Stylizer is made "
                              "(it loads the network and opens the cache once); make another Stylizer")
        setup = Setup.from_keywords(self._given + extra, "stylize()")
        run_settings = setup.settings
        context = replace(self._context, spec=replace(self._context.spec, terms=setup.terms, settings=run_settings),
                          batch_size=resolve_batch_size(run_settings.batch_size, self.device, run_settings,
                                                       self._context.extractor, setup.terms),
                          precision=resolve_precision(run_settings.precision, self.device))
        return setup, context

    def _optimise(self, pictures: list[torch.Tensor], targets: list[Targets], context: WorkerContext,
                  on_step: StepReport | None = None) -> list[torch.Tensor]:
        """Pictures of one size together, in the worker's device batches; results in input order."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, picture in enumerate(pictures):
            by_size.setdefault((picture.shape[-2], picture.shape[-1]), []).append(i)
        results: list[torch.Tensor] = list(pictures)
        for size, indices in by_size.items():

            def run_batch(chunk: list[int], size: tuple[int, int] = size) -> torch.Tensor:
                content = torch.stack([pictures[i] for i in chunk])
                return stylize_batch(context, content, size, targets, on_step=on_step).images.detach().cpu()

            for chunk, outcome in in_batches(indices, context, run_batch):
                if isinstance(outcome, Exception):
                    if is_out_of_memory(outcome):
                        raise StylepipeError("out of device memory even for one picture; lower max_side") from outcome
                    raise outcome
                for i, image in zip(chunk, outcome):
                    results[i] = image
        return results

    # -- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the disk cache (a Stylizer left open is closed when collected)."""
        self._cache.close()

    def __enter__(self) -> Stylizer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _name(item: Any, index: int) -> str:
    return os.fspath(item) if is_path(item) else f"picture {index}"


def run(pipeline: str | os.PathLike[str] | Mapping[str, Any], *, force: bool = False,
        output_dir: str | os.PathLike[str] | None = None, report: str | os.PathLike[str] | None = None,
        executor: str | None = None, shard: str | Shard | None = None, max_jobs: int | None = None,
        time_budget: str | float | None = None, sets: Sequence[str] = (), events: RunEvents | None = None,
        bounds: RunBounds | None = None, **settings: Any) -> RunReport:
    """Run a pipeline — a YAML file, or the same as a dict — and return its report: exactly what
    `stylepipe run` does (the CLI is a thin layer over this call), without the terminal.

    `settings` override keys of the pipeline by keyword (`steps=3`, `max_side=64`, `output_dir=…`;
    the rule in docs/library.md), `sets` as `--set KEY=VALUE` strings; paths in either are relative
    to the working directory, paths in the file to the file. `force`, `report`, `executor`, `shard`
    ("I/N"), `max_jobs` and `time_budget` ("90s", "2h" or seconds) are the CLI's options. Progress
    goes to `events` (a `stylepipe.running.events.RunEvents`); `bounds` lets a caller stop the run cleanly.
    Configuration mistakes raise ConfigError; a failed job does not raise: see `report.exit_code`.

    >>> import pathlib, tempfile
    >>> from PIL import Image
    >>> import stylepipe
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> Image.radial_gradient("L").convert("RGB").save(folder / "painting.png")
    >>> Image.linear_gradient("L").convert("RGB").save(folder / "photo.png")
    >>> pipeline = {"content": [str(folder / "photo.png")], "styles": [str(folder / "painting.png")],
    ...             "output": {"dir": str(folder / "out"), "format": "png", "html": False}, "cache": {"enabled": False}}
    >>> report = stylepipe.run(pipeline, max_side=32, steps=2)
    >>> report.exit_code, report.count("done"), report.targets_computed, sorted(p.name for p in (folder / "out").glob("*.png"))
    (0, 1, 1, ['photo__painting.png'])
    """
    from .running.schedule import RunBounds, Shard, parse_duration

    selected = Shard.parse(shard) if isinstance(shard, str) else shard
    if bounds is None:
        budget = parse_duration(time_budget) if isinstance(time_budget, str) else time_budget
        bounds = RunBounds(max_jobs=max_jobs, time_budget=budget)
    given: list[str | Override] = [*sets, *overrides(settings, "run")]
    loaded = load_checked(pipeline if isinstance(pipeline, Mapping) else Path(pipeline), given)
    return run_pipeline(loaded, force=force, report_path=Path(report) if report is not None else None,
                        output_dir=Path(output_dir) if output_dir is not None else None, executor=executor, events=events,
                        shard=selected, bounds=bounds)
