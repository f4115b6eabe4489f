"""``avsl localize``: heatmap overlays of a trained method for one image + audio file (:func:`localize_files`), or
for every frame of a video (:func:`localize_video`: an overlay video with the sound, and the maps)."""

from __future__ import annotations

import math
import os
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from avsl.data.datasets.base import window_at
from avsl.data.io import DataError, decode_container_audio, load_audio, load_image, upright_rgb
from avsl.data.transforms import audio_window, resize_image, resize_uint8
from avsl.methods import LocalizationMethod, load_method
from avsl.viz import colorize, overlay

__all__ = ["localize_files", "localize_video", "video_outputs"]


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
    image: str | Path,
    audio: str | Path,
    image_size: int | None = None,
    duration: float | None = None,
    device: str = "cpu",
    trust: bool = False,
) -> list[Path]:
    """Write ``<stem>_overlay.png`` (frame | overlay), ``<stem>_heatmap.png`` and ``<stem>_heatmap.npy`` (the
    normalized map in [0, 1]) for an image + audio pair; returns the paths. (Videos: :func:`localize_video`.)

    The frame is resized to the frame size of the model's :class:`~avsl.methods.Signal` (what it was trained on, saved
    in the checkpoint) and the audio, resampled to its rate, is cut to its window, centred in the clip, unless
    ``image_size`` / ``duration`` say otherwise. ``ckpt`` is a checkpoint or an ``avsl export`` folder, read with
    restricted unpickling unless ``trust`` (for files you trust).
    """
    model = load_method(ckpt, map_location=device, trust=trust)
    height, width, num_samples = _geometry(model, image_size, duration)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = resize_image(load_image(image), (height, width))
    # audio is resampled to the rate the model was trained at
    wave = audio_window(load_audio(audio, model.signal.sample_rate), num_samples)
    heat = model.localize(frame[None].to(model.device), wave[None].to(model.device))[0].cpu()
    return _write(out, Path(image).stem, frame, heat)


# ------------------------------------------------------------------------------------------------------- videos

# PyAV raises these for unreadable or corrupt containers (AttributeError/TypeError for streams that lack codec
# parameters, as avsl.data.io notes); they become DataErrors that name the file.
_DECODE_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, AttributeError, TypeError, IndexError)


def _av_errors() -> tuple[type[Exception], ...]:
    import av

    return (av.FFmpegError, *_DECODE_ERRORS)


@dataclass(frozen=True)
class _VideoInfo:
    """What the container header says (no decoding)."""

    rate: Fraction | None
    """The video stream's average frame rate (None when the header gives none)."""
    duration: float | None
    """Seconds, when the header gives them (for the progress bar only)."""


