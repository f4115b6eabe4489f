"""Decoding of frames, masks and audio with clear errors.

Every reader in :mod:`avsl.data.datasets` decodes media through this module, so the bad-input policies live in one
place (``docs/data.md``, "Bad input"):

- A file that cannot be decoded (missing, empty, corrupt, truncated, an unsupported image mode) raises
  :class:`DataError`, whose message names the file and the problem. Readers either re-raise it
  (``on_error="raise"``, the default) or drop the sample and count it (``on_error="skip"``, see :class:`SkipLog`).
- Audio at another sample rate is resampled (``allow_resample=False`` makes it an error).
- Digitally silent audio (every sample exactly 0) is an error unless ``allow_silence=True``: an all-zero clip is far
  more often a broken download or extraction than a real recording, but silent negatives are legitimate in SLAVC's
  extended protocol.
- NaN or infinite samples are always an error: nothing downstream may see a NaN.

Images are decoded with Pillow, WAV/FLAC/OGG/AIFF with soundfile, and audio in any other container (mp4, m4a, mkv,
...) with PyAV. ``torchaudio.load`` is not used: it needs a system FFmpeg.
"""

from __future__ import annotations

import json
import math
import os
import struct
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from avsl.data.transforms import audio_window, resample, resize_image, resize_uint8, to_mono

__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "DataError",
    "DataWarning",
    "SkipLog",
    "SkippedSample",
    "decode_container_audio",
    "load_audio",
    "load_audio_window",
    "load_image",
    "load_mask",
    "stream_start",
    "upright_rgb",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
"""Image file suffixes the readers look for, in order of preference when two files share a stem."""

AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".mp4", ".mkv", ".webm")
"""Audio file suffixes the readers look for, in order of preference when two files share a stem."""

# Formats libsndfile reads natively; everything else goes through PyAV (FFmpeg).
_SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".aiff", ".aif"})


