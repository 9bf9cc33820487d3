"""Per-image loss curves, kept while the optimiser runs, downsampled for the report.

The optimiser already computes every term's per-image value at each evaluation; the recorder
only keeps references to those tensors at a few evenly spaced steps (no copy, no device sync in
the loop) and turns them into plain floats once the batch is finished.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..core.objective import Objective

#: Points kept per curve: enough for a thumbnail-sized chart, small in report.json.
HISTORY_POINTS = 40


@dataclass
class LossHistory:
    """Downsampled per-image history of every loss term and the weighted total, by step."""

    steps: int  # the evaluations planned; the stride follows from it
    weights: Mapping[str, float]  # term name → weight, for the total
    points: int = HISTORY_POINTS
    _latest: dict[str, torch.Tensor] | None = None
    _kept: list[tuple[int, dict[str, torch.Tensor]]] = field(default_factory=list)
    _last: tuple[int, dict[str, torch.Tensor]] | None = None

    @property
    def stride(self) -> int:
        return max(1, math.ceil(self.steps / max(1, self.points - 1)))

    def observe(self, parts: Mapping[str, torch.Tensor]) -> None:
        """Called with each evaluation's per-image parts; keeps references only."""
        self._latest = {name: value.detach() for name, value in parts.items()}

    def on_step(self, step: int, steps: int, loss: float) -> None:
        """A StepCallback: keep the latest parts at step 1, every stride-th step and the last."""
        if self._latest is None:
            return
        while self._kept and self._kept[-1][0] >= step:  # a float32 redo replaces what it repeats
            self._kept.pop()
        self._last = (step, self._latest)
        if step == 1 or step % self.stride == 0 or step >= self.steps:
            self._kept.append(self._last)

    def curves(self) -> list[dict[str, list[float | None]]]:
        """One dict per image: `step`, `total` and each term's values, non-finite as None."""
        kept = list(self._kept)
        if self._last is not None and (not kept or kept[-1][0] != self._last[0]):
            kept.append(self._last)  # stopped early (converged): end the curve where it stopped
        if not kept:
            return []
        names = list(kept[0][1])
        stacked = {name: torch.stack([parts[name].float() for _, parts in kept]).cpu() for name in names}
        total = sum(self.weights.get(name, 0.0) * values for name, values in stacked.items())
        stacked["total"] = total if isinstance(total, torch.Tensor) else torch.zeros_like(stacked[names[0]])
        steps: list[float | None] = [step for step, _ in kept]
        batch = stacked["total"].shape[1]
        return [{"step": steps, **{name: [_round(v) for v in values[:, i].tolist()] for name, values in stacked.items()}}
                for i in range(batch)]


def _round(value: float) -> float | None:
    return float(f"{value:.4g}") if math.isfinite(value) else None


@dataclass
class RecordingObjective(Objective):
    """An Objective that shows each evaluation's per-image parts to a LossHistory."""

    history: LossHistory | None = None

    def parts(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = super().parts(image)
        if self.history is not None and torch.is_grad_enabled():  # not the final no-grad evaluation
            self.history.observe(parts)
        return parts
