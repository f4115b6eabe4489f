"""The cIoU / AUC localization metric as a torchmetrics ``Metric``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from avsl.metrics import functional as F
from avsl.metrics._ids import PerSampleMetric, SampleIds

__all__ = ["CIoU"]


class CIoU(PerSampleMetric):
    """cIoU success rate, AUC and mean cIoU of sound localization heatmaps under a named reference protocol.

    ``update(heatmaps, gt_maps, sample_ids=None)`` binarizes (B, H, W) heatmaps with the protocol's rule
    (:func:`avsl.metrics.functional.binarize`) and stores the per-sample cIoU values; ``compute()`` returns::

        {"ciou": success rate at cIoU >= 0.5 (the number papers call "cIoU"; EZ-VSL's "AP50"),
         "auc": area under the success-rate curve over the thresholds 0.05 * i, i = 0..20,
         "mean_ciou": mean per-sample cIoU (EZ-VSL's "Avg-cIoU"), NaN counted as 0,
         "num_samples": number of samples (after de-duplication), "num_nan": samples whose cIoU is NaN}

    **NaN policy.** A sample whose GT and mask are both empty has cIoU 0/0 = NaN (an all-degenerate VGG-SS box with a
    constant map under ``sspl``, for example). As in the references, NaN fails every threshold, so it lowers
    ``ciou`` and ``auc`` like a cIoU of 0. EZ-VSL's ``np.mean`` would turn ``mean_ciou`` into NaN; here NaN counts as
    0 there too, so all three numbers share one denominator, and ``num_nan`` reports how many samples were affected.

    **Devices.** Per-sample values live in ``cat`` list states. With ``sample_ids`` (strings, hashed with BLAKE2b, or
    integers), ``compute()`` keeps one value per id, which removes the repeats a ``DistributedSampler`` pads the
    evaluation set with: the result is then identical on any number of devices. Pass ids in every update or in none.

    Args:
        protocol: one of :data:`avsl.metrics.PROTOCOLS`; ``"ezvsl"`` (the default) equals SLAVC's relative mode.
            ``"slavc"`` expects fixed-range scores in [0, 1], not min-max normalized maps.
        kwargs: forwarded to ``torchmetrics.Metric`` (``compute_on_cpu``, ``process_group``, ...).
    """

    is_differentiable = False
    higher_is_better = True

    def __init__(self, protocol: str = "ezvsl", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        F._check_protocol(protocol)
        self.protocol = protocol

    def update(self, heatmaps: Tensor, gt_maps: Tensor, sample_ids: SampleIds | None = None) -> None:
        """Score a batch.

        Args:
            heatmaps: (B, H, W) float heatmaps (any range except for ``"slavc"``, which needs [0, 1] scores).
            gt_maps: (B, H, W) GT weight maps in [0, 1], e.g. from :func:`~avsl.metrics.functional.gt_map_from_boxes`.
            sample_ids: optional ids of the B samples (list of str or int, or an int tensor).
        """
        self._store(F.ciou(heatmaps, gt_maps, self.protocol), sample_ids)

    def compute(self) -> dict[str, Tensor]:
        """Aggregate: ``ciou``, ``auc``, ``mean_ciou`` (float64) and ``num_samples``, ``num_nan`` (int64)."""
        values, _ = self.per_sample()
        return summarize_cious(values)


def summarize_cious(values: Tensor) -> dict[str, Tensor]:
    """``ciou`` (success rate at 0.5), ``auc``, ``mean_ciou`` (NaN as 0), ``num_samples`` and ``num_nan``.

    With no samples the three rates are NaN and the counts 0.
    """
    device = values.device
    n = values.numel()
    nan = torch.isnan(values)
    if n == 0:
        nan_value = torch.tensor(float("nan"), dtype=torch.float64, device=device)
        return {
            "ciou": nan_value,
            "auc": nan_value.clone(),
            "mean_ciou": nan_value.clone(),
            "num_samples": torch.tensor(0, device=device),
            "num_nan": torch.tensor(0, device=device),
        }
    return {
        "ciou": F.success_rate(values, 0.5),
        "auc": F.auc(values),
        "mean_ciou": torch.where(nan, torch.zeros_like(values), values).mean(),
        "num_samples": torch.tensor(n, device=device),
        "num_nan": nan.sum(),
    }
