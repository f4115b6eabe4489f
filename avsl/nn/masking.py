"""Mask augmentation: hide random blocks of a frame (USPL's "mask-augmentation-based" contrastive learning).

USPL's abstract names mask augmentation as part of its multi-instance contrastive stage but does not describe it.
This reconstruction (methods.md §5.2) hides a fixed fraction of the cells of a ``grid x grid`` partition of each frame,
so that the max-pooled audio-visual similarity cannot rely on a single discriminative patch: when that patch is
hidden, the rest of the object has to match the sound too. Pure functions; randomness comes from torch's generator
(seeded by Lightning's ``seed_everything``) or an explicit ``generator``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mask_augment", "random_block_mask"]


def random_block_mask(
    batch: int,
    height: int,
    width: int,
    grid: int,
    ratio: float,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random block masks (B, 1, H, W) in {0, 1}, where 1 marks a hidden pixel.

    The frame is cut into ``grid x grid`` cells (row ``y`` belongs to cell row ``y * grid // H``); exactly
    ``round(ratio * grid**2)`` cells, drawn independently for every sample, are hidden. When ``grid`` divides ``H`` and
    ``W`` the hidden fraction of the pixels is exactly ``round(ratio * grid**2) / grid**2``.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    if not 1 <= grid <= min(height, width):
        raise ValueError(f"grid must be in [1, min(height, width)], got {grid} for {height}x{width}")
    cells = grid * grid
    hidden = round(ratio * cells)
    # A random permutation per sample: the first `hidden` cells of it are masked.
    scores = torch.rand(batch, cells, device=device, generator=generator)
    order = scores.argsort(dim=1)
    cell_mask = torch.zeros(batch, cells, device=order.device)
    cell_mask.scatter_(1, order[:, :hidden], 1.0)
    rows = torch.arange(height, device=order.device) * grid // height
    cols = torch.arange(width, device=order.device) * grid // width
    index = (rows[:, None] * grid + cols[None, :]).flatten()
    return cell_mask[:, index].view(batch, 1, height, width)


def mask_augment(image: Tensor, hidden: Tensor, fill: Tensor | float = 0.0) -> Tensor:
    """Frames (B, 3, H, W) with the pixels where ``hidden`` (B, 1, H, W) is 1 replaced by ``fill``.

    ``fill`` may be a scalar or a per-channel (1, 3, 1, 1) colour; USPL passes the ImageNet mean, which the visual
    encoder's normalization maps to zero.
    """
    if hidden.shape[0] != image.shape[0] or hidden.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"hidden {tuple(hidden.shape)} does not match image {tuple(image.shape)}")
    hidden = hidden.to(image.dtype)
    return image * (1.0 - hidden) + hidden * fill
