"""Throughput of the VGG-SS reader: samples per second per DataLoader worker, decode + augment.

Writes a folder of generated clips in the VGG-SS layout (``frames/<id>.jpg``, ``audio/<id>.wav``, boxes in the
``vggss.json`` schema), then times ``VGGSSDataset.__getitem__`` in one process with one torch thread, which is what a
``DataLoader`` worker runs (PyTorch sets one intra-op thread per worker). Reported per stage:

- ``image``: JPEG decode + resize to ``image_size``, in 8 bits before the conversion to float (what the reader does,
  ``load_image(path, size)``) and, for comparison, converted to float first and then resized;
- ``audio``: WAV decode + resample of the window (what the reader does), and of the whole clip for comparison;
- ``sample``: the whole ``__getitem__`` (decode, GT map, mask), without and with ``JointRandomCropFlip``;
- ``shards``: the same samples written by ``avsl shard`` (8-bit frames at ``image_size``, the window, GT map and mask)
  and read back by ``StreamingAVDataset``, without and with ``JointRandomCropFlip`` (needs litdata).

Usage::

    python benchmarks/bench_data.py                       # 200 clips, 640x360 frames, 10-s 44.1 kHz stereo clips
    python benchmarks/bench_data.py --frame-size 224x224 --clip-seconds 3 --audio-rate 16000 --channels 1
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from avsl.data.datasets import VGGSSDataset
from avsl.data.io import load_audio, load_audio_window, load_image
from avsl.data.transforms import JointRandomCropFlip, audio_window, resize_image


def write_folder(root: Path, clips: int, width: int, height: int, seconds: float, rate: int, channels: int) -> None:
    """Generated clips: textured frames (realistic JPEG sizes), noisy tones, one box each, binary masks."""
    rng = np.random.default_rng(0)
    for sub in ("frames", "audio", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = np.arange(round(seconds * rate), dtype=np.float32) / rate
    boxes = []
    for i in range(clips):
        sid = f"clip{i:05d}"
        base = 127 + 80 * np.sin(x / (5 + 10 * rng.random()) + y / (7 + 10 * rng.random()))
        img = np.clip(base[:, :, None] + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "frames" / f"{sid}.jpg", quality=90)
        wave = 0.3 * np.sin(2 * np.pi * (200 + 10 * i) * t)[:, None] + 0.05 * rng.normal(size=(t.size, channels))
        sf.write(root / "audio" / f"{sid}.wav", wave.astype(np.float32), rate, subtype="PCM_16")
        x0, y0 = rng.uniform(0, 0.5, 2)
        box = [float(x0), float(y0), float(x0 + rng.uniform(0.2, 0.5)), float(y0 + rng.uniform(0.2, 0.5))]
        boxes.append({"file": sid, "class": "tone", "bbox": [box]})
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[int(box[1] * height) : int(box[3] * height), int(box[0] * width) : int(box[2] * width)] = 255
        Image.fromarray(mask).save(root / "masks" / f"{sid}.png")
    (root / "boxes.json").write_text(json.dumps(boxes))


def rate_of(fn: object, n: int, repeats: int) -> float:
    """Best-of-``repeats`` items per second of calling ``fn(i)`` for i in range(n)."""
    assert callable(fn)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--frame-size", default="640x360", help="WIDTHxHEIGHT of the generated JPEG frames")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="length of the generated WAV clips")
    parser.add_argument("--audio-rate", type=int, default=44100, help="rate of the generated WAV clips")
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes; the best is reported")
    parser.add_argument("--root", type=Path, default=None, help="reuse or keep the generated folder here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.frame_size.lower().split("x"))

    torch.set_num_threads(1)  # what a DataLoader worker gets
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp) / "vggss_bench"
        if not (root / "boxes.json").is_file():
            t0 = time.perf_counter()
            write_folder(root, args.clips, width, height, args.clip_seconds, args.audio_rate, args.channels)
            print(f"wrote {args.clips} clips to {root} in {time.perf_counter() - t0:.1f} s")
        common = dict(image_size=args.image_size, sample_rate=args.sample_rate, duration=args.duration)
        t0 = time.perf_counter()
        plain = VGGSSDataset(root, annotations="boxes.json", masks_dir="masks", **common)  # type: ignore[arg-type]
        build_ms = 1000 * (time.perf_counter() - t0)
        augmented = VGGSSDataset(
            root,
            annotations="boxes.json",
            masks_dir="masks",
            augment=JointRandomCropFlip(),
            **common,  # type: ignore[arg-type]
        )
        frames = [e.image for e in plain.entries]
        audio = [e.audio for e in plain.entries]
        n = len(plain)
        plain[0]  # warm-up (lazy imports, allocator)
        num = round(args.duration * args.sample_rate)
        results = {
            "image, resized in 8 bits (the reader)": rate_of(
                lambda i: load_image(frames[i], args.image_size), n, args.repeats
            ),
            "image, float then resized": rate_of(
                lambda i: resize_image(load_image(frames[i]), args.image_size), n, args.repeats
            ),
            "audio (window decode + resample)": rate_of(
                lambda i: load_audio_window(audio[i], args.sample_rate, num), n, args.repeats
            ),
            "audio (whole clip, then window)": rate_of(
                lambda i: audio_window(load_audio(audio[i], args.sample_rate), num), n, args.repeats
            ),
            "sample (no augment)": rate_of(lambda i: plain[i], n, args.repeats),
            "sample + JointRandomCropFlip": rate_of(lambda i: augmented[i], n, args.repeats),
        }
        try:
            from avsl.data.streaming import StreamingAVDataset, write_shards
        except ImportError:
            print("litdata is not installed: no shards rows (pip install 'avsl[stream]')")
        else:  # the same samples written at training size (`avsl shard`), read back as a training loader does
            shards = write_shards(plain, Path(tmp) / "shards")
            streamed = StreamingAVDataset(str(shards))
            streamed_aug = StreamingAVDataset(str(shards), augment=JointRandomCropFlip())
            results["shards at training size (avsl shard)"] = rate_of(lambda i: streamed[i], n, args.repeats)
            results["shards + JointRandomCropFlip"] = rate_of(lambda i: streamed_aug[i], n, args.repeats)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread; {n} clips: "
        f"{width}x{height} JPEG, {args.clip_seconds:g} s {args.audio_rate} Hz x{args.channels} PCM16 -> "
        f"{args.image_size} px, {args.duration:g} s at {args.sample_rate} Hz; index built in {build_ms:.0f} ms"
    )
    for name, value in results.items():
        print(f"  {name:<38} {value:8.1f} samples/s per worker")


if __name__ == "__main__":
    main()
