"""Inter-pixel semantic affinity and random-walk propagation (the sounding map refinement of USPL).

USPL's abstract (Zhang, Ji, Yang, EMNLP 2023) describes its refinement stage as "visual semantic affinity learning"
over the relations of adjacent pixels, which recovers the boundaries of coarse sounding maps. No code or equations are
public, so this module follows the closest published recipe, AffinityNet (Ahn & Kwak, "Learning Pixel-level Semantic
Affinity with Image-level Supervision", CVPR 2018; reference code ``jiwoon-ahn/psa``):

- affinity of pixels ``i`` and ``j`` within a radius: ``a_ij = exp(-mean_c |f_i - f_j|)`` of learned embeddings;
- training pairs from confident seeds of a coarse map: foreground-foreground and background-background pairs are
  positive, foreground-background pairs negative, each group averaged on its own;
- refinement: a random walk with the transition matrix ``T = D^-1 A^beta`` applied ``iterations`` times.

Affinities are stored *locally*: for a (B, D, H, W) embedding and a radius ``r`` they form a (B, K, H, W) tensor whose
entry ``[k, y, x]`` is the affinity of pixel (y, x) with pixel (y + dy_k, x + dx_k), for the ``K`` offsets of
:func:`neighbour_offsets` (half of the disc of radius ``r``; affinity is symmetric, so the other half is a shifted
copy). Pairs that leave the image have affinity 0 and are never labelled.

Everything here is a pure function except :class:`AffinityNet`, the small embedding network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsl.nn.backbones import create_backbone
from avsl.nn.maps import minmax_normalize

__all__ = [
    "AffinityNet",
    "affinity_loss",
    "affinity_pair_labels",
    "neighbour_offsets",
    "pairwise_affinity",
    "random_walk",
    "refine_map",
    "seeds_from_map",
    "shift",
]

FOREGROUND, BACKGROUND, IGNORE = 1, 0, -1
"""Seed labels of :func:`seeds_from_map`."""


def neighbour_offsets(radius: int) -> list[tuple[int, int]]:
    """The half disc of offsets ``(dy, dx)`` with ``0 < dy^2 + dx^2 <= radius^2`` and ``(dy, dx) > (0, 0)``.

    Each unordered pair of pixels at most ``radius`` apart appears exactly once (AffinityNet also uses a disc
    neighbourhood and each pair once).
    """
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    return [
        (dy, dx)
        for dy in range(0, radius + 1)
        for dx in range(-radius, radius + 1)
        if (dy > 0 or dx > 0) and dy * dy + dx * dx <= radius * radius
    ]


def shift(x: Tensor, dy: int, dx: int, fill: float = 0.0) -> Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, with ``fill`` where ``(y + dy, x + dx)`` leaves the image."""
    h, w = x.shape[-2], x.shape[-1]
    out = torch.full_like(x, fill)
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    if ys < ye and xs < xe:
        out[..., ys:ye, xs:xe] = x[..., ys + dy : ye + dy, xs + dx : xe + dx]
    return out


def _valid(h: int, w: int, offsets: list[tuple[int, int]], device: torch.device) -> Tensor:
    """(K, H, W) bool: pixel (y, x) has its neighbour (y + dy, x + dx) inside the image."""
    ones = torch.ones(h, w, device=device)
    return torch.stack([shift(ones, dy, dx) > 0 for dy, dx in offsets])


def _neighbours(x: Tensor, offsets: list[tuple[int, int]], fill: float = 0.0) -> list[Tensor]:
    """Views of ``x`` (..., H, W) shifted by every offset, as :func:`shift` gives them, from a single padded copy."""
    r = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    h, w = x.shape[-2], x.shape[-1]
    padded = F.pad(x, (r, r, r, r), value=fill)
    return [padded[..., r + dy : r + dy + h, r + dx : r + dx + w] for dy, dx in offsets]


