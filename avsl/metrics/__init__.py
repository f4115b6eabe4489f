"""Evaluation metrics that reproduce the published AVSL protocols exactly."""

from __future__ import annotations

from avsl.metrics import functional

__all__ = ["functional"]
