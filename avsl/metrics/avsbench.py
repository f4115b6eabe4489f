"""AVSBench segmentation metrics: mIoU ("M_J") and F-score ("M_F", beta^2 = 0.3).

Reference: OpenNLPLab/AVSBench ``avs_scripts/avs_s4/utils/utility.py`` (``mask_iou``, ``_eval_pr``,
``Eval_Fmeasure``; the MS3 copy is identical) and ``test.py``, which averages the per-call values over calls with
``pyutils.AverageMeter``. Per-frame values here are bitwise equal to the reference's (same float32 operations); the
averages over frames and calls are taken in float64 (the reference sums in float32, a difference below 1e-6).

Two reductions:

* ``"reference"``: each ``update`` is one call of the reference functions; the result is the plain mean of the
  per-call values, so it depends on how frames are grouped into calls, exactly as in the reference
  (``test.py --test_batch_size 1`` gives calls of 5 frames; ``test.sh`` passes 4, calls of 20 frames). On several
  devices every device's calls are pooled.
* ``"dataset"``: every frame weighs the same, whatever the batching: the mean of per-frame IoU, and the maximum over
  thresholds of the F curve averaged over all frames with a non-empty mask. It equals the reference run as one single
  call. With ``sample_ids`` it is identical on any number of devices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from avsl.metrics._ids import SampleIds, cat_state, dedupe_by_id, sample_ids_to_tensor, state_nonempty

__all__ = ["AVSBenchFScore", "AVSBenchMIoU", "AVSReduction", "frame_fscore_curves", "frame_iou"]

AVSReduction = Literal["reference", "dataset"]
_REDUCTIONS: Sequence[str] = ("reference", "dataset")


def _check_inputs(logits: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(logits, Tensor) or not isinstance(masks, Tensor):
        raise TypeError("logits and masks must be torch.Tensors")
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape (N, H, W), got {tuple(logits.shape)}")
    if masks.shape != logits.shape:
        raise ValueError(f"masks must have the logits' shape {tuple(logits.shape)}, got {tuple(masks.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if logits.numel() and not bool(torch.isfinite(logits).all()):
        raise ValueError("logits contain non-finite values (NaN or inf)")
    m = masks.detach().to(logits.device)
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("masks must be binary (values 0 and 1)")
        m = m != 0
    return logits.detach(), m


def _count(mask: Tensor) -> Tensor:
    """Number of True values per row of a (N, P) bool tensor, as int64 (NumPy's count is much faster on the CPU)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.count_nonzero(mask.numpy(), axis=1).astype(np.int64))
    return mask.sum(dim=1)


def _sorted_rows(values: Tensor) -> Tensor:
    """Each row of a (N, P) float tensor sorted ascending (values only; NumPy's sort on the CPU)."""
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.sort(values.numpy(), axis=1))
    return torch.sort(values, dim=1).values


def frame_iou(logits: Tensor, masks: Tensor) -> Tensor:
    """Per-frame IoU term of AVSBench ``mask_iou``, in float32 as the reference computes it.

    Prediction = ``sigmoid(logit) > 0.5`` (strict, so a logit of 0, or one whose sigmoid rounds to 0.5, is not
    predicted). A frame with an empty mask scores the fraction of pixels where prediction and mask are both 0;
    otherwise ``|P & G| / (|P | G| + 1e-7)``.

    Args:
        logits: (N, H, W) raw logits.
        masks: (N, H, W) binary masks (bool or 0/1).

    Returns:
        A float32 tensor (N,).
    """
    x, m = _check_inputs(logits, masks)
    n, h, w = x.shape
    pred = (torch.sigmoid(x) > 0.5).reshape(n, h * w)
    gt = m.reshape(n, h * w)
    inter = _count(pred & gt)
    union = _count(pred | gt)
    empty = _count(gt) == 0
    # Empty mask: the pixels where both are 0, (1 - target) * (1 - pred), number h * w - |P | G|; union = h * w.
    inter = torch.where(empty, h * w - union, inter)
    union = torch.where(empty, torch.full_like(union, h * w), union)
    # inter / (union + eps) with float32 operands (the reference's target is float32).
    return torch.div(inter.to(torch.float32), union.to(torch.float32) + 1e-7)