def pairwise_affinity(features: Tensor, radius: int) -> Tensor:
    """Affinities (B, K, H, W) of (B, D, H, W) embeddings with their neighbours (see the module docstring).

    ``a_ij = exp(-mean_c |f_i - f_j|)`` in (0, 1] (AffinityNet, Eq. 3, with the channel mean of jiwoon-ahn/psa
    ``network/resnet38_aff.py``); pairs outside the image are 0.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (B, D, H, W), got {tuple(features.shape)}")
    offsets = neighbour_offsets(radius)
    h, w = features.shape[-2:]
    # One offset at a time keeps memory at O(B * D * H * W) per offset instead of materializing every neighbour.
    aff = torch.stack(
        [torch.exp(-(features - other).abs().mean(dim=1)) for other in _neighbours(features, offsets)], dim=1
    )
    return aff * _valid(h, w, offsets, features.device).to(aff.dtype)


def seeds_from_map(maps: Tensor, fg_threshold: float, bg_threshold: float) -> Tensor:
    """Confident seeds (B, H, W) of maps in [0, 1]: 1 where ``map >= fg_threshold``, 0 where ``map <= bg_threshold``,
    -1 (ignored) in between."""
    if not 0.0 <= bg_threshold < fg_threshold <= 1.0:
        raise ValueError(f"need 0 <= bg_threshold < fg_threshold <= 1, got {bg_threshold}, {fg_threshold}")
    seeds = torch.full(maps.shape, IGNORE, dtype=torch.long, device=maps.device)
    seeds[maps >= fg_threshold] = FOREGROUND
    seeds[maps <= bg_threshold] = BACKGROUND
    return seeds


def affinity_pair_labels(seeds: Tensor, radius: int) -> tuple[Tensor, Tensor, Tensor]:
    """Boolean (B, K, H, W) masks of the foreground pairs, background pairs and foreground-background pairs.

    A pair is labelled only when both pixels are seeds (not -1) and both lie inside the image.
    """
    offsets = neighbour_offsets(radius)
    other = torch.stack(_neighbours(seeds, offsets, fill=IGNORE), dim=1)
    here = seeds[:, None].expand_as(other)
    fg_pairs = (here == FOREGROUND) & (other == FOREGROUND)
    bg_pairs = (here == BACKGROUND) & (other == BACKGROUND)
    neg_pairs = ((here == FOREGROUND) & (other == BACKGROUND)) | ((here == BACKGROUND) & (other == FOREGROUND))
    return fg_pairs, bg_pairs, neg_pairs


def affinity_loss(affinity: Tensor, seeds: Tensor, radius: int, eps: float = 1e-5) -> Tensor:
    """The class-balanced affinity loss of AffinityNet (Eq. 7-8; jiwoon-ahn/psa ``train_aff.py``).

    ``L = 1/4 * mean_fg(-log a) + 1/4 * mean_bg(-log a) + 1/2 * mean_neg(-log(1 - a))``, each mean over its own pair
    group of the whole batch; an empty group contributes 0.

    Args:
        affinity: (B, K, H, W) from :func:`pairwise_affinity` with the same ``radius``.
        seeds: (B, H, W) seed labels from :func:`seeds_from_map`.
        radius: the neighbourhood radius.
    """
    fg_pairs, bg_pairs, neg_pairs = affinity_pair_labels(seeds, radius)
    if fg_pairs.shape != affinity.shape:
        raise ValueError(f"affinity {tuple(affinity.shape)} does not match radius {radius} and seeds")

    def group_mean(values: Tensor, mask: Tensor) -> Tensor:
        return (values * mask).sum() / mask.sum().clamp_min(1)

    pos = -torch.log(affinity.clamp_min(eps))
    neg = -torch.log((1.0 - affinity).clamp_min(eps))
    return 0.25 * group_mean(pos, fg_pairs) + 0.25 * group_mean(pos, bg_pairs) + 0.5 * group_mean(neg, neg_pairs)


def random_walk(maps: Tensor, affinity: Tensor, radius: int, beta: float = 8.0, iterations: int = 8) -> Tensor:
    """Propagate maps (B, H, W) along affinities: ``m <- T m``, ``iterations`` times, with ``T = D^-1 A^beta``.

    ``A`` holds the local affinities of both half discs plus the pixel itself (affinity 1), ``A^beta`` sharpens them
    (AffinityNet uses beta = 8) and ``D`` normalizes each row, so every step replaces a pixel by the affinity-weighted
    mean of its neighbourhood: values spread inside regions of high affinity and stop at boundaries. AffinityNet runs
    ``2^8`` steps by squaring a dense transition matrix; the local form costs O(B * K * H * W) per step, so USPL uses
    fewer steps (each one moves information up to ``radius`` pixels).
    """
    if maps.dim() != 3 or affinity.dim() != 4 or affinity.shape[0] != maps.shape[0]:
        shapes = f"{tuple(maps.shape)}, {tuple(affinity.shape)}"
        raise ValueError(f"maps must be (B, H, W) and affinity (B, K, H, W) of the same B, got {shapes}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    offsets = neighbour_offsets(radius)
    if affinity.shape[1] != len(offsets) or affinity.shape[-2:] != maps.shape[-2:]:
        raise ValueError(f"affinity {tuple(affinity.shape)} does not match maps {tuple(maps.shape)}, radius {radius}")
    weights_half = affinity.clamp_min(0.0) ** beta
    # The mirrored half: the affinity of (y, x) with (y - dy, x - dx) is the one stored at (y - dy, x - dx).
    mirrored = torch.stack([shift(weights_half[:, k], -dy, -dx) for k, (dy, dx) in enumerate(offsets)], dim=1)
    weights = torch.cat([torch.ones_like(maps)[:, None], weights_half, mirrored], dim=1)
    transition = weights / weights.sum(dim=1, keepdim=True)
    every = [(0, 0), *offsets, *[(-dy, -dx) for dy, dx in offsets]]
    out = maps
    for _ in range(iterations):
        out = (transition * torch.stack(_neighbours(out, every), dim=1)).sum(dim=1)
    return out


class AffinityNet(nn.Module):
    """Pixel embeddings for semantic affinity: a shallow backbone stage, optionally concatenated with (upsampled)
    deep features given by the caller, then two 1x1 convolutions.

    The shallow stage keeps the resolution that boundaries need; the deep features (the frozen stage-1 visual map in
    USPL) carry the semantics. AffinityNet concatenates three stages of one ResNet-38; here the shallow stage is a
    separate copy of a registry backbone cut at ``out_index`` (so any registry backbone works), which USPL initializes
    from the stage-1 visual backbone.

    Args:
        backbone: registry name (``avsl.nn.create_backbone``).
        out_index: the backbone stage of the embeddings (e.g. -3: stride 4 for ``tiny_cnn``, 8 for ResNets).
        embed_dim: dimension of the affinity embedding.
        deep_channels: channels of the deep features passed to :meth:`forward` (0: none).
        pretrained, checkpoint_path: weights of the shallow backbone, as in :func:`create_backbone`.
    """

    def __init__(
        self,
        backbone: str,
        out_index: int = -3,
        embed_dim: int = 64,
        deep_channels: int = 0,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, 3, pretrained, checkpoint_path, out_index)
        self.deep_channels = deep_channels
        cin = self.backbone.out_channels + deep_channels
        self.head = nn.Sequential(
            nn.Conv2d(cin, embed_dim, 1),
            nn.BatchNorm2d(embed_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(embed_dim, embed_dim, 1),
        )
        self.stride = self.backbone.stride

    def forward(self, image: Tensor, deep: Tensor | None = None) -> Tensor:
        """Embeddings (B, embed_dim, H / stride, W / stride) of normalized images (B, 3, H, W)."""
        feats = self.backbone(image)
        if self.deep_channels:
            if deep is None or deep.shape[1] != self.deep_channels:
                raise ValueError(f"AffinityNet expects deep features with {self.deep_channels} channels")
            deep = F.interpolate(deep, size=feats.shape[-2:], mode="bilinear", align_corners=False)
            feats = torch.cat([feats, deep], dim=1)
        out: Tensor = self.head(feats)
        return out


def refine_map(coarse: Tensor, affinity: Tensor, radius: int, beta: float, iterations: int) -> Tensor:
    """Refined maps in [0, 1]: min-max normalize coarse maps (B, H, W) already at the affinity resolution, propagate
    them with :func:`random_walk`, and min-max normalize again."""
    return minmax_normalize(random_walk(minmax_normalize(coarse), affinity, radius, beta, iterations))