class DataError(ValueError):
    """A file of a dataset cannot be used. The message names the file and the problem.

    Attributes:
        path: the offending file (or the dataset root for problems of the index itself).
        problem: what is wrong, in words.
        kind: a short category used to count skipped samples (``"missing file"``, ``"corrupt image"``, ...).
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, kind: str = "bad file") -> None:
        self.path = str(path)
        self.problem = problem
        self.kind = kind
        super().__init__(f"{self.path}: {problem}")


class DataWarning(UserWarning):
    """A sample was dropped while loading (``on_error="skip"``) or a data set has a known problem."""


@dataclass(frozen=True)
class SkippedSample:
    """One sample a reader dropped, and why."""

    sample_id: str
    kind: str
    """Short category, e.g. ``"missing file"``, ``"duplicate id"``, ``"silent audio"``."""
    detail: str
    """The full message (names the file and the problem)."""


def summarize_skips(records: Sequence[SkippedSample]) -> str:
    """``"3 skipped (2 missing file, 1 corrupt image)"`` or ``"nothing skipped"``."""
    if not records:
        return "nothing skipped"
    counts = sorted(Counter(r.kind for r in records).items(), key=lambda kv: (-kv[1], kv[0]))  # ties by name
    parts = ", ".join(f"{n} {kind}" for kind, n in counts)
    return f"{len(records)} skipped ({parts})"


class SkipLog:
    """What a reader dropped and why. Readers expose one as ``dataset.skipped``.

    Samples dropped at construction (missing files, duplicate ids, exclusions, and with ``verify=True`` every file
    that fails to decode) are recorded here. A sample that fails to decode later may do so inside a ``DataLoader``
    worker, whose copy of the dataset is not this one: with a ``spool`` file set (``AVDataModule`` sets one per
    dataset when a stage starts), every process appends its records to it too, and :meth:`merged` reads them back,
    so the summary at the end of a stage counts every worker's skips.
    """

    def __init__(self) -> None:
        self.records: list[SkippedSample] = []
        self.spool: Path | None = None

    def add(self, sample_id: str, kind: str, detail: str) -> None:
        """Record one dropped sample (and append it to the spool file, if any)."""
        self.records.append(SkippedSample(sample_id, kind, detail))
        if self.spool is not None:
            # One short line per append: concurrent writers (workers) do not interleave within a line.
            with open(self.spool, "a", encoding="utf-8") as f:
                f.write(json.dumps([sample_id, kind, detail]) + "\n")

    def merged(self) -> list[SkippedSample]:
        """This log's records and those the spool holds from other processes, once per (sample id, kind)."""
        records = list(self.records)
        if self.spool is not None and self.spool.is_file():
            for line in self.spool.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    records.append(SkippedSample(*json.loads(line)))
        return list({(r.sample_id, r.kind): r for r in records}.values())

    def counts(self) -> dict[str, int]:
        """Number of dropped samples per kind, most frequent first."""
        return dict(Counter(r.kind for r in self.records).most_common())

    def summary(self) -> str:
        """``"3 skipped (2 missing file, 1 corrupt image)"`` or ``"nothing skipped"``."""
        return summarize_skips(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[SkippedSample]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"SkipLog({self.summary()})"


def _check_file(path: Path, what: str) -> None:
    """Raise a DataError for a missing, non-regular or empty file (before handing it to a decoder)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(path, f"{what} file not found", kind="missing file") from None
    except OSError as err:
        raise DataError(path, f"cannot access the {what} file ({err.strerror})", kind="missing file") from None
    if not path.is_file():
        raise DataError(path, f"expected a {what} file, found a directory or special file", kind="missing file")
    if st.st_size == 0:
        raise DataError(path, f"empty {what} file (0 bytes)", kind=f"empty {what}")


# --------------------------------------------------------------------------------------------------- images


def load_image(path: str | os.PathLike[str], size: int | tuple[int, int] | None = None) -> Tensor:
    """Decode an image file to a float32 (3, H, W) RGB tensor in [0, 1]; with ``size``, resized to it.

    With ``size`` (a side or ``(height, width)``), 8-bit images are resized before the conversion to float, in 8 bits
    (bilinear, antialiased: torch's uint8 kernel, as the references resize with Pillow on 8-bit images); the float
    path of :func:`avsl.data.transforms.resize_image` differs from it by at most one grey level. A 640x360 JPEG
    reaches 224x224 in about half the time (``benchmarks/gpu_check.py``, loader section).

    Modes are converted as follows (Pillow's names):

    - ``RGB``, ``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``: Pillow's conversion to RGB (CMYK with the naive formula
      ``255 - C - K``, as Pillow does; embedded ICC profiles are ignored).
    - With an alpha channel (``RGBA``, ``LA``, ``PA``, or a palette with a transparent index): composited over black,
      so fully transparent pixels are black whatever colour they store.
    - 16-bit greyscale (``I;16*``, and ``I``, which is how Pillow opens 16-bit PNGs): divided by 65535, so the full
      16-bit range maps to [0, 1] (a plain conversion to 8 bits would clip everything above 255 to white).
      16-bit RGB PNGs are reduced to 8 bits per channel by Pillow itself.
    - 32-bit float (``F``): taken as already in [0, 1] and clipped.

    EXIF orientation is ignored, as in every reference loader (benchmark frames are extracted from videos).

    Raises:
        DataError: the file is missing, empty, not an image, truncated or corrupt, or in an unsupported mode.
    """
    p = Path(path)
    _check_file(p, "image")
    try:
        with Image.open(p) as im:
            im.load()
            if size is not None and im.mode in _EIGHT_BIT and "transparency" not in im.info:
                return _resized_uint8(im.convert("RGB"), size, p)
            arr = _image_to_array(im, p)
    except DataError:
        raise
    except Image.DecompressionBombError as err:
        raise DataError(p, f"image too large to decode safely ({err})", kind="corrupt image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        # Pillow reports truncated files as OSError("image file is truncated ..."), unknown formats as
        # UnidentifiedImageError and some corrupt headers as SyntaxError or ValueError.
        raise DataError(p, f"corrupt or unreadable image ({type(err).__name__}: {err})", kind="corrupt image") from None
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(p, f"image has zero size {arr.shape[1]}x{arr.shape[0]}", kind="corrupt image")
    image = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    return image if size is None else resize_image(image, size)


# Modes whose RGB conversion is 8 bits per channel with no alpha (the float path handles the others).
_EIGHT_BIT = ("RGB", "L", "1", "P", "CMYK", "YCbCr")


def _resized_uint8(rgb: Image.Image, size: int | tuple[int, int], path: Path) -> Tensor:
    if rgb.width == 0 or rgb.height == 0:
        raise DataError(path, f"image has zero size {rgb.width}x{rgb.height}", kind="corrupt image")
    return resize_uint8(torch.from_numpy(np.array(rgb))[None], size)[0]


def _image_to_array(im: Image.Image, path: Path) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] from a loaded Pillow image of any supported mode."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(im, dtype=np.float32) / 65535.0
        grey = np.clip(grey, 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        if not np.isfinite(grey).all():
            raise DataError(path, "float image contains NaN or infinite pixels", kind="corrupt image")
        return np.repeat(np.clip(grey, 0.0, 1.0)[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        return np.ascontiguousarray(rgba[:, :, :3] * rgba[:, :, 3:4])
    try:
        rgb = im.convert("RGB")
    except ValueError as err:
        raise DataError(path, f"unsupported image mode {mode!r} ({err})", kind="corrupt image") from None
    return np.asarray(rgb, dtype=np.float32) / 255.0


def load_mask(path: str | os.PathLike[str]) -> Tensor:
    """Decode a segmentation mask to a float32 (H, W) tensor in {0, 1}.

    A pixel is foreground when it is non-zero: for palette (``P``) images the palette *index* is tested (index 0 is
    the background in AVSBench MS3 and VOC-style masks); other modes are converted to greyscale first. On the binary
    0/255 masks of AVSBench S4 and SynthAV this equals the reference's ``convert('1')``.

    Raises:
        DataError: the file is missing, empty or not a readable image.
    """
    p = Path(path)
    _check_file(p, "mask")
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode == "P" or im.mode.startswith("I") or im.mode == "F":
                arr = np.asarray(im)
            else:
                arr = np.asarray(im.convert("L"))
    except Image.DecompressionBombError as err:
        raise DataError(p, f"mask too large to decode safely ({err})", kind="corrupt mask") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise DataError(p, f"corrupt or unreadable mask ({type(err).__name__}: {err})", kind="corrupt mask") from None
    if arr.ndim != 2:
        raise DataError(p, f"expected a single-channel mask, got shape {arr.shape}", kind="corrupt mask")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():  # NaN != 0 would make every such pixel foreground
        raise DataError(p, "the mask holds NaN or infinite values", kind="corrupt mask")
    return torch.from_numpy(arr != 0).to(torch.float32)


# ---------------------------------------------------------------------------------------------------- audio


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int,
    *,
    allow_resample: bool = True,
    allow_silence: bool = False,
) -> Tensor:
    """Decode an audio file to a float32 mono (T,) waveform at ``sample_rate``.

    Channels are averaged (:func:`avsl.data.transforms.to_mono`); integer PCM is scaled to [-1, 1) by the decoder;
    other rates are resampled with :func:`avsl.data.transforms.resample`. WAV, FLAC, OGG and AIFF are read with
    soundfile; anything else (mp4, m4a, mkv, mp3, ...) with PyAV.

    Args:
        path: the audio file.
        sample_rate: the rate to return.
        allow_resample: if False, a file at another rate raises a :class:`DataError` instead of being resampled.
        allow_silence: if False (default), a digitally silent file (every sample exactly 0) raises a
            :class:`DataError`.

    Raises:
        DataError: the file is missing, empty, truncated (a WAV whose header declares more audio than the file
            holds), corrupt, has no samples, holds NaN/inf samples, is silent, or is at another rate with
            ``allow_resample=False``.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    p = Path(path)
    _check_file(p, "audio")
    if p.suffix.lower() in _SOUNDFILE_SUFFIXES:
        if p.suffix.lower() == ".wav":
            _check_wav_length(p)
        wave, rate = _decode_soundfile(p)
    else:
        wave, rate = _decode_pyav(p)
    return _finish_audio(wave, rate, p, sample_rate, allow_resample=allow_resample, allow_silence=allow_silence)


def load_audio_window(
    path: str | os.PathLike[str],
    sample_rate: int,
    num_samples: int,
    *,
    position: float = 0.5,
    centre: float | None = None,
    allow_resample: bool = True,
    allow_silence: bool = False,
) -> Tensor:
    """A window of ``num_samples`` of a file's mono audio at ``sample_rate``, reading only what the window needs.

    The result equals cutting the window from :func:`load_audio`'s full waveform, with
    :func:`avsl.data.transforms.audio_window` (``position``: 0.5 centres the window in the clip) or, when ``centre``
    is given (in seconds), with the window centred there and shifted to stay inside the clip. Clips shorter than the
    window are tiled. For WAV/FLAC/OGG/AIFF files longer than the window only the window and a margin are decoded and
    resampled: the margin covers the resampling filter and the segment starts on a polyphase block boundary, so the
    samples match the full-clip path (to float rounding). The NaN and silence checks then apply to the audio read.

    Raises:
        DataError: as :func:`load_audio`.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in _SOUNDFILE_SUFFIXES:
        wave = load_audio(p, sample_rate, allow_resample=allow_resample, allow_silence=allow_silence)
        return _cut(wave, num_samples, position, centre, sample_rate, p)
    _check_file(p, "audio")
    if suffix == ".wav":
        _check_wav_length(p)
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise DataError(p, f"corrupt or unreadable audio ({err})", kind="corrupt audio") from None
    rate, frames = int(info.samplerate), int(info.frames)
    if frames <= 0 or rate <= 0:
        raise DataError(p, "no audio samples (the file holds a header only)", kind="empty audio")
    g = math.gcd(rate, sample_rate)
    in_step, out_step = rate // g, sample_rate // g
    # torchaudio's output length for the whole clip (transforms.resample): ceil(new * length / orig), reduced rates.
    full_len = math.ceil(out_step * frames / in_step)
    if full_len <= num_samples:
        wave = load_audio(p, sample_rate, allow_resample=allow_resample, allow_silence=allow_silence)
        return _cut(wave, num_samples, position, centre, sample_rate, p)
    _check_centre(centre, full_len, sample_rate, p)
    if centre is None:
        start = round((full_len - num_samples) * position)
    else:
        start = min(max(round(centre * sample_rate - num_samples / 2), 0), full_len - num_samples)
    if rate == sample_rate:
        wave, _ = _decode_soundfile(p, start, start + num_samples)
        return _finish_audio(wave, rate, p, sample_rate, allow_resample=allow_resample, allow_silence=allow_silence)
    # The resampler is polyphase: output block b (out_step samples) reads input from b * in_step, +- its filter width
    # (about 6 periods of the lower rate). Start on a block boundary, one margin of blocks early.
    margin = 4 + math.ceil(32 / out_step)
    first_block = max(start // out_step - margin, 0)
    last_block = min((start + num_samples) // out_step + 1 + margin, math.ceil(frames / in_step))
    begin, end = first_block * in_step, min(last_block * in_step, frames)
    wave, _ = _decode_soundfile(p, begin, end)
    out = _finish_audio(wave, rate, p, sample_rate, allow_resample=allow_resample, allow_silence=allow_silence)
    offset = start - first_block * out_step
    window = out[offset : offset + num_samples]
    if window.shape[0] != num_samples:  # cannot happen with the margins above; guard the invariant anyway
        raise DataError(
            p, f"internal error: window of {window.shape[0]} samples, expected {num_samples}", "corrupt audio"
        )
    return window


def _check_centre(centre: float | None, length: int, sample_rate: int, path: Path) -> None:
    """A window centred after the sound's end would be the clip's last window, shown with a later frame."""
    if centre is not None and centre * sample_rate > length + 1:
        raise DataError(
            path,
            f"the sound ends at {length / sample_rate:.2f} s, before the window's centre at {centre:.2f} s "
            "(a truncated file?)",
            kind="truncated audio",
        )


def _cut(wave: Tensor, num_samples: int, position: float, centre: float | None, sample_rate: int, path: Path) -> Tensor:
    """The window of a fully decoded waveform (tiled if short), by position in the clip or by centre time."""
    _check_centre(centre, wave.shape[-1], sample_rate, path)
    if centre is None or wave.shape[-1] < num_samples:
        return audio_window(wave, num_samples, position if centre is None else 0.0)
    start = min(max(round(centre * sample_rate - num_samples / 2), 0), wave.shape[-1] - num_samples)
    return wave[start : start + num_samples]


def _finish_audio(
    wave: Tensor, rate: int, path: Path, sample_rate: int, *, allow_resample: bool, allow_silence: bool
) -> Tensor:
    """Validate a decoded (C, T) waveform, then downmix and resample it."""
    if wave.shape[-1] == 0:
        raise DataError(path, "no audio samples (the file holds a header only)", kind="empty audio")
    # A sum is finite exactly when every sample is (barring overflow, which the exact count below rules out); it is
    # much cheaper than materializing isfinite() for every clip.
    if not math.isfinite(float(wave.sum())):
        bad = int((~torch.isfinite(wave)).sum())
        if bad:
            raise DataError(path, f"{bad} non-finite samples (NaN or inf)", kind="non-finite audio")
    if not allow_silence and not bool(wave.any()):
        raise DataError(
            path,
            "digitally silent (every sample read is 0: the whole file, or the window read from it); if silent "
            "clips are intended, pass allow_silence=True to the reader (in Python or in its config)",
            kind="silent audio",
        )
    if rate != sample_rate and not allow_resample:
        raise DataError(
            path,
            f"sample rate {rate} Hz, expected {sample_rate} Hz (allow_resample=False)",
            kind="sample rate",
        )
    mono = to_mono(wave)
    if wave.shape[0] > 1 and not math.isfinite(float(mono.sum())):  # finite channels whose mean overflows (3e38)
        raise DataError(path, "samples too large to mix to mono (the mean overflows float32)", kind="non-finite audio")
    # Again after the down-mix: channels in antiphase cancel to a silent clip that passed the check above (to within
    # one 16-bit step: integer formats do not quantize x and -x to exact opposites).
    if not allow_silence and wave.shape[0] > 1 and float(mono.abs().max()) <= 2.0**-15:
        raise DataError(
            path,
            "silent after the down-mix to mono (its channels cancel); pass allow_silence=True if silent clips are "
            "intended",
            kind="silent audio",
        )
    return resample(mono, rate, sample_rate).to(torch.float32).contiguous()


def _check_wav_length(path: Path) -> None:
    """Raise a DataError when a RIFF/WAVE file declares more sample data than it holds.

    libsndfile silently returns the frames that are present, so a half-written or cut download would otherwise load
    as a shorter clip. The ``data`` chunk's declared size is compared with the bytes after it; the placeholder sizes
    0 and 0xFFFFFFFF (streamed and RF64 files) are not checked.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return  # not RIFF/WAVE (e.g. RF64 or W64): leave it to libsndfile
        fmt = "<I" if head[:4] == b"RIFF" else ">I"
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            declared = struct.unpack(fmt, chunk[4:8])[0]
            if chunk[:4] == b"data":
                available = size - (offset + 8)
                if declared not in (0, 0xFFFFFFFF) and declared > available:
                    raise DataError(
                        path,
                        f"truncated WAV: the header declares {declared} bytes of samples but the file holds "
                        f"{available}",
                        kind="truncated audio",
                    )
                return
            offset += 8 + declared + (declared & 1)  # chunks are padded to an even size


def _decode_soundfile(path: Path, start: int = 0, stop: int | None = None) -> tuple[Tensor, int]:
    try:
        data, rate = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise DataError(path, f"corrupt or unreadable audio ({err})", kind="corrupt audio") from None
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def _decode_pyav(path: Path, stream_index: int | None = None) -> tuple[Tensor, int]:
    """Decode the (first) audio stream of any FFmpeg-readable container to float32 (C, T) at its native rate."""
    import av  # imported lazily: only non-WAV inputs need FFmpeg

    try:
        with av.open(str(path)) as container:
            streams = container.streams.audio
            if not streams:
                raise DataError(path, "the file has no audio stream", kind="corrupt audio")
            stream = streams[0] if stream_index is None else streams[stream_index]
            rate = int(stream.rate or stream.codec_context.sample_rate or 0)
            # Convert to planar float at the native rate and layout: downmixing and resampling are done by
            # avsl.data.transforms so that every reader uses the same filters.
            resampler = av.AudioResampler(format="fltp")
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, AttributeError, TypeError) as err:
        # PyAV raises AttributeError/TypeError for a corrupt container whose stream lacks codec parameters (fuzzed).
        raise DataError(
            path, f"corrupt or unreadable audio ({type(err).__name__}: {err})", kind="corrupt audio"
        ) from None
    if rate <= 0:
        raise DataError(path, "the audio stream declares no sample rate", kind="corrupt audio")
    if not chunks:
        return torch.zeros(1, 0), rate
    return torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32, copy=False)), rate


