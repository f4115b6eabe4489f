"""Signal transforms that run in the dataset (CPU workers).

Images are resized to a square ``(size, size)`` at test time (``Resize((224, 224))`` as in EZ-VSL, SLAVC and
SSL-alignment), which warps the aspect ratio but keeps normalized boxes aligned with the frame. Training crops and
flips are applied *jointly* to ``image``, ``gt_map`` and ``mask`` so that supervision stays aligned (SLAVC's reference
code does not transform its GT map; we do).

Audio is downmixed to mono, resampled to the configured rate and cut to a fixed window centred in the clip (short clips
are tiled, as in EZ-VSL and SSPL).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor

from avsl.types import AVSample

__all__ = [
    "AudioJitter",
    "Compose",
    "JointRandomCropFlip",
    "SampleTransform",
    "audio_window",
    "resample",
    "resize_image",
    "resize_mask",
    "resize_uint8",
    "to_mono",
]


@runtime_checkable
class SampleTransform(Protocol):
    """A transform of a whole sample dict (the type of datasets' ``augment`` argument).

    Any class with ``__call__(sample) -> sample`` qualifies; in YAML give it as ``class_path`` + ``init_args``.
    (A Protocol rather than ``Callable``, because jsonargparse instantiates protocol implementers from
    ``class_path`` also inside nested dataset configs.)
    """

    def __call__(self, sample: AVSample) -> AVSample: ...


def resize_image(image: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize a (3, H, W) image in [0, 1] to ``size`` (bilinear, antialiased), clamped back to [0, 1]."""
    hw = (size, size) if isinstance(size, int) else size
    if tuple(image.shape[-2:]) == hw:
        return image
    out = F.interpolate(image[None], size=hw, mode="bilinear", align_corners=False, antialias=True)[0]
    return out.clamp_(0.0, 1.0)


def resize_uint8(pixels: Tensor, size: int | tuple[int, int]) -> Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, h, w) float32 in [0, 1] at ``size``: resized in 8 bits before the conversion
    to float (bilinear, antialiased), as the references resize 8-bit images with Pillow. The permuted view is
    channels-last, torch's fast uint8 path. Image files (``load_image(path, size)``) and video frames share it."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    channels_first = pixels.permute(0, 3, 1, 2)
    if tuple(channels_first.shape[-2:]) != hw:
        channels_first = F.interpolate(channels_first, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return channels_first.float().div_(255.0).contiguous()


def resize_mask(mask: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize an (H, W) map with nearest neighbour, so binary masks stay binary."""
    hw = (size, size) if isinstance(size, int) else size
    if tuple(mask.shape[-2:]) == hw:
        return mask
    return F.interpolate(mask[None, None].float(), size=hw, mode="nearest")[0, 0]


class JointRandomCropFlip:
    """Training augmentation of EZ-VSL and SSPL: upscale by ``scale``, random crop back, random horizontal flip.

    The reference pipelines resize to ``int(224 * 1.1) = 246``, crop 224 and flip with probability 0.5. Here the crop
    and the flip are applied to ``image``, ``gt_map`` and ``mask`` alike (maps are resized with nearest neighbour).
    Randomness comes from torch's global generator, which Lightning seeds per worker.
    """

    def __init__(self, scale: float = 1.1, flip_p: float = 0.5) -> None:
        if scale < 1.0:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        self.scale = scale
        self.flip_p = flip_p

    def __call__(self, sample: AVSample) -> AVSample:
        h, w = sample["image"].shape[-2:]
        big_h, big_w = int(h * self.scale), int(w * self.scale)
        top = int(torch.randint(0, big_h - h + 1, ()).item())
        left = int(torch.randint(0, big_w - w + 1, ()).item())
        flip = bool(torch.rand(()) < self.flip_p)
        out: AVSample = dict(sample)  # type: ignore[assignment]
        image = resize_image(sample["image"], (big_h, big_w))[:, top : top + h, left : left + w]
        out["image"] = image.flip(-1) if flip else image
        for key in ("gt_map", "mask"):
            if key in sample:
                m = resize_mask(sample[key], (big_h, big_w))[top : top + h, left : left + w]
                out[key] = m.flip(-1) if flip else m
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale}, flip_p={self.flip_p})"


class AudioJitter:
    """Training augmentation of the sound: a random circular shift in time and a random gain.

    Self-supervised localization learns from which sound goes with which frame. On a small training set (SynthAV's
    2,000 clips, repeated for several epochs) the encoders can instead learn to recognise each training clip by its
    own sound (its noise, its level, the phase of its modulation) and each frame by its layout, and the contrastive
    loss keeps falling while the maps drift off the objects. A new shift and gain each time a clip is drawn makes a
    clip's sound a different input every epoch, while what identifies the source (its spectrum over time) stays.
    Measured in ``docs/methods/ezvsl.md`` ("The CPU recipe"). The frame is untouched, so pseudo-labels and boxes of
    the frame stay valid.

    Args:
        shift: roll the waveform by a uniformly drawn number of samples (what leaves the end re-enters at the start).
        gain_db: scale by a gain drawn uniformly in ``[-gain_db, gain_db]`` decibels (0 disables).
    """

    def __init__(self, shift: bool = True, gain_db: float = 6.0) -> None:
        if gain_db < 0:
            raise ValueError(f"gain_db must be >= 0, got {gain_db}")
        self.shift = shift
        self.gain_db = gain_db

    def __call__(self, sample: AVSample) -> AVSample:
        out: AVSample = dict(sample)  # type: ignore[assignment]
        wave = sample["audio"]
        if self.shift and wave.shape[-1] > 1:
            wave = wave.roll(int(torch.randint(0, wave.shape[-1], ()).item()), dims=-1)
        if self.gain_db > 0:
            gain_db = float(torch.empty(()).uniform_(-self.gain_db, self.gain_db).item())
            wave = wave * 10.0 ** (gain_db / 20.0)
        out["audio"] = wave
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shift={self.shift}, gain_db={self.gain_db})"


class Compose:
    """Apply sample transforms in order (e.g. ``JointRandomCropFlip`` then ``AudioJitter``)."""

    def __init__(self, transforms: Sequence[SampleTransform]) -> None:
        for t in transforms:
            if not callable(t):
                raise TypeError(f"every transform must be callable on a sample, got {t!r}")
        self.transforms = list(transforms)

    def __call__(self, sample: AVSample) -> AVSample:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms!r})"


def to_mono(wave: Tensor) -> Tensor:
    """Downmix a (T,), (C, T) waveform to (T,) by averaging the channels."""
    if wave.dim() == 1:
        return wave
    if wave.dim() != 2:
        raise ValueError(f"expected a (T,) or (C, T) waveform, got shape {tuple(wave.shape)}")
    return wave.mean(dim=0)


def resample(wave: Tensor, orig_rate: int, target_rate: int) -> Tensor:
    """Resample a waveform along its last axis (windowed sinc, torchaudio's default)."""
    if orig_rate == target_rate:
        return wave
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    out: Tensor = AF.resample(wave, orig_rate, target_rate)
    return out


def audio_window(wave: Tensor, num_samples: int, position: float = 0.5) -> Tensor:
    """Cut a window of ``num_samples`` from a (T,) waveform.

    ``position`` in [0, 1] places the window: 0.5 centres it in the clip (EZ-VSL and SSPL take 3 s centred), 0 takes
    the start (LVS takes the first 10 s). Clips shorter than the window are tiled first.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"position must be in [0, 1], got {position}")
    length = wave.shape[-1]
    if length == 0:
        raise ValueError("cannot take a window of an empty waveform")
    if length < num_samples:
        wave = wave.repeat(math.ceil(num_samples / length))
        length = wave.shape[-1]
    start = round((length - num_samples) * position)
    return wave[start : start + num_samples]
