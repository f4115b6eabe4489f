"""Fuzzing the readers: corrupted JPEGs, PNGs, WAVs, FLACs, MP4s, box JSONs and split lists, through the reader
that takes them and on into the metrics. Every input either loads (finite values in range, finite metrics) or raises
avsl's ``DataError`` naming the file: no other exception, no hang, no NaN.

The default suite tries ``FUZZ_EXAMPLES`` corruptions per format; ``-m slow`` runs ``SLOW_EXAMPLES`` per format.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import signal
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avsl.data.datasets import FolderDataset, VideoDataset
from avsl.data.io import DataError, DataWarning
from avsl.metrics import CIoU, Pointing
from tests._data_fixtures import tone, write_image, write_pair, write_video, write_wav

FUZZ_EXAMPLES = 100
SLOW_EXAMPLES = 1500
TIMEOUT_S = 20  # one example: a decoder that loops on a corrupt file fails the test instead of hanging it

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


# ------------------------------------------------------------------------------------------------ corruptions
KINDS = ("truncate", "flip", "splice", "header", "empty", "garbage", "zeros")


def corrupt(data: bytes, kind: str, seed: int) -> bytes:
    """``data`` damaged the ways downloads and disks damage files: cut, bytes flipped, junk spliced in, a header
    alone, nothing at all, zeros or garbage (the damage drawn from ``seed``)."""
    rng = random.Random(seed)
    if kind == "truncate":
        return data[: rng.randrange(max(1, len(data)))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 32)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if kind == "splice":
        at = rng.randint(0, len(data))
        return data[:at] + rng.randbytes(rng.randint(1, 256)) + data[at:]
    if kind == "header":
        return data[: rng.randint(1, min(64, len(data)))]
    if kind == "empty":
        return b""
    if kind == "zeros":
        return b"\0" * rng.randint(1, len(data))
    return rng.randbytes(rng.randint(1, 2048))


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def fail(signum: int, frame: Any) -> None:
        raise TimeoutError(f"an example took more than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------------------ the trees
IDS = ["a", "b", "c"]
BOXES = [{"file": i, "bbox": [[0.1, 0.2, 0.6, 0.9]]} for i in IDS]


def _tree(root: Path) -> Path:
    """Three valid clips in the folder layout, a box JSON and a split list."""
    for n, sid in enumerate(IDS):
        write_pair(root, sid, seed=n, seconds=0.5)
    (root / "boxes.json").write_text(json.dumps(BOXES))
    (root / "split.txt").write_text("\n".join(IDS) + "\n")
    return root


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = _tree(tmp_path_factory.mktemp("pristine"))
    extra = tmp_path_factory.mktemp("extra")
    png = write_image(extra / "a.png", 32, 24, seed=5)
    flac = write_wav(extra / "a.flac", seconds=0.5, data=tone(0.5, 16000, 300.0, 2))
    video = write_video(extra / "clip.mp4", seconds=1.0)
    return {
        "root": root,
        "jpeg": (root / "frames" / "a.jpg").read_bytes(),
        "png": png.read_bytes(),
        "wav": (root / "audio" / "a.wav").read_bytes(),
        "flac": flac.read_bytes(),
        "mp4": video.read_bytes(),
        "json": (root / "boxes.json").read_bytes(),
        "split": (root / "split.txt").read_bytes(),
    }


def _check_loaded(dataset: FolderDataset) -> None:
    """A set that loaded: every sample in range and finite, and the metrics of its maps finite."""
    ciou, pointing = CIoU(protocol="sspl"), Pointing()
    for i in range(len(dataset)):
        sample = dataset[i]
        for key in ("image", "audio", "gt_map"):
            assert torch.isfinite(sample[key]).all(), key  # type: ignore[literal-required]
        assert float(sample["image"].min()) >= 0.0 and float(sample["image"].max()) <= 1.0
        heat = torch.rand(1, *sample["gt_map"].shape)
        ciou.update(heat, sample["gt_map"][None], [sample["sample_id"]])
        pointing.update(heat, sample["gt_map"][None], [sample["sample_id"]])
    if len(dataset):
        assert all(math.isfinite(float(v)) for k, v in ciou.compute().items() if k != "num_nan")


def _run_folder(pristine: dict[str, Any], target: str, payload: bytes) -> None:
    """Copy the pristine tree, replace one of its files by ``payload`` and read the whole set."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tree"
        shutil.copytree(pristine["root"], root)
        path = root / target
        if target.endswith(".png") or target.endswith(".flac"):  # another format for clip "a"
            (root / ("frames/a.jpg" if target.endswith(".png") else "audio/a.wav")).unlink()
        path.write_bytes(payload)
        _expect_data_error_or_valid(
            path, lambda: FolderDataset(root, split="split.txt", annotations="boxes.json", image_size=32, duration=0.5)
        )


def _expect_data_error_or_valid(path: Path, build: Callable[[], Any]) -> None:
    with time_limit(TIMEOUT_S), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        try:
            dataset = build()
            if isinstance(dataset, FolderDataset):
                _check_loaded(dataset)
            else:
                for i in range(len(dataset)):
                    sample = dataset[i]
                    assert torch.isfinite(sample["image"]).all() and torch.isfinite(sample["audio"]).all()
        except DataError as err:
            if path.name not in str(err):
                pytest.fail(f"the error does not name {path}: {err}")


# ------------------------------------------------------------------------------------------------ the tests
TARGETS = {
    "jpeg": "frames/a.jpg",
    "png": "frames/a.png",
    "wav": "audio/a.wav",
    "flac": "audio/a.flac",
    "json": "boxes.json",
    "split": "split.txt",
}


def _fuzz(fmt: str, examples: int, pristine: dict[str, Any]) -> Callable[..., None]:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same examples on every run: the suite stays deterministic
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1))
    def run(kind: str, seed: int) -> None:
        payload = corrupt(pristine[fmt], kind, seed)
        if fmt == "mp4":
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "clip.mp4"
                path.write_bytes(payload)
                _expect_data_error_or_valid(
                    path, lambda: VideoDataset(path, stride=0.5, image_size=32, sample_rate=16000, duration=0.5)
                )
        else:
            _run_folder(pristine, TARGETS[fmt], payload)

    return run


FORMATS = [*TARGETS, "mp4"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupted_inputs_load_or_raise_data_error(fmt: str, pristine: dict[str, Any]) -> None:
    _fuzz(fmt, FUZZ_EXAMPLES, pristine)()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupted_inputs_load_or_raise_data_error_long(fmt: str, pristine: dict[str, Any]) -> None:
    _fuzz(fmt, SLOW_EXAMPLES, pristine)()
