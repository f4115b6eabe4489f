"""Random augmentations drawn on the device, with known geometry (the methods' own views; datasets augment on CPU).

Random crops and flips are described by parameters (:func:`crop_flip_params`) and applied by :func:`crop_flip` at any
resolution, so that a target stored in the un-augmented frame (XPL's pseudo-labels, a ``gt_map``) can be warped onto
the augmented view. SSPL's two views are crops of a fixed scale; XPL's strong view, crops of a random scale.
:func:`color_jitter` changes brightness, contrast and (optionally) saturation per sample.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["color_jitter", "crop_flip", "crop_flip_params"]


def crop_flip_params(
    batch_size: int,
    min_scale: float,
    flip_p: float,
    device: torch.device | None = None,
    max_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random crop-and-flip parameters (B, 4): ``(scale, x0, y0, flip)`` in normalized frame units.

    Each crop is a square window of side ``scale``, uniform in [``min_scale``, ``max_scale``] (a fraction of the frame
    side), at top-left corner ``(x0, y0)`` uniform inside the frame; ``flip`` is 1.0 for a horizontal flip
    (probability ``flip_p``). ``min_scale = max_scale = 1 / s`` is "resize by ``s``, crop back to the original size"
    (SSPL's views: s = 1.1). Randomness comes from ``generator``, else torch's generator of ``device`` (seeded by
    ``seed_everything``).
    """
    if not 0.0 < min_scale <= max_scale <= 1.0:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
    if not 0.0 <= flip_p <= 1.0:
        raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
    u = torch.rand(batch_size, 4, device=device, generator=generator)
    scale = min_scale + (max_scale - min_scale) * u[:, 0]
    x0 = (1.0 - scale) * u[:, 1]
    y0 = (1.0 - scale) * u[:, 2]
    flip = (u[:, 3] < flip_p).float()
    return torch.stack([scale, x0, y0, flip], dim=1)


def crop_flip(x: Tensor, params: Tensor, mode: Literal["bilinear", "nearest"] = "bilinear") -> Tensor:
    """Apply :func:`crop_flip_params` windows to (B, C, H, W) tensors at any resolution; the output keeps (H, W).

    Works in normalized coordinates, so the same parameters warp a 128-px frame and its 7x7 map consistently: the
    output pixel at normalized position ``u`` reads the input at ``x0 + scale * u`` (``1 - u`` when flipped). One
    bilinear resampling (``affine_grid`` + ``grid_sample``, half-pixel centres, border padding).
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


def color_jitter(
    images: Tensor,
    strength: float,
    saturation: bool = True,
    p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random brightness, contrast and (with ``saturation``) saturation per sample of a (B, 3, H, W) batch in [0, 1].

    Each factor is drawn uniformly from ``[1 - strength, 1 + strength]`` (torchvision's ``ColorJitter`` convention:
    contrast around the mean luma, saturation towards the grey image, clamped after each step) and the jitter is
    applied to a sample with probability ``p``. SSPL's optional views use it with saturation and p = 0.8 (the SSPL
    supplement's Table S3, without hue); XPL's strong view without saturation (on SynthAV, colour identifies the class).
    """
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"strength must be in [0, 1), got {strength}")
    if strength == 0 or p == 0:
        return images
    b = images.shape[0]
    u = torch.rand(b, 4, 1, 1, 1, device=images.device, generator=generator).to(images.dtype)
    factors = 1.0 + strength * (2.0 * u[:, :3] - 1.0)

    def luma(x: Tensor) -> Tensor:  # ITU-R BT.601 weights, as torchvision's rgb_to_grayscale
        return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]

    out = (images * factors[:, 0]).clamp(0.0, 1.0)  # brightness
    mean = luma(out).mean(dim=(2, 3), keepdim=True)
    out = ((out - mean) * factors[:, 1] + mean).clamp(0.0, 1.0)  # contrast
    if saturation:
        grey = luma(out)
        out = ((out - grey) * factors[:, 2] + grey).clamp(0.0, 1.0)
    return torch.where(u[:, 3] < p, out, images)
