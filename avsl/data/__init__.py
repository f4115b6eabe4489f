"""Datasets, transforms and the LightningDataModule."""

from __future__ import annotations
