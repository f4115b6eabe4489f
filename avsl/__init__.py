"""avsl: audio-visual sound source localization methods for PyTorch Lightning."""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