def frame_fscore_curves(
    logits: Tensor, masks: Tensor, num_thresholds: int = 255, beta2: float = 0.3
) -> tuple[Tensor, Tensor]:
    """Per-frame F-measure curves of AVSBench ``Eval_Fmeasure`` / ``_eval_pr``, in float32 like the reference.

    Probabilities ``sigmoid(logit)`` are compared (``>=``) with ``torch.linspace(0, 1 - 1e-10, num_thresholds)``
    (float32, so the last threshold is 1.0); ``precision = tp / (|P| + 1e-20)``, ``recall = tp / (|G| + 1e-20)``,
    ``F = (1 + beta2) * precision * recall / (beta2 * precision + recall)`` with NaN set to 0. The counts come from two
    sorts per frame (all probabilities, and those inside the mask) instead of the reference's 255 passes.

    Returns:
        ``(curves, valid)``: float32 (N, num_thresholds) curves and a bool (N,) tensor, False for frames with an empty
        mask (the reference skips them).
    """
    x, m = _check_inputs(logits, masks)
    n, h, w = x.shape
    probs = torch.sigmoid(x).reshape(n, h * w)  # not (n, -1): no frames is (0, h * w), not an error
    gt = m.reshape(n, h * w)
    pixels = probs.shape[1]
    # The reference compares each prob with a 0-dim float32 threshold, which adopts the probs' dtype.
    thresholds = torch.linspace(0, 1 - 1e-10, num_thresholds, dtype=torch.float32, device=x.device).to(probs.dtype)
    thresholds = thresholds.expand(n, -1).contiguous()
    outside = torch.full_like(probs, -math.inf)
    # #(prob >= t) and #(prob >= t inside the mask): everything minus what sorts below t (-inf is below every t).
    predicted = pixels - torch.searchsorted(_sorted_rows(probs), thresholds, side="left")
    tp = pixels - torch.searchsorted(_sorted_rows(torch.where(gt, probs, outside)), thresholds, side="left")
    total = _count(gt).unsqueeze(1)
    tp_f = tp.to(torch.float32)
    precision = torch.div(tp_f, predicted.to(torch.float32) + 1e-20)
    recall = torch.div(tp_f, total.to(torch.float32) + 1e-20)
    f = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    f = torch.where(torch.isnan(f), torch.zeros_like(f), f)
    return f, total.squeeze(1) > 0


class _AVSBenchMetric(Metric):
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    call_values: list[Tensor] | Tensor
    sample_ids: list[Tensor] | Tensor

    def __init__(self, reduction: AVSReduction = "reference", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if reduction not in _REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; expected one of {tuple(_REDUCTIONS)}")
        self.reduction: AVSReduction = reduction
        self.add_state("call_values", default=[], dist_reduce_fx="cat")
        self.add_state("sample_ids", default=[], dist_reduce_fx="cat")

    def _ids(self, sample_ids: SampleIds | None, n: int) -> None:
        if sample_ids is not None:
            self.sample_ids.append(sample_ids_to_tensor(sample_ids, n, self.device))  # type: ignore[union-attr]

    def _mean_of_calls(self) -> Tensor:
        values = cat_state(self.call_values, torch.float64, self.device)
        if values.numel() == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=values.device)
        return values.mean()


class AVSBenchMIoU(_AVSBenchMetric):
    """AVSBench mIoU ("M_J") of segmentation logits against binary masks.

    ``update(logits, masks, sample_ids=None)`` with (N, H, W) logits and masks (N = videos x frames). See
    :func:`frame_iou` for the per-frame rule and the module docstring for the two reductions:
    ``reduction="reference"`` (default) averages per-call means like AVSBench ``test.py``; ``"dataset"`` averages all
    frames (identical to the reference whenever every call has the same number of frames) and de-duplicates by
    ``sample_ids`` (one id per frame). ``compute()`` returns a float64 scalar (NaN before any update).
    """

    frame_values: list[Tensor] | Tensor

    def __init__(self, reduction: AVSReduction = "reference", **kwargs: Any) -> None:
        super().__init__(reduction, **kwargs)
        self.add_state("frame_values", default=[], dist_reduce_fx="cat")

    def update(self, logits: Tensor, masks: Tensor, sample_ids: SampleIds | None = None) -> None:
        """Score one call of N frames."""
        values = frame_iou(logits, masks)
        if values.numel() == 0 and self.reduction == "reference":  # no call value; "dataset" stores the empty rows
            return  # (typed states: under DDP, an empty list would sync a float32 placeholder against int64 ids)
        if self.reduction == "reference":
            self.call_values.append(values.to(self.device, torch.float64).mean().reshape(1))  # type: ignore[union-attr]
        else:
            self.frame_values.append(values.to(self.device))  # type: ignore[union-attr]
            self._ids(sample_ids, values.numel())

    def compute(self) -> Tensor:
        """The mIoU as a float64 scalar."""
        if self.reduction == "reference":
            return self._mean_of_calls()
        values = cat_state(self.frame_values, torch.float64, self.device)
        if state_nonempty(self.sample_ids):
            _, values = dedupe_by_id(cat_state(self.sample_ids, torch.int64, self.device), values)
        if values.numel() == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=values.device)
        return values.mean()


