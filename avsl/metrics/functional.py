"""Pure functions behind the avsl metrics: GT maps, binarization rules, cIoU, success rate, AUC, pointing.

Every rule reproduces one reference evaluator exactly (``docs/metrics.md`` has the table). The references work per
sample in NumPy; here everything is batched over a leading sample dimension and runs on any device. Habits of the
references that matter for exactness and are replicated on purpose:

* they normalize the heatmap in its own dtype (float32 after ``cv2.resize`` or ``F.interpolate``), so rounding can
  create or break ties; normalization here happens in the input dtype, with the same operations in the same order;
* their thresholds are exact values taken from the sorted map (``np.sort(p)[k]``), here a selection or a sort;
* they sum with NumPy (pairwise, in float64 for the cIoU); the CPU path here sums with NumPy in the same order.

CPU float32/float64 inputs run through NumPy, in blocks of about 1 MB (NumPy's selection and masked reductions are
several times faster than torch's on the CPU, and small blocks stay in cache); CUDA and half-precision inputs run
through torch. Both paths are tested against each other. In torch, divisions use a divisor *tensor* on the input's
device, never a Python scalar: on CUDA, PyTorch turns division by a CPU scalar into multiplication by its reciprocal,
which is not bitwise equal to NumPy's division.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, cast, get_args

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "AUC_THRESHOLDS",
    "PROTOCOLS",
    "GTStyle",
    "ProtocolName",
    "auc",
    "binarize",
    "ciou",
    "ciou_from_mask",
    "gt_map_from_boxes",
    "numpy_pairwise_sum",
    "pointing",
    "slavc_confidence",
    "success_rate",
]

GTStyle = Literal["flickr", "vggss"]
ProtocolName = Literal["ezvsl", "lvs", "sspl", "slavc", "sslalign", "sslalign_adaptive"]

#: The binarization protocols, in the order of ``docs/metrics.md``; ``"ezvsl"`` is the default everywhere.
PROTOCOLS: tuple[str, ...] = get_args(ProtocolName)

#: The 21 cIoU thresholds of the AUC, as the references compute them: the Python float products ``0.05 * i``
#: (so ``0.05 * 7 == 0.35000000000000003``). LVS ``test.py``, EZ-VSL ``utils.Evaluator.finalize_AUC``.
AUC_THRESHOLDS: tuple[float, ...] = tuple(0.05 * i for i in range(21))

# Tolerance of the range check of fixed-range scores: (cos + 1) / 2 computed in float32 may exceed 1 by an ulp.
_FIXED_RANGE_SLACK = 1e-3


# --------------------------------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------------------------------


def gt_map_from_boxes(boxes: Sequence[Sequence[float]] | Tensor, style: GTStyle, size: int = 224) -> Tensor:
    """Build the ground-truth weight map of one sample from its boxes, exactly as the reference evaluators do.

    Args:
        boxes: xyxy boxes, shape (N, 4); N may be 0. ``style="flickr"``: pixel coordinates in the 256-px annotation
            frame, all annotators' boxes together. ``style="vggss"``: coordinates normalized to [0, 1].
        style: ``"flickr"`` gives the consensus map ``min(sum_j box_j / 2, 1)`` with values in {0, 0.5, 1}
            (Senocak et al. 2018; LVS ``utils.testset_gt``, EZ-VSL ``datasets.bbox2gtmap``). ``"vggss"`` gives the
            binary union of the boxes after clipping them to [0, 1] (LVS ``testset_gt``, EZ-VSL/SLAVC
            ``load_all_bboxes`` + ``bbox2gtmap``).
        size: side of the square map; the references hard-code 224.

    Coordinates are scaled with ``int(size * v / 256)`` (Flickr) or ``int(size * clip(v, 0, 1))`` (VGG-SS), i.e.
    truncation, and boxes are filled with Python slice semantics (end exclusive, negative indices count from the end,
    out-of-range ends are clamped), exactly like the references' NumPy slicing. Degenerate or garbage boxes (zero
    width, x1 < x0, the -2.88e16 values of ``vggss.json``) add nothing; they are not repaired. A sample whose boxes
    are all degenerate gets an all-zero map.

    Returns:
        A float64 (size, size) tensor on the CPU.

    Raises:
        ValueError: for a box without 4 coordinates, a NaN coordinate, a non-finite Flickr coordinate, an unknown
            style or a non-positive size.
    """
    if style not in ("flickr", "vggss"):
        raise ValueError(f"unknown GT style {style!r}; expected 'flickr' or 'vggss'")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    rows = boxes.tolist() if isinstance(boxes, Tensor) else [list(b) for b in boxes]
    acc = torch.zeros(size, size, dtype=torch.float64)
    for raw in rows:
        if not isinstance(raw, (list, tuple)) or len(raw) != 4:
            raise ValueError(f"a box needs 4 coordinates (x1, y1, x2, y2), got {raw!r}")
        row = [float(v) for v in raw]
        if any(math.isnan(v) for v in row):
            raise ValueError(f"box {raw!r} contains NaN")
        if style == "flickr":
            if not all(math.isfinite(v) for v in row):
                raise ValueError(f"box {raw!r} contains a non-finite coordinate")
            # LVS test.py / EZ-VSL load_all_bboxes: int(224 * int(v) / 256), true division then truncation.
            x0, y0, x1, y1 = (int(size * v / 256) for v in row)
        else:
            # EZ-VSL/SLAVC: (np.clip(bbox, 0, 1) * 224).astype(int). LVS/SSPL use int(224 * max(v, 0)) and let the
            # slice clamp values above 1, which fills the same pixels.
            x0, y0, x1, y1 = (int(size * min(max(v, 0.0), 1.0)) for v in row)
        # slice(...).indices applies Python's slice rules (negative wrap-around, clamping) without int64 overflow.
        rs, re, _ = slice(y0, y1).indices(size)
        cs, ce, _ = slice(x0, x1).indices(size)
        if re > rs and ce > cs:
            acc[rs:re, cs:ce] += 1.0
    if style == "flickr":
        return (acc / 2).clamp_(max=1.0)
    return (acc > 0).to(torch.float64)


# --------------------------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------------------------


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def _check_maps(maps: Tensor, name: str = "heatmaps") -> Tensor:
    """Type, shape and dtype of (B, H, W) float maps (their values are checked block by block)."""
    if not isinstance(maps, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(maps).__name__}")
    if maps.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W), got {tuple(maps.shape)}")
    if maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"{name} must have a non-empty spatial size, got {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {maps.dtype}")
    return maps.detach()


def _check_gt_shape(gt_maps: Tensor, shape: torch.Size) -> None:
    if not isinstance(gt_maps, Tensor):
        raise TypeError(f"gt_maps must be a torch.Tensor, got {type(gt_maps).__name__}")
    if gt_maps.shape != shape:
        raise ValueError(f"gt_maps must have the heatmaps' shape {tuple(shape)}, got {tuple(gt_maps.shape)}")


def _flat(maps: Tensor) -> Tensor:
    """(B, H, W) -> (B, H * W), also for B = 0."""
    return maps.reshape(maps.shape[0], maps.shape[1] * maps.shape[2])


def _raise_non_finite(values: Tensor | np.ndarray, name: str) -> None:
    v = torch.as_tensor(values)
    nan, inf = int(torch.isnan(v).sum()), int(torch.isinf(v).sum())
    raise ValueError(f"{name} contain non-finite values ({nan} NaN, {inf} inf); every evaluator needs finite maps")


def _check_gt_range(gmin: float, gmax: float) -> None:
    if math.isnan(gmin) or math.isnan(gmax):
        raise ValueError("gt_maps contain NaN")
    if gmin < 0 or gmax > 1:
        raise ValueError(f"gt_maps must lie in [0, 1], got values in [{gmin}, {gmax}]")


def _check_fixed_range(lo: float, hi: float, protocol: str) -> None:
    if lo < -_FIXED_RANGE_SLACK or hi > 1 + _FIXED_RANGE_SLACK:
        raise ValueError(
            f"protocol {protocol!r} thresholds fixed-range scores in [0, 1] (SLAVC maps cosine similarities with "
            f"(s + 1/tau) / (2/tau)), got values in [{lo}, {hi}]; map the raw scores to [0, 1] first"
        )


# --------------------------------------------------------------------------------------------------------------------
# Binarization and cIoU, block by block
#
# Two implementations of the same operations, bit for bit: NumPy for CPU float32/float64 tensors, torch for CUDA and
# half precision (see the module docstring). tests/test_metrics_reference.py checks that both paths agree.
# --------------------------------------------------------------------------------------------------------------------

_BLOCK_ELEMENTS = 1 << 18  # values per CPU block: 5 maps of 224 x 224


def _use_numpy(t: Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)


def _np_guard(vmin: np.ndarray, rng: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``normalize_img``'s zero-range guard as a shift and a scale: ``(x - 0) / 1`` is exactly ``x``."""
    zero = rng == 0
    return np.where(zero, np.zeros_like(vmin), vmin), np.where(zero, np.ones_like(rng), rng)


