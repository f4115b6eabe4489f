"""SLAVC's extended localization protocol: positives plus silent or off-screen negatives, scored by confidence.

"A Closer Look at Weakly-Supervised Audio-Visual Source Localization" (Mo & Morgado, NeurIPS 2022) evaluates a
model on sounding clips (positives) mixed with clips whose audio does not belong to the frame (negatives). Each
sample gets a confidence; a positive counts as a true positive when it is confident and well localized. Reference:
stoneMo/SLAVC ``utils.EvaluatorFull`` and ``test.py``. The maths here are the pure functions
:func:`precision_recall`, :func:`average_precision`, :func:`f1_curve`; :class:`ExtendedLocalization` wraps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from avsl.metrics import functional as F
from avsl.metrics._ids import SampleIds, dedupe_by_id, sample_ids_to_tensor, state_nonempty

__all__ = ["ExtendedLocalization", "average_precision", "f1_curve", "precision_recall"]


def precision_recall(
    confidences: Tensor,
    cious: Tensor,
    num_boxes: Tensor,
    conf_thresholds: Tensor,
    ciou_threshold: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """Precision and recall at each confidence threshold (``EvaluatorFull.calc_precision_recall``), vectorized.

    A positive (``num_boxes > 0``) with confidence >= c is a TP if its cIoU >= ``ciou_threshold`` (NaN fails) and an
    FP otherwise; a positive below c is an FN; a negative at or above c is an FP. An empty denominator gives 1.

    Returns:
        Two float64 tensors shaped like ``conf_thresholds``.
    """
    conf = confidences.to(torch.float64).reshape(1, -1)
    thr = conf_thresholds.to(device=conf.device, dtype=torch.float64).reshape(-1, 1)
    positive = (num_boxes.reshape(1, -1) > 0).to(conf.device)
    hit = positive & (cious.to(conf.device).reshape(1, -1) >= ciou_threshold)
    confident = conf >= thr
    tp = (confident & hit).sum(dim=1).to(torch.float64)
    fp = confident.sum(dim=1).to(torch.float64) - tp
    fn = (~confident & positive).sum(dim=1).to(torch.float64)
    one = torch.ones_like(tp)
    precision = torch.where(tp + fp == 0, one, torch.div(tp, tp + fp))
    recall = torch.where(tp + fn == 0, one, torch.div(tp, tp + fn))
    return precision, recall


def average_precision(confidences: Tensor, cious: Tensor, num_boxes: Tensor, ciou_threshold: float = 0.5) -> Tensor:
    """AP of ``EvaluatorFull.calc_ap``, reproduced exactly.

    The thresholds are the sorted confidences without the largest, walked downwards in steps of ``max(1, N // 200)``;
    precision is replaced by its running maximum from the right, and ``AP = sum_i pmax_i * (rec_{i+1} - rec_i)``
    (the recall up to the first threshold is not counted). The final sum runs left to right in Python floats, like
    the reference's ``sum([...])``, so the value is bitwise equal. Returns a float64 scalar tensor (0 for N < 3).
    """
    conf = confidences.to(torch.float64).reshape(-1)
    n = conf.numel()
    skip = max(1, n // 200)
    thresholds = torch.sort(conf).values[:-1].flip(0)[::skip]
    if thresholds.numel() < 2:
        return torch.zeros((), dtype=torch.float64, device=conf.device)
    precision, recall = precision_recall(conf, cious, num_boxes, thresholds, ciou_threshold)
    running_max = torch.cummax(precision.flip(0), dim=0).values.flip(0)
    terms = running_max[:-1] * (recall[1:] - recall[:-1])
    return torch.tensor(sum(terms.tolist()), dtype=torch.float64, device=conf.device)


def f1_curve(confidences: Tensor, cious: Tensor, num_boxes: Tensor, ciou_threshold: float = 0.5) -> Tensor:
    """F1 at the thresholds ``sorted(conf)[::max(1, N // 10)]`` (SLAVC ``finalize_stats``'s ``F1-*`` list).

    ``F1 = 2 r p / (r + p)``, or 0 when ``r + p == 0``. Its maximum is the "max-F1" of the paper. Returns float64.
    """
    conf = confidences.to(torch.float64).reshape(-1)
    thresholds = torch.sort(conf).values[:: max(1, conf.numel() // 10)]
    p, r = precision_recall(conf, cious, num_boxes, thresholds, ciou_threshold)
    return torch.where(r + p > 0, torch.div(2 * r * p, r + p), torch.zeros_like(p))


class ExtendedLocalization(Metric):
    """SLAVC's extended protocol (``EvaluatorFull``): localization plus detection of silent / off-screen samples.

    ``update(scores, gt_maps, num_boxes, sample_ids=None)``:

    * ``scores``: (B, H, W) fixed-range scores in [0, 1] (SLAVC maps a model's cosine map ``s`` in [-1/tau, 1/tau]
      with ``(s + 1/tau) / (2/tau)``). They give both the confidence (the mean of the top quarter,
      :func:`~avsl.metrics.functional.slavc_confidence`) and the mask (``protocol``).
    * ``gt_maps``: (B, H, W) GT weight maps in [0, 1] (all zero for negatives).
    * ``num_boxes``: (B,) number of GT boxes per sample, 0 for a negative (the reference's ``len(bb)``); a bool
      "is positive" tensor works too.
    * ``sample_ids``: optional, as in :class:`~avsl.metrics.CIoU` (de-duplicated at ``compute()``).

    ``compute()`` returns float64 scalars, each as its reference computes it:

    * ``"ap"``: ``calc_ap`` over all samples at ``ciou_threshold`` (``AP-all@50``);
    * ``"max_f1"``: the maximum of the ``F1-all@50`` list (:func:`f1_curve`);
    * ``"f1"``: F1 at confidence >= ``conf_threshold`` (``f1_at_50``);
    * ``"precision_at_50"``: ``precision_at_50()``, the printed "Prec@50": positives with cIoU **> 0.5** (strict);
    * ``"ciou"``: ``Precision-visible@50``, positives with cIoU >= ``ciou_threshold`` (the usual success rate);
    * ``"auc"``: the cIoU AUC over positives (``AUC-all@50``);
    * ``"num_positive"``, ``"num_negative"`` (int64).

    Rates over positives are NaN when there are none. Per-sample cIoU values and confidences are bitwise equal to
    the reference's (float32 confidences included), so the threshold walks see the same ties.

    Args:
        protocol: mask rule; ``"slavc"`` (default, ``score >= 0.5``) or ``"ezvsl"`` (SLAVC ``--relative_prediction``);
            any of :data:`avsl.metrics.PROTOCOLS` is accepted.
        ciou_threshold: the cIoU a confident positive needs to count as a TP (0.5; the reference also reports 0.75).
        conf_threshold: the confidence threshold of ``"f1"`` (SLAVC ``default_conf_thr = 0.5``).
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    cious: list[Tensor] | Tensor
    confidences: list[Tensor] | Tensor
    num_boxes: list[Tensor] | Tensor
    sample_ids: list[Tensor] | Tensor

    def __init__(
        self,
        protocol: str = "slavc",
        ciou_threshold: float = 0.5,
        conf_threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        F._check_protocol(protocol)
        self.protocol = protocol
        self.ciou_threshold = float(ciou_threshold)
        self.conf_threshold = float(conf_threshold)
        for name in ("cious", "confidences", "num_boxes", "sample_ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        scores: Tensor,
        gt_maps: Tensor,
        num_boxes: Tensor | Sequence[int],
        sample_ids: SampleIds | None = None,
    ) -> None:
        """Score a batch of positives and/or negatives (see the class docstring)."""
        cious = F.ciou(scores, gt_maps, self.protocol)
        conf = F.slavc_confidence(scores).to(torch.float64)  # float32 -> float64 is exact: ties are kept
        boxes = torch.as_tensor(num_boxes, device=cious.device)
        if boxes.ndim != 1 or boxes.numel() != cious.numel():
            raise ValueError(f"num_boxes must have shape ({cious.numel()},), got {tuple(boxes.shape)}")
        if boxes.dtype.is_floating_point or boxes.dtype.is_complex:
            raise ValueError(f"num_boxes must be integers or bools, got {boxes.dtype}")
        boxes = boxes.to(torch.int64)
        if bool((boxes < 0).any()):
            raise ValueError("num_boxes must be >= 0 (0 marks a silent or off-screen negative)")
        self.cious.append(cious.to(self.device))  # type: ignore[union-attr]
        self.confidences.append(conf.to(self.device))  # type: ignore[union-attr]
        self.num_boxes.append(boxes.to(self.device))  # type: ignore[union-attr]
        if sample_ids is not None:
            self.sample_ids.append(sample_ids_to_tensor(sample_ids, cious.numel(), self.device))  # type: ignore[union-attr]

    def per_sample(self) -> dict[str, Tensor]:
        """Local per-sample ``ciou``, ``confidence``, ``num_boxes`` (and ``sample_id``), de-duplicated by id."""
        if not state_nonempty(self.cious):
            empty = torch.zeros(0, dtype=torch.float64, device=self.device)
            return {"ciou": empty, "confidence": empty.clone(), "num_boxes": empty.to(torch.int64)}
        cious = dim_zero_cat(self.cious).to(torch.float64)
        conf = dim_zero_cat(self.confidences).to(torch.float64)
        boxes = dim_zero_cat(self.num_boxes).to(torch.int64)
        if not state_nonempty(self.sample_ids):
            return {"ciou": cious, "confidence": conf, "num_boxes": boxes}
        ids, cious, conf, boxes = dedupe_by_id(dim_zero_cat(self.sample_ids).to(torch.int64), cious, conf, boxes)
        return {"ciou": cious, "confidence": conf, "num_boxes": boxes, "sample_id": ids}

    def compute(self) -> dict[str, Tensor]:
        """AP, max-F1, F1, Prec@50, success rate and AUC (see the class docstring)."""
        s = self.per_sample()
        cious, conf, boxes = s["ciou"], s["confidence"], s["num_boxes"]
        device = cious.device
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=device)
        positive = boxes > 0
        pos_cious = cious[positive]
        out = {
            "ap": nan.clone(),
            "max_f1": nan.clone(),
            "f1": nan.clone(),
            "precision_at_50": nan.clone(),
            "ciou": nan.clone(),
            "auc": nan.clone(),
            "num_positive": positive.sum(),
            "num_negative": (~positive).sum(),
        }
        if cious.numel() == 0:
            return out
        out["ap"] = average_precision(conf, cious, boxes, self.ciou_threshold)
        out["max_f1"] = f1_curve(conf, cious, boxes, self.ciou_threshold).max()
        p, r = precision_recall(
            conf, cious, boxes, torch.tensor([self.conf_threshold], dtype=torch.float64), self.ciou_threshold
        )
        out["f1"] = torch.where(p + r > 0, torch.div(2 * p * r, p + r), torch.zeros_like(p))[0]
        if pos_cious.numel():
            hits = (pos_cious > 0.5).sum().to(torch.float64)
            out["precision_at_50"] = torch.div(hits, torch.full_like(hits, pos_cious.numel()))
            out["ciou"] = F.success_rate(pos_cious, self.ciou_threshold)
            out["auc"] = F.auc(pos_cious)
        return out
