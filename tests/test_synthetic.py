from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avsl.cli import main
from avsl.data import JointRandomCropFlip, SynthAV, VGGSSDataset, write_synthav
from avsl.evaluate import evaluate
from avsl.metrics.functional import gt_map_from_boxes


def test_deterministic_in_seed_and_index() -> None:
    a, b = SynthAV(num_clips=5, seed=3), SynthAV(num_clips=50, seed=3, cache=False)
    for i in range(5):
        x, y = a[i], b[i]
        assert torch.equal(x["image"], y["image"])
        assert torch.equal(x["audio"], y["audio"])
        assert x["sample_id"] == y["sample_id"]
    other = SynthAV(num_clips=5, seed=4)
    assert not torch.equal(a[0]["image"], other[0]["image"])


def test_sample_contract_and_ground_truth() -> None:
    ds = SynthAV(num_clips=8, seed=0, image_size=64, duration=0.5, sample_rate=8000)
    s = ds[0]
    assert s["image"].shape == (3, 64, 64)
    assert s["image"].dtype == torch.float32
    assert float(s["image"].min()) >= 0.0
    assert float(s["image"].max()) <= 1.0
    assert s["audio"].shape == (4000,)
    assert torch.isfinite(s["audio"]).all()
    assert s["num_sources"] == 1
    clip = ds.clip(0)
    assert torch.equal(s["gt_map"], gt_map_from_boxes(clip.boxes, "vggss", 64).float())
    # The mask lies inside the box, and the box is tight around the mask.
    rows, cols = np.nonzero(clip.mask)
    x0, y0, x1, y1 = (round(v * 64) for v in clip.boxes[0])
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (x0, y0, x1, y1)
    # The sounding object is one of the visible ones and its distractors are other classes.
    assert set(clip.sounding_classes) <= set(clip.visible_classes)
    assert len(set(clip.visible_classes)) == 3


def test_distractors_are_as_salient_as_the_source() -> None:
    # Objects of every class are drawn at the same scale range with saturated colours: on average the sounding
    # object's area is no larger than a distractor's.
    ds = SynthAV(num_clips=200, seed=1, image_size=64)
    sounding = [ds.clip(i).mask.mean() for i in range(200)]
    # object_scale spans (0.3, 0.7) of the side: mean area fraction of a square of side U(0.3, 0.7) is ~0.26
    assert 0.1 < float(np.mean(sounding)) < 0.35


def test_audio_identifies_the_class() -> None:
    # Two clips whose sounding objects share a class have closer spectra than clips of different classes.
    ds = SynthAV(num_clips=40, seed=2, snr_db=(30.0, 30.0))
    spectra, classes = [], []
    for i in range(40):
        clip = ds.clip(i)
        power = np.abs(np.fft.rfft(clip.audio)) ** 2
        bands = np.array([band.sum() for band in np.array_split(power, 64)])  # 125-Hz bands
        spectra.append(bands / np.linalg.norm(bands))
        classes.append(clip.sounding_classes[0])
    sims = np.array(spectra) @ np.array(spectra).T
    same = [sims[i, j] for i in range(40) for j in range(i) if classes[i] == classes[j]]
    diff = [sims[i, j] for i in range(40) for j in range(i) if classes[i] != classes[j]]
    assert np.mean(same) > np.mean(diff) + 0.3


