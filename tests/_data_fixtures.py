"""Writers of tiny media files and benchmark folder trees for the data tests (in each benchmark's real layout)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from avsl.testing import write_video as avsl_write_video

RATE = 16000


def pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, seed-dependent RGB uint8 pattern (compresses well and survives JPEG)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    chans = [
        127 + 100 * np.sin(x / (3 + 4 * rng.random()) + 6 * rng.random()) * np.cos(y / (3 + 4 * rng.random()))
        for _ in range(3)
    ]
    return np.clip(np.stack(chans, axis=2), 0, 255).astype(np.uint8)


def write_image(path: Path, width: int = 32, height: int = 24, seed: int = 0) -> Path:
    """An RGB JPEG or PNG (by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pattern(width, height, seed)).save(path)
    return path


def tone(seconds: float, rate: int = RATE, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """A sine (T,) or (T, C) float32 at amplitude 0.5; channel c is at ``freq * (c + 1)``."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    waves = [0.5 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    out = np.stack(waves, axis=1) if channels > 1 else waves[0]
    return out.astype(np.float32)


def write_wav(
    path: Path,
    seconds: float = 1.0,
    rate: int = RATE,
    channels: int = 1,
    freq: float = 440.0,
    data: np.ndarray | None = None,
    subtype: str = "PCM_16",
) -> Path:
    """A WAV file (a tone unless ``data`` is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = tone(seconds, rate, freq, channels) if data is None else data
    sf.write(path, wave, rate, subtype=subtype)
    return path


def write_pair(
    root: Path, sample_id: str, seed: int = 0, seconds: float = 1.0, size: tuple[int, int] = (32, 24)
) -> None:
    """``root/frames/<id>.jpg`` and ``root/audio/<id>.wav`` (the LVS / EZ-VSL layout)."""
    write_image(root / "frames" / f"{sample_id}.jpg", *size, seed=seed)
    write_wav(root / "audio" / f"{sample_id}.wav", seconds=seconds, freq=200.0 + 50 * seed)


def write_split(path: Path, ids: Iterable[str], crlf: bool = False, extra_column: bool = False) -> Path:
    """A split file like the real ones (optionally CRLF, optionally ``id,int`` rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{i},0" if extra_column else i for i in ids]
    newline = "\r\n" if crlf else "\n"
    path.write_bytes((newline.join(rows) + newline).encode())
    return path


def write_box_json(path: Path, boxes: dict[str, Sequence[Sequence[float]]], cls: str = "thing") -> Path:
    """A box file in the vggss.json schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"file": k, "class": cls, "bbox": [list(b) for b in v]} for k, v in boxes.items()]))
    return path


def write_flickr_xml(path: Path, annotators: Sequence[Sequence[Sequence[int]]]) -> Path:
    """A Senocak-style XML: one group per annotator, each <bbox> = label, xmin, ymin, xmax, ymax."""
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = []
    for n, boxes in enumerate(annotators):
        items = "".join(
            f"<bbox><label>source</label><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
            f"<ymax>{b[3]}</ymax></bbox>"
            for b in boxes
        )
        groups.append(f"<annotator{n}>{items}</annotator{n}>")
    path.write_text(f"<annotation>{''.join(groups)}</annotation>")
    return path


def write_mask(path: Path, mask: np.ndarray, mode: str = "L") -> Path:
    """A binary mask PNG: ``L`` (0/255), ``1`` or ``P`` (palette index 1 for foreground)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = mask.shape
    if mode == "P":
        im = Image.frombytes("P", (w, h), (mask > 0).astype(np.uint8).tobytes())
        im.putpalette([0, 0, 0, 128, 0, 0] + [0] * (256 * 3 - 6))
    else:
        im = Image.fromarray((mask > 0).astype(np.uint8) * 255)
        if mode == "1":
            im = im.convert("1")
    im.save(path)
    return path


def write_video(
    path: Path,
    seconds: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    audio: bool = True,
    video_codec: str = "mpeg4",
    audio_codec: str = "aac",
    audio_rate: int = 22050,
) -> Path:
    """A small video whose frame i is a flat grey of level ``20 + 10 * i`` and whose audio is a 440 Hz stereo tone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    levels = [min(20 + 10 * i, 255) for i in range(round(seconds * fps))]
    frames = np.stack([np.full((height, width, 3), level, dtype=np.uint8) for level in levels])
    wave = tone(seconds, audio_rate, 440.0, channels=2).T.copy() if audio else None  # (C, T)
    avsl_write_video(path, frames, fps, wave, audio_rate, video_codec, audio_codec)
    return path


def write_s4_tree(tmp_path: Path) -> Path:
    """AVSBench ``Single-source/`` with one train, one val and one test video: 5 frames each, masks on every test and
    val frame and on the first train frame (the published layout), 5-s audio."""
    root = tmp_path / "Single-source"
    data = root / "s4_data"
    rows = [("vidT", "dog_barking", "train"), ("vidV", "helicopter", "val"), ("vidA", "dog_barking", "test")]
    root.mkdir(parents=True)
    (root / "s4_meta_data.csv").write_text(
        "name,start_time,category,split\n" + "".join(f"{n},0,{c},{s}\n" for n, c, s in rows)
    )
    mask = np.zeros((24, 24), dtype=np.uint8)
    mask[4:16, 6:20] = 1
    for n, (name, cat, split) in enumerate(rows):
        for k in range(1, 6):
            write_image(data / "visual_frames" / split / cat / name / f"{name}_{k}.png", 24, 24, seed=10 * n + k)
            if split != "train" or k == 1:
                write_mask(data / "gt_masks" / split / cat / name / f"{name}_{k}.png", mask, mode="1")
        write_wav(data / "audio_wav" / split / cat / f"{name}.wav", seconds=5.0)
    return root
