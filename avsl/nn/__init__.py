"""Lightning-free building blocks: backbones, audio front-ends, heads."""

from __future__ import annotations

from avsl.nn.audio import AUDIO_FRONTENDS, LogLinearSpectrogram, LogMelSpectrogram, VGGishLogMel, create_frontend
from avsl.nn.backbones import EXTRA_BACKBONES, Backbone, create_backbone

__all__ = [
    "AUDIO_FRONTENDS",
    "EXTRA_BACKBONES",
    "Backbone",
    "LogLinearSpectrogram",
    "LogMelSpectrogram",
    "VGGishLogMel",
    "create_backbone",
    "create_frontend",
]