def _probe(path: Path) -> _VideoInfo:
    import av

    if not path.is_file():
        raise DataError(path, "video file not found", kind="missing file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(path, "the file has no video stream", kind="corrupt video")
            if not container.streams.audio:
                raise DataError(
                    path,
                    "the file has no audio stream: localizing sound sources needs the sound",
                    kind="corrupt video",
                )
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            duration = float(container.duration) / av.time_base if container.duration else None
    except DataError:
        raise
    except _av_errors() as err:
        raise DataError(path, f"unreadable video ({type(err).__name__}: {err})", kind="corrupt video") from None
    return _VideoInfo(rate=Fraction(rate) if rate else None, duration=duration)


def _output_frames(path: Path, rate: Fraction) -> Generator[tuple[Fraction, np.ndarray], None, None]:
    """``(t, frame)`` for t = 0, 1/rate, 2/rate, ... up to the end of the video stream, in one decoding pass.

    ``frame`` is the (H, W, 3) uint8 RGB frame shown at t: the last decoded frame whose timestamp is at or before t
    (the first frame for times before it), to within one tick of the stream's time base (containers such as WebM
    round timestamps to milliseconds, which would otherwise make a 30-fps frame land just after its own time). Times
    are counted from the stream's start time. The stream ends with its last frame's duration; a time is output when
    it falls at least half an output period before that end, so a constant-rate source at its own rate gives exactly
    its frames. Frames are converted to RGB only when shown, so a low output rate skips most conversions.
    """
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame and slice threads: the decoder keeps up with the model on 2 cores
            base = stream.time_base or Fraction(1, av.time_base)
            source_step = 1 / Fraction(stream.average_rate or stream.guessed_rate or rate)
            slack = min(Fraction(base), 1 / (4 * rate))
            origin = stream.start_time * base if stream.start_time is not None else None
            width = height = 0
            shown: Any = None  # the av.VideoFrame shown at the next output time
            image: np.ndarray | None = None  # its RGB conversion, made once however often it is shown
            k, last, end = 0, Fraction(0), Fraction(0)

            def rgb(frame: Any) -> np.ndarray:
                # A stream whose frame size changes midway is scaled to its first frame's size.
                if frame.width != width or frame.height != height:
                    frame = frame.reformat(width=width, height=height)
                return upright_rgb(frame)

            for frame in container.decode(stream):
                if width == 0:
                    width, height = frame.width, frame.height
                if frame.pts is None:  # no timestamp: the next frame at the nominal rate
                    t = last + source_step if shown is not None else Fraction(0)
                else:
                    if origin is None:
                        origin = frame.pts * base
                    t = frame.pts * base - origin
                while k / rate + slack < t:
                    if shown is None:  # output times before the first frame show the first frame
                        shown, image = frame, None
                    if image is None:
                        image = rgb(shown)
                    yield k / rate, image
                    k += 1
                shown, image, last = frame, None, t
                end = t + (frame.duration * base if frame.duration else source_step)
            if shown is None:
                raise DataError(path, "the video stream holds no decodable frame", kind="corrupt video")
            while (2 * k + 1) / (2 * rate) <= end or k == 0:
                if image is None:
                    image = rgb(shown)
                yield k / rate, image
                k += 1
    except DataError:
        raise
    except _av_errors() as err:
        raise DataError(path, f"cannot decode the video ({type(err).__name__}: {err})", kind="corrupt video") from None


def _batches(frames: Iterator[tuple[Fraction, np.ndarray]], size: int) -> Iterator[list[tuple[Fraction, np.ndarray]]]:
    batch: list[tuple[Fraction, np.ndarray]] = []
    for item in frames:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _model_frames(native: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, H, W, 3) uint8 frames -> (B, 3, h, w) float32 in [0, 1] at the model's frame size, resized as
    :func:`avsl.data.io.load_image` resizes an 8-bit image file (:func:`avsl.data.transforms.resize_uint8`): a frame
    saved as PNG and read with ``load_image(png, size)`` gives the same tensor."""
    return resize_uint8(native, size)


# The jet colormap of avsl.viz.colorize as a 1024-entry uint8 table, and the blend in 16-bit integers: 3x faster than
# colorize's per-pixel interpolation and a float blend on a 640x360 frame (4 ms -> 1.5 ms); colours differ from
# avsl.viz.overlay's by at most one level.
_LUT_SIZE = 1024


def _colormap() -> Tensor:
    return torch.from_numpy(colorize(np.linspace(0.0, 1.0, _LUT_SIZE)))


def _blend(frame: np.ndarray, heat: Tensor, lut: Tensor, alpha: float) -> np.ndarray:
    """One (H, W, 3) uint8 frame blended with its (h, w) map, upsampled bilinearly to the frame (as
    :func:`avsl.viz.overlay` does, with the colormap from a table and ``alpha`` in 1/256 steps)."""
    height, width = frame.shape[:2]
    up = F.interpolate(heat[None, None], size=(height, width), mode="bilinear", align_corners=False)
    index = up.clamp_(0.0, 1.0).mul_(_LUT_SIZE - 1).round_().long().view(-1)
    colour = lut.index_select(0, index).view(height, width, 3).numpy()
    weight = round(alpha * 256)
    mixed = frame.astype(np.uint16) * (256 - weight) + colour.astype(np.uint16) * weight + 128  # <= 65408
    out: np.ndarray = (mixed >> 8).astype(np.uint8)
    return out


class _OverlayWriter:
    """Encodes the overlay video (H.264 in MP4) and muxes the source's audio track back in, re-encoded to AAC.

    The audio is decoded a second time, from a second handle on the source, as the video advances, so that neither
    the source's native-rate multichannel track nor the video is ever held whole, and the two streams are
    interleaved. The file is written under a ``.part`` name and renamed when complete.
    """

    def __init__(self, target: Path, source: Path, rate: Fraction, size: tuple[int, int]) -> None:
        import av

        self.target = target
        self._part = target.with_name(target.name + ".part")
        self._rate = rate
        height, width = size
        self._pad = (height % 2, width % 2)  # yuv420p subsamples chroma 2x2: libx264 needs even sizes
        # faststart: the index goes first (a second pass at the end), so browsers play the file while it loads
        self._output = av.open(str(self._part), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            # veryfast: half the encoding time of the default preset, for a 10 % larger file (benchmarks/README.md)
            self._video = self._output.add_stream("libx264", rate=rate, options={"preset": "veryfast"})
            self._video.width, self._video.height = width + self._pad[1], height + self._pad[0]
            self._video.pix_fmt = "yuv420p"
            self._input = av.open(str(source))
        except BaseException:
            self._output.close()
            raise
        try:
            heard = self._input.streams.audio[0]
            sample_rate = int(heard.rate or heard.codec_context.sample_rate)
            supported = av.codec.Codec("aac", "w").audio_rates or (sample_rate,)
            # AAC has a fixed set of rates (8-96 kHz); a rate outside it is resampled to the nearest one.
            self._audio = self._output.add_stream(
                "aac", rate=min(supported, key=lambda r: abs(r - sample_rate)), layout=heard.layout.name
            )
            self._heard = self._input.decode(heard)
        except BaseException:
            self.abort()
            raise
        self._frames = 0
        self._heard_seconds = 0.0
        self._source = source

    def write(self, frames: list[np.ndarray]) -> None:
        import av

        for image in frames:
            if any(self._pad):
                image = np.pad(image, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = self._frames, 1 / self._rate
            self._output.mux(self._video.encode(frame))
            self._frames += 1
        self._pump(float(self._frames / self._rate))

    def _pump(self, until: float | None) -> None:
        """Encode the source's audio up to ``until`` seconds (all of it for None)."""
        try:
            while until is None or self._heard_seconds < until:
                frame = next(self._heard, None)
                if frame is None:
                    break
                self._heard_seconds += frame.samples / frame.sample_rate
                frame.pts = None  # the encoder counts samples from 0, as the model's view of the track does
                self._output.mux(self._audio.encode(frame))
        except _av_errors() as err:
            raise DataError(
                self._source, f"cannot decode the audio ({type(err).__name__}: {err})", kind="corrupt video"
            ) from None

    def finish(self) -> Path:
        self._output.mux(self._video.encode(None))
        self._pump(None)
        self._output.mux(self._audio.encode(None))
        self._input.close()
        self._output.close()
        os.replace(self._part, self.target)
        return self.target

    def abort(self) -> None:
        """Close both files and delete the partial output (after an error, which this must not mask)."""
        for handle in (self._input, self._output):
            try:
                handle.close()
            except _av_errors():
                pass
        self._part.unlink(missing_ok=True)


def video_outputs(out: str | os.PathLike[str], video: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The paths :func:`localize_video` writes under ``out`` for ``video``: the overlay video and the maps."""
    stem = Path(video).stem
    return Path(out) / f"{stem}_overlay.mp4", Path(out) / f"{stem}_heatmaps.npy"


def localize_video(
    model: LocalizationMethod,
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    fps: float | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    alpha: float = 0.5,
    progress: bool = False,
    frames: bool = False,
    allow_silence: bool = False,
) -> np.ndarray:
    """Localize the sound in every frame of a video; with ``out``, also write an overlay video with the sound.

    Output frame i is at time ``t = i / rate`` (seconds from the start of the video stream), where ``rate`` is
    ``fps`` or, by default, the source's average frame rate; a constant-rate source at its own rate gives one map per
    frame. The frame at t is the last one decoded at or before t, so a lower ``fps`` skips frames and a higher one
    repeats them; the video is decoded once, front to back (no seeking). The model sees what it was trained on, read
    from its :class:`~avsl.methods.Signal`: the frame resized to ``signal.frame_size`` (in 8 bits, as
    :func:`~avsl.data.io.load_image` resizes image files) and the ``signal.duration`` seconds of sound centred at t,
    from the audio track downmixed to mono and resampled to ``signal.sample_rate`` (decoded once, held in memory;
    near the start and end the window is shifted to stay inside the track, as :class:`~avsl.data.VideoDataset` does).
    The track is taken to start with the video stream.

    Frames go through :meth:`~avsl.methods.LocalizationMethod.localize` in batches of ``batch_size`` on ``device``,
    under ``torch.no_grad`` and in eval mode (the model's training mode is restored afterwards).

    With ``out`` (a folder, created if needed), writes:

    - ``<stem>_overlay.mp4``: every output frame at the source's own resolution with its map upsampled to it
      (bilinear) and blended in the jet colormap of :func:`avsl.viz.colorize` (``alpha`` is the map's weight), H.264
      (libx264, yuv420p) at ``rate``, with the source's audio track re-encoded to AAC at its sample rate and channel
      layout (a rate AAC lacks goes to the nearest AAC rate). yuv420p needs even sizes, so an odd width or height is
      padded by one pixel, a copy of the last column or row: a 161x91 video gives a 162x92 overlay.
    - ``<stem>_heatmaps.npy``: the returned maps.
    - with ``frames``, also the per-frame files of ``avsl localize --image``: ``<stem>_<i:04d>_overlay.png`` (frame
      | overlay, at the model's frame size), ``<stem>_<i:04d>_heatmap.png`` and ``<stem>_<i:04d>_heatmap.npy``.

    Args:
        model: a trained method (e.g. from :func:`avsl.methods.load_method`).
        path: the video (anything FFmpeg reads: mp4, mkv, webm, avi, ...), with a video and an audio stream.
        out: folder for the files above; None writes nothing.
        fps: output frames per second (None: the source's rate).
        batch_size: frames per forward pass.
        device: where the model (moved there) and the batches run, e.g. ``"cuda"``; None keeps the model's device.
        alpha: weight of the heatmap in the overlay, in [0, 1].
        progress: show a tqdm progress bar.
        frames: also write per-frame PNGs (needs ``out``).
        allow_silence: accept a digitally silent audio track (otherwise an error, as in the dataset readers).

    Returns:
        The maps, float32 (T, h, w) in [0, 1] with (h, w) = ``signal.frame_size``: what ``model.localize`` gives for
        each frame (per-frame min-max normalized). They are held in memory: 4 * h * w bytes a frame, 65 kB at
        128 px (a 10-minute 25-fps video: 1 GB at 128 px, 3 GB at 224 px; use a lower ``fps`` for long videos).

    Raises:
        DataError: the file is missing or unreadable, has no video or no audio stream, or its audio is silent.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if frames and out is None:
        raise ValueError("frames=True writes PNGs to out: give out")
    source = Path(path)
    info = _probe(source)
    if fps is not None:
        rate = Fraction(fps).limit_denominator(1001)  # 29.97 -> 2997/100; a header's 30000/1001 stays exact
    elif info.rate is not None:
        rate = info.rate.limit_denominator(1001)
    else:
        raise DataError(source, "the video stream declares no frame rate: pass fps", kind="corrupt video")
    signal = model.signal
    track = decode_container_audio(source, signal.sample_rate, allow_silence=allow_silence)
    if device is not None:
        model.to(device)
    target = model.device

    folder = Path(out) if out is not None else None
    writer: _OverlayWriter | None = None
    lut = _colormap()
    maps: list[np.ndarray] = []
    done = 0  # output frames so far
    was_training = model.training
    model.eval()
    from tqdm import tqdm

    total = round(info.duration * rate) if info.duration else None
    bar = tqdm(total=total, desc=f"localize {source.name}", unit="frame", disable=not progress)
    try:
        with closing(_output_frames(source, rate)) as stream:
            for batch in _batches(stream, batch_size):
                native = torch.from_numpy(np.stack([image for _, image in batch]))
                images = _model_frames(native, signal.frame_size)
                waves = torch.stack(
                    [window_at(track, signal.num_samples, float(t) * signal.sample_rate) for t, _ in batch]
                )
                with torch.no_grad():
                    heat = model.localize(images.to(target), waves.to(target)).float().cpu()
                maps.append(heat.numpy())
                if folder is not None:
                    if writer is None:
                        folder.mkdir(parents=True, exist_ok=True)
                        size = (native.shape[1], native.shape[2])
                        writer = _OverlayWriter(video_outputs(folder, source)[0], source, rate, size)
                    writer.write([_blend(image, heat[j], lut, alpha) for j, (_, image) in enumerate(batch)])
                    if frames:
                        for j in range(len(batch)):
                            _write(folder, f"{source.stem}_{done + j:04d}", images[j], heat[j])
                done += len(batch)
                bar.update(len(batch))
        if writer is not None:
            writer.finish()
            writer = None
    finally:
        bar.close()
        model.train(was_training)
        if writer is not None:
            writer.abort()
    result = np.concatenate(maps).astype(np.float32, copy=False)
    if folder is not None:
        np.save(video_outputs(folder, source)[1], result)
    return result
