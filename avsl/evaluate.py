"""Evaluate any heatmap function (a trained method or a trivial baseline) with the avsl metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from avsl.metrics import AVSBenchFScore, AVSBenchMIoU, CIoU, Pointing
from avsl.nn.maps import minmax_normalize
from avsl.types import AVBatch, AVSample

if TYPE_CHECKING:
    from avsl.methods.base import LocalizationMethod

__all__ = ["OtherSound", "centre_gaussian", "evaluate", "evaluate_controls", "uniform"]


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


class OtherSound(Dataset[AVSample]):
    """The frames of ``dataset`` with the sound of another clip: clip ``i`` gets the audio of clip ``i + N // 2``.

    The audio control of :func:`evaluate_controls`: a map that follows the sound moves away from the source. The
    other clip's sound can be of the same class as the source by chance (1 in the number of classes on SynthAV), or
    of a class that another object in the frame shows.
    """

    def __init__(self, dataset: Dataset[AVSample]) -> None:
        self.dataset = dataset
        self.n = len(dataset)  # type: ignore[arg-type]
        if self.n < 2:
            raise ValueError("OtherSound needs a dataset of at least 2 clips")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> AVSample:
        sample: AVSample = dict(self.dataset[index])  # type: ignore[assignment]
        sample["audio"] = self.dataset[(index + self.n // 2) % self.n]["audio"]
        return sample


@torch.no_grad()
def evaluate_controls(
    model: LocalizationMethod,
    dataset: Dataset[AVSample],
    protocols: Sequence[str] = ("sspl",),
    batch_size: int = 100,
) -> dict[str, dict[str, float]]:
    """Does the map follow the sound? ``evaluate`` a method on ``dataset`` three ways, side by side.

    Returns ``{"right": ..., "other": ..., "centre": ...}``: the method with each clip's own sound, the method with
    another clip's sound (:class:`OtherSound`), and the centred Gaussian prior (:func:`centre_gaussian`), each a dict
    of :func:`evaluate` (cIoU, AUC and mean cIoU per protocol, ``"pointing"``, and mIoU with masks). The model is put
    in eval mode; batches go to the model's device.
    """
    model.eval()
    device = model.device

    def maps(batch: AVBatch) -> Tensor:
        out: Tensor = model.localize(batch["image"].to(device), batch["audio"].to(device), normalize=False)
        return out

    right = list(DataLoader(dataset, batch_size=batch_size))
    if not right:
        raise ValueError("evaluate_controls needs a non-empty dataset")
    h, w = right[0]["image"].shape[-2:]
    prior = centre_gaussian(h, w)
    return {
        "right": evaluate(maps, right, protocols),
        "other": evaluate(maps, DataLoader(OtherSound(dataset), batch_size=batch_size), protocols),
        "centre": evaluate(lambda b: prior.expand(b["image"].shape[0], h, w), right, protocols),
    }
