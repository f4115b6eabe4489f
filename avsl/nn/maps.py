"""Pure functions on localization maps: normalization, sharpening, agreement and selection.

Maps are (B, h, w) tensors. XPL builds its pseudo-labels and its curriculum from these (``avsl.methods.xpl``); every
method's ``localize`` normalizes with :func:`minmax_normalize`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["map_agreement", "map_confidence", "minmax_normalize", "resize_like", "sharpen", "top_fraction_mask"]


def minmax_normalize(maps: Tensor, eps: float = 1e-10) -> Tensor:
    """Min-max normalize each map of a (B, ...) tensor to [0, 1] over all but the batch dimension.

    A constant map becomes all zeros (its range is below ``eps``), never NaN.
    """
    flat = maps.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(maps)


def resize_like(maps: Tensor, ref: Tensor) -> Tensor:
    """Maps (B, h, w) resized bilinearly (half-pixel centres) to the spatial size of ``ref`` (unchanged if equal)."""
    if maps.shape[-2:] == ref.shape[-2:]:
        return maps
    return F.interpolate(maps[:, None], size=ref.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


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
