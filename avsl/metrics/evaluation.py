"""The evaluation metrics of a method's validation or test stage, as one module."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from avsl.metrics.avsbench import AVSBenchFScore, AVSBenchMIoU
from avsl.metrics.extended import ExtendedLocalization
from avsl.metrics.localization import CIoU
from avsl.metrics.pointing import Pointing
from avsl.nn.maps import minmax_normalize
from avsl.types import AVBatch

__all__ = ["EvaluationMetrics"]


class EvaluationMetrics(nn.Module):
    """The metrics of one evaluation stage: cIoU/AUC under the protocol, pointing, and, for batches with pixel
    masks (AVSBench, SynthAV), AVSBench mIoU and F-score.

    Negatives (samples with ``num_sources == 0``: silent or off-screen clips, SLAVC's extended test sets, SynthAV's
    ``negative_fraction``) have nothing to localize: they are kept out of cIoU, AUC, pointing, mIoU and F-score, and
    the whole set is scored by SLAVC's extended protocol (:class:`~avsl.metrics.ExtendedLocalization`: ``ap``,
    ``max_f1``, ``f1``, ``precision_at_50``, with ``num_negative``), reported when the set has negatives.

    Args:
        protocol: the cIoU protocol whose ``ciou``, ``auc``, ``mean_ciou`` keys are reported.
        also: more cIoU protocols over the same maps, reported as ``<protocol>/ciou`` etc. (pointing, mIoU and the
            extended protocol do not depend on the protocol: computed once).
    """

    def __init__(self, protocol: str, also: Sequence[str] = ()) -> None:
        super().__init__()
        self.protocol = protocol
        self.ciou = CIoU(protocol=protocol)
        self.also = nn.ModuleDict({p: CIoU(protocol=p) for p in also if p != protocol})
        self.pointing = Pointing()
        self.miou = AVSBenchMIoU(reduction="dataset")
        self.fscore = AVSBenchFScore(reduction="dataset")
        self.extended = ExtendedLocalization()

    def _also(self) -> list[tuple[str, CIoU]]:
        return [(name, ciou) for name, ciou in self.also.items() if isinstance(ciou, CIoU)]

    def update(self, raw: Tensor, unit: Tensor, batch: AVBatch) -> None:
        """``raw``: the method's upsampled maps (B, H, W); ``unit``: the same in [0, 1] by the method's score range
        (``LocalizationMethod.unit_scores``, clamped), what fixed-threshold rules (``slavc``) take."""
        ids = list(batch["sample_id"])
        gt, mask = batch.get("gt_map"), batch.get("mask")
        if "num_sources" in batch:
            sources = torch.as_tensor(batch["num_sources"]).reshape(-1)
            if gt is not None:
                self.extended.update(unit, gt, sources.to(unit.device), ids)
            keep = [i for i, n in enumerate(sources.tolist()) if n > 0]
            # A batch of negatives only still updates every metric, with no rows: which metrics compute (a collective
            # under DDP) follows from which were updated, and that must be the same on every process.
            if len(keep) < len(ids):
                rows = torch.tensor(keep, dtype=torch.long, device=raw.device)
                raw, unit, ids = raw[rows], unit[rows], [ids[i] for i in keep]
                gt = None if gt is None else gt[rows]
                mask = None if mask is None else mask[rows]
        if gt is not None:
            self.ciou.update(unit if self.protocol == "slavc" else raw, gt, ids)
            for name, ciou in self._also():
                ciou.update(unit if name == "slavc" else raw, gt, ids)
            # Pointing takes the raw maps: clamping (slavc) can merge the peak with other pixels.
            self.pointing.update(raw, gt, ids)
        if mask is not None:
            # AVSBench metrics take logits; the logit of the normalized map thresholds at 0.5 like sigmoid > 0.5.
            # In float32: 1 - 1e-6 rounds to 1 in half precision, whose peak would get an infinite logit.
            logits = torch.logit(minmax_normalize(raw.float()).clamp(1e-6, 1 - 1e-6))
            self.miou.update(logits, mask, ids)
            self.fscore.update(logits, mask, ids)

    def compute_and_reset(self) -> dict[str, Tensor]:
        """Every metric that was updated, in the precision its metric computes it (float64 for most)."""
        out: dict[str, Tensor] = {}
        if self.ciou.update_count:
            out.update(self.ciou.compute())
        for name, ciou in self._also():
            if ciou.update_count:
                out.update({f"{name}/{k}": v for k, v in ciou.compute().items()})
        if self.pointing.update_count:
            out["pointing"] = self.pointing.compute()["pointing"]
        for name, metric in (("miou", self.miou), ("fscore", self.fscore)):
            if metric.update_count:
                out[name] = metric.compute()
        if self.extended.update_count:
            extended = self.extended.compute()
            if int(extended["num_positive"]) == 0:  # negatives only (the same on every process: synced counts)
                out.clear()  # no cIoU, pointing or mIoU of nothing: NaN would poison a mean over runs
            if int(extended["num_negative"]) > 0:
                for key in ("ap", "max_f1", "f1", "precision_at_50", "num_negative"):
                    out[key] = extended[key]
        for each in (self.ciou, *(c for _, c in self._also()), self.pointing, self.miou, self.fscore, self.extended):
            each.reset()
        return out