def decode_container_audio(path: str | os.PathLike[str], sample_rate: int, *, allow_silence: bool = False) -> Tensor:
    """Decode the audio track of a video container with PyAV: mono float32 (T,) at ``sample_rate`` (always resampled).

    Raises:
        DataError: as :func:`load_audio`.
    """
    p = Path(path)
    _check_file(p, "video")
    wave, rate = _decode_pyav(p)
    return _finish_audio(wave, rate, p, sample_rate, allow_resample=True, allow_silence=allow_silence)


def stream_start(stream: Any) -> float:
    """Seconds from the container's zero to a PyAV stream's first timestamp, from which frame times count: 0 in most
    files, 1.4 s in MPEG-TS (FFmpeg's default), later in remuxed ones."""
    if stream.start_time is None:
        return 0.0
    return float(stream.start_time * (stream.time_base or Fraction(1, 1_000_000)))  # PyAV's av.time_base


def upright_rgb(frame: Any) -> np.ndarray:
    """A decoded PyAV video frame as (H, W, 3) uint8 RGB, turned upright as its display matrix says.

    Phone videos store portrait frames sideways with a rotation tag, which players and FFmpeg's command line apply
    (its autorotation); the decoder does not. A tag of ``rotation`` degrees is ``rotation / 90`` counter-clockwise
    quarter turns: checked against ``ffmpeg -i tagged.mp4 frame.png`` for tags of 90, 180 and 270 degrees
    (``tests/test_prepare.py``, with FFmpeg's pictures stored).
    """
    pixels: np.ndarray = frame.to_ndarray(format="rgb24")
    turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def warn_data(message: str) -> None:
    """Issue a :class:`DataWarning` attributed to the caller of the reader."""
    warnings.warn(message, DataWarning, stacklevel=4)
