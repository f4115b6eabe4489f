"""AVSBench S4/MS3, Chaotic World and single-video readers on trees in their real layouts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _data_fixtures import RATE, write_image, write_mask, write_split, write_video, write_wav

from avsl.data import splits
from avsl.data.datasets import AVSBenchDataset, ChaoticWorldDataset, VideoDataset
from avsl.data.datasets.chaotic import chaotic_gt_map
from avsl.data.io import DataError, DataWarning
from avsl.data.prepare import prepare


def _steps_audio(seconds: int = 5) -> np.ndarray:
    """Second k (1-based) holds the constant k / 10, so a window says which second it came from."""
    return np.concatenate([np.full(RATE, k / 10, dtype=np.float32) for k in range(1, seconds + 1)])


def _square_mask(k: int) -> np.ndarray:
    m = np.zeros((24, 24), dtype=np.uint8)
    m[: 4 * k, : 4 * k] = 1
    return m


@pytest.fixture
def s4_root(tmp_path: Path) -> Path:
    """AVSBench ``Single-source/``: two test videos (5 masks) and one train video (first mask only)."""
    root = tmp_path / "Single-source"
    data = root / "s4_data"
    rows = [("vidA", "dog_barking", "test"), ("vidB", "helicopter", "test"), ("vidT", "dog_barking", "train")]
    (root).mkdir(parents=True)
    (root / "s4_meta_data.csv").write_text(
        "name,start_time,category,split\n" + "".join(f"{n},0,{c},{s}\n" for n, c, s in rows)
    )
    for n, (name, cat, split) in enumerate(rows):
        for k in range(1, 6):
            write_image(data / "visual_frames" / split / cat / name / f"{name}_{k}.png", 24, 24, seed=10 * n + k)
            if split == "test" or k == 1:
                write_mask(data / "gt_masks" / split / cat / name / f"{name}_{k}.png", _square_mask(k), mode="1")
        write_wav(data / "audio_wav" / split / cat / f"{name}.wav", data=_steps_audio(), subtype="FLOAT")
    (data / "audio_log_mel").mkdir()  # published alongside; never read
    return root


def test_s4_test_frames_masks_and_audio_segments(s4_root: Path) -> None:
    ds = AVSBenchDataset(s4_root, "s4", "test", image_size=24)
    assert ds.sample_ids == [f"{v}_{k}" for v in ("vidA", "vidB") for k in range(1, 6)]
    for i, s in enumerate(ds[j] for j in range(len(ds))):
        k = i % 5 + 1
        assert torch.equal(s["mask"], torch.from_numpy(_square_mask(k)).float())
        assert torch.equal(s["gt_map"], s["mask"])
        assert s["num_sources"] == 1
        # duration=1.0 (default): exactly the frame's second [k - 1, k).
        assert s["audio"].shape == (RATE,)
        assert torch.allclose(s["audio"], torch.full((RATE,), k / 10))
    # A 3-s window is centred on the frame's second and shifted to stay inside the 5-s clip.
    wide = AVSBenchDataset(s4_root, "s4", "test", image_size=24, duration=3.0)
    first, third = wide[0]["audio"], wide[2]["audio"]
    assert torch.allclose(first[:RATE], torch.full((RATE,), 0.1))
    assert torch.allclose(first[-RATE:], torch.full((RATE,), 0.3))
    assert torch.allclose(third[:RATE], torch.full((RATE,), 0.2))
    assert torch.allclose(third[-RATE:], torch.full((RATE,), 0.4))


def test_s4_train_has_one_labeled_frame_per_video(s4_root: Path) -> None:
    labeled = AVSBenchDataset(s4_root, "s4", "train", image_size=24)
    assert labeled.sample_ids == ["vidT_1"]
    unlabeled = AVSBenchDataset(s4_root, "s4", "train", with_masks=False, image_size=24)
    assert unlabeled.sample_ids == [f"vidT_{k}" for k in range(1, 6)]
    assert set(unlabeled[3]) == {"image", "audio", "sample_id"}


def test_s4_missing_files_and_log_mel_only_layout(s4_root: Path) -> None:
    data = s4_root / "s4_data"
    (data / "visual_frames" / "test" / "helicopter" / "vidB" / "vidB_3.png").unlink()
    with pytest.raises(DataError, match=r"1 samples of s4 test cannot be used: vidB_3: no frame .*vidB_3\.png"):
        AVSBenchDataset(s4_root, "s4", "test")
    ds = AVSBenchDataset(s4_root, "s4", "test", on_error="skip")
    assert len(ds) == 9
    assert ds.skipped.counts() == {"missing file": 1}
    (data / "audio_wav").rename(data / "moved")
    with pytest.raises(DataError, match=r"only audio_log_mel/ .* avsl methods take waveforms"):
        AVSBenchDataset(s4_root, "s4", "test")


def test_s4_with_the_shipped_test_video_list(s4_root: Path) -> None:
    # The derived list has name,category,split columns (another order than s4_meta_data.csv).
    meta = splits.split_path("avsbench_s4_test")
    ds = AVSBenchDataset(s4_root, "s4", "test", meta_csv=meta, on_error="skip")
    assert len(ds) == 0
    assert ds.skipped.counts() == {"missing file": 740 * 5}


def test_the_metadata_csv_read_by_the_reader_and_prepare(tmp_path: Path) -> None:
    """One reader of AVSBench's csv for both: a byte-order mark, no header, a padded split are fine; a short row, a
    name that would leave the output folder and a repeated name are errors with the line."""
    from avsl.data.datasets.avsbench import read_meta

    meta = tmp_path / "meta.csv"
    meta.write_text("\ufeffvidA,0,dog_barking,test\n\nvidB,0,helicopter, Test \n", encoding="utf-8")
    assert read_meta(meta, "s4") == [("vidA", "dog_barking", "test"), ("vidB", "helicopter", "test")]
    meta.write_text("name,split\nm1,train\nm2,val\n")
    assert read_meta(meta, "ms3") == [("m1", "", "train"), ("m2", "", "val")]
    for body, problem in (
        ("vidA,0,dog\nvidB,0,dog,test\n", "line 1 has 3 columns, expected at least 4"),
        ("vidA,0,../../escaped,test\n", "line 1: category '../../escaped' is not a plain name"),
        ("vidA,0,dog,test\nvidA,0,cat,train\n", "line 2: 'vidA' repeats line 1"),
    ):
        meta.write_text(body)
        with pytest.raises(DataError, match=re.escape(problem)):
            read_meta(meta, "s4")
        with pytest.raises(DataError, match=re.escape(problem)):
            prepare("avsbench", tmp_path, tmp_path / "out", subset="s4", meta_csv=meta, progress=False)


def test_frames_after_the_end_of_a_truncated_sound_are_not_given_its_last_second(s4_root: Path) -> None:
    """A 2-s audio_wav of a 5-s clip gave frames 3-5 the last second's window, silently."""
    wav = s4_root / "s4_data" / "audio_wav" / "test" / "dog_barking" / "vidA.wav"
    write_wav(wav, data=_steps_audio(2), subtype="FLOAT")
    with pytest.raises(DataError, match=r"vidA\.wav: the sound ends at 2\.00 s, before the window's centre at 2\.50 s"):
        AVSBenchDataset(s4_root, "s4", "test")[2]
    data = AVSBenchDataset(s4_root, "s4", "test", on_error="skip")
    assert torch.allclose(data[1]["audio"], torch.full((RATE,), 0.2))  # 1.5 s: inside the sound, as before
    with pytest.warns(DataWarning, match="skipped sample 'vidA_[345]'"):
        assert data[2]["sample_id"] == "vidB_1"  # vidA_3 to vidA_5 are skipped and counted
    assert data.skipped.counts() == {"truncated audio": 3}


