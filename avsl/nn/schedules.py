"""Curriculum schedules of semi-supervised training (XPL's data selection and the ramp-up of its cross loss)."""

from __future__ import annotations

import math

__all__ = ["selection_fraction", "sigmoid_rampup"]


def selection_fraction(epoch: float, start: float, ramp_epochs: float) -> float:
    """Curriculum: the fraction of unlabeled samples selected at ``epoch`` (counted from the start of selection).

    Grows linearly from ``start`` to 1 over ``ramp_epochs`` epochs and stays at 1: ``min(1, start + (1 - start) *
    epoch / ramp_epochs)``. ``ramp_epochs = 0`` selects everything at once.
    """
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"start must be in [0, 1], got {start}")
    if ramp_epochs < 0:
        raise ValueError(f"ramp_epochs must be >= 0, got {ramp_epochs}")
    if ramp_epochs == 0 or epoch >= ramp_epochs:
        return 1.0
    return min(1.0, start + (1.0 - start) * max(0.0, epoch) / ramp_epochs)


def sigmoid_rampup(epoch: float, ramp_epochs: float) -> float:
    """The sigmoid-shaped ramp-up of Laine & Aila (2017) and mean teacher: ``exp(-5 (1 - t)^2)``, ``t = epoch /
    ramp_epochs`` clipped to [0, 1]; 1 when ``ramp_epochs = 0``."""
    if ramp_epochs < 0:
        raise ValueError(f"ramp_epochs must be >= 0, got {ramp_epochs}")
    if ramp_epochs == 0:
        return 1.0
    t = min(1.0, max(0.0, epoch / ramp_epochs))
    return math.exp(-5.0 * (1.0 - t) ** 2)