def test_negatives_and_mixtures() -> None:
    ds = SynthAV(num_clips=20, seed=0, negative_fraction=0.5)
    negatives = [i for i in range(20) if ds[i]["num_sources"] == 0]
    assert len(negatives) == 10
    for i in negatives:
        s, clip = ds[i], ds.clip(i)
        assert float(s["gt_map"].sum()) == 0.0
        assert float(s["mask"].sum()) == 0.0
        assert float(s["audio"].abs().max()) > 0  # quiet room tone, never digital silence
        assert not set(clip.heard_classes) & set(clip.visible_classes)
    kinds = {bool(ds.clip(i).heard_classes) for i in negatives}
    assert kinds == {True, False}  # both silent and off-screen negatives
    mix = SynthAV(num_clips=4, seed=0, num_sources=2, num_distractors=1)
    assert all(mix[i]["num_sources"] == 2 and len(mix.clip(i).boxes) == 2 for i in range(4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 2, "num_distractors": 2}, "num_distractors"),
        ({"object_scale": (0.8, 0.2)}, "object_scale"),
        ({"negative_fraction": 1.5}, "negative_fraction"),
        ({"num_classes": 40}, "num_classes"),
        ({"sample_rate": 3887}, "sample_rate 3887 Hz is too low .* needs sample_rate >= 3888 Hz"),
        ({"sample_rate": 343, "num_classes": 1, "num_distractors": 0}, "needs sample_rate >= 344 Hz"),
    ],
)
def test_bad_knobs_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SynthAV(**kwargs)  # type: ignore[arg-type]


def test_the_lowest_sample_rates_give_every_class_a_sound() -> None:
    """Below these rates a high class had no harmonic under 0.95 x Nyquist: its clips' audio was 0 / 0 = NaN."""
    for rate, classes in ((3888, 8), (344, 1)):
        data = SynthAV(num_clips=16, seed=0, sample_rate=rate, num_classes=classes, num_distractors=0, duration=0.5)
        assert all(bool(torch.isfinite(data[i]["audio"]).all()) for i in range(16)), rate


def test_augment_is_joint() -> None:
    torch.manual_seed(0)
    ds = SynthAV(num_clips=4, seed=0, image_size=64, augment=JointRandomCropFlip(scale=1.3, flip_p=1.0))
    s = ds[0]
    assert s["image"].shape == (3, 64, 64)
    assert s["gt_map"].shape == (64, 64)
    # After a joint crop and flip the mask still lies inside the ground-truth box.
    assert float((s["mask"] * (1 - s["gt_map"])).sum()) == 0.0


def test_write_synthav_loads_through_the_vggss_reader(tmp_path: Path) -> None:
    splits = {"train": SynthAV(num_clips=3, seed=0, image_size=64), "test": SynthAV(num_clips=4, seed=2, image_size=64)}
    root = write_synthav(tmp_path / "synth", splits, progress=False)
    entries = json.loads((root / "annotations.json").read_text())
    assert len(entries) == 7
    assert set(entries[0]) >= {"file", "class", "bbox"}
    ds = VGGSSDataset(
        root,
        split=root / "splits" / "test.txt",
        annotations=root / "annotations.json",
        masks_dir=root / "masks",
        image_size=64,
        duration=1.0,
    )
    assert len(ds) == 4
    disk, memory = ds[1], splits["test"][1]
    assert disk["sample_id"] == memory["sample_id"]
    assert torch.equal(disk["gt_map"], memory["gt_map"])
    assert torch.equal(disk["mask"], memory["mask"])
    assert float((disk["image"] - memory["image"]).abs().mean()) < 0.03  # JPEG quality 95 (the grain costs most)
    assert torch.allclose(disk["audio"], memory["audio"], atol=1e-3)  # PCM16
    # ... and the metrics evaluate it: the ground truth as a heatmap scores a perfect fixed-threshold cIoU.
    results = evaluate(lambda b: b["gt_map"], DataLoader(ds, batch_size=2), protocols=("sspl",))
    assert results["sspl/ciou"] == 1.0 and results["miou"] > 0.5


def test_avsl_synth_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["synth", "--out", str(tmp_path), "--train", "2", "--val", "0", "--test", "1", "--quiet"])
    assert code == 0
    assert "wrote 3 SynthAV clips" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == ["test.txt", "train.txt"]
    assert len(list((tmp_path / "frames").glob("*.jpg"))) == 3
    assert len(list((tmp_path / "audio").glob("*.wav"))) == 3
