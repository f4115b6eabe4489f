"""Samples from one video file (frames and audio decoded with PyAV), for inference on your own footage."""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from avsl.data.datasets.base import Augment, AVDataset, Entry, OnError, window_at
from avsl.data.io import DataError, decode_container_audio, stream_start, upright_rgb
from avsl.types import AVSample

__all__ = ["VideoDataset"]


class VideoDataset(AVDataset):
    """One sample every ``stride`` seconds of a video: the frame at time t and the audio window centred at t.

    Sample i is at ``t = start + (i + 0.5) * stride`` (the middle of its stride interval), for every t before ``end``
    (default: the end of the video), and its id is ``"<file stem>@<t:.3f>"``. The frame is the last one whose
    timestamp is at or before t; the audio window of ``duration`` seconds is centred at t and shifted to stay inside
    the track (tiled if the track is shorter). No ``gt_map``.

    Construction reads the container's header only. The audio track is decoded once per process, on first use, and
    kept in memory (a 10-minute track at 16 kHz is 38 MB); each frame is found by seeking to the previous keyframe.

    Args:
        path: the video file (anything FFmpeg reads: mp4, mkv, webm, avi, ...); it needs a video and an audio stream.
        stride: seconds between samples.
        start: first second to consider.
        end: last second to consider (default: the video's duration).
        image_size: frames are resized to ``(image_size, image_size)``.
        sample_rate: audio is resampled to this rate.
        duration: seconds of audio per sample.
        augment: applied to each sample.
        on_error: ``"raise"`` or ``"skip"`` (a frame that cannot be decoded is replaced by the next one).
        allow_silence: if True, a digitally silent audio track is accepted.

    Raises:
        DataError: the file is missing or unreadable, or has no video or no audio stream.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        stride: float = 1.0,
        start: float = 0.0,
        end: float | None = None,
        image_size: int = 224,
        sample_rate: int = 16000,
        duration: float = 3.0,
        augment: Augment | None = None,
        on_error: OnError = "raise",
        allow_silence: bool = False,
    ) -> None:
        super().__init__(
            image_size=image_size,
            sample_rate=sample_rate,
            duration=duration,
            audio_position=0.5,
            augment=augment,
            on_error=on_error,
            allow_resample=True,
            allow_silence=allow_silence,
        )
        if not (stride > 0 and math.isfinite(stride)):
            raise ValueError(f"stride must be a positive number of seconds, got {stride}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.path = Path(path)
        self._source = f"path={str(self.path)!r}, stride={stride}"
        self._audio: Tensor | None = None
        length = self._probe()
        self.video_duration = length
        stop = length if end is None else min(end, length)
        stem = self.path.stem
        i = 0
        while (t := start + (i + 0.5) * stride) < stop:
            self.entries.append(Entry(sample_id=f"{stem}@{t:.3f}", image=self.path, audio=self.path, time=t))
            i += 1

    def _probe(self) -> float:
        """The video stream's length in seconds from its first frame; checks both streams exist.

        From the stream's header where it has one (MP4, MPEG-TS), else from the last frame's time (Matroska declares
        no stream duration, and its segment duration can count the time before the first frame); the container's
        duration alone counts both streams and any start offset."""
        import av

        if not self.path.is_file():
            raise DataError(self.path, "video file not found", kind="missing file")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise DataError(self.path, "the file has no video stream", kind="corrupt video")
                if not container.streams.audio:
                    raise DataError(self.path, "the file has no audio stream", kind="corrupt video")
                vs = container.streams.video[0]
                if vs.duration is not None and vs.time_base is not None:
                    return float(vs.duration * vs.time_base)
                span = _span_from_last_frame(container, vs)
                if span is not None:
                    return span
                if container.duration is not None:
                    return float(container.duration) / av.time_base
        except DataError:
            raise
        except (av.FFmpegError, OSError, ValueError, AttributeError, TypeError) as err:
            # PyAV raises AttributeError/TypeError for a corrupt container whose streams lack parameters (fuzzed).
            raise DataError(
                self.path, f"unreadable video ({type(err).__name__}: {err})", kind="corrupt video"
            ) from None
        raise DataError(self.path, "the container declares no duration", kind="corrupt video")

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers decode the audio track themselves rather than receiving a pickled copy.
        state = self.__dict__.copy()
        state["_audio"] = None
        return state

    def _track(self) -> Tensor:
        if self._audio is None:
            self._audio = decode_container_audio(self.path, self.sample_rate, allow_silence=self.allow_silence)
        return self._audio

    def _frame_at(self, t: float) -> Tensor:
        import av

        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                base = stream.time_base or Fraction(1, av.time_base)
                target = stream_start(stream) + t
                chosen, late = None, False
                # The keyframe before the target, then forward to the last frame shown at it. A seek can land after
                # the target, or past the end (MPEG-TS, whose seeks go by bytes): then decode from the file's start.
                for seek in (target, 0.0):
                    container.seek(max(int(seek / base), 0), stream=stream, backward=True, any_frame=False)
                    chosen, late = _frame_shown_at(container.decode(stream), target)
                    if chosen is not None and not late:
                        break
                pixels = None if chosen is None else upright_rgb(chosen)
        except (av.FFmpegError, OSError, ValueError, AttributeError, TypeError) as err:
            raise DataError(self.path, f"cannot decode the frame at {t:.3f} s ({err})", kind="corrupt video") from None
        if pixels is None:
            raise DataError(self.path, f"no frame at {t:.3f} s", kind="corrupt video")
        return torch.from_numpy(pixels).permute(2, 0, 1).to(torch.float32).div_(255.0)

    def _load_entry(self, entry: Entry) -> AVSample:
        assert entry.time is not None
        image = self._frame_at(entry.time)
        audio = window_at(self._track(), self.num_samples, entry.time * self.sample_rate)
        return self._assemble(entry, image, audio)

    def _root_for_errors(self) -> str:
        return str(self.path)


def _frame_shown_at(frames: Any, target: float) -> tuple[Any, bool]:
    """The last of ``frames`` whose time is at or before ``target`` (seconds), and whether the first frame already
    came after it (``late``: then that frame is returned)."""
    chosen = None
    for frame in frames:
        if frame.time is not None and frame.time > target + 1e-6:
            return (frame, True) if chosen is None else (chosen, False)
        chosen = frame
    return chosen, False


def _span_from_last_frame(container: Any, stream: Any) -> float | None:
    """Seconds from the stream's first frame to the end of its last one: a seek past the end lands on the last
    keyframe, and its group of pictures is decoded. None if no frame has a time."""
    base = stream.time_base
    if base is None:
        return None
    origin = stream_start(stream)
    import av

    beyond = origin + (float(container.duration) / av.time_base if container.duration is not None else 0.0) + 3600.0
    last = None
    try:
        container.seek(int(beyond / base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            last = frame.time if frame.time is not None else last
    except av.FFmpegError:  # a container that cannot seek: the header's duration is all there is
        return None
    if last is None:
        return None
    rate = stream.average_rate or stream.guessed_rate
    return float(last) - origin + (1.0 / float(rate) if rate else 0.0)