def _binarize_numpy(flat: np.ndarray, protocol: str, g: np.ndarray | None) -> np.ndarray:
    """Masks (b, N) of flattened maps (b, N) under ``protocol``; every operation in the maps' dtype."""
    n = flat.shape[1]
    vmin = flat.min(axis=1, keepdims=True)
    vmax = flat.max(axis=1, keepdims=True)
    if not (np.isfinite(vmin).all() and np.isfinite(vmax).all()):  # NaN and inf reach the min or the max
        _raise_non_finite(flat, "heatmaps")
    if protocol == "slavc":
        _check_fixed_range(float(vmin.min()), float(vmax.max()), protocol)
        return cast(np.ndarray, flat >= 0.5)
    if protocol == "sspl":
        # utils.normalize_img: (image - np.min(image)) / np.ptp(image); a constant map gives 0/0 = NaN, not >= 0.5.
        return cast(np.ndarray, (flat - vmin) / (vmax - vmin) >= 0.5)
    if protocol == "ezvsl":
        shift, scale = _np_guard(vmin, vmax - vmin)
        p = flat - shift
        p /= scale
        k = n // 2  # np.sort(p)[int(N * 0.5)]
        return cast(np.ndarray, p >= np.partition(p, k, axis=1)[:, k : k + 1])
    # LVS / SSLalignment: heatmap_now = normalize_img(-heatmap); pred = 1 - heatmap_now. For -h the minimum is -max(h),
    # (-h) - (-max) == max - h and the range is max - min, bit for bit.
    shift, scale = _np_guard(vmax, vmax - vmin)
    p = shift - flat
    p /= scale
    np.negative(p, out=p)
    p += 1  # 1 - q computed as -q + 1: the same IEEE operation
    if protocol == "sslalign_adaptive":
        assert g is not None
        k_gt = np.count_nonzero(g != 0, axis=1)
        k_gt[k_gt == 0] = n // 2
        t = np.take_along_axis(np.sort(p, axis=1), (n - k_gt)[:, None], axis=1)  # np.sort(pred)[N - gt_nums]
    else:
        k = n // 2  # np.sort(pred)[int(N / 2)]
        t = np.partition(p, k, axis=1)[:, k : k + 1]
    mask = cast(np.ndarray, p > t)
    if protocol == "lvs":
        # pred[pred > t] = 1; pred[pred < 1] = 0; then cal_CIOU keeps pred >= 0.5: what survives is p > t and every
        # pixel already >= 1 (the maximum, or 1 + c > 1 on a constant positive map).
        mask |= p >= 1
    return mask


