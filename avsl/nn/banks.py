"""Per-sample pseudo-label banks and the pure functions around them (used by XPL, ``avsl.methods.xpl``).

The functions are the building blocks of cross pseudo-labeling (Guo et al., ICASSP 2024; reconstructed from the
paper's framework figure, see ``docs/methods/xpl.md``):

- :func:`sharpen`: per-pixel temperature sharpening of a probability map;
- :func:`ema_update`: PL-EMA, ``new = (1 - beta) * sharpened + beta * previous``;
- :func:`map_agreement` / :func:`map_confidence`: how reliable a sample's pseudo-label is (curriculum data selection
  ranks unlabeled samples by the agreement of the two models' maps);
- :func:`selection_fraction`, :func:`sigmoid_rampup`, :func:`top_fraction_mask`: the curriculum schedules;
- :func:`crop_flip_params`, :func:`crop_flip`, :func:`jitter_brightness_contrast`: an on-device strong augmentation
  whose geometry is known, so that targets stored in the un-augmented frame can be warped onto the augmented view.

:class:`PseudoLabelBank` stores one tensor per ``sample_id`` (hashed to int64) and grows as new ids arrive. Its
content is a pair of buffers, so it is saved in checkpoints and restored on resume, whatever its size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsl.metrics._ids import sample_ids_to_tensor

__all__ = [
    "PseudoLabelBank",
    "crop_flip",
    "crop_flip_params",
    "ema_update",
    "hash_ids",
    "jitter_brightness_contrast",
    "map_agreement",
    "map_confidence",
    "selection_fraction",
    "sharpen",
    "sigmoid_rampup",
    "top_fraction_mask",
]


# ---------------------------------------------------------------------------------------------------- pure functions
def sharpen(prob: Tensor, temperature: float) -> Tensor:
    """Per-pixel sharpening of probabilities: ``p^(1/T) / (p^(1/T) + (1 - p)^(1/T))``.

    ``T < 1`` pushes values away from 0.5 (``T = 0.5`` maps 0.75 to 0.9), ``T = 1`` is the identity and ``T -> 0``
    approaches a hard threshold at 0.5. The two-class form of MixMatch's sharpening (Berthelot et al. 2019), applied to
    every pixel of a map. Computed in log space so that 0 and 1 stay exact.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    p = prob.clamp(0.0, 1.0)
    # sigmoid((log p - log(1 - p)) / T) equals the ratio above and handles p in {0, 1} without 0/0.
    logit = torch.log(p) - torch.log1p(-p)
    return torch.sigmoid(logit / temperature)


