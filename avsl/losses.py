"""Losses as pure functions (no module state), shared by the methods."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "fnac_regularizers",
    "heatmap_bce",
    "heatmap_mass",
    "heatmap_mse",
    "mil_infonce",
    "mil_similarity",
    "negcos",
    "simsiam_loss",
]


def mil_similarity(visual: Tensor, audio: Tensor, pool_temperature: float | None = None) -> Tensor:
    """Multiple-instance similarity: for every (image i, audio j) pair, the cosine map of v_i with a_j pooled over
    locations: its maximum (EZ-VSL), or a soft maximum.

    Args:
        visual: (Bv, C, h, w) L2-normalized visual features.
        audio: (Ba, C) L2-normalized audio embeddings.
        pool_temperature: None for the maximum over locations (EZ-VSL, Mo & Morgado 2022, Eq. 2: global max
            pooling). A temperature T > 0 pools with ``T * log(mean(exp(cos / T)))`` instead, a smooth maximum that
            tends to the maximum as T -> 0 and to the mean as T grows: every location gets a gradient, in proportion
            to its share of ``softmax(cos / T)``, so the loss asks several cells of the source to match, not one.

    Returns:
        (Bv, Ba) similarities.
    """
    if pool_temperature is not None and pool_temperature <= 0:
        raise ValueError(f"pool_temperature must be positive or None, got {pool_temperature}")
    # In float32 also under autocast: bf16 keeps 8 bits of a cosine, and the InfoNCE divides it by a small tau.
    with torch.autocast(visual.device.type, enabled=False):
        cos = torch.einsum("ichw,jc->ijhw", visual.float(), audio.float()).flatten(2)
        if pool_temperature is None:
            return cos.max(dim=2).values
        log_n = math.log(cos.shape[2])
        return pool_temperature * (torch.logsumexp(cos / pool_temperature, dim=2) - log_n)


def mil_infonce(
    visual: Tensor,
    audio: Tensor,
    tau: float,
    visual_all: Tensor | None = None,
    audio_all: Tensor | None = None,
    offset: int = 0,
    pool_temperature: float | None = None,
) -> Tensor:
    """The symmetric multiple-instance InfoNCE of EZ-VSL (image->audio plus audio->image cross-entropy).

    Positives are the paired (i, i) entries. With ``visual_all`` / ``audio_all`` (features gathered from every
    process, this process's rows starting at ``offset``) the local samples are contrasted against the global batch:
    the effective number of negatives grows with the world size.

    Args:
        visual: (B, C, h, w) L2-normalized visual maps of this process.
        audio: (B, C) L2-normalized audio embeddings of this process.
        tau: temperature (0.03 in EZ-VSL).
        pool_temperature: how the cosine maps are pooled (:func:`mil_similarity`; None: the maximum, as EZ-VSL).
    """
    if visual.shape[0] != audio.shape[0]:
        raise ValueError(f"batch sizes differ: visual {visual.shape[0]}, audio {audio.shape[0]}")
    v_all = visual if visual_all is None else visual_all
    a_all = audio if audio_all is None else audio_all
    target = torch.arange(visual.shape[0], device=visual.device) + offset
    logits_va = mil_similarity(visual, a_all, pool_temperature) / tau  # (B, N): each image against every audio
    logits_av = mil_similarity(v_all, audio, pool_temperature).t() / tau  # (B, N): each audio against every image
    return F.cross_entropy(logits_va, target) + F.cross_entropy(logits_av, target)


def fnac_regularizers(
    visual: Tensor, audio: Tensor, tau: float, threshold: float = 0.6
) -> tuple[Tensor, Tensor, Tensor]:
    """FNAC's false-negative-aware terms (Sun et al., CVPR 2023; OpenNLPLab/FNAC_AVL ``model.py``): how far the
    row-softmaxes of intra-modal similarities are from those of the cross-modal MIL logits, so that pairs whose sounds
    (or frames) are alike are not pushed apart as negatives.

    With ``L[i, j] = max_x <v_i(x), a_j> / tau`` (rows: images), ``A = a a^T / tau`` (audio-audio), ``V = m m^T /
    tau`` where ``m`` is the spatial mean of each visual map (image-image), and ``G = f f^T / tau`` where ``f`` is the
    spatial mean of the visual map over the locations whose self map ``<v_i(x), a_i>`` is above ``threshold`` after a
    per-sample min-max (denominator + 1e-5; a hard mask, every location counts in the mean): returns the mean absolute
    differences ``(|sm(A) - sm(L)|, |sm(A) - sm(G)|, |sm(V) - sm(L)|)``, FNAC's FNS1, TNS and FNS2. No stop-gradient,
    as the reference. Computed in float32.

    Args:
        visual: (B, C, h, w) L2-normalized visual maps.
        audio: (B, C) L2-normalized audio embeddings.
        tau: the temperature of every similarity (0.03 in FNAC).
        threshold: the foreground threshold of ``G`` (0.6 in FNAC).
    """
    with torch.autocast(visual.device.type, enabled=False):
        v, a = visual.float(), audio.float()
        logits = mil_similarity(v, a) / tau
        audio_sim = a @ a.t() / tau
        mean_visual = v.mean(dim=(2, 3))
        visual_sim = mean_visual @ mean_visual.t() / tau
        self_map = torch.einsum("bchw,bc->bhw", v, a).flatten(1) / tau
        lo, hi = self_map.min(dim=1, keepdim=True).values, self_map.max(dim=1, keepdim=True).values
        mask = ((self_map - lo) / (hi - lo + 1e-5) > threshold).to(v.dtype).view(v.shape[0], 1, *v.shape[2:])
        foreground = (v * mask).mean(dim=(2, 3))
        foreground_sim = foreground @ foreground.t() / tau
        p_logits, p_audio = logits.softmax(dim=1), audio_sim.softmax(dim=1)
        return (
            (p_audio - p_logits).abs().mean(),
            (p_audio - foreground_sim.softmax(dim=1)).abs().mean(),
            (visual_sim.softmax(dim=1) - p_logits).abs().mean(),
        )


def negcos(p: Tensor, z: Tensor) -> Tensor:
    """SimSiam's negative cosine ``D(p, z)`` with a stop-gradient on ``z`` (Chen & He 2021); range [-1, 1]."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def simsiam_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """The symmetric SimSiam objective ``D(p1, sg z2) / 2 + D(p2, sg z1) / 2`` used by SSPL."""
    return 0.5 * negcos(p1, z2) + 0.5 * negcos(p2, z1)


def heatmap_bce(prob: Tensor, target: Tensor, weight: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """Pixel-wise binary cross-entropy between a probability map and a (soft) target map, averaged.

    Args:
        prob: (B, H, W) probabilities in [0, 1] (clamped to [eps, 1 - eps] so that saturated maps stay finite).
        target: (B, H, W) targets in [0, 1] (soft pseudo-labels allowed).
        weight: optional per-sample weights (B,); the mean is taken over the weighted samples.
    """
    if prob.shape != target.shape:
        raise ValueError(f"prob {tuple(prob.shape)} and target {tuple(target.shape)} differ in shape")
    loss = F.binary_cross_entropy(prob.clamp(eps, 1 - eps), target.to(prob.dtype), reduction="none")
    per_sample = loss.flatten(1).mean(dim=1)
    if weight is None:
        return per_sample.mean()
    total = weight.sum()
    return (per_sample * weight).sum() / total.clamp_min(1e-12)


def heatmap_mse(prob: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Pixel-wise squared error between a probability map and a target map, averaged like :func:`heatmap_bce`.

    Args:
        prob: (B, H, W) maps in [0, 1].
        target: (B, H, W) targets in [0, 1].
        weight: optional per-sample weights (B,); the mean is taken over the weighted samples.
    """
    if prob.shape != target.shape:
        raise ValueError(f"prob {tuple(prob.shape)} and target {tuple(target.shape)} differ in shape")
    per_sample = (prob - target.to(prob.dtype)).pow(2).flatten(1).mean(dim=1)
    if weight is None:
        return per_sample.mean()
    return (per_sample * weight).sum() / weight.sum().clamp_min(1e-12)


def heatmap_mass(scores: Tensor, target: Tensor, temperature: float, weight: Tensor | None = None) -> Tensor:
    """``-log`` of the share of a map's spatial softmax that falls inside a (soft) target mask, averaged.

    ``p = softmax(scores / temperature)`` over the pixels of each map and ``loss = -log(sum_i target_i * p_i)``: the
    loss is small when the map's mass, and so its peak, lies inside the target, wherever inside (a multiple-instance
    reading of a box, which also holds background). Every pixel gets a gradient and adding a constant to a map changes
    nothing, unlike a binary cross-entropy on a min-max-normalized map, where the clamped maximum (and minimum) get
    none: that maximum can then settle anywhere, for example in a corner that no object covers.

    Args:
        scores: (B, H, W) raw maps (any range; ``temperature`` is in their units).
        target: (B, H, W) masks in [0, 1] (soft pseudo-labels allowed); a sample whose mask is all zero contributes 0
            and should get weight 0.
        temperature: softmax temperature (positive).
        weight: optional per-sample weights (B,); the mean is taken over the weighted samples.
    """
    if scores.shape != target.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and target {tuple(target.shape)} differ in shape")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_p = F.log_softmax(scores.flatten(1).float() / temperature, dim=1)
    t = target.flatten(1).to(log_p.dtype)
    empty = t.amax(dim=1) <= 0
    # log(sum_i t_i p_i) as a logsumexp over the pixels the mask touches; an empty mask gives 0 instead of -inf.
    log_mass = torch.logsumexp(log_p + torch.log(t.clamp_min(1e-12)), dim=1)
    per_sample = torch.where(empty, torch.zeros_like(log_mass), -log_mass)
    if weight is None:
        return per_sample.mean()
    return (per_sample * weight).sum() / weight.sum().clamp_min(1e-12)