def _ciou_numpy(mask: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``np.sum(A * g) / (np.sum(g) + np.sum(A * (g == 0)))`` per row, the references' sums in their order."""
    inter = (g * mask).sum(axis=1)
    union = g.sum(axis=1) + np.count_nonzero(mask & (g == 0), axis=1)
    return cast(np.ndarray, inter / union)


def _torch_guard(vmin: Tensor, rng: Tensor) -> tuple[Tensor, Tensor]:
    zero = rng == 0
    return torch.where(zero, torch.zeros_like(vmin), vmin), torch.where(zero, torch.ones_like(rng), rng)


def _kth_smallest(values: Tensor, index: Tensor | int) -> Tensor:
    """``np.sort(row)[index]`` for every row of ``values`` (B, N) as a (B, 1) tensor; ``index`` may vary by row."""
    if isinstance(index, int):
        return torch.kthvalue(values, index + 1, dim=1, keepdim=True).values
    return torch.sort(values, dim=1).values.gather(1, index.reshape(-1, 1))


def _binarize_torch(flat: Tensor, protocol: str, g: Tensor | None) -> Tensor:
    """:func:`_binarize_numpy` in torch, for CUDA and half precision."""
    n = flat.shape[1]
    vmin = flat.amin(dim=1, keepdim=True)
    vmax = flat.amax(dim=1, keepdim=True)
    if not bool((torch.isfinite(vmin) & torch.isfinite(vmax)).all()):
        _raise_non_finite(flat, "heatmaps")
    # Normalized in the maps' dtype, as the references do; in half precision a range above 65504 is infinite, and
    # every normalized value NaN (masks silently wrong).
    if flat.dtype == torch.float16 and flat.numel() and not bool(torch.isfinite(vmax - vmin).all()):
        raise ValueError("float16 heatmaps whose range (max - min) exceeds float16's: pass them in float32")
    if protocol == "slavc":
        if flat.shape[0]:  # (an empty batch has no range to check)
            _check_fixed_range(vmin.min().item(), vmax.max().item(), protocol)
        return flat >= 0.5
    if protocol == "sspl":  # no zero-range guard: 0/0 = NaN, never >= 0.5
        return _div(flat - vmin, vmax - vmin) >= 0.5
    if protocol == "ezvsl":
        shift, scale = _torch_guard(vmin, vmax - vmin)
        p = (flat - shift).div_(scale)
        return p >= _kth_smallest(p, n // 2)
    shift, scale = _torch_guard(vmax, vmax - vmin)
    p = (shift - flat).div_(scale).neg_().add_(1)  # 1 - normalize_img(-h), as in _binarize_numpy
    if protocol == "sslalign_adaptive":
        assert g is not None
        k = (g != 0).sum(dim=1)
        k = torch.where(k == 0, torch.full_like(k, n // 2), k)
        mask = p > _kth_smallest(p, n - k)
    else:
        mask = p > _kth_smallest(p, n // 2)
    if protocol == "lvs":
        mask |= p >= 1
    return mask


def _ciou_torch(mask: Tensor, g: Tensor) -> Tensor:
    """:func:`_ciou_numpy` in torch (float64 sums in torch's order: ~1e-16 from NumPy's for soft weights)."""
    inter = (mask.to(torch.float64) * g).sum(dim=1)
    union = g.sum(dim=1) + (mask & (g == 0)).sum(dim=1).to(torch.float64)
    return _div(inter, union)


def _div(numer: Tensor, denom: Tensor) -> Tensor:
    """IEEE true division by a tensor divisor (see the module docstring on CUDA and CPU scalars)."""
    return torch.div(numer, denom)


def _gt_torch(gt_maps: Tensor, device: torch.device) -> Tensor:
    g = _flat(gt_maps.detach().to(device=device, dtype=torch.float64))
    if g.numel():
        _check_gt_range(g.amin().item(), g.amax().item())
    return g


def _gt_numpy(gt_maps: Tensor) -> np.ndarray:
    # The references build GT maps as float64 arrays (np.zeros' default); float32 weights convert exactly.
    g_t = gt_maps.detach().cpu()
    if g_t.dtype == torch.bfloat16:  # NumPy has no bfloat16
        g_t = g_t.to(torch.float64)
    g = _flat(g_t).numpy().astype(np.float64, copy=False)
    if g.size:
        _check_gt_range(float(g.min()), float(g.max()))
    return g


def _block_slices(batch: int, pixels: int) -> list[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(pixels, 1))
    return [slice(i, i + step) for i in range(0, batch, step)]


def _masks_and_cious(
    heatmaps: Tensor, gt_maps: Tensor | None, protocol: str, want_masks: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Shared driver of :func:`binarize` and :func:`ciou`: validate, then run the NumPy or the torch path."""
    _check_protocol(protocol)
    h = _check_maps(heatmaps)
    if protocol == "sslalign_adaptive" and gt_maps is None:
        raise ValueError("protocol 'sslalign_adaptive' needs gt_maps (its threshold keeps the top-|GT| pixels)")
    if gt_maps is not None:
        _check_gt_shape(gt_maps, h.shape)
    flat = _flat(h)
    b, n = flat.shape
    if _use_numpy(flat):
        arr = flat.numpy()
        masks_np, cious_np = np.zeros((b, n), dtype=bool) if want_masks else None, np.zeros(b, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for blk in _block_slices(b, n):
                g = None if gt_maps is None else _gt_numpy(gt_maps[blk])
                m = _binarize_numpy(arr[blk], protocol, g)
                if masks_np is not None:
                    masks_np[blk] = m
                if g is not None:
                    cious_np[blk] = _ciou_numpy(m, g)
        masks = None if masks_np is None else torch.from_numpy(masks_np).reshape(h.shape)
        return masks, None if gt_maps is None else torch.from_numpy(cious_np)
    gt = None if gt_maps is None else _gt_torch(gt_maps, h.device)
    mask_t = _binarize_torch(flat, protocol, gt)
    return mask_t.reshape(h.shape), None if gt is None else _ciou_torch(mask_t, gt)


def binarize(heatmaps: Tensor, protocol: str = "ezvsl", gt_maps: Tensor | None = None) -> Tensor:
    """Turn heatmaps into the binary prediction masks of one reference evaluator.

    With N = H * W pixels and ``t = sort(p)[N // 2]`` (the upper median, index 25 088 at 224 x 224):

    ========================  ==========================================  ==========================================
    protocol                  normalized map ``p``                        mask
    ========================  ==========================================  ==========================================
    ``"ezvsl"`` (default)     min-max, unchanged if constant              ``p >= t`` (constant map: full mask)
    ``"lvs"``                 ``1 - minmax(-h)``, inner op unchanged if   ``p > t`` or ``p >= 1`` (every pixel at the
                              constant (so ``1 + h`` for constant maps)   maximum survives; constant map: full mask
                                                                          if ``1 + c >= 1``, else empty)
    ``"sspl"``                ``(h - min) / ptp`` without a zero guard    ``p >= 0.5`` (constant map: NaN, empty)
    ``"slavc"``               none: fixed-range scores in [0, 1]          ``h >= 0.5``
    ``"sslalign"``            ``1 - minmax(-h)``                          ``p > t`` (constant map: empty mask)
    ``"sslalign_adaptive"``   ``1 - minmax(-h)``                          ``p > sort(p)[N - K]``, K = #(gt != 0), or
                                                                          K = N // 2 when the GT is empty
    ========================  ==========================================  ==========================================

    Sources: LVS ``test.py`` (threshold, then ``pred[pred > t] = 1; pred[pred < 1] = 0`` and ``>= 0.5``); EZ-VSL
    ``test.py validate`` and SLAVC ``test.py --relative_prediction`` (``np.sort(p)[int(N * 0.5)]`` and
    ``Evaluator.cal_CIOU``'s ``>=``); SLAVC ``test.py`` default (``pred_thr = 0.5``); SSPL ``test.py
    eval_cal_ciou`` with ``utils.normalize_img`` (``np.ptp``); SSLalignment ``test.py validate_lvs`` with
    ``utils.Evaluator_iiou.cal_CIOU`` / ``cal_CIOU_adap`` (strict ``>``).

    Args:
        heatmaps: (B, H, W) floating maps. Normalization runs in their dtype, like the references (float32 maps).
        protocol: one of :data:`PROTOCOLS`.
        gt_maps: (B, H, W) GT maps; required by ``"sslalign_adaptive"`` only.

    Returns:
        A bool tensor (B, H, W) on the heatmaps' device.

    Raises:
        ValueError: unknown protocol, bad shapes, NaN/inf heatmaps, GT values outside [0, 1], ``"slavc"`` scores
            outside [0, 1], or ``"sslalign_adaptive"`` without GT.
    """
    masks, _ = _masks_and_cious(heatmaps, gt_maps, protocol, want_masks=True)
    assert masks is not None
    return masks


def ciou_from_mask(masks: Tensor, gt_maps: Tensor) -> Tensor:
    """Consensus IoU of binary masks against GT weight maps (Senocak et al. 2018), per sample.

    ``cIoU = sum_{p in A} g(p) / (sum_p g(p) + |{p in A : g(p) = 0}|)`` with A the mask, the formula of every
    reference (LVS/EZ-VSL/SLAVC/SSLalignment ``cal_CIOU``, SSPL ``eval_cal_ciou``). An empty GT with an empty mask
    gives 0/0 = NaN, as in the references; an empty GT with a non-empty mask gives 0.

    Args:
        masks: (B, H, W) bool masks.
        gt_maps: (B, H, W) weights in [0, 1].

    Returns:
        A float64 tensor (B,) on the masks' device.
    """
    if not isinstance(masks, Tensor) or masks.ndim != 3:
        raise ValueError(f"masks must be a (B, H, W) tensor, got {getattr(masks, 'shape', type(masks))}")
    _check_gt_shape(gt_maps, masks.shape)
    m = _flat(masks.detach().bool())
    if m.device.type == "cpu":
        with np.errstate(divide="ignore", invalid="ignore"):
            return torch.from_numpy(_ciou_numpy(m.numpy(), _gt_numpy(gt_maps)))
    return _ciou_torch(m, _gt_torch(gt_maps, m.device))


def ciou(heatmaps: Tensor, gt_maps: Tensor, protocol: str = "ezvsl") -> Tensor:
    """Per-sample cIoU of (B, H, W) heatmaps against (B, H, W) GT maps under one reference protocol.

    Equivalent to ``ciou_from_mask(binarize(heatmaps, protocol, gt_maps), gt_maps)``; see :func:`binarize` for the
    protocols. Matches the reference per sample to the last bit (on CUDA, for soft GT weights, to ~1e-16: torch
    sums in another order than NumPy).

    Returns:
        A float64 tensor (B,) on the heatmaps' device; NaN where both the GT and the mask are empty.
    """
    _, values = _masks_and_cious(heatmaps, gt_maps, protocol, want_masks=False)
    assert values is not None
    return values


# --------------------------------------------------------------------------------------------------------------------
# Pointing
# --------------------------------------------------------------------------------------------------------------------

_MAX_LISTED = 10  # sample ids or batch indices named in an error message


def _list_some(items: Sequence[object]) -> str:
    shown = ", ".join(repr(x) for x in items[:_MAX_LISTED])
    return shown + (f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def _pointing(heatmaps: Tensor, gt_maps: Tensor, sample_ids: Sequence[object] | Tensor | None = None) -> Tensor:
    """:func:`pointing`, naming ``sample_ids`` (one per sample, used in error messages only) for non-finite maps."""
    h = _check_maps(heatmaps)
    _check_gt_shape(gt_maps, h.shape)
    flat = _flat(h)
    vmax = flat.amax(dim=1, keepdim=True)
    finite = (torch.isfinite(vmax) & torch.isfinite(flat.amin(dim=1, keepdim=True))).reshape(-1)  # NaN propagates
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).reshape(-1).tolist()
        if sample_ids is None:
            where = f"batch indices {_list_some(bad)}"
        else:
            ids = sample_ids.tolist() if isinstance(sample_ids, Tensor) else list(sample_ids)
            where = f"sample ids {_list_some([ids[i] for i in bad])}"
        raise ValueError(
            f"heatmaps of {len(bad)} of {flat.shape[0]} samples contain NaN or inf ({where}); pointing needs finite "
            "maps"
        )
    g = _gt_torch(gt_maps, h.device)
    inside = g > 0
    peak = flat == vmax  # every pixel at the maximum, compared in the heatmaps' own dtype
    hits = _count_rows(peak & inside).to(torch.float64)
    score = _div(hits, _count_rows(peak).to(torch.float64))
    empty = ~inside.any(dim=1)
    return torch.where(empty, torch.full_like(score, float("nan")), score)


def _count_rows(mask: Tensor) -> Tensor:
    """Number of True values per row of a (B, N) bool tensor, int64 (NumPy's count is much faster on the CPU)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.count_nonzero(mask.numpy(), axis=1).astype(np.int64))
    return mask.sum(dim=1)


def pointing(heatmaps: Tensor, gt_maps: Tensor) -> Tensor:
    """Per-sample pointing score: does the heatmap's peak lie inside the ground truth?

    The peak is the set P of pixels equal to the map's maximum (compared in the heatmaps' own dtype, so rounding to
    float16 can create ties), "inside" is ``gt_map > 0``, and the score is ``|P & inside| / |P|``: the expected hit of
    a uniformly random tie-break. A map with a unique maximum scores 1 or 0; a constant map scores the fraction of the
    frame the GT covers (chance), never a free hit, unlike ``argmax``, which returns the first pixel.

    Args:
        heatmaps: (B, H, W) floating maps, any range (a strictly increasing rescaling keeps the peak, up to rounding).
        gt_maps: (B, H, W) GT weight maps in [0, 1].

    Returns:
        A float64 tensor (B,) on the heatmaps' device; NaN for a sample whose GT is empty (a negative: no pointing).

    Raises:
        ValueError: bad shapes, GT values outside [0, 1], or heatmaps with NaN or inf (the message says which samples).
    """
    return _pointing(heatmaps, gt_maps)


# --------------------------------------------------------------------------------------------------------------------
# Aggregates
# --------------------------------------------------------------------------------------------------------------------


def _as_cious(cious: Tensor) -> Tensor:
    if not isinstance(cious, Tensor):
        raise TypeError(f"cious must be a torch.Tensor, got {type(cious).__name__}")
    c = cious.detach().reshape(-1).to(torch.float64)
    if c.numel() == 0:
        raise ValueError("need at least one cIoU value")
    return c


def success_rate(cious: Tensor, threshold: float = 0.5) -> Tensor:
    """Fraction of samples with cIoU >= ``threshold``: the number papers report as "cIoU" (EZ-VSL "AP50").

    NaN counts as a failure (the references compare NaN >= t, which is False). LVS ``test.py``, EZ-VSL
    ``finalize_AP50``. Returns a float64 scalar tensor.
    """
    c = _as_cious(cious)
    hits = (c >= threshold).sum().to(torch.float64)
    return _div(hits, torch.full_like(hits, c.numel()))


def auc(cious: Tensor) -> Tensor:
    """Area under the success-rate curve over the cIoU thresholds :data:`AUC_THRESHOLDS`.

    ``y_i = mean(cIoU >= 0.05 * i)`` for i = 0..20, integrated with ``sklearn.metrics.auc`` (``np.trapz``), as in LVS
    ``test.py``, EZ-VSL ``finalize_AUC``, SSPL ``test.py``. NaN fails every threshold. The trapezoid sum is evaluated
    in NumPy's pairwise order, so the value is bitwise equal to the reference's. Returns a float64 scalar tensor.
    """
    c = _as_cious(cious)
    x = torch.tensor(AUC_THRESHOLDS, dtype=torch.float64, device=c.device)
    counts = (c.unsqueeze(0) >= x.unsqueeze(1)).sum(dim=1).to(torch.float64)
    y = _div(counts, torch.full_like(counts, c.numel()))
    # numpy.trapz: d = diff(x); (d * (y[1:] + y[:-1]) / 2.0).sum()
    terms = _div((x[1:] - x[:-1]) * (y[1:] + y[:-1]), torch.full_like(counts[1:], 2.0))
    return numpy_pairwise_sum(terms.unsqueeze(0))[0]


# --------------------------------------------------------------------------------------------------------------------
# SLAVC confidence and NumPy's summation order
# --------------------------------------------------------------------------------------------------------------------

_PW_BLOCKSIZE = 128  # numpy/_core/src/umath/loops_utils.h.src, PW_BLOCKSIZE


def _pairwise_split(n: int) -> int:
    """Where NumPy's ``pairwise_sum`` splits a block of n > 128 values: half, rounded down to a multiple of 8."""
    n2 = n // 2
    return n2 - n2 % 8


def _pairwise_leaves(start: int, n: int, out: list[tuple[int, int]]) -> None:
    """Append the leaves ``(start, length)`` of NumPy's pairwise recursion, left to right."""
    if n <= _PW_BLOCKSIZE:
        out.append((start, n))
        return
    n2 = _pairwise_split(n)
    _pairwise_leaves(start, n2, out)
    _pairwise_leaves(start + n2, n - n2, out)


def _leaf_sum(seg: Tensor) -> Tensor:
    """NumPy's leaf summation over the last dim of ``seg``: sequential below 8, else 8 interleaved accumulators."""
    length = seg.shape[-1]
    if length < 8:
        res = torch.full(seg.shape[:-1], -0.0, dtype=seg.dtype, device=seg.device)
        for i in range(length):
            res = res + seg[..., i]
        return res
    r = seg[..., 0:8]
    stop = length - length % 8
    for i in range(8, stop, 8):
        r = r + seg[..., i : i + 8]
    res = ((r[..., 0] + r[..., 1]) + (r[..., 2] + r[..., 3])) + ((r[..., 4] + r[..., 5]) + (r[..., 6] + r[..., 7]))
    for i in range(stop, length):
        res = res + seg[..., i]
    return res


def numpy_pairwise_sum(values: Tensor) -> Tensor:
    """Sum each row of ``values`` (B, N) in exactly the order of NumPy's float reduction (``np.add.reduce``).

    NumPy sums contiguous float arrays with a pairwise recursion over blocks of at most 128 values, each summed with
    8 interleaved accumulators, all in the array's dtype. Replicating that order makes float32 means bitwise equal to
    ``np.mean``, which the SLAVC confidence needs (its AP compares confidences with each other). The recursion depends
    only on N; leaves of equal length are summed together, vectorized over rows and leaves.
    """
    if values.ndim != 2:
        raise ValueError(f"values must be (B, N), got {tuple(values.shape)}")
    b, n = values.shape
    if n == 0:
        return torch.zeros(b, dtype=values.dtype, device=values.device)
    leaves: list[tuple[int, int]] = []
    _pairwise_leaves(0, n, leaves)
    by_length: dict[int, list[int]] = {}
    for start, length in leaves:
        by_length.setdefault(length, []).append(start)
    leaf_value: dict[int, Tensor] = {}
    for length, starts in by_length.items():
        idx = torch.tensor(starts, device=values.device).unsqueeze(1) + torch.arange(length, device=values.device)
        sums = _leaf_sum(values[:, idx])  # (B, G)
        for j, start in enumerate(starts):
            leaf_value[start] = sums[:, j]

    def evaluate(start: int, length: int) -> Tensor:
        if length <= _PW_BLOCKSIZE:
            return leaf_value[start]
        n2 = _pairwise_split(length)
        return evaluate(start, n2) + evaluate(start + n2, length - n2)

    return evaluate(0, n)


def slavc_confidence(scores: Tensor) -> Tensor:
    """Per-sample confidence of SLAVC's extended protocol: the mean of the top quarter of the fixed-range scores.

    SLAVC ``test.py``: ``np.sort(scores.flatten())[-n//4:].mean()``. Python parses ``-n//4`` as ``(-n)//4``, so the
    top ``ceil(n / 4)`` values are averaged (12 544 at 224 x 224). The mean is NumPy's: a pairwise sum over the values
    in ascending order in the scores' dtype, then one division, so float32 confidences are bitwise equal to the
    reference's. float16/bfloat16 scores are averaged in float32.

    Args:
        scores: (B, H, W) fixed-range scores in [0, 1].

    Returns:
        A tensor (B,) in the scores' dtype (float32 for half types).
    """
    s = _check_maps(scores, "scores")
    if s.dtype not in (torch.float32, torch.float64):
        s = s.float()
    flat = _flat(s)
    n = flat.shape[1]
    if flat.numel():
        lo, hi = flat.amin().item(), flat.amax().item()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            _raise_non_finite(flat, "scores")
        _check_fixed_range(lo, hi, "slavc")
    k = -((-n) // 4)
    if flat.device.type == "cpu":  # NumPy's selection is much faster than torch.topk on the CPU
        top = torch.from_numpy(np.sort(np.partition(flat.numpy(), n - k, axis=1)[:, n - k :], axis=1))
    else:
        top = torch.topk(flat, k, dim=1, largest=True, sorted=True).values.flip(1)  # ascending, as np.sort
    total = numpy_pairwise_sum(top)
    return _div(total, torch.full_like(total, k))