def ema_update(previous: Tensor, current: Tensor, momentum: float, seen: Tensor | None = None) -> Tensor:
    """PL-EMA: ``(1 - momentum) * current + momentum * previous``; entries not ``seen`` before take ``current``.

    Args:
        previous: (N, ...) stored pseudo-labels (anything where ``seen`` is False).
        current: (N, ...) new (sharpened) pseudo-labels.
        momentum: the weight of the previous label (the XPL figure's beta), in [0, 1).
        seen: (N,) bool, whether ``previous`` holds a real value; None means all seen.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if previous.shape != current.shape:
        raise ValueError(f"previous {tuple(previous.shape)} and current {tuple(current.shape)} differ in shape")
    blended = momentum * previous + (1.0 - momentum) * current
    if seen is None:
        return blended
    mask = seen.view(-1, *([1] * (current.dim() - 1)))
    return torch.where(mask, blended, current)


def map_agreement(
    p: Tensor, q: Tensor, kind: Literal["iou", "soft_iou"] = "iou", threshold: float = 0.5, eps: float = 1e-6
) -> Tensor:
    """Per-sample agreement (B,) in [0, 1] between two batches of probability maps (B, h, w).

    ``"iou"``: IoU of the maps binarized at ``threshold`` (the test DMT, the same group's earlier method, applies to
    its two teachers' maps); two empty masks agree with 0 (they carry no location). ``"soft_iou"``:
    ``sum(min(p, q)) / sum(max(p, q))``, a tie-free ranking score.
    """
    if p.shape != q.shape:
        raise ValueError(f"maps differ in shape: {tuple(p.shape)} vs {tuple(q.shape)}")
    if kind == "iou":
        a, b = p.flatten(1) >= threshold, q.flatten(1) >= threshold
        inter = (a & b).sum(dim=1).float()
        union = (a | b).sum(dim=1).float()
        return torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(union))
    if kind == "soft_iou":
        pf, qf = p.flatten(1).float(), q.flatten(1).float()
        return torch.minimum(pf, qf).sum(dim=1) / torch.maximum(pf, qf).sum(dim=1).clamp_min(eps)
    raise ValueError(f"unknown agreement {kind!r}; expected 'iou' or 'soft_iou'")


def map_confidence(prob: Tensor) -> Tensor:
    """Per-sample confidence (B,) in [0, 1] of probability maps (B, h, w): the mean of ``|2p - 1|``."""
    return (2.0 * prob.flatten(1).float() - 1.0).abs().mean(dim=1)


def selection_fraction(epoch: float, start: float, ramp_epochs: float) -> float:
    """Curriculum: the fraction of unlabeled samples selected at ``epoch`` (counted from the start of selection).

    Grows linearly from ``start`` to 1 over ``ramp_epochs`` epochs and stays at 1: ``min(1, start + (1 - start) *
    epoch / ramp_epochs)``. ``ramp_epochs = 0`` selects everything at once.
    """
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"start must be in [0, 1], got {start}")
    if ramp_epochs < 0:
        raise ValueError(f"ramp_epochs must be >= 0, got {ramp_epochs}")
    if ramp_epochs == 0 or epoch >= ramp_epochs:
        return 1.0
    return min(1.0, start + (1.0 - start) * max(0.0, epoch) / ramp_epochs)


def sigmoid_rampup(epoch: float, ramp_epochs: float) -> float:
    """The sigmoid-shaped ramp-up of Laine & Aila (2017) and mean teacher: ``exp(-5 (1 - t)^2)``, ``t = epoch /
    ramp_epochs`` clipped to [0, 1]; 1 when ``ramp_epochs = 0``."""
    if ramp_epochs < 0:
        raise ValueError(f"ramp_epochs must be >= 0, got {ramp_epochs}")
    if ramp_epochs == 0:
        return 1.0
    t = min(1.0, max(0.0, epoch / ramp_epochs))
    return math.exp(-5.0 * (1.0 - t) ** 2)


def top_fraction_mask(scores: Tensor, population: Tensor, fraction: float) -> Tensor:
    """Which ``scores`` (B,) lie in the top ``fraction`` of ``population`` (N,) (bool, B).

    The threshold is the ``ceil(fraction * N)``-th largest value of the population; ties at the threshold are all
    selected. ``fraction >= 1`` (or an empty population) selects everything, ``fraction <= 0`` nothing.
    """
    if fraction >= 1.0 or population.numel() == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    if fraction <= 0.0:
        return torch.zeros_like(scores, dtype=torch.bool)
    k = max(1, math.ceil(fraction * population.numel()))
    threshold = torch.topk(population.flatten().float(), k).values[-1]
    return scores.float() >= threshold


def crop_flip_params(batch_size: int, min_scale: float, flip_p: float, device: torch.device | None = None) -> Tensor:
    """Random crop-and-flip parameters (B, 4): ``(scale, x0, y0, flip)`` in normalized frame units.

    Each crop is a square window of side ``scale`` in [``min_scale``, 1] (a fraction of the frame side) at top-left
    corner ``(x0, y0)`` inside the frame; ``flip`` is 1.0 for a horizontal flip (probability ``flip_p``). Randomness
    comes from torch's generator of ``device`` (seeded by ``seed_everything``).
    """
    if not 0.0 < min_scale <= 1.0:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    if not 0.0 <= flip_p <= 1.0:
        raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
    u = torch.rand(batch_size, 4, device=device)
    scale = min_scale + (1.0 - min_scale) * u[:, 0]
    x0 = (1.0 - scale) * u[:, 1]
    y0 = (1.0 - scale) * u[:, 2]
    flip = (u[:, 3] < flip_p).float()
    return torch.stack([scale, x0, y0, flip], dim=1)


def crop_flip(x: Tensor, params: Tensor, mode: Literal["bilinear", "nearest"] = "bilinear") -> Tensor:
    """Apply :func:`crop_flip_params` windows to (B, C, H, W) tensors at any resolution; the output keeps (H, W).

    Works in normalized coordinates, so the same parameters warp a 128-px frame and its 7x7 map consistently: the
    output pixel at normalized position ``u`` reads the input at ``x0 + scale * u`` (``1 - u`` when flipped).
    """
    if x.dim() != 4 or params.shape != (x.shape[0], 4):
        raise ValueError(f"expected x (B, C, H, W) and params (B, 4), got {tuple(x.shape)} and {tuple(params.shape)}")
    scale, x0, y0, flip = params.to(x.dtype).unbind(dim=1)
    sign = 1.0 - 2.0 * flip
    zeros = torch.zeros_like(scale)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates: x_in = a * x_out + c, with the crop's
    # centre c = 2 * x0 + scale - 1 and a = +-scale (negative for a flip).
    theta = torch.stack(
        [
            torch.stack([sign * scale, zeros, 2.0 * x0 + scale - 1.0], dim=1),
            torch.stack([zeros, scale, 2.0 * y0 + scale - 1.0], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)


def jitter_brightness_contrast(image: Tensor, strength: float) -> Tensor:
    """Random brightness and contrast factors in ``[1 - strength, 1 + strength]`` per image (B, 3, H, W) in [0, 1].

    Photometric only (hue and saturation are left alone: on SynthAV, colour identifies the class).
    """
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    if strength == 0:
        return image
    b = image.shape[0]
    factors = 1.0 + strength * (2.0 * torch.rand(b, 2, 1, 1, 1, device=image.device, dtype=image.dtype) - 1.0)
    out = image * factors[:, 0]
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * factors[:, 1] + mean).clamp(0.0, 1.0)


def hash_ids(sample_ids: Sequence[str] | Sequence[int] | Tensor, device: torch.device | None = None) -> Tensor:
    """Sample ids as int64 keys (strings hashed with BLAKE2b, stable across processes and runs)."""
    n = sample_ids.shape[0] if isinstance(sample_ids, Tensor) else len(sample_ids)
    return sample_ids_to_tensor(sample_ids, n, device or torch.device("cpu"))


# ---------------------------------------------------------------------------------------------------- the bank
class PseudoLabelBank(nn.Module):
    """One stored tensor per sample, keyed by int64 sample keys (see :func:`hash_ids`).

    Two buffers hold the content: ``keys`` (N,) int64 and ``values`` (N, *shape) float, in insertion order; the
    per-entry ``shape`` is fixed by the first :meth:`write`. The bank grows when unknown keys are written, and
    loading a state dict resizes it to the saved size, so checkpoints of any size restore into a freshly built
    (empty) bank. A Python dict from key to row makes lookups O(batch); it is rebuilt after loading.

    Writing the same key twice in one call keeps the first occurrence (a ``DistributedSampler`` pads an epoch with
    repeats of early samples; they carry the same sample).
    """

    keys: Tensor
    values: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("values", torch.zeros(0))
        self._rows: dict[int, int] | None = {}

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def entry_shape(self) -> tuple[int, ...] | None:
        """The shape of one entry, or None while the bank is empty."""
        return tuple(self.values.shape[1:]) if len(self) else None

    def _index(self) -> dict[int, int]:
        if self._rows is None:
            self._rows = {k: i for i, k in enumerate(self.keys.tolist())}
        return self._rows

    def rows(self, keys: Tensor) -> Tensor:
        """Row of every key (B,) in the bank, -1 where unknown (on the bank's device)."""
        index = self._index()
        return torch.tensor([index.get(k, -1) for k in keys.tolist()], dtype=torch.long, device=self.values.device)

    def read(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        """``(values (B, *shape), found (B,) bool)``; unknown keys read as zeros (the bank must not be empty)."""
        if not len(self):
            raise RuntimeError("the bank is empty: write before reading")
        rows = self.rows(keys)
        found = rows >= 0
        out = self.values[rows.clamp_min(0)].clone()
        out[~found] = 0
        return out, found

    def write(self, keys: Tensor, values: Tensor) -> None:
        """Store ``values`` (B, *shape) under ``keys`` (B,): overwrite known keys, append new ones."""
        if keys.dim() != 1 or values.shape[0] != keys.shape[0]:
            raise ValueError(f"keys (B,) and values (B, ...) expected, got {tuple(keys.shape)}, {tuple(values.shape)}")
        shape = self.entry_shape
        if shape is not None and tuple(values.shape[1:]) != shape:
            raise ValueError(f"entries of this bank have shape {shape}, got {tuple(values.shape[1:])}")
        index = self._index()
        key_list = keys.tolist()
        first: dict[int, int] = {}
        for pos, k in enumerate(key_list):
            first.setdefault(k, pos)
        known = [(pos, index[k]) for k, pos in first.items() if k in index]
        new = [(pos, k) for k, pos in first.items() if k not in index]
        values = values.detach()
        if not len(self):
            # The entry shape is fixed by the first write; the dtype stays the buffer's (float32 unless converted).
            self.values = torch.zeros(0, *values.shape[1:], dtype=self.values.dtype, device=values.device)
            self.keys = self.keys.to(values.device)
        values = values.to(self.values.device, self.values.dtype)
        if known:
            src = torch.tensor([p for p, _ in known], dtype=torch.long, device=values.device)
            dst = torch.tensor([r for _, r in known], dtype=torch.long, device=values.device)
            self.values[dst] = values[src]
        if new:
            src = torch.tensor([p for p, _ in new], dtype=torch.long, device=values.device)
            start = len(self)
            new_keys = torch.tensor([k for _, k in new], dtype=torch.int64, device=self.keys.device)
            self.keys = torch.cat([self.keys, new_keys])
            self.values = torch.cat([self.values, values[src]])
            for offset, (_, k) in enumerate(new):
                index[k] = start + offset

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A checkpoint's bank usually differs in size from a freshly built one (empty, or grown since): take the
        # saved shapes before the default copy, which requires equal shapes.
        for name in ("keys", "values"):
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor):
                current: Tensor = getattr(self, name)
                setattr(self, name, torch.empty(saved.shape, dtype=current.dtype, device=current.device))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._rows = None  # rebuilt from the loaded keys on the next lookup
