"""Frames per second of ``avsl.localize_video`` on a 10-s 640x360 25-fps clip, with the time split into decoding,
the model and encoding.

The clip (H.264 + AAC 44.1 kHz stereo, SynthAV scenes sliding across the frame) is made with PyAV in a temporary
folder. Each model localizes it, writing the overlay video and the maps, ``--repeats`` times after a warm-up run; the
fastest run is reported (the least disturbed on a shared machine). Within a run, clocks around the model's
``localize`` calls (model) and around the overlay blend and the writer's H.264 + AAC encoding (encode) split the
time; decode is the rest: decoding the audio track and the frames, RGB conversion, resizing to the model's frame size,
cutting the audio windows, and saving the .npy. Models: the CPU recipe's EZ-VSL (``ezvsl_synthav.yaml``: tiny_cnn
encoders, 128 px, 1 s) and the reference EZ-VSL (``ezvsl.yaml``: ResNet-18 x2, 224 px, 3 s; random weights, which
cost the same as trained ones).

    python benchmarks/bench_localize_video.py                       # both models
    python benchmarks/bench_localize_video.py --models ezvsl_synthav --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import avsl.localize as localize_module
from avsl.data import SynthAV
from avsl.lightning_cli import resolve_config
from avsl.localize import localize_video
from avsl.methods import LocalizationMethod
from avsl.methods.base import build_method
from avsl.testing import write_video


def make_clip(path: Path, seconds: float, size: tuple[int, int] = (360, 640), fps: int = 25) -> Path:
    """SynthAV scenes (a new one every 2 s) sliding right by 4 px a frame, and a tone with noise."""
    scenes = SynthAV(num_clips=4, seed=0, image_size=64, frame_size=size)
    images = [(scenes.clip(i).image * 255).round().astype(np.uint8) for i in range(4)]
    frames = [np.roll(images[(i // (2 * fps)) % 4], 4 * i, axis=1) for i in range(round(seconds * fps))]
    rate = 44100
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    write_video(path, frames, fps, np.stack([tone, tone]).astype(np.float32), rate)
    return path


def build(config: str) -> LocalizationMethod:
    spec = yaml.safe_load(Path(resolve_config(f"methods/{config}.yaml")).read_text())["model"]
    torch.manual_seed(0)
    return build_method(spec["class_path"], spec["init_args"]).eval()


class Clocks:
    """Seconds spent in the model and in encoding during one localize_video run, by wrapping the functions it calls
    (looked up at call time: ``model.localize``, ``avsl.localize._blend`` and the overlay writer's methods)."""

    def __init__(self, model: LocalizationMethod) -> None:
        self.seconds = {"model": 0.0, "encode": 0.0}
        self._undo: list[Callable[[], None]] = []
        self._wrap(model, "localize", "model")
        self._wrap(localize_module, "_blend", "encode")
        self._wrap(localize_module._OverlayWriter, "write", "encode")
        self._wrap(localize_module._OverlayWriter, "finish", "encode")

    def _wrap(self, owner: Any, name: str, key: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args)
            finally:
                self.seconds[key] += time.perf_counter() - start

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def close(self) -> None:
        for undo in reversed(self._undo):
            undo()


def run(model: LocalizationMethod, clip: Path, out: Path, batch_size: int) -> dict[str, float]:
    clocks = Clocks(model)
    try:
        start = time.perf_counter()
        localize_video(model, clip, out, batch_size=batch_size)
        total = time.perf_counter() - start
    finally:
        clocks.close()
    model_s, encode_s = clocks.seconds["model"], clocks.seconds["encode"]
    return {"decode_s": total - model_s - encode_s, "model_s": model_s, "encode_s": encode_s, "total_s": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["ezvsl_synthav", "ezvsl"], help="method configs")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model; the fastest is reported")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", args.seconds)
        out = Path(tmp) / "out"
        for name in args.models:
            model = build(name)
            frames = len(localize_video(model, clip, out, batch_size=args.batch_size))  # warm-up
            runs = [run(model, clip, out, args.batch_size) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["total_s"])
            rows.append(
                {"model": name, "frame_size": list(model.signal.frame_size), "frames": frames, **best,
                 "all_totals_s": [r["total_s"] for r in runs],
                 "overlay_bytes": (out / "clip_overlay.mp4").stat().st_size}
            )  # fmt: skip
    print(
        f"localize_video, {args.seconds:g}-s 640x360 25-fps clip, batch {args.batch_size}, {torch.get_num_threads()} "
        "threads"
    )
    print("| model | frames | decode s | model s | encode s | total s | frames / s | x real time |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        fps = r["frames"] / r["total_s"]
        print(
            f"| {r['model']} ({r['frame_size'][0]} px) | {r['frames']} | {r['decode_s']:.2f} | {r['model_s']:.2f} | "
            f"{r['encode_s']:.2f} | {r['total_s']:.2f} | {fps:.1f} | {fps / 25:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
