"""Evaluation metrics that reproduce the published AVSL protocols exactly (see ``docs/metrics.md``).

* :class:`CIoU`: cIoU success rate ("cIoU" in papers), AUC and mean cIoU under a named protocol (:data:`PROTOCOLS`).
* :class:`ExtendedLocalization`: SLAVC's protocol with silent / off-screen negatives (AP, max-F1, F1, Prec@50).
* :class:`Pointing`: the pointing rate, the share of samples whose heatmap peaks inside the GT (ties shared out).
* :class:`AVSBenchMIoU`, :class:`AVSBenchFScore`: AVSBench segmentation metrics.
* :class:`EvaluationMetrics`: all of them for one validation or test stage, as ``LocalizationMethod`` uses them.
* :mod:`avsl.metrics.functional`: the pure functions behind them (GT maps, binarization, cIoU, AUC, pointing).
"""

from __future__ import annotations

from avsl.metrics import functional
from avsl.metrics.avsbench import AVSBenchFScore, AVSBenchMIoU
from avsl.metrics.evaluation import EvaluationMetrics
from avsl.metrics.extended import ExtendedLocalization
from avsl.metrics.functional import PROTOCOLS
from avsl.metrics.localization import CIoU
from avsl.metrics.pointing import Pointing

__all__ = [
    "PROTOCOLS",
    "AVSBenchFScore",
    "AVSBenchMIoU",
    "CIoU",
    "EvaluationMetrics",
    "ExtendedLocalization",
    "Pointing",
    "functional",
]
