"""``avsl prepare`` against the equivalent ffmpeg command lines, on the same videos, side by side in one run.

Writes ``--clips`` VGGSound-like files (10 s, 640x360 at 25 fps, H.264 + AAC 44.1 kHz stereo, made with PyAV), then
times, pinned to one core (``taskset``): ``avsl prepare vggsound --workers 1`` (the whole run, and without its fixed
start-up, timed on an empty folder) (one frame at 5.0 s and a 16-kHz mono
WAV of the first 10 s per clip), and the two ffmpeg commands a script would run per clip for the same files:

    ffmpeg -ss 5 -i CLIP -frames:v 1 -q:v 2 FRAME.jpg
    ffmpeg -i CLIP -t 10 -vn -ac 1 -ar 16000 -c:a pcm_s16le AUDIO.wav

Usage::

    python benchmarks/bench_prepare.py --clips 40
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from avsl.testing import write_video


def make_clips(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    paths = []
    for i in range(count):
        frames = np.stack([np.roll(base, 8 * k + i, axis=1) for k in range(250)])
        sound = 0.2 * rng.standard_normal((2, 441000)).astype(np.float32)
        path = folder / f"clip{i:07d}_000000.mp4"  # an 11-character id, as VGGSound's
        write_video(path, frames, 25, sound, 44100)
        paths.append(path)
    return paths


def pinned(command: list[str]) -> list[str]:
    return ["taskset", "-c", "0", *command] if shutil.which("taskset") else command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=40)
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("this benchmark compares with the ffmpeg command line: install ffmpeg (apt install ffmpeg)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        videos = root / "videos"
        videos.mkdir()
        clips = make_clips(videos, args.clips)

        command = [sys.executable, "-m", "avsl.cli", "prepare", "vggsound", "--workers", "1", "--quiet"]
        (root / "empty").mkdir()
        start = time.perf_counter()  # the fixed cost of a run: Python, torch and avsl imports, the report
        subprocess.run(
            pinned([*command, "--videos", str(root / "empty"), "--out", str(root / "e")]), capture_output=True
        )
        startup = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(pinned([*command, "--videos", str(videos), "--out", str(root / "avsl")]), check=True)
        avsl_seconds = time.perf_counter() - start

        out = root / "ffmpeg"
        out.mkdir()
        quiet = ["ffmpeg", "-loglevel", "error", "-y"]
        start = time.perf_counter()
        for clip in clips:
            frame = [*quiet, "-ss", "5", "-i", str(clip), "-frames:v", "1", "-q:v", "2", str(out / f"{clip.stem}.jpg")]
            sound = [*quiet, "-i", str(clip), "-t", "10", "-vn", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le"]
            subprocess.run(pinned(frame), check=True)
            subprocess.run(pinned([*sound, str(out / f"{clip.stem}.wav")]), check=True)
        ffmpeg_seconds = time.perf_counter() - start

    version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"{args.clips} clips (10 s, 640x360 25 fps H.264 + AAC 44.1 kHz stereo), one core; {version}")
    print("| tool | clips/s per core | s per clip | vs ffmpeg |")
    print("|---|---|---|---|")
    rows = (
        ("avsl prepare (PyAV), the whole run", avsl_seconds),
        (f"avsl prepare, without the run's fixed {startup:.1f} s of start-up", avsl_seconds - startup),
        ("ffmpeg command lines (2 per clip)", ffmpeg_seconds),
    )
    for name, seconds in rows:
        print(f"| {name} | {args.clips / seconds:.2f} | {seconds / args.clips:.3f} | {ffmpeg_seconds / seconds:.2f}x |")
    print(f"(machine: {os.cpu_count()} cores, one used)")


if __name__ == "__main__":
    main()
