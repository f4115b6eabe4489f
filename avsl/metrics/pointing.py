"""The pointing rate as a torchmetrics ``Metric``: the share of samples whose heatmap peaks inside the ground truth."""

from __future__ import annotations

import torch
from torch import Tensor

from avsl.metrics import functional as F
from avsl.metrics._ids import PerSampleMetric, SampleIds

__all__ = ["Pointing"]


class Pointing(PerSampleMetric):
    """Pointing rate of sound localization heatmaps: the mean, over samples, of "the peak lies inside the GT".

    ``update(heatmaps, gt_maps, sample_ids=None)`` stores the per-sample scores of
    :func:`avsl.metrics.functional.pointing`: with P the set of pixels at the map's maximum and "inside" meaning
    ``gt_map > 0``, a sample scores ``|P & inside| / |P|``, the expected hit of a uniformly random tie-break (1 or 0
    for a unique maximum, the GT's area fraction for a constant map). ``compute()`` returns::

        {"pointing": mean score over the samples with a non-empty GT (float64; NaN when there are none),
         "num_samples": number of samples (after de-duplication), empty-GT ones included (int64),
         "num_empty": samples whose GT is empty (negatives), excluded from "pointing" (int64)}

    Heatmaps with NaN or inf raise a ``ValueError`` that names the samples (by their ids when given).

    **Devices.** As in :class:`~avsl.metrics.CIoU`: with ``sample_ids`` (strings, hashed with BLAKE2b, or integers),
    ``compute()`` keeps one score per id, which removes the repeats a ``DistributedSampler`` pads the evaluation set
    with, and averages them in id order: the result is identical on any number of devices. Pass ids in every update
    or in none.

    Args:
        kwargs: forwarded to ``torchmetrics.Metric`` (``compute_on_cpu``, ``process_group``, ...).
    """

    is_differentiable = False
    higher_is_better = True

    def update(self, heatmaps: Tensor, gt_maps: Tensor, sample_ids: SampleIds | None = None) -> None:
        """Score a batch.

        Args:
            heatmaps: (B, H, W) float heatmaps, any range (raw scores or normalized maps: the peak is the same).
            gt_maps: (B, H, W) GT weight maps in [0, 1]; an all-zero map marks a negative.
            sample_ids: optional ids of the B samples (list of str or int, or an int tensor).
        """
        self._store(F._pointing(F._check_maps(heatmaps), gt_maps, sample_ids), sample_ids)

    def compute(self) -> dict[str, Tensor]:
        """Aggregate: ``pointing`` (float64), ``num_samples`` and ``num_empty`` (int64)."""
        values, _ = self.per_sample()
        empty = torch.isnan(values)
        scored = values[~empty]
        count = torch.tensor(scored.numel(), dtype=torch.float64, device=values.device)
        mean = torch.div(scored.sum(), count)  # 0 / 0 = NaN when no sample has a GT
        return {
            "pointing": mean,
            "num_samples": torch.tensor(values.numel(), dtype=torch.int64, device=values.device),
            "num_empty": empty.sum(),
        }
