"""SynthAV: a procedural audio-visual dataset that only real audio-visual correspondence can solve.

Every clip shows a textured background with one sounding object and silent distractors of *other* classes, all equally
salient (same scale range, saturated colours). The audio is the sounding object's class signature plus noise. The image
alone cannot tell which object sounds; the audio alone cannot tell where it is. A method that ignores the audio is at
chance among the objects, which is what the trivial baselines measure.

Each of ``num_classes`` classes has a visual appearance (a shape and a colour) and a sound signature (a harmonic stack
with a class-specific fundamental, spectral envelope and amplitude-modulation rate). Clips are deterministic in
``(seed, index)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from avsl.data.transforms import SampleTransform, resize_image, resize_mask
from avsl.metrics.functional import gt_map_from_boxes
from avsl.types import AVSample

__all__ = ["BACKGROUNDS", "NOISES", "SHAPES", "SynthAV", "SynthClip", "write_synthav"]

Background = Literal["blobs", "plain", "gradient", "stripes", "clutter"]
Noise = Literal["white", "pink", "brown"]
#: Background families: smooth colour blobs with grain (the default), a flat colour, a linear colour gradient under
#: strong per-pixel noise, oriented stripes, and blobs strewn with small silent shapes of random colours.
BACKGROUNDS: tuple[str, ...] = ("blobs", "plain", "gradient", "stripes", "clutter")
#: Colours of the audio's background noise: flat (white), 1/f power (pink), 1/f^2 power (brown).
NOISES: tuple[str, ...] = ("white", "pink", "brown")

# Class fundamentals: from 160 Hz up over 3.5 octaves (about 1.8 kHz), each drawn within 2 %.
_F0_LOW, _F0_OCTAVES = 160.0, 3.5

SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "diamond", "ring", "cross", "hexagon", "star")
# Saturated, mutually distinct colours (RGB in [0, 1]); class c uses _PALETTE[c].
_PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.90, 0.10, 0.10),
    (0.10, 0.75, 0.15),
    (0.15, 0.30, 0.95),
    (0.95, 0.85, 0.10),
    (0.85, 0.15, 0.85),
    (0.10, 0.85, 0.85),
    (1.00, 0.50, 0.00),
    (0.97, 0.97, 0.97),
    (0.55, 0.25, 0.05),
    (0.50, 0.95, 0.40),
    (0.55, 0.00, 0.60),
    (0.00, 0.45, 0.45),
    (1.00, 0.60, 0.75),
    (0.40, 0.40, 0.00),
    (0.05, 0.05, 0.05),
    (0.60, 0.70, 1.00),
)
_COLOUR_NAMES = (
    "red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white",
    "brown", "lime", "purple", "teal", "pink", "olive", "black", "sky",
)  # fmt: skip


@dataclass(frozen=True)
class SynthClip:
    """Everything generated for one clip (arrays in numpy, for writing to disk or building a sample)."""

    image: np.ndarray
    """(H, W, 3) float32 in [0, 1]."""
    audio: np.ndarray
    """(T,) float32 waveform."""
    mask: np.ndarray
    """(H, W) bool: pixels of the sounding objects."""
    boxes: list[list[float]]
    """Normalized xyxy boxes of the sounding objects (empty for negatives)."""
    sounding_classes: list[int]
    """Classes that are heard and seen (empty for negatives)."""
    heard_classes: list[int]
    """Classes that are heard (an off-screen negative hears a class that is not in the frame)."""
    visible_classes: list[int]


def class_name(c: int) -> str:
    """Human-readable name of class ``c`` (its colour and shape)."""
    return f"{_COLOUR_NAMES[c]} {SHAPES[c % len(SHAPES)]}"


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a shape in normalized object coordinates (the object spans [-1, 1]^2)."""
    au, av = np.abs(u), np.abs(v)
    r = np.sqrt(u * u + v * v)
    if shape == "disc":
        inside = r <= 1.0
    elif shape == "square":
        inside = np.maximum(au, av) <= 0.85
    elif shape == "triangle":  # apex up, base down
        inside = (v >= -0.9) & (v <= 0.85) & (au <= (v + 0.9) / 1.75)
    elif shape == "diamond":
        inside = au + av <= 1.0
    elif shape == "ring":
        inside = (r <= 1.0) & (r >= 0.55)
    elif shape == "cross":
        inside = ((au <= 0.32) & (av <= 0.95)) | ((av <= 0.32) & (au <= 0.95))
    elif shape == "hexagon":
        inside = (av <= 0.866) & (math.sqrt(3.0) * au + av <= math.sqrt(3.0))
    elif shape == "star":
        theta = np.arctan2(v, u)
        inside = r <= 0.6 + 0.4 * np.cos(5.0 * theta)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(inside, dtype=bool)


