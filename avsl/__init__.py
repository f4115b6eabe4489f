"""avsl: audio-visual sound source localization methods for PyTorch Lightning.

Subpackages: :mod:`avsl.methods` (LightningModules and ``METHODS``), :mod:`avsl.data` (datasets, SynthAV, the
datamodule), :mod:`avsl.metrics` (cIoU/AUC protocols, AVSBench), :mod:`avsl.nn` (backbones, audio front-ends),
:mod:`avsl.losses`, :mod:`avsl.viz`. They are imported on first access, so ``import avsl`` and ``avsl --version``
stay fast (importing Lightning takes seconds).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0.dev0"

_SUBMODULES = ("data", "evaluate", "losses", "methods", "metrics", "nn", "types", "viz")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"avsl.{name}")
    raise AttributeError(f"module 'avsl' has no attribute {name!r}")
