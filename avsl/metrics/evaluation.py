"""The evaluation metrics of a method's validation or test stage, as one module."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avsl.metrics.avsbench import AVSBenchFScore, AVSBenchMIoU
from avsl.metrics.localization import CIoU
from avsl.metrics.pointing import Pointing
from avsl.nn.maps import minmax_normalize
from avsl.types import AVBatch

__all__ = ["EvaluationMetrics"]


class EvaluationMetrics(nn.Module):
    """The metrics of one evaluation stage: cIoU/AUC under the protocol, pointing, and, for batches with pixel
    masks (AVSBench, SynthAV), AVSBench mIoU and F-score."""

    def __init__(self, protocol: str) -> None:
        super().__init__()
        self.ciou = CIoU(protocol=protocol)
        self.pointing = Pointing()
        self.miou = AVSBenchMIoU(reduction="dataset")
        self.fscore = AVSBenchFScore(reduction="dataset")

    def update(self, raw: Tensor, scores: Tensor, batch: AVBatch) -> None:
        ids = batch["sample_id"]
        if "gt_map" in batch:
            self.ciou.update(scores, batch["gt_map"], ids)
            # Pointing takes the raw maps: clamping (slavc) can merge the peak with other pixels.
            self.pointing.update(raw, batch["gt_map"], ids)
        if "mask" in batch:
            # AVSBench metrics take logits; the logit of the normalized map thresholds at 0.5 like sigmoid > 0.5.
            logits = torch.logit(minmax_normalize(raw).clamp(1e-6, 1 - 1e-6))
            self.miou.update(logits, batch["mask"], ids)
            self.fscore.update(logits, batch["mask"], ids)

    def compute_and_reset(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.ciou.update_count:
            out.update({k: v.float() for k, v in self.ciou.compute().items()})
        if self.pointing.update_count:
            out["pointing"] = self.pointing.compute()["pointing"].float()
        for name, metric in (("miou", self.miou), ("fscore", self.fscore)):
            if metric.update_count:
                out[name] = metric.compute().float()
        for each in (self.ciou, self.pointing, self.miou, self.fscore):
            each.reset()
        return out