def test_a_split_the_csv_lacks_is_an_error(s4_root: Path) -> None:
    with pytest.raises(DataError, match=r"no video of split 'val'; its splits: \['test', 'train'\]"):
        AVSBenchDataset(s4_root, "s4", "val")


def test_ms3_palette_masks_and_an_empty_frame(tmp_path: Path) -> None:
    root = tmp_path / "Multi-sources"
    data = root / "ms3_data"
    root.mkdir()
    (root / "ms3_meta_data.csv").write_text("video_id,split\nvm_1,test\nvm_2,train\n")
    for k in range(1, 6):
        write_image(data / "visual_frames" / "vm_1" / f"vm_1.mp4_{k}.png", 24, 24, seed=k)
        mask = _square_mask(k) if k != 4 else np.zeros((24, 24), dtype=np.uint8)
        write_mask(data / "gt_masks" / "test" / "vm_1" / f"vm_1_{k}.png", mask, mode="P")
    write_wav(data / "audio_wav" / "test" / "vm_1.wav", seconds=5.0)
    ds = AVSBenchDataset(root, "ms3", "test", image_size=24)
    assert ds.sample_ids == [f"vm_1_{k}" for k in range(1, 6)]
    assert torch.equal(ds[1]["mask"], torch.from_numpy(_square_mask(2)).float())
    assert ds[3]["num_sources"] == 0
    assert ds[3]["gt_map"].sum() == 0


