"""``avsl localize``: heatmap overlays of a trained method for one image + audio file, or for a video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avsl.data.io import load_audio, load_image
from avsl.data.transforms import audio_window, resize_image
from avsl.methods import LocalizationMethod, load_method
from avsl.viz import colorize, overlay

__all__ = ["localize_files"]


def _geometry(model: LocalizationMethod, image_size: int | None, duration: float | None) -> tuple[int, int, int]:
    """(height, width, audio samples) of the model's inputs: its signal (what it was trained on), unless the
    arguments say otherwise."""
    signal = model.signal
    height, width = (image_size, image_size) if image_size is not None else signal.frame_size
    num_samples = round(duration * signal.sample_rate) if duration is not None else signal.num_samples
    return height, width, num_samples


def _write(out: Path, stem: str, image: torch.Tensor, heatmap: torch.Tensor) -> list[Path]:
    side_by_side = Image.new("RGB", (2 * image.shape[-1], image.shape[-2]))
    frame = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    side_by_side.paste(Image.fromarray(frame), (0, 0))
    side_by_side.paste(overlay(image, heatmap), (image.shape[-1], 0))
    paths = [out / f"{stem}_overlay.png", out / f"{stem}_heatmap.png", out / f"{stem}_heatmap.npy"]
    side_by_side.save(paths[0])
    Image.fromarray(colorize(heatmap.numpy())).save(paths[1])
    np.save(paths[2], heatmap.numpy().astype(np.float32))
    return paths


def localize_files(
    ckpt: str | Path,
    out: str | Path,
    image: str | Path | None = None,
    audio: str | Path | None = None,
    video: str | Path | None = None,
    stride: float = 1.0,
    image_size: int | None = None,
    duration: float | None = None,
    device: str = "cpu",
    trust: bool = False,
) -> list[Path]:
    """Write ``<stem>_overlay.png`` (frame | overlay), ``<stem>_heatmap.png`` and ``<stem>_heatmap.npy`` (the
    normalized map in [0, 1]) for an image + audio pair, or for every ``stride`` seconds of a video; returns the paths.

    Frames are resized to the frame size of the model's :class:`~avsl.methods.Signal` (what it was trained on, saved in
    the checkpoint) and the audio, resampled to its rate, is cut to its window, centred in the clip (or at each video
    time), unless ``image_size`` / ``duration`` say otherwise. ``ckpt`` is a checkpoint or an ``avsl export`` folder,
    read with restricted unpickling unless ``trust`` (for files you trust).
    """
    model = load_method(ckpt, map_location=device, trust=trust)
    height, width, num_samples = _geometry(model, image_size, duration)
    sample_rate = model.signal.sample_rate  # audio is resampled to the rate the model was trained at
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    if video is not None:
        from avsl.data.datasets import VideoDataset

        clip = VideoDataset(
            video, stride=stride, image_size=height, sample_rate=sample_rate, duration=num_samples / sample_rate
        )
        for i in range(len(clip)):
            sample = clip[i]
            stem = f"{Path(video).stem}_{i:04d}"
            items.append((stem, resize_image(sample["image"], (height, width)), sample["audio"]))
    else:
        if image is None or audio is None:
            raise ValueError("give image and audio, or video")
        frame = resize_image(load_image(image), (height, width))
        wave = audio_window(load_audio(audio, sample_rate), num_samples)
        items.append((Path(image).stem, frame, wave))
    written: list[Path] = []
    for stem, frame, wave in items:
        heat = model.localize(frame[None].to(model.device), wave[None].to(model.device))[0].cpu()
        written += _write(out, stem, frame, heat)
    return written
