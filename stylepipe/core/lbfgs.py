"""The batched L-BFGS update: torch.optim.LBFGS's step without line search, projected onto valid
pictures, for B independent images at once (why each of these choices: `core.optimize`).
"""

from __future__ import annotations

import torch

_TOLERANCE_GRAD = 1e-9
_TOLERANCE_CHANGE = 1e-12
#: Trust region of the L-BFGS step: its RMS pixel change at most this (pixels are in [0, 1]).
#: Without a line search an early step can overshoot wildly (seen: RMS 0.42, the loss ×190, the
#: photo repainted and 25 steps lost recovering); ordinary steps stay far below it.
MAX_STEP_RMS = 0.03


def flat_pixels(tensor: torch.Tensor) -> torch.Tensor:
    """(B, …) → (B, N) in logical order, whatever the memory layout (channels-last gradients)."""
    return tensor.reshape(tensor.shape[0], -1)


class BatchLBFGS:
    """torch.optim.LBFGS's update (no line search) for B independent images, as batched tensor ops.

    Each image has its own history of (s, y) pairs: a ring buffer of m slots in (B, m, N) tensors,
    with `ro` = 1/(y·s) per slot (0 marks an empty slot) and the small Gram matrices s_i·y_j and
    y_i·y_j kept up to date one row and column per new pair. The two-loop recursion is rewritten
    exactly as two triangular solves on those m × m matrices (see `_direction`), so a step reads
    the history twice in a few batched matrix products instead of 4·m vector operations per image.
    Per-image masks replace the per-image branches: `active` (not yet converged), the tracker's
    `diverged`, `moving` (took a step this round). Nothing here reads a value back to the host.
    Round r can have stored at most r − 1 pairs, in slots 0 … r − 2 (the ring only wraps once
    full), so the first m rounds work on that window alone: a host-side count, no sync.
    """

    def __init__(self, image: torch.Tensor, lr: float, history: int) -> None:
        batch, numel = image.shape[0], image[0].numel()
        device, dtype = image.device, image.dtype
        self.lr, self.m = lr, history
        self.rounds = 0  # calls of `propose`
        self.s = torch.zeros(batch, history, numel, device=device, dtype=dtype)
        self.y = torch.zeros(batch, history, numel, device=device, dtype=dtype)
        self.ro = torch.zeros(batch, history, device=device, dtype=dtype)
        self.sy = torch.zeros(batch, history, history, device=device, dtype=dtype)  # sy[b, i, j] = s_i · y_j
        self.yy = torch.zeros(batch, history, history, device=device, dtype=dtype)  # yy[b, i, j] = y_i · y_j
        self.head = torch.zeros(batch, dtype=torch.long, device=device)  # next slot; the oldest once full
        self.h_diag = torch.ones(batch, device=device, dtype=dtype)
        self.prev_grad = torch.zeros(batch, numel, device=device, dtype=dtype)
        self.prev_loss = torch.zeros(batch, device=device, dtype=dtype)
        self.taken = torch.zeros(batch, numel, device=device, dtype=dtype)  # the last step actually made, after projection
        self.iterations = torch.zeros(batch, dtype=torch.long, device=image.device)
        self.active = torch.ones(batch, dtype=torch.bool, device=image.device)
        self.moving = torch.zeros(batch, dtype=torch.bool, device=image.device)
        self._rows = torch.arange(batch, device=image.device)
        self._slots = torch.arange(history, device=image.device)

    def start(self, grad: torch.Tensor, diverged: torch.Tensor) -> None:
        """Images that diverged or are already flat at the start never move."""
        self.active = ~diverged & (grad.abs().amax(dim=1) > _TOLERANCE_GRAD)

    def propose(self, grad: torch.Tensor, loss: torch.Tensor, diverged: torch.Tensor) -> torch.Tensor:
        """The update of every image, (B, N): zero for those that stopped; sets `moving`."""
        calls = self.active & ~diverged
        self.iterations += calls.long()
        self.rounds += 1
        window = min(self.m, max(1, self.rounds - 1))  # slots that can hold a pair by now
        first = calls & (self.iterations == 1)
        sg, yg = self._remember(grad, calls & ~first, window)
        d = self._direction(grad, sg, yg, window)
        self.prev_grad = torch.where(calls[:, None], grad, self.prev_grad)
        self.prev_loss = torch.where(calls, loss.to(self.prev_loss.dtype), self.prev_loss)
        first_t = (1.0 / grad.abs().sum(dim=1)).clamp(max=1.0) * self.lr  # torch: a tiny first step
        t = torch.where(first, first_t, torch.full_like(first_t, self.lr))
        rms = d.pow(2).mean(dim=1).sqrt() * t
        t = torch.where(rms > MAX_STEP_RMS, t * MAX_STEP_RMS / rms, t)  # the trust region
        downhill = ~((grad * d).sum(dim=1) > -_TOLERANCE_CHANGE)  # not "> -tol": NaN goes on, as in torch
        self.active &= ~(calls & ~downhill)
        self.moving = calls & downhill
        return torch.where(self.moving[:, None], d * t[:, None], 0.0)  # where, not a product: d may be NaN

    def apply(self, image: torch.Tensor, update: torch.Tensor) -> None:
        """Take the step projected onto [0, 1]; remember what was actually taken."""
        with torch.no_grad():
            before = flat_pixels(image.detach())
            after = (before + update).clamp(0.0, 1.0)
            self.taken = torch.where(self.moving[:, None], after - before, self.taken)
            image.copy_(after.view_as(image))

    def after(self, grad: torch.Tensor, loss: torch.Tensor) -> None:
        """torch's stopping tests after a step (flat gradient, tiny step, no loss change), skipped
        after the first step: that one is deliberately tiny (1/|g|₁), in bf16 it may not move the loss."""
        flat = grad.abs().amax(dim=1) <= _TOLERANCE_GRAD
        tiny = self.taken.abs().amax(dim=1) <= _TOLERANCE_CHANGE
        still = (loss.to(self.prev_loss.dtype) - self.prev_loss).abs() < _TOLERANCE_CHANGE
        self.active &= ~(self.moving & (self.iterations > 1) & (flat | tiny | still))

    def _remember(self, grad: torch.Tensor, curving: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store each image's new (s, y) pair where y·s > 1e-10, update the Gram matrices, and
        return s_i·g and y_i·g for every slot (one pass over each history tensor for all of it)."""
        y, s = grad - self.prev_grad, self.taken
        ys, yy = (y * s).sum(dim=1), (y * y).sum(dim=1)
        accept = curving & (ys > 1e-10)
        slot = self.head
        rows = self._rows
        self.s[rows, slot] = torch.where(accept[:, None], s, self.s[rows, slot])
        self.y[rows, slot] = torch.where(accept[:, None], y, self.y[rows, slot])
        self.ro[rows, slot] = torch.where(accept, 1.0 / ys, self.ro[rows, slot])
        self.h_diag = torch.where(accept, ys / yy, self.h_diag)
        self.head = torch.where(accept, (slot + 1) % self.m, slot)
        y_dots = _dots(self.y[:, :k], s, y, grad)  # y_j·s, y_j·y, y_j·g
        s_dots = _dots(self.s[:, :k], y, grad)  # s_j·y, s_j·g
        written = (self._slots[:k] == slot[:, None]) & accept[:, None]  # (B, k): the new pair's slot
        sy = torch.where(written[:, :, None], y_dots[:, None, :, 0], self.sy[:, :k, :k])  # its row: s_new·y_j
        self.sy[:, :k, :k] = torch.where(written[:, None, :], s_dots[:, :, None, 0], sy)  # its column: s_j·y_new
        yy = torch.where(written[:, :, None], y_dots[:, None, :, 1], self.yy[:, :k, :k])
        self.yy[:, :k, :k] = torch.where(written[:, None, :], y_dots[:, :, None, 1], yy)
        return s_dots[:, :, 1], y_dots[:, :, 2]

    def _direction(self, grad: torch.Tensor, sg: torch.Tensor, yg: torch.Tensor, k: int) -> torch.Tensor:
        """The two-loop recursion d = −H·g, exactly, as two triangular solves.

        In chronological order (1 oldest), the first loop's α_i = ρ_i s_i·(−g − Σ_{j>i} α_j y_j)
        is the upper-triangular system α_i + ρ_i Σ_{j>i} (s_i·y_j) α_j = −ρ_i s_i·g. With
        d₀ = h·(−g − Σ α_j y_j), the second loop's c_i = α_i − β_i, β_i = ρ_i y_i·(d₀ + Σ_{j<i} c_j s_j),
        is the lower-triangular c_i + ρ_i Σ_{j<i} (s_j·y_i) c_j = α_i − ρ_i y_i·d₀, and d = d₀ + Σ c_j s_j.
        Empty slots (ρ = 0) are identity rows: they get α = c = 0. Works on the first k slots.
        """
        order = (self.head[:, None] + self._slots[:k]) % k  # oldest → newest; empty slots first
        ro, sg, yg = (v.gather(1, order) for v in (self.ro[:, :k], sg, yg))
        sy, yy = (_permute(matrix[:, :k, :k], order) for matrix in (self.sy, self.yy))
        eye = torch.eye(k, device=grad.device, dtype=grad.dtype)
        alpha = torch.linalg.solve_triangular(eye + ro[:, :, None] * sy.triu(1), (-ro * sg)[:, :, None], upper=True)
        h = self.h_diag[:, None, None]
        y_d0 = h * (-yg[:, :, None] - torch.bmm(yy, alpha))
        c = torch.linalg.solve_triangular(eye + ro[:, :, None] * sy.transpose(1, 2).tril(-1),
                                          alpha - ro[:, :, None] * y_d0, upper=False)
        alpha_at, c_at = (torch.zeros_like(ro).scatter(1, order, v[:, :, 0]) for v in (alpha, c))  # back to slots
        combined = -h[:, :, 0] * (grad + torch.bmm(alpha_at[:, None, :], self.y[:, :k])[:, 0])
        return combined + torch.bmm(c_at[:, None, :], self.s[:, :k])[:, 0]


def _dots(history: torch.Tensor, *vectors: torch.Tensor) -> torch.Tensor:
    """(B, k, N) · each (B, N) → (B, k, len(vectors)): one read of the history for all of them.
    The vectors are stacked as rows (a transposed operand costs nothing; a (B, N, 3) copy is slow)."""
    return torch.einsum("bkn,bcn->bkc", history, torch.stack(vectors, dim=1))


def _permute(matrix: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Rows and columns of a (B, k, k) matrix in each image's own slot order."""
    m = order.shape[1]
    rows = matrix.gather(1, order[:, :, None].expand(-1, -1, m))
    return rows.gather(2, order[:, None, :].expand(-1, m, -1))