# -------------------------------------------------------------------------------------------- Chaotic World


@pytest.fixture
def chaotic_root(tmp_path: Path) -> Path:
    """The ``ssl/`` folder SemiPL's ``generating_ssl_dataset.py`` writes, for three test samples."""
    root = tmp_path / "ssl"
    ids = ["ADCCAWWD_004157", "ADCCAWWD_004300", "XLCJZXCK_002655"]
    for n, i in enumerate(ids):
        write_image(root / "ssl_test_frames_320x180" / f"{i}.png", 320, 180, seed=n)
        write_wav(root / "ssl_test_wavs" / f"{i}.wav", seconds=3.0, rate=44100, channels=2)
    write_split(root / "test_list.csv", ids)
    annotations = [
        {"file": ids[0], "class": "scream", "bbox": [32, 18, 160, 90]},
        {"file": ids[1], "class": "run", "bbox": [[0, 0, 320, 180], [10, 10, 20, 20]]},  # first box only
        {"file": ids[2], "class": "none", "bbox": []},
    ]
    (root / "ChaoticWorld_test.json").write_text(json.dumps(annotations))
    return root


def test_chaotic_world_gt_scaling_and_window(chaotic_root: Path) -> None:
    ds = ChaoticWorldDataset(chaotic_root, "test", annotations="ChaoticWorld_test.json")
    assert len(ds) == 3
    first = ds[0]
    # x: int(32 / 320 * 224) = 22 .. int(160 / 320 * 224) = 112
    # y: int(18 / 180 * 224) = 22 .. int(90 / 180 * 224) = 112
    assert first["gt_map"].sum() == 90 * 90
    assert first["gt_map"][22:112, 22:112].min() == 1
    assert first["image"].shape == (3, 224, 224)
    assert first["audio"].shape == (48_000,)
    assert ds[1]["gt_map"].sum() == 224 * 224  # only the first box of the row
    assert ds[2]["num_sources"] == 0
    assert ds[2]["gt_map"].sum() == 0
    assert torch.equal(chaotic_gt_map([32, 18, 160, 90], 224), first["gt_map"])
    unlabeled = ChaoticWorldDataset(chaotic_root, "test")
    assert "gt_map" not in unlabeled[0]
    with pytest.raises(DataError, match=r"sample rate 44100 Hz"):
        ChaoticWorldDataset(chaotic_root, "test", allow_resample=False)[0]


