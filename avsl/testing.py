"""Tiny methods and data for checking a method quickly: avsl's contract test and ``benchmarks/gpu_check.py`` use them,
and so can a user's tests of their own subclass.

    from avsl.testing import tiny_args, tiny_data
    model = MyMethod(**tiny_args(MyMethod))   # tiny_cnn encoders, 64-px frames, 0.5-s clips at 16 kHz
    pl.Trainer(max_steps=2).fit(model, datamodule=tiny_data())
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from avsl.data import AVDataModule, SynthAV, split_labeled
from avsl.lightning_cli import config_args
from avsl.methods import LocalizationMethod, method_class
from avsl.methods.base import inner_methods

__all__ = ["SHRINK", "config_args", "fill_deterministic", "tiny_args", "tiny_data", "write_video"]

#: Tiny values of the constructor arguments that set a method's size and signal. A method's tiny arguments are derived
#: from its signature (the arguments it takes) and its config (the methods a wrapper wraps, with their arguments):
#: adding a method adds nothing here.
SHRINK: dict[str, Any] = {
    "vision_backbone": "tiny_cnn",
    "audio_backbone": "tiny_cnn",
    "audio_frontend": "logmel",
    "vision_out_index": -1,
    "embed_dim": 16,
    "audio_hidden_dim": 32,
    "proj_dim": 32,
    "pred_hidden_dim": 16,
    "pcm_cycles": 1,
    "mask_grid": 4,
    "affinity_dim": 8,
    "affinity_radius": 2,
    "seg_hidden": 8,
    "warmup_epochs": 0,  # XPL: the cross loss runs in a 2-step test
    "sample_rate": 16000,  # the signal of tiny_data()
    "frame_size": (64, 64),
    "duration": 0.5,
}


def fill_deterministic(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Deterministic weights for every floating tensor of a state dict, drawn in the order of the sorted names (other
    tensors are copied): what the reference networks were run with for the parity tests (tests/data/README.md).

    Fed a reference network's own names, it gives the weights its stored outputs were computed with, so a test can
    save them in the reference's layout and convert them (tests/test_convert.py). Running variances lie in [0.5, 1.5],
    batch-norm scales near 1, other weights ~ N(0, 1 / fan-in): activations stay in range through a ResNet.
    """
    g = torch.Generator().manual_seed(0)
    out: dict[str, Tensor] = {}
    for name in sorted(state):
        t = state[name]
        if not t.is_floating_point():
            out[name] = t.clone()
        elif name.endswith("running_var"):
            out[name] = 0.5 + torch.rand(t.shape, generator=g)
        elif (".bn" in name and name.endswith(".weight")) or name.endswith("downsample.1.weight"):
            out[name] = 1.0 + 0.1 * torch.randn(t.shape, generator=g)
        else:
            fan = t[0].numel() if t.dim() > 1 else 1
            out[name] = torch.randn(t.shape, generator=g) / max(fan, 1) ** 0.5
    return out


def tiny_args(cls: type[LocalizationMethod], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Tiny constructor arguments of ``cls``: the :data:`SHRINK` values of the arguments it takes; for a wrapper
    (an argument ``X`` naming a method beside an ``X_args`` dict) also ``X`` from ``config`` and tiny ``X_args``: the
    config's, shrunk."""
    params = inspect.signature(cls).parameters
    out = {k: v for k, v in SHRINK.items() if k in params}
    for key, name in inner_methods(cls, config or {}).items():
        inner_config = dict((config or {}).get(key) or {})
        out[key.removesuffix("_args")] = name
        out[key] = {**inner_config, **tiny_args(method_class(name), inner_config)}
    return out


def tiny_data(
    batch_size: int = 4,
    num_clips: int = 12,
    image_size: int = 64,
    duration: float = 0.5,
    labeled_fraction: float = 0.34,
) -> AVDataModule:
    """SynthAV clips in an :class:`AVDataModule`: ``num_clips`` training clips (a ``labeled_fraction`` of them
    labeled, for semi-supervised methods) and half as many for validation, test and predict."""
    annotated = SynthAV(num_clips=num_clips, seed=0, image_size=image_size, duration=duration)
    labeled, unlabeled = split_labeled(annotated, labeled_fraction, seed=0)
    evaluation = SynthAV(num_clips=num_clips // 2, seed=1, image_size=image_size, duration=duration)
    return AVDataModule(unlabeled, labeled, val=evaluation, test=evaluation, batch_size=batch_size)


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Sequence[np.ndarray],
    fps: int = 25,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    times: Sequence[float] | None = None,
    start: float = 0.0,
) -> None:
    """Encode a video with PyAV: ``frames`` (T, H, W, 3) uint8 at ``fps`` (or at ``times`` seconds: a variable frame
    rate), and ``audio`` (C, N) float in [-1, 1] at ``sample_rate`` (None: no audio stream). Odd frame sizes are
    fine (yuv444p for H.264; yuv420p otherwise needs even sides). The container follows the suffix (.mp4, .webm,
    .mkv, .avi, .mov, .ts). Both streams' timestamps begin at ``start`` seconds (remuxed and broadcast files start
    after 0)."""
    from fractions import Fraction

    import av

    layouts = {1: "mono", 2: "stereo", 6: "5.1"}
    with av.open(str(path), mode="w") as container:
        video: Any = container.add_stream(video_codec, rate=fps)  # a VideoStream (PyAV types it by codec literal)
        height, width = frames[0].shape[:2]
        video.width, video.height = width, height
        odd = height % 2 or width % 2
        video.pix_fmt = "yuv444p" if odd and video_codec == "libx264" else "yuv420p"
        if times is not None:  # millisecond timestamps, for the stream and the encoder
            video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        sound: Any = None
        if audio is not None:
            sound = container.add_stream(audio_codec, rate=sample_rate, layout=layouts[audio.shape[0]])
        for i, picture in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round((start + times[i]) * 1000), Fraction(1, 1000)
            elif start:
                frame.pts, frame.time_base = round(start * fps) + i, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None and audio is not None:
            # the encoder's own sample format: planar (C, N) or packed (1, C * N), float or 16-bit
            fmt = sound.codec_context.codec.audio_formats[0].name
            wave = audio.astype(np.float32)
            if fmt.startswith("s16"):
                wave = (np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)
            step = 1024
            for offset in range(0, wave.shape[1], step):
                block = wave[:, offset : offset + step]
                block = block if fmt.endswith("p") else block.T.reshape(1, -1)
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format=fmt, layout=layouts[len(wave)])
                chunk.sample_rate, chunk.pts = sample_rate, round(start * sample_rate) + offset
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
