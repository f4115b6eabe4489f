"""The data contract: what a dataset yields, what a method receives, and what a method declares it takes
(:class:`Signal`).

A *sample* is a plain dict (see :class:`AVSample`). Datasets decode, resample, crop and resize on CPU workers; methods
do everything architecture-specific (spectrograms, mean/std normalization) on the device inside ``forward``. So
``LocalizationMethod.localize`` takes raw frames in [0, 1] and raw waveforms.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

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


@dataclass(frozen=True)
class Signal:
    """What a method takes and gives besides its weights: the facts that inference needs.

    A method declares its signal from its constructor arguments (wrappers pass on their inner method's); it is saved
    in every checkpoint, and ``avsl localize``, :func:`avsl.methods.load_method` and the checks between a method and
    its data read it from there, so a checkpoint says how to prepare new inputs.

    Attributes:
        sample_rate: audio sample rate in Hz.
        frame_size: (height, width) of the frames the method is trained on.
        duration: length of the audio window in seconds.
        score_range: the range of the raw map scores (fixed-threshold protocols such as ``slavc`` map it to [0, 1]).
        upsample_mode: how raw maps are resized to the frame (``torch.nn.functional.interpolate`` mode).
        align_corners: ``align_corners`` of that interpolation (ignored by modes that do not take it).
    """

    sample_rate: int
    frame_size: tuple[int, int]
    duration: float
    score_range: tuple[float, float] = (-1.0, 1.0)
    upsample_mode: str = "bilinear"
    align_corners: bool | None = False

    def __post_init__(self) -> None:
        size = tuple(self.frame_size)
        if len(size) != 2 or min(int(s) for s in size) < 1:
            raise ValueError(f"frame_size must be (height, width) of positive ints, got {self.frame_size!r}")
        lo, hi = (float(v) for v in self.score_range)
        if self.sample_rate < 1 or self.duration <= 0 or not lo < hi:
            raise ValueError(
                f"need sample_rate >= 1, duration > 0 and score_range low < high, got {self.sample_rate}, "
                f"{self.duration}, {self.score_range}"
            )
        # Normalized types: YAML gives lists, checkpoints give back what to_dict wrote.
        object.__setattr__(self, "frame_size", (int(size[0]), int(size[1])))
        object.__setattr__(self, "score_range", (lo, hi))
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        object.__setattr__(self, "duration", float(self.duration))

    @property
    def num_samples(self) -> int:
        """Samples in the audio window."""
        return round(self.duration * self.sample_rate)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what checkpoints store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Signal:
        return cls(**{k: values[k] for k in inspect.signature(cls).parameters if k in values})