class AVSBenchFScore(_AVSBenchMetric):
    """AVSBench F-score ("M_F", beta^2 = 0.3, 255 thresholds) of segmentation logits against binary masks.

    ``update(logits, masks, sample_ids=None)`` with (N, H, W) logits and masks. Frames with an empty mask are skipped,
    as in the reference. ``reduction="reference"`` (default): each call's score is the maximum over thresholds of the
    F curve averaged over the call's valid frames (0 if it has none) and the result is the mean over calls, so it
    depends on the call size as in AVSBench ``test.py``. ``"dataset"``: the maximum over thresholds of the F curve
    averaged over every valid frame (the reference run as one call), de-duplicated by ``sample_ids``.
    ``compute()`` returns a float64 scalar (NaN before any update; 0 if no frame has a non-empty mask).

    Args:
        reduction: ``"reference"`` or ``"dataset"``.
        num_thresholds: number of thresholds (255 in the reference).
        beta2: beta^2 of the F-measure (0.3 in the reference).
    """

    frame_curves: list[Tensor] | Tensor
    frame_valid: list[Tensor] | Tensor

    def __init__(
        self, reduction: AVSReduction = "reference", num_thresholds: int = 255, beta2: float = 0.3, **kwargs: Any
    ) -> None:
        super().__init__(reduction, **kwargs)
        if num_thresholds < 2:
            raise ValueError(f"num_thresholds must be >= 2, got {num_thresholds}")
        self.num_thresholds = int(num_thresholds)
        self.beta2 = float(beta2)
        self.add_state("frame_curves", default=[], dist_reduce_fx="cat")
        self.add_state("frame_valid", default=[], dist_reduce_fx="cat")

    def update(self, logits: Tensor, masks: Tensor, sample_ids: SampleIds | None = None) -> None:
        """Score one call of N frames."""
        curves, valid = frame_fscore_curves(logits, masks, self.num_thresholds, self.beta2)
        if curves.shape[0] == 0 and self.reduction == "reference":  # as in AVSBenchMIoU.update
            return
        if self.reduction == "reference":
            self.call_values.append(_max_of_mean_curve(curves, valid).reshape(1).to(self.device))  # type: ignore[union-attr]
        else:
            self.frame_curves.append(curves.to(self.device))  # type: ignore[union-attr]
            self.frame_valid.append(valid.to(self.device))  # type: ignore[union-attr]
            self._ids(sample_ids, curves.shape[0])

    def compute(self) -> Tensor:
        """The F-score as a float64 scalar."""
        if self.reduction == "reference":
            return self._mean_of_calls()
        curves = cat_state(self.frame_curves, torch.float32, self.device)
        if curves.numel() == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=curves.device)
        curves = curves.reshape(-1, self.num_thresholds)
        valid = cat_state(self.frame_valid, torch.bool, self.device)
        if state_nonempty(self.sample_ids):
            _, curves, valid = dedupe_by_id(cat_state(self.sample_ids, torch.int64, self.device), curves, valid)
        return _max_of_mean_curve(curves, valid)


def _max_of_mean_curve(curves: Tensor, valid: Tensor) -> Tensor:
    """``(sum of the valid frames' curves / their number).max()``, or 0 without valid frames (``Eval_Fmeasure``)."""
    if not bool(valid.any()):
        return torch.zeros((), dtype=torch.float64, device=curves.device)
    return curves[valid].to(torch.float64).mean(dim=0).max()