class SynthAV(Dataset[AVSample]):
    """The built-in procedural audio-visual dataset (in memory).

    Every knob below changes what a method has to cope with; :data:`avsl.data.settings.SETTINGS` names families of
    them (the settings that avsl's CPU recipes were tuned on, and held-out ones for the evidence that they transfer).

    Args:
        num_clips: number of clips (the dataset's length).
        seed: the clip at ``index`` depends only on ``(seed, index)`` and the knobs below; use different seeds for
            train, validation and test splits.
        image_size: side of the square frames a sample holds.
        frame_size: ``(height, width)`` at which frames are drawn, then resized to ``image_size x image_size`` the
            way avsl's readers resize camera frames (bilinear, antialiased; the aspect ratio changes, normalized boxes
            stay aligned). None draws at ``image_size`` directly. ``(240, 320)`` mimics 4:3 video.
        sample_rate: audio sample rate in Hz.
        duration: clip length in seconds.
        num_classes: object classes (at most 16); each has a shape, a colour and a sound signature.
        num_distractors: silent objects of other classes in each frame.
        num_sources: sounding objects per positive clip; above 1 the audio is a mixture (chaotic-scene evaluation).
        object_scale: range of an object's side as a fraction of the frame's shorter side. Median-threshold protocols
            can only score cIoU >= 0.5 when the ground truth covers a quarter of the frame, so keep large objects in
            range when they matter.
        snr_db: range of the signal-to-noise ratio of the audio, in dB.
        noise: colour of the audio's background noise: ``"white"``, ``"pink"`` or ``"brown"`` (see :data:`NOISES`).
        background: the background family (see :data:`BACKGROUNDS`).
        background_contrast: strength of the background's texture, gradient or noise in [0, 1] (a difficulty knob).
        negative_fraction: fraction of clips that are negatives (``num_sources == 0``, empty ground truth).
        negative_kind: ``"silent"`` (only low-level noise is heard), ``"offscreen"`` (a class that is not in the frame
            is heard) or ``"both"`` (alternating).
        augment: a joint transform applied to each sample (for example ``JointRandomCropFlip()`` for training).
        cache: keep generated clips in memory (generation is deterministic, so this only trades memory for time).
    """

    def __init__(
        self,
        num_clips: int = 2000,
        seed: int = 0,
        image_size: int = 128,
        frame_size: tuple[int, int] | None = None,
        sample_rate: int = 16000,
        duration: float = 1.0,
        num_classes: int = 8,
        num_distractors: int = 2,
        num_sources: int = 1,
        object_scale: tuple[float, float] = (0.3, 0.7),
        snr_db: tuple[float, float] = (0.0, 20.0),
        noise: Noise = "white",
        background: Background = "blobs",
        background_contrast: float = 0.5,
        negative_fraction: float = 0.0,
        negative_kind: Literal["silent", "offscreen", "both"] = "both",
        augment: SampleTransform | None = None,
        cache: bool = True,
    ) -> None:
        if num_clips < 0:
            raise ValueError(f"num_clips must be >= 0, got {num_clips}")
        if not 1 <= num_classes <= len(_PALETTE):
            raise ValueError(f"num_classes must be in [1, {len(_PALETTE)}], got {num_classes}")
        if num_sources < 1 or num_sources + num_distractors > num_classes:
            raise ValueError(
                f"need 1 <= num_sources and num_sources + num_distractors <= num_classes, got "
                f"num_sources={num_sources}, num_distractors={num_distractors}, num_classes={num_classes}"
            )
        if not 0.0 < object_scale[0] <= object_scale[1] <= 1.0:
            raise ValueError(f"object_scale must satisfy 0 < low <= high <= 1, got {object_scale}")
        if snr_db[0] > snr_db[1]:
            raise ValueError(f"snr_db must be (low, high), got {snr_db}")
        if not 0.0 <= negative_fraction <= 1.0:
            raise ValueError(f"negative_fraction must be in [0, 1], got {negative_fraction}")
        if negative_kind == "offscreen" and num_distractors + num_sources >= num_classes and negative_fraction > 0:
            raise ValueError("off-screen negatives need a class that is not in the frame: lower num_distractors")
        if image_size < 16 or duration <= 0 or sample_rate <= 0:
            raise ValueError("image_size must be >= 16, duration and sample_rate positive")
        # Every class's fundamental (signature) must lie below 0.95 x Nyquist: a class without a harmonic is silence,
        # and its clip's mix would be 0 / 0.
        top = _F0_LOW * 2.0 ** (_F0_OCTAVES if num_classes > 1 else 0.0) * 1.02
        if sample_rate / 2 * 0.95 <= top:
            raise ValueError(
                f"sample_rate {sample_rate} Hz is too low for SynthAV's sounds: the highest of {num_classes} classes' "
                f"fundamentals can reach {top:.0f} Hz, which needs sample_rate >= {math.floor(2 * top / 0.95) + 1} Hz"
            )
        if frame_size is not None and (len(frame_size) != 2 or min(frame_size) < 16):
            raise ValueError(f"frame_size must be (height, width) with sides >= 16, got {frame_size}")
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
        if not 0.0 <= background_contrast <= 1.0:
            raise ValueError(f"background_contrast must be in [0, 1], got {background_contrast}")
        self.num_clips = num_clips
        self.seed = seed
        self.image_size = image_size
        self.frame_size = (image_size, image_size) if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.sample_rate = sample_rate
        self.duration = duration
        self.num_classes = num_classes
        self.num_distractors = num_distractors
        self.num_sources = num_sources
        self.object_scale = (float(object_scale[0]), float(object_scale[1]))
        self.snr_db = (float(snr_db[0]), float(snr_db[1]))
        self.noise: Noise = noise
        self.background: Background = background
        self.background_contrast = background_contrast
        self.negative_fraction = negative_fraction
        self.negative_kind = negative_kind
        self.augment = augment
        self.cache = cache
        self._cache: dict[int, AVSample] = {}

    def __len__(self) -> int:
        return self.num_clips

    def sample_id(self, index: int) -> str:
        return f"synth{self.seed}_{index:06d}"

    def __getitem__(self, index: int) -> AVSample:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for SynthAV of {self.num_clips} clips")
        sample = self._cache.get(index)
        if sample is None:
            sample = self._to_sample(index, self.clip(index))
            if self.cache:
                self._cache[index] = sample
        return self.augment(sample) if self.augment is not None else sample

    def _to_sample(self, index: int, clip: SynthClip) -> AVSample:
        size = self.image_size
        gt = gt_map_from_boxes(clip.boxes, "vggss", size).float()
        image = torch.from_numpy(clip.image).permute(2, 0, 1).contiguous()
        mask = torch.from_numpy(clip.mask.astype(np.float32))
        if self.frame_size != (size, size):  # resized as the readers resize camera frames (transforms.resize_image)
            image, mask = resize_image(image, size), resize_mask(mask, size)
        return {
            "image": image,
            "audio": torch.from_numpy(clip.audio),
            "sample_id": self.sample_id(index),
            "gt_map": gt,
            "mask": mask,
            "num_sources": len(clip.sounding_classes),
        }

    # ----------------------------------------------------------------------------------------------------------
    # generation
    def _is_negative(self, index: int) -> bool:
        # A low-discrepancy sequence spreads negatives evenly and deterministically over the indices.
        return self.negative_fraction > 0 and math.floor((index + 1) * self.negative_fraction) > math.floor(
            index * self.negative_fraction
        )

    def clip(self, index: int) -> SynthClip:
        """Generate clip ``index`` at ``frame_size`` (numpy arrays; see :class:`SynthClip`)."""
        rng = np.random.default_rng([self.seed, index, 0x5A17])
        # Knobs added after the first release draw from their own stream, so that the default clips never change.
        extra = np.random.default_rng([self.seed, index, 0xB6])
        height, width = self.frame_size
        negative = self._is_negative(index)
        kind = self.negative_kind
        if negative and kind == "both":
            kind = "silent" if math.floor(index * self.negative_fraction) % 2 == 0 else "offscreen"

        order = rng.permutation(self.num_classes)
        n_sounding = 0 if negative else self.num_sources
        n_visible = self.num_distractors + self.num_sources  # negatives show as many objects, none of them heard
        visible = [int(c) for c in order[:n_visible]]
        sounding = visible[:n_sounding]
        if negative and kind == "offscreen":
            heard = [int(order[n_visible])]
        elif negative:
            heard = []
        else:
            heard = list(sounding)

        image = self._background(rng, extra)
        mask = np.zeros((height, width), dtype=bool)
        boxes: list[list[float]] = []
        occupied: list[tuple[float, float, float]] = []
        # Distractors first, sounding objects last (on top), so the sounding masks are never occluded.
        for c in [*visible[n_sounding:], *sounding]:
            obj, (x0, y0, x1, y1) = self._draw_object(rng, image, c, occupied)
            if c in sounding:
                mask[y0:y1, x0:x1] |= obj
                boxes.append([x0 / width, y0 / height, x1 / width, y1 / height])
        audio = self._audio(rng, extra, heard)
        return SynthClip(image.astype(np.float32), audio, mask, boxes, sounding, heard, visible)

    def _background(self, rng: np.random.Generator, extra: np.random.Generator) -> np.ndarray:
        height, width = self.frame_size
        base = rng.uniform(0.25, 0.6, size=3)
        c = self.background_contrast
        if self.background == "plain":
            return np.broadcast_to(base, (height, width, 3)).astype(np.float64)
        ys = (np.arange(height) + 0.5) / height
        xs = (np.arange(width) + 0.5) / width
        if self.background == "gradient":
            # A linear colour ramp in a random direction under strong per-pixel colour noise.
            angle = extra.uniform(0, 2 * np.pi)
            ramp = np.cos(angle) * (xs[None, :] - 0.5) + np.sin(angle) * (ys[:, None] - 0.5)
            delta = extra.uniform(-0.5, 0.5, size=3)
            image = base + c * ramp[:, :, None] * delta + c * 0.12 * extra.normal(0.0, 1.0, size=(height, width, 3))
            return np.asarray(np.clip(image, 0.0, 1.0), dtype=np.float64)
        if self.background == "stripes":
            # Oriented sinusoidal stripes between two colours, a few periods across the frame, plus grain.
            angle = extra.uniform(0, np.pi)
            periods = extra.uniform(3.0, 10.0)
            phase = np.cos(angle) * xs[None, :] + np.sin(angle) * ys[:, None]
            wave = 0.5 + 0.5 * np.sin(2 * np.pi * periods * phase + extra.uniform(0, 2 * np.pi))
            other = np.clip(base + extra.uniform(-0.3, 0.3, size=3), 0.0, 1.0)
            image = base + c * wave[:, :, None] * (other - base) + c * 0.05 * extra.normal(size=(height, width, 1))
            return np.asarray(np.clip(image, 0.0, 1.0), dtype=np.float64)
        # "blobs" and "clutter": low-frequency colour blobs plus fine grain, a textured but object-free background.
        coarse = rng.normal(0.0, 1.0, size=(5, 5, 3))
        rows_i, rows_f = self._lerp_index(height)
        cols_i, cols_f = self._lerp_index(width)
        rows = coarse[rows_i] * (1 - rows_f[:, None, None]) + coarse[rows_i + 1] * rows_f[:, None, None]  # (H, 5, 3)
        smooth = rows[:, cols_i] * (1 - cols_f[None, :, None]) + rows[:, cols_i + 1] * cols_f[None, :, None]
        grain = rng.normal(0.0, 1.0, size=(height, width, 1))
        image = base + c * (0.12 * smooth + 0.05 * grain)
        image = np.asarray(np.clip(image, 0.0, 1.0), dtype=np.float64)
        if self.background == "clutter":
            self._draw_clutter(extra, image)
        return image

    @staticmethod
    def _lerp_index(n: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and fractions that interpolate 5 coarse values linearly over ``n`` pixels."""
        idx = np.linspace(0, 4, n)
        i0 = np.clip(np.floor(idx).astype(int), 0, 3)
        return i0, idx - i0

    def _draw_clutter(self, rng: np.random.Generator, image: np.ndarray) -> None:
        """Strew 6-12 small silent shapes of random (non-class) colours, 3-10 % of the shorter side each."""
        height, width = self.frame_size
        short = min(height, width)
        for _ in range(int(rng.integers(6, 13))):
            radius = max(rng.uniform(0.03, 0.10) * short / 2, 1.0)
            cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
            window, (x0, y0, _, _) = self._object_window(cx, cy, radius)
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            obj = _shape_mask(shape, (window[1] - cx) / radius, (window[0] - cy) / radius)
            y1, x1 = y0 + obj.shape[0], x0 + obj.shape[1]
            image[y0:y1, x0:x1][obj] = rng.uniform(0.0, 1.0, size=3)

    def _object_window(self, cx: float, cy: float, radius: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Pixel-centre coordinates (2, h, w) of the frame's pixels within ``radius`` of (cx, cy), and the window."""
        height, width = self.frame_size
        x0, x1 = max(math.floor(cx - radius), 0), min(math.ceil(cx + radius) + 1, width)
        y0, y1 = max(math.floor(cy - radius), 0), min(math.ceil(cy + radius) + 1, height)
        return np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5, (x0, y0, x1, y1)

    def _draw_object(
        self, rng: np.random.Generator, image: np.ndarray, c: int, occupied: list[tuple[float, float, float]]
    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Draw an object of class ``c``; returns its mask inside its tight box and the box (x0, y0, x1, y1)."""
        height, width = self.frame_size
        side = rng.uniform(*self.object_scale) * min(height, width)
        radius = side / 2
        # Rejection sampling keeps objects apart where the scales allow it; overlaps are accepted after 30 tries.
        for _ in range(30):
            cx, cy = rng.uniform(radius, [width - radius, height - radius], size=2)
            if all(math.hypot(cx - ox, cy - oy) > 0.8 * (radius + orad) for ox, oy, orad in occupied):
                break
        occupied.append((cx, cy, radius))
        # Only the pixels near the object are evaluated (the shapes lie within `radius` of the centre).
        (ys, xs), (wx0, wy0, wx1, wy1) = self._object_window(cx, cy, radius)
        obj = _shape_mask(SHAPES[c % len(SHAPES)], (xs - cx) / radius, (ys - cy) / radius)
        if not obj.any():  # a tiny frame can miss every pixel centre: mark the centre pixel
            obj[min(int(cy), height - 1) - wy0, min(int(cx), width - 1) - wx0] = True
        colour = np.asarray(_PALETTE[c])
        # A soft vertical shading keeps objects from looking flat without changing their class colour.
        shade = 1.0 - 0.15 * (ys - cy) / radius
        fill = np.clip(colour[None, None, :] * shade[:, :, None], 0.0, 1.0)
        image[wy0:wy1, wx0:wx1][obj] = fill[obj]
        rows, cols = np.nonzero(obj)
        y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        return obj[y0:y1, x0:x1], (wx0 + x0, wy0 + y0, wx0 + x1, wy0 + y1)

    def signature(self, c: int, rng: np.random.Generator) -> np.ndarray:
        """The sound of class ``c``: a harmonic stack with a class-specific fundamental, envelope and modulation."""
        n = round(self.duration * self.sample_rate)
        t = np.arange(n) / self.sample_rate
        # Fundamentals spread over ~3.5 octaves; odd classes keep only odd harmonics, so neighbours differ in timbre.
        f0 = _F0_LOW * 2.0 ** (_F0_OCTAVES * c / max(self.num_classes - 1, 1)) * rng.uniform(0.98, 1.02)
        nyquist = self.sample_rate / 2
        wave = np.zeros(n)
        harmonics = range(1, 12, 2) if c % 2 else range(1, 7)
        for h in harmonics:
            if h * f0 >= nyquist * 0.95:
                break
            wave += np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi)) / h
        am_rate = 2.0 + 3.0 * (c % 4)
        wave *= 0.6 + 0.4 * np.sin(2 * np.pi * am_rate * t + rng.uniform(0, 2 * np.pi))
        return np.asarray(wave / (np.sqrt(np.mean(wave**2)) + 1e-12), dtype=np.float64)

    def _noise(self, rng: np.random.Generator, extra: np.random.Generator, n: int) -> np.ndarray:
        """Unit-variance noise of the configured colour."""
        white = rng.normal(0.0, 1.0, size=n)
        if self.noise == "white":
            return white
        # Shape the spectrum of fresh white noise: power 1/f (pink) or 1/f^2 (brown); DC removed.
        spectrum = np.fft.rfft(extra.normal(0.0, 1.0, size=n))
        f = np.arange(spectrum.shape[0], dtype=np.float64)
        f[0] = np.inf
        spectrum /= np.sqrt(f) if self.noise == "pink" else f
        coloured = np.fft.irfft(spectrum, n=n)
        return np.asarray(coloured / (np.std(coloured) + 1e-12), dtype=np.float64)

    def _audio(self, rng: np.random.Generator, extra: np.random.Generator, heard: list[int]) -> np.ndarray:
        n = round(self.duration * self.sample_rate)
        noise = self._noise(rng, extra, n)
        if heard:
            signal = sum((self.signature(c, rng) for c in heard), np.zeros(n))
            snr = rng.uniform(*self.snr_db)
            wave = signal / np.sqrt(np.mean(signal**2)) + noise * 10.0 ** (-snr / 20.0)
            wave = 0.3 * wave / np.max(np.abs(wave))
        else:
            # A silent clip is quiet room tone, not digital zeros (readers reject digital silence by default).
            wave = 1e-3 * noise
        return np.asarray(wave, dtype=np.float32)


def write_synthav(
    out: str | Path,
    splits: dict[str, SynthAV],
    progress: bool = True,
) -> Path:
    """Write SynthAV splits to disk in the common benchmark layout and return the folder.

    Layout: ``frames/<id>.jpg``, ``audio/<id>.wav`` (mono PCM16 at the dataset's rate), ``masks/<id>.png`` (0/255),
    ``annotations.json`` (the VGG-SS schema: a list of ``{"file", "class", "bbox"}`` with normalized xyxy boxes; a
    negative has ``"bbox": []``) and ``splits/<name>.txt`` (one id per line). The VGG-SS reader loads it unchanged.
    """
    import soundfile
    from PIL import Image
    from tqdm import tqdm

    root = Path(out)
    for sub in ("frames", "audio", "masks", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    annotations: list[dict[str, object]] = []
    for name, dataset in splits.items():
        ids = []
        for index in tqdm(range(len(dataset)), desc=f"SynthAV {name}", disable=not progress, unit="clip"):
            clip = dataset.clip(index)
            sid = dataset.sample_id(index)
            ids.append(sid)
            Image.fromarray((clip.image * 255).round().astype(np.uint8)).save(
                root / "frames" / f"{sid}.jpg", quality=95
            )
            Image.fromarray(clip.mask.astype(np.uint8) * 255).save(root / "masks" / f"{sid}.png")
            soundfile.write(root / "audio" / f"{sid}.wav", clip.audio, dataset.sample_rate, subtype="PCM_16")
            label = " + ".join(class_name(c) for c in clip.sounding_classes) or "none"
            entry = {"file": sid, "class": label, "bbox": clip.boxes, "num_sources": len(clip.sounding_classes)}
            annotations.append(entry)
        (root / "splits" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    (root / "annotations.json").write_text(json.dumps(annotations))
    return root
