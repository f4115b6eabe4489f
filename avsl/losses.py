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
    "lvs_trimap_logits",
    "mil_infonce",
    "mil_similarity",
    "multi_positive_infonce",
    "negcos",
    "simsiam_loss",
    "slavc_loss",
]


def _need_negatives(clips: int) -> None:
    """In-batch contrast: with one clip there is no negative, and the loss is exactly 0 with no gradient (a step that
    trains nothing, silently)."""
    if clips < 2:
        raise ValueError(
            f"a contrastive loss needs 2 clips or more in a batch (the other clips are its negatives), got {clips}: "
            "use batch_size >= 2, and drop_last=True (AVDataModule's default) so that no last batch has one clip"
        )


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
    _need_negatives(a_all.shape[0])
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


def slavc_loss(visual_1: Tensor, visual_2: Tensor, audio_1: Tensor, audio_2: Tensor, tau: float) -> Tensor:
    """One of SLAVC's two cross-entropies (Mo & Morgado, NeurIPS 2022; stoneMo/SLAVC ``model.py``, ``forward``).

    Two projection heads give two cosine maps per (image i, audio j) pair. The first head's map is a softmax over the
    batch's audios at each location (which sound is this location's?); the second head's, a softmax over locations
    (where is sound j in image i?). Their product summed over locations is the probability that image i goes with
    audio j, which is trained with a cross-entropy against the paired audio (the reference normalizes its log again
    over the audios: ``F.cross_entropy``). SLAVC adds this loss with momentum audio targets and with momentum image
    targets; in both, the rows are images and the classes the batch's audios, as in the reference. Computed in log
    space (``logsumexp`` of the two log-softmaxes), which equals the reference's ``log(sum(softmax * softmax))`` and
    stays finite where its product underflows; in float32 also under autocast.

    Args:
        visual_1, visual_2: (B, C, h, w) L2-normalized visual maps of the two heads.
        audio_1, audio_2: (B, C) L2-normalized audio embeddings of the two heads.
        tau: the temperature of both softmaxes (0.03 in SLAVC).
    """
    if visual_1.shape[0] != audio_1.shape[0]:
        raise ValueError(f"batch sizes differ: visual {visual_1.shape[0]}, audio {audio_1.shape[0]}")
    _need_negatives(visual_1.shape[0])
    with torch.autocast(visual_1.device.type, enabled=False):
        which_sound = torch.einsum("ichw,jc->ijhw", visual_1.float(), audio_1.float()).flatten(2) / tau
        where = torch.einsum("ichw,jc->ijhw", visual_2.float(), audio_2.float()).flatten(2) / tau
        logits = torch.logsumexp(which_sound.log_softmax(dim=1) + where.log_softmax(dim=2), dim=2)  # (B, B)
        return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


