"""avsl: audio-visual sound source localization methods for PyTorch Lightning.

Subpackages: :mod:`avsl.methods` (LightningModules and ``METHODS``), :mod:`avsl.data` (datasets, SynthAV, the
datamodule), :mod:`avsl.metrics` (cIoU/AUC protocols, AVSBench), :mod:`avsl.nn` (backbones, audio front-ends),
:mod:`avsl.losses`, :mod:`avsl.viz`. They are imported on first access, so ``import avsl`` and ``avsl --version``
stay fast (importing Lightning takes seconds). So is :func:`avsl.localize_video` (heatmaps and an overlay video for
every frame of a video, see :mod:`avsl.localize`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from avsl.localize import localize_video

__version__ = "0.1.0.dev0"

_SUBMODULES = ("data", "evaluate", "losses", "methods", "metrics", "nn", "types", "viz")

__all__ = ["__version__", "localize_video", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"avsl.{name}")
    if name == "localize_video":
        return importlib.import_module("avsl.localize").localize_video
    raise AttributeError(f"module 'avsl' has no attribute {name!r}")
