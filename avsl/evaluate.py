"""Evaluate any heatmap function (a trained method or a trivial baseline) with the avsl metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from avsl.losses import minmax_normalize
from avsl.metrics import AVSBenchFScore, AVSBenchMIoU, CIoU, Pointing
from avsl.types import AVBatch

__all__ = ["centre_gaussian", "evaluate", "uniform"]


def centre_gaussian(height: int, width: int, sigma: float = 0.25) -> Tensor:
    """The centre baseline: an isotropic Gaussian in the middle of the frame (``sigma`` relative to the side)."""
    ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height - 0.5
    xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width - 0.5
    return torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2)).float()


def uniform(height: int, width: int) -> Tensor:
    """The uniform baseline: a constant map (every protocol's constant-map rule applies)."""
    return torch.ones(height, width)


@torch.no_grad()
def evaluate(
    heatmap_fn: Callable[[AVBatch], Tensor],
    batches: Iterable[AVBatch],
    protocols: Sequence[str] = ("ezvsl", "sspl"),
) -> dict[str, float]:
    """Evaluate ``heatmap_fn`` (batch -> (B, H, W) scores at the ground truth's resolution) on ``batches``.

    Returns ``"<protocol>/ciou"``, ``"<protocol>/auc"`` and ``"<protocol>/mean_ciou"`` for every protocol with a
    ``gt_map`` in the batches, ``"pointing"`` (the pointing rate over samples with a non-empty GT, see
    :class:`~avsl.metrics.Pointing`) on the same maps, and ``"miou"`` / ``"fscore"`` (AVSBench rules, dataset-level)
    when they carry masks.
    """
    cious = {p: CIoU(protocol=p) for p in protocols}
    pointing = Pointing()
    miou, fscore = AVSBenchMIoU(reduction="dataset"), AVSBenchFScore(reduction="dataset")
    for batch in batches:
        maps = heatmap_fn(batch).float().cpu()
        if "gt_map" in batch:
            for metric in cious.values():
                metric.update(maps, batch["gt_map"].cpu(), batch["sample_id"])
            pointing.update(maps, batch["gt_map"].cpu(), batch["sample_id"])
        if "mask" in batch:
            logits = torch.logit(minmax_normalize(maps).clamp(1e-6, 1 - 1e-6))
            miou.update(logits, batch["mask"].cpu(), batch["sample_id"])
            fscore.update(logits, batch["mask"].cpu(), batch["sample_id"])
    results: dict[str, float] = {}
    for protocol, metric in cious.items():
        if metric.update_count:
            results.update({f"{protocol}/{k}": float(v) for k, v in metric.compute().items()})
    if pointing.update_count:
        results["pointing"] = float(pointing.compute()["pointing"])
    if miou.update_count:
        results["miou"] = float(miou.compute())
        results["fscore"] = float(fscore.compute())
    return results