def test_chaotic_gt_follows_the_reference_arithmetic() -> None:
    # The reference: int(v / 320 * 224) for x and int(v / 180 * 224) for y, end exclusive.
    for box in ([1, 1, 319, 179], [33, 7, 97, 151], [160.5, 90.5, 161.9, 91.9]):
        m = chaotic_gt_map(box, 224)
        rows, cols = m.nonzero(as_tuple=True)
        x0, x1 = int(box[0] / 320 * 224), int(box[2] / 320 * 224)
        y0, y1 = int(box[1] / 180 * 224), int(box[3] / 180 * 224)
        assert (int(cols.min()), int(cols.max()) + 1, int(rows.min()), int(rows.max()) + 1) == (x0, x1, y0, y1)
        assert m.sum() == (x1 - x0) * (y1 - y0)
    assert chaotic_gt_map([-30, -30, 400, 400], 64).sum() == 64 * 64  # clipped, not wrapped
    assert chaotic_gt_map([100, 50, 100, 120], 64).sum() == 0  # zero width


# ------------------------------------------------------------------------------------------------- video


def test_video_frames_and_audio_at_stride(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", seconds=2.0, fps=10)
    ds = VideoDataset(path, stride=0.5, image_size=32)
    assert ds.sample_ids == ["clip@0.250", "clip@0.750", "clip@1.250", "clip@1.750"]
    for i, t in enumerate((0.25, 0.75, 1.25, 1.75)):
        s = ds[i]
        level = 20 + 10 * int(t * 10)  # the frame shown at t
        assert abs(s["image"].mean().item() * 255 - level) < 6, (t, s["image"].mean().item() * 255)
        assert s["audio"].shape == (48_000,)
        assert torch.isfinite(s["audio"]).all()
        assert s["audio"].abs().max() > 0.1
    assert len(VideoDataset(path, stride=1.0, start=0.5)) == 1


@pytest.mark.parametrize(("suffix", "start"), [(".mkv", 10.0), (".ts", 1.4)])
def test_video_whose_timestamps_start_late(suffix: str, start: float, tmp_path: Path) -> None:
    """A remux (Matroska at 10 s: its header's duration counts from 0, and no stream duration) and MPEG-TS (1.4 s,
    FFmpeg's default: the seek lands after the frame) gave frozen last frames, or no frame at all."""
    from avsl.testing import write_video as encode

    levels = np.repeat(np.arange(20, 220, 10, dtype=np.uint8), 1)  # 20 frames at 10 fps: 2 s
    pictures = np.broadcast_to(levels[:, None, None, None], (20, 32, 32, 3))
    path = tmp_path / f"late{suffix}"
    encode(path, pictures, 10, 0.3 * np.ones((1, 2 * RATE), np.float32), RATE, start=start)
    ds = VideoDataset(path, stride=0.5, image_size=32, duration=0.5)
    assert ds.video_duration == pytest.approx(2.0, abs=0.05) and len(ds) == 4
    for i, t in enumerate((0.25, 0.75, 1.25, 1.75)):
        assert abs(ds[i]["image"].mean().item() * 255 - (20 + 10 * int(t * 10))) < 6, t


def test_video_pcm_in_matroska_and_no_audio(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mkv", seconds=1.0, video_codec="libx264", audio_codec="pcm_s16le")
    ds = VideoDataset(path, stride=1.0, image_size=16, duration=0.5)
    assert len(ds) == 1
    assert ds[0]["audio"].shape == (8_000,)
    mute = write_video(tmp_path / "mute.mp4", seconds=1.0, audio=False)
    with pytest.raises(DataError, match=r"mute\.mp4: the file has no audio stream"):
        VideoDataset(mute)
    with pytest.raises(DataError, match=r"absent\.mp4: video file not found"):
        VideoDataset(tmp_path / "absent.mp4")
