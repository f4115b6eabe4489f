"""Bad input inside a reader: a clear error naming the file and the problem, or a counted skip; never a NaN."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from _data_fixtures import pattern, tone, write_pair, write_split, write_wav
from PIL import Image

from avsl.data.datasets import VGGSSDataset
from avsl.data.io import DataError, DataWarning


def _corrupt_jpeg(root: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(pattern(64, 64)).save(buf, format="JPEG")
    path = root / "frames" / "bad.jpg"
    path.write_bytes(buf.getvalue()[:300])
    return path


def _truncated_wav(root: Path) -> Path:
    path = root / "audio" / "bad.wav"
    path.write_bytes(path.read_bytes()[:1000])
    return path


def _empty_wav(root: Path) -> Path:
    path = root / "audio" / "bad.wav"
    path.write_bytes(b"")
    return path


def _silent_wav(root: Path) -> Path:
    return write_wav(root / "audio" / "bad.wav", data=np.zeros(8000, dtype=np.float32))


def _nan_wav(root: Path) -> Path:
    data = tone(0.5)
    data[::100] = np.nan
    return write_wav(root / "audio" / "bad.wav", data=data, subtype="FLOAT")


def _wrong_rate_wav(root: Path) -> Path:
    return write_wav(root / "audio" / "bad.wav", seconds=0.5, rate=22050)


BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    # name: (how to break sample "bad", expected message, expected kind)
    "corrupt jpeg": (_corrupt_jpeg, r"bad\.jpg: corrupt or unreadable image", "corrupt image"),
    "truncated wav": (_truncated_wav, r"bad\.wav: truncated WAV", "truncated audio"),
    "empty wav": (_empty_wav, r"bad\.wav: empty audio file \(0 bytes\)", "empty audio"),
    "silent wav": (_silent_wav, r"bad\.wav: digitally silent", "silent audio"),
    "nan wav": (_nan_wav, r"bad\.wav: 80 non-finite samples", "non-finite audio"),
    "wrong rate": (_wrong_rate_wav, r"bad\.wav: sample rate 22050 Hz, expected 16000 Hz", "sample rate"),
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for n, sample_id in enumerate(["a", "bad", "c"]):
        write_pair(tmp_path, sample_id, seed=n, seconds=0.5)
    return tmp_path


def _reader(root: Path, **options: object) -> VGGSSDataset:
    return VGGSSDataset(root, split=["a", "bad", "c"], image_size=32, duration=0.5, allow_resample=False, **options)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_names_file_or_is_skipped_and_counted(root: Path, case: str) -> None:
    breaker, message, kind = BAD_INPUTS[case]
    breaker(root)
    # Default: a clear error when the sample is loaded; the good samples still load.
    ds = _reader(root)
    assert len(ds) == 3
    assert torch.isfinite(ds[0]["audio"]).all()
    with pytest.raises(DataError, match=message) as info:
        ds[1]
    assert info.value.kind == kind
    # verify=True finds it at construction.
    with pytest.raises(DataError, match=r"1 of 3 samples failed to decode \(verify=True\), e.g. .*" + message):
        _reader(root, verify=True)
    # skip + verify: dropped up front and counted.
    checked = _reader(root, on_error="skip", verify=True)
    assert checked.sample_ids == ["a", "c"]
    assert checked.skipped.counts() == {kind: 1}
    assert f"2 samples, 1 skipped (1 {kind})" in checked.report()
    # skip without verify: replaced by the next sample when met, announced and counted.
    lazy = _reader(root, on_error="skip")
    with pytest.warns(DataWarning, match="skipped sample 'bad': .*" + message):
        substitute = lazy[1]
    assert substitute["sample_id"] == "c"
    assert lazy.skipped.counts() == {kind: 1}
    for s in (lazy[0], substitute):
        assert all(torch.isfinite(s[k]).all() for k in ("image", "audio"))


def test_missing_files_raise_or_are_counted(root: Path) -> None:
    (root / "audio" / "bad.wav").unlink()
    (root / "frames" / "c.jpg").unlink()
    with pytest.raises(DataError, match=r"2 of 3 samples .* bad: no audio .*bad\.wav; c: no frame .*c\.jpg"):
        _reader(root)
    ds = _reader(root, on_error="skip")
    assert ds.sample_ids == ["a"]
    assert ds.skipped.counts() == {"missing file": 2}
    assert {r.sample_id for r in ds.skipped} == {"bad", "c"}


def test_duplicate_ids_in_a_split_list(root: Path) -> None:
    write_split(root / "dups.txt", ["a", "bad", "a", "c", "a"])
    with pytest.raises(DataError, match=r"1 duplicate ids in split file .*dups\.txt, e.g. 'a' x3"):
        VGGSSDataset(root, split="dups.txt")
    ds = VGGSSDataset(root, split="dups.txt", on_error="skip")
    assert ds.sample_ids == ["a", "bad", "c"]
    assert ds.skipped.counts() == {"duplicate id": 2}
    assert "2 duplicate id" in ds.report()


def test_unknown_split_and_missing_root(root: Path) -> None:
    with pytest.raises(DataError, match=r"unknown split 'nonesuch'"):
        VGGSSDataset(root, split="nonesuch")
    with pytest.raises(DataError, match=r"missing\.txt: split file not found"):
        VGGSSDataset(root, split="missing.txt")
    with pytest.raises(DataError, match=r"nowhere: dataset root directory not found"):
        VGGSSDataset(root / "nowhere")


def test_annotation_problems(root: Path) -> None:
    (root / "boxes.json").write_text(
        '[{"file": "a", "bbox": [[0, 0, 1, 1]]}, {"file": "bad", "bbox": [[0, NaN, 1, 1]]}]'
    )
    problem = r"2 of 3 samples .*bad\): box \[0, nan, 1, 1\] contains NaN or infinity; c: no entry"
    with pytest.raises(DataError, match=problem):
        VGGSSDataset(root, split=["a", "bad", "c"], annotations="boxes.json")
    ds = VGGSSDataset(root, split=["a", "bad", "c"], annotations="boxes.json", on_error="skip", image_size=16)
    assert ds.sample_ids == ["a"]
    assert ds.skipped.counts() == {"bad annotation": 1, "no annotation": 1}
    assert ds[0]["gt_map"].sum() == 16 * 16
    (root / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match=r"broken\.json: annotation file is not valid JSON"):
        VGGSSDataset(root, split=["a"], annotations="broken.json")
    # values that were taken silently: a count as a string or negative (the default 1 was used), true and Infinity
    # as coordinates
    for entry, problem in (
        ('"bbox": [[0, 0, 1, 1]], "num_sources": "2"', "'num_sources' must be an integer >= 0, got '2'"),
        ('"bbox": [[0, 0, 1, 1]], "num_sources": -3', "'num_sources' must be an integer >= 0, got -3"),
        ('"bbox": [[0, 0, true, 1]]', r"a box must be 4 numbers \[x1, y1, x2, y2\], got \[0, 0, True, 1\]"),
        ('"bbox": [[0, 0, Infinity, 1]]', r"box \[0, 0, inf, 1\] contains NaN or infinity"),
    ):
        (root / "odd.json").write_text(f'[{{"file": "a", {entry}}}]')
        with pytest.raises(DataError, match=rf"odd\.json: entry 0 \(a\): {problem}"):
            VGGSSDataset(root, split=["a"], annotations="odd.json")


def test_every_sample_bad_in_skip_mode_is_an_error(root: Path) -> None:
    for name in ("a", "bad", "c"):
        write_wav(root / "audio" / f"{name}.wav", data=np.zeros(800, dtype=np.float32))
    ds = _reader(root, on_error="skip")
    with pytest.warns(DataWarning), pytest.raises(DataError, match="no sample of this dataset can be loaded"):
        ds[0]
    assert ds.skipped.counts() == {"silent audio": 3}
    # Silence is legitimate when asked for (SLAVC-style silent negatives).
    allowed = _reader(root, allow_silence=True)
    assert not allowed[0]["audio"].any()
