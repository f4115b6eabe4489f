"""The data contract: what a dataset yields and what a method receives.

A *sample* is a plain dict (see :class:`AVSample`). Datasets decode, resample, crop and resize on CPU workers; methods
do everything architecture-specific (spectrograms, mean/std normalization) on the device inside ``forward``. So
``LocalizationMethod.localize`` takes raw frames in [0, 1] and raw waveforms.
"""

from __future__ import annotations

from typing import TypedDict

from torch import Tensor
from typing_extensions import NotRequired


class AVSample(TypedDict):
    """One audio-visual sample as a dataset yields it."""

    image: Tensor
    """Float (3, H, W) in [0, 1], RGB."""
    audio: Tensor
    """Float (T,) mono waveform at the dataset's ``sample_rate``."""
    sample_id: str
    """Stable and unique within its dataset (used to key metrics and pseudo-label banks)."""
    gt_map: NotRequired[Tensor]
    """Float (H, W) in [0, 1], built by the dataset's protocol (Flickr consensus, VGG-SS union, masks, ...)."""
    mask: NotRequired[Tensor]
    """Float (H, W) in {0, 1}: a pixel mask of the sounding objects (segmentation benchmarks, SynthAV)."""
    num_sources: NotRequired[int]
    """How many sources are audible and visible: 0 marks a silent or off-screen negative."""


class AVBatch(TypedDict):
    """A collated batch of :class:`AVSample` (the default collate of a ``DataLoader``)."""

    image: Tensor
    """(B, 3, H, W)."""
    audio: Tensor
    """(B, T)."""
    sample_id: list[str]
    gt_map: NotRequired[Tensor]
    """(B, H, W)."""
    mask: NotRequired[Tensor]
    """(B, H, W)."""
    num_sources: NotRequired[Tensor]
    """(B,) integer."""


class TrainBatch(TypedDict):
    """What ``training_step`` receives from :class:`avsl.data.AVDataModule`.

    ``labeled`` is present only when the datamodule was given a labeled dataset.
    """

    unlabeled: AVBatch
    labeled: NotRequired[AVBatch]