def lvs_trimap_logits(
    visual: Tensor,
    audio: Tensor,
    eps_pos: float = 0.65,
    eps_neg: float = 0.4,
    tau: float = 0.03,
    temperature: float = 0.07,
    trimap: bool = True,
    hard_negatives: bool = True,
) -> Tensor:
    """LVS's logits, target column 0 (Chen et al., "Localizing Visual Sounds the Hard Way", CVPR 2021;
    hche11/Localizing-Visual-Sounds-the-Hard-Way ``model.py``, ``AVENet.forward``).

    With ``S_ij(x) = <v_i(x), a_j>`` (image i, sound j) and the soft masks ``P = sigmoid((S - eps_pos) / tau)`` (the
    region that sounds) and ``N = 1 - sigmoid((S_ii - eps_neg) / tau)`` (the region that surely does not; with
    ``trimap`` False, ``1 - P_ii``: the uncertain band between the thresholds goes away), row i holds
    ``[pos_i, neg_i1 .. neg_iB, hard_i] / temperature``: ``pos_i`` the mean of ``S_ii`` over ``P_ii``, ``neg_ij`` the
    mean of ``S_ij`` over ``P_ij`` (another sound's best region in the same image) and ``hard_i`` the mean of ``S_ii``
    over ``N`` (the image's own background, left out without ``hard_negatives``). The masks are not detached, as in
    the reference. The paired entry ``neg_ii`` is multiplied by ``1 - 100 = -99`` as in the reference, which removes it
    from a softmax while ``S_ii`` is positive there (always, for the reference's post-ReLU features; not necessarily
    after a projection). Computed in float32.

    Args:
        visual: (B, C, h, w) L2-normalized visual maps.
        audio: (B, C) L2-normalized audio embeddings.
        eps_pos, eps_neg: the cosine thresholds of the positive and negative regions (0.65 and 0.4 in LVS).
        tau: the sharpness of the soft thresholds (0.03).
        temperature: the logits' temperature (0.07).
        trimap: negatives below ``eps_neg`` (True, LVS) or below ``eps_pos``.
        hard_negatives: append the own-background column (True in LVS).

    Returns:
        (B, B + 2) logits, or (B, B + 1) without ``hard_negatives``; LVS trains with cross-entropy against column 0.
    """
    if visual.shape[0] != audio.shape[0]:
        raise ValueError(f"batch sizes differ: visual {visual.shape[0]}, audio {audio.shape[0]}")
    with torch.autocast(visual.device.type, enabled=False):
        v, a = visual.float(), audio.float()
        own = torch.einsum("bchw,bc->bhw", v, a).flatten(1)  # (B, N)
        cross = torch.einsum("ichw,jc->ijhw", v, a).flatten(2)  # (B, B, N)
        pos = torch.sigmoid((own - eps_pos) / tau)
        positive = (pos * own).sum(dim=1) / pos.sum(dim=1)
        pos_all = torch.sigmoid((cross - eps_pos) / tau)
        eye = torch.eye(v.shape[0], device=v.device)
        others = (pos_all * cross).sum(dim=2) / pos_all.sum(dim=2) * (1 - 100 * eye)
        columns = [positive[:, None], others]
        if hard_negatives:
            # 1 - sigmoid(x) as sigmoid(-x): equal, but not 0 (and the mean not 0 / 0) when every cosine is high
            neg = torch.sigmoid(((eps_neg if trimap else eps_pos) - own) / tau)
            columns.append(((neg * own).sum(dim=1) / neg.sum(dim=1))[:, None])
        return torch.cat(columns, dim=1) / temperature


def multi_positive_infonce(logits: Tensor, positives: Tensor) -> Tensor:
    """InfoNCE with several (weighted) positives per row: ``mean_i [-sum_j w_ij log softmax(logits_i)_j / sum_j
    w_ij]``, the "outside the log" form of the supervised contrastive loss (Khosla et al., NeurIPS 2020, Eq. 2).

    Every positive of a row is its own cross-entropy target against all the columns, and a row's terms are averaged
    with the weights (SupCon found this form better than the log of the positives' summed probability). SSL-align
    (Senocak et al., ICCV 2023) trains with a clip's own pair, its augmented views and semantically similar clips as
    positives (avsl.methods.SSLAlign; its training code is not released). With one positive per row, the paired
    diagonal, this is ``F.cross_entropy(logits, arange(B))``.

    Args:
        logits: (B, N) similarities over temperature (rows: anchors, columns: candidates).
        positives: (B, N) bool mask or non-negative weights of the positives; every row needs one.
    """
    if logits.shape != positives.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and positives {tuple(positives.shape)} differ in shape")
    with torch.autocast(logits.device.type, enabled=False):
        log_p = F.log_softmax(logits.float(), dim=1)
        weights = positives.to(log_p.dtype)
        # No check of the values here (a host sync per step on a GPU): a row without a positive gives NaN.
        return (-(weights * log_p).sum(dim=1) / weights.sum(dim=1)).mean()
