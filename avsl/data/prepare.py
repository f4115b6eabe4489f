"""``avsl prepare``: from a folder of downloaded videos to the layouts avsl's readers take.

One clip is one job: open the container with PyAV, decode its audio (resampled by FFmpeg to 16 kHz mono, PCM16) and
the frames at the benchmark's timestamps, write them under temporary names and rename them when all are complete, so
that a killed run leaves no file that looks finished. Jobs run in parallel processes; a clip that fails is counted
by reason and never stops the others. :func:`prepare` returns (and writes to ``ROOT/prepare_report.json``) what was
written, what was skipped and why, and how much of each shipped split list of the benchmark is now on disk, with the
missing ids in ``ROOT/missing/<split>.txt``.

Benchmarks (what each writes is in ``docs/getting_data.md``):

- ``vggsound``: files ``<youtube_id>_<start>.mp4``, ``<youtube_id>_<start>_<end>.mp4`` (seconds or milliseconds) or
  ``<youtube_id>.mp4``, already trimmed to the 10-s clip. ``frames/<id>.jpg`` is the frame shown at 5.0 s, the middle
  of the clip, which VGG-SS's boxes were drawn on; ``audio/<id>.wav`` the clip's first 10 s. Ids are spelled as the
  shipped lists spell them: ``<youtube_id>_<start, 6 digits>``.
- ``flickr``: Flickr-SoundNet videos ``<id>.<ext>`` (the frame at the middle of the clip, the whole sound track), or
  the released pairs ``<id>.mp3`` + ``<id>.jpg`` (the frame as released).
- ``avsbench``: AVSBench S4/MS3 videos ``<name>.mp4`` with the benchmark's metadata csv: the frames of its five
  timestamps as PNGs at 224 x 224, named as the benchmark names them, and the 5-s sound track.
- ``folder``: any videos; ``frames_per_clip`` evenly spaced frames ``<stem>_<k>.jpg``, each with the sound around it
  ``<stem>_<k>.wav``, for :class:`~avsl.data.FolderDataset`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from avsl.data import splits
from avsl.data.datasets.avsbench import read_meta
from avsl.data.io import stream_start, upright_rgb

__all__ = ["BENCHMARKS", "VIDEO_SUFFIXES", "ClipJob", "PrepareReport", "prepare", "vggsound_id"]

Benchmark = Literal["vggsound", "flickr", "avsbench", "folder"]
BENCHMARKS: tuple[str, ...] = ("vggsound", "flickr", "avsbench", "folder")
# The containers FFmpeg reads that videos are commonly kept in (camera and broadcast ones too: .mts, .ts).
VIDEO_SUFFIXES: tuple[str, ...] = (
    *(".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".3gp", ".ogv", ".wmv"),
    *(".ts", ".mts", ".m2ts", ".mpg", ".mpeg"),
)
SAMPLE_RATE = 16000  # what every reference resamples to first (LVS, EZ-VSL, SLAVC, SSPL; AVSBench's audio_wav)

#: The shipped lists of each benchmark whose coverage the report gives.
SPLIT_LISTS: dict[str, tuple[str, ...]] = {
    "vggsound": ("vggss_test", "vggss_test_4692", "vggss_heard_test", "vggss_unheard_test", "vggss_heard_train",
                 "vggss_10k", "vggss_144k"),
    "flickr": ("flickr_test_249", "flickr_test_250", "flickr_test_senocak", "flickr_10k", "flickr_144k",
               "flickr_labeled_pool"),
    "avsbench": ("avsbench_s4_test",),
    "folder": (),
}  # fmt: skip

# Reasons a clip is skipped (the report's keys).
NO_AUDIO = "no audio stream"
NO_VIDEO = "no video stream"
TOO_SHORT = "shorter than the audio window"
CORRUPT = "corrupt container"
DECODE = "decode error"
SILENT = "digitally silent"
BAD_NAME = "name not understood"


@dataclass(frozen=True)
class ClipJob:
    """One clip to prepare: where it comes from, and the files it becomes (paths relative to the output root).

    ``frames`` pairs each output frame with its time: seconds, a negative fraction of the clip's duration (-0.5: the
    middle; the duration is known only once the clip is open), or None (the released ``image`` file is the frame).
    ``audio`` lists the output sound files with what each holds: ``(start, end)`` seconds (end None: to the end), or,
    with a negative ``start``, ``end`` seconds centred on that fraction of the clip.
    """

    source: str
    clip_id: str
    frames: tuple[tuple[str, float | None], ...]
    audio: tuple[tuple[str, float, float | None], ...]
    image: str | None = None
    frame_size: tuple[int, int] | None = None  # (height, width) to resize frames to; None keeps the native size

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.frames) + tuple(p for p, _, _ in self.audio)


@dataclass
class PrepareReport:
    """What a run of :func:`prepare` did."""

    benchmark: str
    videos: str
    out: str
    clips: int = 0
    written: int = 0
    already_done: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"avsl prepare {self.benchmark}: {self.clips:,} clips found in {self.videos}; {self.written:,} written, "
            f"{self.already_done:,} already done, {sum(self.skipped.values()):,} skipped ({self.seconds:.1f} s)"
        ]
        lines += [f"  skipped, {reason}: {count:,}" for reason, count in sorted(self.skipped.items())]
        for name, c in self.coverage.items():
            lines.append(f"  {name}: {c['prepared']:,} of {c['listed']:,} clips")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------ naming
_YOUTUBE_ID = r"[A-Za-z0-9_-]{11}"
_VGGSOUND_NAME = re.compile(rf"^(?P<yt>{_YOUTUBE_ID})(?:_(?P<a>\d+)(?:_(?P<b>\d+))?)?$")


def vggsound_id(stem: str, known: dict[str, list[str]] | None = None) -> str | None:
    """The VGG-SS id ``<youtube_id>_<start:06d>`` of a VGGSound file stem, or None if it cannot be told.

    ``<yt>_<start>``: start in seconds. ``<yt>_<start>_<end>``: seconds when ``end - start`` is the clip's 10 s,
    milliseconds when it is 10,000 (SSL-align's naming). ``<yt>``: looked up in ``known`` (YouTube id -> the ids of the
    shipped lists); None if it is in none or in several.
    """
    m = _VGGSOUND_NAME.match(stem)
    if m is None:
        return None
    yt, a, b = m.group("yt"), m.group("a"), m.group("b")
    if a is None:
        found = (known or {}).get(yt, [])
        return found[0] if len(found) == 1 else None
    start = int(a)
    if b is not None and int(b) - start == 10_000:
        start //= 1000
    elif b is not None and int(b) - start != 10:
        return None
    return f"{yt}_{start:06d}"


def _known_vggsound_ids() -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for name in SPLIT_LISTS["vggsound"]:
        for sid in splits.load_split(name):
            out.setdefault(sid[:11], set()).add(sid)
    return {k: sorted(v) for k, v in out.items()}


def _videos(folder: Path, suffixes: Sequence[str] = VIDEO_SUFFIXES) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def vggsound_jobs(videos: Path, frame_time: float, seconds: float) -> tuple[list[ClipJob], list[tuple[str, str]]]:
    """Jobs for VGGSound files, and the files whose names give no id."""
    known: dict[str, list[str]] | None = None  # the shipped lists, read only if a file is named by YouTube id alone
    jobs, bad = [], []
    seen: set[str] = set()
    for path in _videos(videos):
        if known is None and len(path.stem) == 11:
            known = _known_vggsound_ids()
        sid = vggsound_id(path.stem, known)
        if sid is None or sid in seen:
            bad.append((str(path), "duplicate id" if sid else BAD_NAME))
            continue
        seen.add(sid)
        jobs.append(
            ClipJob(str(path), sid, ((f"frames/{sid}.jpg", frame_time),), ((f"audio/{sid}.wav", 0.0, seconds),))
        )
    return jobs, bad


def flickr_jobs(videos: Path, seconds: float | None) -> tuple[list[ClipJob], list[tuple[str, str]]]:
    """Jobs for Flickr-SoundNet: videos (frame at the middle), or released ``<id>.mp3`` + ``<id>.jpg`` pairs."""
    jobs: dict[str, ClipJob] = {}
    for path in _videos(videos):
        sid = path.stem
        jobs[sid] = ClipJob(str(path), sid, ((f"frames/{sid}.jpg", -0.5),), ((f"audio/{sid}.wav", 0.0, seconds),))
    images = {p.stem: p for p in _videos(videos, (".jpg", ".jpeg", ".png"))}
    for path in _videos(videos, (".mp3", ".wav", ".flac", ".m4a")):
        sid = path.stem
        if sid in images and sid not in jobs:
            jobs[sid] = ClipJob(
                str(path),
                sid,
                ((f"frames/{sid}.jpg", None),),
                ((f"audio/{sid}.wav", 0.0, seconds),),
                image=str(images[sid]),
            )
    return [jobs[k] for k in sorted(jobs)], []


# AVSBench pairs frame k (k = 1..5) with second k - 1 of the clip; its frames are the ones at 15/16 of each second of
# the 5-s clip (frame index l * fps + 15 * fps // 16 at the rounded frame rate), resized to 224 x 224.
AVSBENCH_TIMES = tuple(second + 15 / 16 for second in range(5))


def avsbench_jobs(
    videos: Path, subset: Literal["s4", "ms3"], meta_csv: Path
) -> tuple[list[ClipJob], list[tuple[str, str]]]:
    """Jobs for AVSBench S4/MS3 videos ``<name>.mp4``, placed by the metadata csv (name, category, split)."""
    rows = {name: (category, split) for name, category, split in read_meta(Path(meta_csv), subset)}
    data = f"{subset}_data"
    jobs, bad = [], []
    for path in _videos(videos):
        name = path.stem
        if name not in rows:
            bad.append((str(path), "not in the metadata csv"))
            continue
        category, split = rows[name]
        if subset == "s4":
            frames = tuple(
                (f"{data}/visual_frames/{split}/{category}/{name}/{name}_{k + 1}.png", t)
                for k, t in enumerate(AVSBENCH_TIMES)
            )
            audio = f"{data}/audio_wav/{split}/{category}/{name}.wav"
        else:
            frames = tuple(
                (f"{data}/visual_frames/{name}/{name}.mp4_{k + 1}.png", t) for k, t in enumerate(AVSBENCH_TIMES)
            )
            audio = f"{data}/audio_wav/{split}/{name}.wav"
        jobs.append(ClipJob(str(path), name, frames, ((audio, 0.0, 5.0),), frame_size=(224, 224)))
    return jobs, bad


def folder_jobs(videos: Path, frames_per_clip: int, window: float) -> tuple[list[ClipJob], list[tuple[str, str]]]:
    """Jobs for any videos: ``frames_per_clip`` evenly spaced frames, each with ``window`` seconds of sound around it
    (times are fractions of the clip's duration, resolved when it is opened)."""
    jobs = []
    for path in _videos(videos):
        stem = path.stem
        k = frames_per_clip
        frames = tuple((f"frames/{stem}_{i}.jpg", -(i + 0.5) / k) for i in range(k))
        audio = tuple((f"audio/{stem}_{i}.wav", -(i + 0.5) / k, window) for i in range(k))
        jobs.append(ClipJob(str(path), stem, frames, audio))
    return jobs, []


# ------------------------------------------------------------------------------------------------------------ one clip
class _Skip(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _done(root: Path, job: ClipJob) -> bool:
    return all((root / p).is_file() for p in job.outputs)


def prepare_clip(job: ClipJob, root: str, min_seconds: float, overwrite: bool) -> tuple[str, str, str]:
    """Prepare one clip; returns ``(clip_id, status, detail)`` with status ``"written"``, ``"done"`` or a skip
    reason. Never raises for a bad input."""
    out = Path(root)
    if not overwrite and _done(out, job):
        return job.clip_id, "done", ""
    try:
        _prepare(job, out, min_seconds)
    except _Skip as skip:
        return job.clip_id, skip.reason, skip.detail
    except Exception as err:  # a bug or an input nobody foresaw: counted and reported, the other clips go on
        return job.clip_id, DECODE, f"{type(err).__name__}: {err}"
    return job.clip_id, "written", ""


def _prepare(job: ClipJob, root: Path, min_seconds: float) -> None:
    import av
    import soundfile
    from PIL import Image

    source = Path(job.source)
    try:
        container = av.open(str(source))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise _Skip(CORRUPT, f"{source}: {err}") from None
    with container:
        wave = _decode_audio(container, source)
        duration = len(wave) / SAMPLE_RATE
        if duration < min_seconds:
            raise _Skip(TOO_SHORT, f"{source}: {duration:.2f} s of audio, the window is {min_seconds:g} s")
        if not np.any(wave):
            raise _Skip(SILENT, f"{source}: every audio sample is zero")
        if job.image is None:
            end = _video_length(container)
            if end is not None and end < duration:  # frames and windows where there are both picture and sound
                duration = end
                if duration < min_seconds:
                    raise _Skip(
                        TOO_SHORT, f"{source}: {duration:.2f} s of video with sound, the window is {min_seconds:g} s"
                    )
        times = [_resolve(t, duration) for _, t in job.frames]
        if job.image is None:
            pictures = _decode_frames(container, source, [t for t in times if t is not None])
        else:
            with Image.open(job.image) as im:
                pictures = [np.asarray(im.convert("RGB"))]
    # all decoded: write under temporary names, then rename (a killed run leaves no file that looks finished)
    staged: list[tuple[Path, Path]] = []
    try:
        for (rel, _), picture in zip(job.frames, pictures):
            final = root / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.part")
            image = Image.fromarray(picture)
            if job.frame_size is not None:
                image = image.resize((job.frame_size[1], job.frame_size[0]), Image.Resampling.BILINEAR)
            image.save(tmp, format="PNG" if final.suffix == ".png" else "JPEG", quality=95)
            staged.append((tmp, final))
        for rel, start, end in job.audio:
            final = root / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.part")
            a, b = _segment(start, end, duration)
            soundfile.write(tmp, wave[a:b], SAMPLE_RATE, subtype="PCM_16", format="WAV")
            staged.append((tmp, final))
        for tmp, final in staged:
            tmp.replace(final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _resolve(t: float | None, duration: float) -> float | None:
    """A frame time in seconds: negative values are fractions of the clip (-0.5: its middle)."""
    if t is None:
        return None
    return -t * duration if t < 0 else t


def _segment(start: float, end: float | None, duration: float) -> tuple[int, int | None]:
    """Sample range of an output sound file. ``start < 0``: a window of ``end`` seconds centred on the fraction
    ``-start`` of the clip, shifted to stay inside it; else ``[start, end)`` seconds."""
    if start < 0:
        assert end is not None
        length = min(end, duration)
        centre = -start * duration
        a = min(max(centre - length / 2, 0.0), duration - length)
        return round(a * SAMPLE_RATE), round((a + length) * SAMPLE_RATE)
    return round(start * SAMPLE_RATE), (None if end is None else round(end * SAMPLE_RATE))


def _decode_audio(container: Any, source: Path) -> np.ndarray:
    """The whole first audio stream as 16-kHz mono int16 (FFmpeg's resampler and down-mix)."""
    import av

    if not container.streams.audio:
        raise _Skip(NO_AUDIO, str(source))
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except (av.FFmpegError, ValueError) as err:
        raise _Skip(DECODE, f"{source}: audio: {err}") from None
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def _video_length(container: Any) -> float | None:
    """Seconds of the first video stream; None if its header does not say (Matroska)."""
    if not container.streams.video:
        return None
    stream = container.streams.video[0]
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _decode_frames(container: Any, source: Path, times: Sequence[float]) -> list[np.ndarray]:
    """Upright RGB frames shown at ``times`` seconds after the video stream's first timestamp (the last frame whose
    timestamp is at or before each time; the last frame of the video for times past its end), as VideoDataset reads
    them. Seeks to the keyframe before the first time, then decodes forward."""
    import av

    if not container.streams.video:
        raise _Skip(NO_VIDEO, str(source))
    stream = container.streams.video[0]
    origin = stream_start(stream)
    wanted = sorted(range(len(times)), key=lambda i: times[i])
    picked: list[Any] = [None] * len(times)
    first = times[wanted[0]]
    for attempt in ("seek", "start"):
        try:
            if attempt == "seek" and first > 1.0 and stream.time_base is not None:
                container.seek(int((max(first - 0.5, 0.0) + origin) / stream.time_base), stream=stream, backward=True)
            else:
                container.seek(0, stream=stream, backward=True)
            last, position = None, 0
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base) - origin if frame.pts is not None else math.inf
                if last is None and t > first and attempt == "seek":
                    break  # the seek landed after the first wanted time: decode from the start instead
                while position < len(wanted) and t > times[wanted[position]]:
                    picked[wanted[position]] = last if last is not None else frame
                    position += 1
                if position == len(wanted):
                    break
                last = frame
            else:
                for i in wanted[position:]:
                    picked[i] = last
            if all(p is not None for p in picked):
                break
        except (av.FFmpegError, ValueError) as err:
            raise _Skip(DECODE, f"{source}: video: {err}") from None
    if any(p is None for p in picked):
        raise _Skip(DECODE, f"{source}: no video frame could be decoded")
    return [upright_rgb(p) for p in picked]


# ------------------------------------------------------------------------------------------------------------ the run
def prepare(
    benchmark: Benchmark,
    videos: str | os.PathLike[str],
    out: str | os.PathLike[str],
    workers: int | None = None,
    split: str | None = None,
    frame_time: float = 5.0,
    seconds: float | None = None,
    min_seconds: float = 3.0,
    subset: Literal["s4", "ms3"] = "s4",
    meta_csv: str | os.PathLike[str] | None = None,
    frames_per_clip: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Prepare a folder of downloaded videos for avsl's readers (see the module docstring for each benchmark).

    Args:
        benchmark: ``"vggsound"``, ``"flickr"``, ``"avsbench"`` or ``"folder"``.
        videos: the folder of downloaded files (searched recursively).
        out: the dataset root to write.
        workers: parallel processes (default: every core).
        split: prepare only the ids of this shipped list (``avsl.data.splits.list_splits()``) or id file.
        frame_time: vggsound: the second of the frame (5.0: the middle of the 10-s clip).
        seconds: seconds of sound to keep (vggsound: 10; flickr: the whole track; folder: the window around each
            frame, 3 s).
        min_seconds: clips with less sound than this are skipped (the training window; 3 s in the references).
        subset, meta_csv: avsbench: ``"s4"`` or ``"ms3"``, and the benchmark's metadata csv (name, category, split).
        frames_per_clip: folder: frames per video.
        overwrite: redo clips that are already done.
        progress: show a progress bar.
    """
    start = time.perf_counter()
    videos, root = Path(videos), Path(out)
    if not videos.is_dir():
        raise FileNotFoundError(f"{videos}: no such folder of videos")
    if benchmark == "vggsound":
        jobs, bad = vggsound_jobs(videos, frame_time, 10.0 if seconds is None else seconds)
    elif benchmark == "flickr":
        jobs, bad = flickr_jobs(videos, seconds)
    elif benchmark == "avsbench":
        if meta_csv is None:
            raise ValueError("avsl prepare avsbench needs the benchmark's metadata csv (--meta)")
        jobs, bad = avsbench_jobs(videos, subset, Path(meta_csv))
        min_seconds = min(min_seconds, 1.0)  # AVSBench pairs 1-s segments
        meta_copy = root / f"{subset}_meta_data.csv"  # where AVSBenchDataset looks for it
        if not meta_copy.exists() or not meta_copy.samefile(meta_csv):
            root.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(meta_csv, meta_copy)
    elif benchmark == "folder":
        if frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be >= 1, got {frames_per_clip}")
        jobs, bad = folder_jobs(videos, frames_per_clip, 3.0 if seconds is None else seconds)
    else:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    if split is not None:
        wanted = set(splits.load_split(split) if split in splits.split_names() else splits.read_id_file(split))
        jobs = [j for j in jobs if j.clip_id in wanted]
    root.mkdir(parents=True, exist_ok=True)
    report = PrepareReport(benchmark, str(videos), str(root), clips=len(jobs) + len(bad))
    skipped: Counter[str] = Counter(reason for _, reason in bad)
    report.failures += [{"file": f, "reason": r, "detail": ""} for f, r in bad]
    for clip_id, status, detail in _run(jobs, str(root), min_seconds, overwrite, workers, progress):
        if status == "written":
            report.written += 1
        elif status == "done":
            report.already_done += 1
        else:
            skipped[status] += 1
            report.failures.append({"file": clip_id, "reason": status, "detail": detail})
    report.skipped = dict(skipped)
    report.coverage = _coverage(benchmark, root, jobs, subset)
    report.seconds = round(time.perf_counter() - start, 2)
    (root / "prepare_report.json").write_text(json.dumps(asdict(report), indent=1))
    return report


def _run(
    jobs: Sequence[ClipJob], root: str, min_seconds: float, overwrite: bool, workers: int | None, progress: bool
) -> Iterable[tuple[str, str, str]]:
    from tqdm import tqdm

    workers = max(1, workers or os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc="avsl prepare", unit="clip", disable=not progress)
    try:
        if workers == 1:
            for job in jobs:
                yield prepare_clip(job, root, min_seconds, overwrite)
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(prepare_clip, job, root, min_seconds, overwrite) for job in jobs]
            try:
                for future in as_completed(futures):
                    yield future.result()
                    bar.update()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    finally:
        bar.close()


def _coverage(benchmark: str, root: Path, jobs: Sequence[ClipJob], subset: str) -> dict[str, dict[str, int]]:
    """For each shipped list of the benchmark: listed ids, ids whose files are all on disk; missing ids to a file."""
    if benchmark == "avsbench":
        done = {j.clip_id for j in jobs if _done(root, j)}
        lists = SPLIT_LISTS["avsbench"] if subset == "s4" else ()
    else:
        frames = {p.stem for p in (root / "frames").glob("*.jpg")}
        audio = {p.stem for p in (root / "audio").glob("*.wav")}
        done = frames & audio
        lists = SPLIT_LISTS.get(benchmark, ())
    out: dict[str, dict[str, int]] = {}
    for name in lists:
        ids = splits.load_split(name)
        missing = [i for i in ids if i not in done]
        out[name] = {"listed": len(ids), "prepared": len(ids) - len(missing)}
        (root / "missing").mkdir(exist_ok=True)
        (root / "missing" / f"{name}.txt").write_text("".join(f"{i}\n" for i in missing))
    return out
