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

from avsl.data.transforms import SampleTransform
from avsl.metrics.functional import gt_map_from_boxes
from avsl.types import AVSample

__all__ = ["SHAPES", "SynthAV", "SynthClip", "write_synthav"]

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

    Args:
        num_clips: number of clips (the dataset's length).
        seed: the clip at ``index`` depends only on ``(seed, index)`` and the knobs below; use different seeds for
            train, validation and test splits.
        image_size: side of the square frames.
        sample_rate: audio sample rate in Hz.
        duration: clip length in seconds.
        num_classes: object classes (at most 16); each has a shape, a colour and a sound signature.
        num_distractors: silent objects of other classes in each frame.
        num_sources: sounding objects per positive clip; above 1 the audio is a mixture (chaotic-scene evaluation).
        object_scale: range of an object's side as a fraction of the frame side. Median-threshold protocols can
            only score cIoU >= 0.5 when the ground truth covers a quarter of the frame, so keep large objects in range.
        snr_db: range of the signal-to-noise ratio of the audio, in dB.
        background_contrast: strength of the background texture in [0, 1] (a difficulty knob).
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
        sample_rate: int = 16000,
        duration: float = 1.0,
        num_classes: int = 8,
        num_distractors: int = 2,
        num_sources: int = 1,
        object_scale: tuple[float, float] = (0.3, 0.7),
        snr_db: tuple[float, float] = (0.0, 20.0),
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
        self.num_clips = num_clips
        self.seed = seed
        self.image_size = image_size
        self.sample_rate = sample_rate
        self.duration = duration
        self.num_classes = num_classes
        self.num_distractors = num_distractors
        self.num_sources = num_sources
        self.object_scale = (float(object_scale[0]), float(object_scale[1]))
        self.snr_db = (float(snr_db[0]), float(snr_db[1]))
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
        gt = gt_map_from_boxes(clip.boxes, "vggss", self.image_size).float()
        return {
            "image": torch.from_numpy(clip.image).permute(2, 0, 1).contiguous(),
            "audio": torch.from_numpy(clip.audio),
            "sample_id": self.sample_id(index),
            "gt_map": gt,
            "mask": torch.from_numpy(clip.mask.astype(np.float32)),
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
        """Generate clip ``index`` (numpy arrays; see :class:`SynthClip`)."""
        rng = np.random.default_rng([self.seed, index, 0x5A17])
        size = self.image_size
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

        image = self._background(rng)
        mask = np.zeros((size, size), dtype=bool)
        boxes: list[list[float]] = []
        occupied: list[tuple[float, float, float]] = []
        # Distractors first, sounding objects last (on top), so the sounding masks are never occluded.
        for c in [*visible[n_sounding:], *sounding]:
            obj, (x0, y0, x1, y1) = self._draw_object(rng, image, c, occupied)
            if c in sounding:
                mask |= obj
                boxes.append([x0 / size, y0 / size, x1 / size, y1 / size])
        audio = self._audio(rng, heard)
        return SynthClip(image.astype(np.float32), audio, mask, boxes, sounding, heard, visible)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        size = self.image_size
        base = rng.uniform(0.25, 0.6, size=3)
        # Low-frequency colour blobs plus fine grain: a textured but object-free background.
        coarse = rng.normal(0.0, 1.0, size=(5, 5, 3))
        idx = np.linspace(0, 4, size)
        i0 = np.clip(np.floor(idx).astype(int), 0, 3)
        frac = (idx - i0)[:, None]
        rows = coarse[i0] * (1 - frac[:, :, None]) + coarse[i0 + 1] * frac[:, :, None]  # (size, 5, 3)
        smooth = rows[:, i0] * (1 - frac.T[:, :, None]) + rows[:, i0 + 1] * frac.T[:, :, None]
        grain = rng.normal(0.0, 1.0, size=(size, size, 1))
        c = self.background_contrast
        image = base + c * (0.12 * smooth + 0.05 * grain)
        return np.asarray(np.clip(image, 0.0, 1.0), dtype=np.float64)

    def _draw_object(
        self, rng: np.random.Generator, image: np.ndarray, c: int, occupied: list[tuple[float, float, float]]
    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        size = self.image_size
        side = rng.uniform(*self.object_scale) * size
        radius = side / 2
        # Rejection sampling keeps objects apart where the scales allow it; overlaps are accepted after 30 tries.
        for _ in range(30):
            cx, cy = rng.uniform(radius, size - radius, size=2)
            if all(math.hypot(cx - ox, cy - oy) > 0.8 * (radius + orad) for ox, oy, orad in occupied):
                break
        occupied.append((cx, cy, radius))
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
        obj = _shape_mask(SHAPES[c % len(SHAPES)], (xs - cx) / radius, (ys - cy) / radius)
        if not obj.any():  # a tiny frame can miss every pixel centre: mark the centre pixel
            obj[min(int(cy), size - 1), min(int(cx), size - 1)] = True
        colour = np.asarray(_PALETTE[c])
        # A soft vertical shading keeps objects from looking flat without changing their class colour.
        shade = 1.0 - 0.15 * (ys - cy) / radius
        fill = np.clip(colour[None, None, :] * shade[:, :, None], 0.0, 1.0)
        image[obj] = fill[obj]
        rows, cols = np.nonzero(obj)
        return obj, (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)

    def signature(self, c: int, rng: np.random.Generator) -> np.ndarray:
        """The sound of class ``c``: a harmonic stack with a class-specific fundamental, envelope and modulation."""
        n = round(self.duration * self.sample_rate)
        t = np.arange(n) / self.sample_rate
        # Fundamentals spread over ~3.5 octaves; odd classes keep only odd harmonics, so neighbours differ in timbre.
        f0 = 160.0 * 2.0 ** (3.5 * c / max(self.num_classes - 1, 1)) * rng.uniform(0.98, 1.02)
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

    def _audio(self, rng: np.random.Generator, heard: list[int]) -> np.ndarray:
        n = round(self.duration * self.sample_rate)
        noise = rng.normal(0.0, 1.0, size=n)
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
