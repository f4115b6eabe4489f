"""VGG-SS, Flickr-SoundNet and folder readers on small trees in the real layouts, with the real annotations."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from _data_fixtures import (
    write_box_json,
    write_flickr_xml,
    write_image,
    write_mask,
    write_pair,
    write_split,
    write_wav,
)
from torch.utils.data import DataLoader

from avsl.data import splits
from avsl.data.datasets import FlickrSoundNetDataset, FolderDataset, VGGSSDataset
from avsl.data.io import DataError, load_audio
from avsl.data.splits import SplitOverlapWarning
from avsl.data.transforms import JointRandomCropFlip
from avsl.metrics.functional import gt_map_from_boxes

# Three real VGG-SS test ids: one box; a garbage box (-2.88e16) beside a valid one; several boxes.
VGGSS_ONE = "zpWuikVorYg_000032"
VGGSS_GARBAGE = "Db6Hjt0x28k_000056"


def _multi_box_id() -> str:
    return next(k for k, v in splits.load_annotations("vggss").items() if len(v) >= 3)


@pytest.fixture
def vggss_root(tmp_path: Path) -> Path:
    """A VGG-SS tree for three real test ids: non-square frames, 4-s clips (one stereo at 44.1 kHz), a CRLF csv."""
    root = tmp_path / "vggss"
    ids = [VGGSS_ONE, VGGSS_GARBAGE, _multi_box_id()]
    for n, sample_id in enumerate(ids):
        write_image(root / "frames" / f"{sample_id}.jpg", 64, 36, seed=n)
        write_wav(root / "audio" / f"{sample_id}.wav", seconds=4.0, freq=300.0 + 100 * n)
    write_wav(root / "audio" / f"{ids[2]}.wav", seconds=4.0, rate=44100, channels=2)
    write_split(root / "test_subset.csv", ids, crlf=True)
    return root


def test_vggss_real_boxes_give_the_union_gt(vggss_root: Path) -> None:
    ds = VGGSSDataset(vggss_root, split="test_subset.csv", annotations="vggss")
    assert len(ds) == 3
    assert ds.skipped.summary() == "nothing skipped"
    real = splits.load_annotations("vggss")
    for i in range(3):
        s = ds[i]
        assert s["image"].shape == (3, 224, 224)
        assert s["audio"].shape == (48_000,)
        assert s["gt_map"].dtype == torch.float32
        assert s["num_sources"] == 1
        assert torch.equal(s["gt_map"], gt_map_from_boxes(real[s["sample_id"]], "vggss", 224).float())
    one = ds[0]["gt_map"]
    # [0.403125, 0.253125, 0.6, 0.75] -> columns int(224 v): 90..134, rows 56..168 (end exclusive).
    assert one[56:168, 90:134].min() == 1
    assert one.sum() == 44 * 112
    garbage = ds[1]["gt_map"]
    # The garbage box clips to an empty rectangle; only the valid box [0.05, 0.35625, 0.753125, 0.98125] remains.
    assert garbage.sum() == (168 - 11) * (219 - 79)
    assert garbage[79:219, 11:168].min() == 1


def test_vggss_audio_window_is_centred_and_resampled(vggss_root: Path) -> None:
    ds = VGGSSDataset(vggss_root, split="test_subset.csv")
    full = load_audio(vggss_root / "audio" / f"{VGGSS_ONE}.wav", 16_000)
    assert torch.equal(ds[0]["audio"], full[8_000:56_000])  # 3 s centred in 4 s
    stereo = ds[2]["audio"]  # 44.1 kHz stereo, resampled and downmixed
    assert stereo.shape == (48_000,)
    assert torch.isfinite(stereo).all()
    # Without annotations the set is unlabeled: no gt_map, no num_sources.
    assert set(ds[0]) == {"image", "audio", "sample_id"}
    with pytest.raises(DataError, match=r"sample rate 44100 Hz, expected 16000 Hz"):
        VGGSSDataset(vggss_root, split="test_subset.csv", allow_resample=False)[2]


def test_vggss_named_test_list_with_missing_files(vggss_root: Path) -> None:
    with pytest.raises(
        DataError, match=r"5155 of 5158 samples of split 'vggss_test' cannot be used: .*no frame .*\.jpg"
    ):
        VGGSSDataset(vggss_root, split="vggss_test", annotations="vggss")
    ds = VGGSSDataset(vggss_root, split="vggss_test", annotations="vggss", on_error="skip")
    assert len(ds) == 3
    assert ds.skipped.counts() == {"missing file": 5155}
    assert "3 samples, 5155 skipped (5155 missing file)" in ds.report()


def test_vggss_collates_and_augments_jointly(vggss_root: Path) -> None:
    plain = VGGSSDataset(vggss_root, split="test_subset.csv", annotations="vggss", image_size=64)
    flipped = VGGSSDataset(
        vggss_root, split="test_subset.csv", annotations="vggss", image_size=64, augment=JointRandomCropFlip(1.0, 1.0)
    )
    a, b = plain[0], flipped[0]
    assert torch.equal(b["gt_map"], a["gt_map"].flip(-1))
    assert torch.equal(b["image"], a["image"].flip(-1))
    batch = next(iter(DataLoader(plain, batch_size=3)))
    assert batch["image"].shape == (3, 3, 64, 64)
    assert batch["gt_map"].shape == (3, 64, 64)
    assert batch["num_sources"].tolist() == [1, 1, 1]
    assert len(batch["sample_id"]) == 3
    # Readers pickle (DataLoader workers with the spawn start method).
    assert pickle.loads(pickle.dumps(plain))[1]["sample_id"] == VGGSS_GARBAGE


def test_boxes_outside_the_image_and_zero_area(tmp_path: Path) -> None:
    ids = ["partly_out", "fully_out", "zero_area", "empty"]
    for n, i in enumerate(ids):
        write_pair(tmp_path, i, seed=n)
    write_box_json(
        tmp_path / "boxes.json",
        {
            "partly_out": [[-0.5, -0.25, 0.5, 0.5]],
            "fully_out": [[1.2, 1.2, 1.5, 1.5], [-0.5, -0.5, -0.1, -0.1]],
            "zero_area": [[0.3, 0.3, 0.3, 0.6], [0.2, 0.5, 0.4, 0.5]],
            "empty": [],
        },
    )
    ds = VGGSSDataset(tmp_path, split=ids, annotations="boxes.json", image_size=100)
    maps = {ds[i]["sample_id"]: ds[i] for i in range(len(ds))}
    assert maps["partly_out"]["gt_map"].sum() == 50 * 50
    assert maps["partly_out"]["gt_map"][:50, :50].min() == 1
    for i in ("fully_out", "zero_area", "empty"):
        assert maps[i]["gt_map"].sum() == 0
        assert torch.isfinite(maps[i]["gt_map"]).all()
    assert [maps[i]["num_sources"] for i in ids] == [1, 1, 1, 0]  # boxes were annotated, even if degenerate


def test_synthav_folder_loads_unchanged(tmp_path: Path) -> None:
    from avsl.data.synthetic import SynthAV, write_synthav

    train = SynthAV(6, seed=0, image_size=64, duration=0.5, negative_fraction=0.34)
    root = write_synthav(
        tmp_path / "synth", {"train": train, "test": SynthAV(2, seed=1, image_size=64)}, progress=False
    )
    ds = VGGSSDataset(
        root, split="train", annotations="annotations.json", masks_dir="masks", image_size=64, duration=0.5
    )
    assert ds.sample_ids == [train.sample_id(i) for i in range(6)]
    negatives = 0
    for i in range(6):
        got, ref = ds[i], train[i]
        assert torch.equal(got["gt_map"], ref["gt_map"])
        assert torch.equal(got["mask"], ref["mask"])
        assert got["num_sources"] == ref["num_sources"]
        negatives += got["num_sources"] == 0
        assert (got["image"] - ref["image"]).abs().mean() < 0.06  # JPEG of a grainy texture
        assert torch.allclose(got["audio"], ref["audio"], atol=1e-4)  # PCM16
    assert negatives >= 1
    assert len(VGGSSDataset(root, split="test", annotations="annotations.json", image_size=64)) == 2


def test_negative_pairs_get_an_empty_gt(vggss_root: Path) -> None:
    ds = VGGSSDataset(vggss_root, split="test_subset.csv", annotations="vggss", negatives=[(VGGSS_ONE, VGGSS_GARBAGE)])
    assert len(ds) == 4
    neg = ds[3]
    assert neg["sample_id"] == f"{VGGSS_ONE}+{VGGSS_GARBAGE}"
    assert neg["num_sources"] == 0
    assert neg["gt_map"].sum() == 0
    assert torch.equal(neg["image"], ds[0]["image"])
    assert torch.equal(neg["audio"], VGGSSDataset(vggss_root, split=[VGGSS_GARBAGE])[0]["audio"])
    with pytest.raises(ValueError, match="negatives need annotations"):
        VGGSSDataset(vggss_root, split="test_subset.csv", negatives=[(VGGSS_ONE, VGGSS_GARBAGE)])


def test_training_split_overlapping_the_test_list_warns_or_drops(tmp_path: Path) -> None:
    leaked = sorted(splits.check_overlap(splits.load_split("vggss_10k"), "vggss_test"))[:2]
    clean = next(i for i in splits.load_split("vggss_10k") if i not in set(splits.load_split("vggss_test")))
    for n, i in enumerate([*leaked, clean]):
        write_pair(tmp_path, i, seed=n)
    with pytest.warns(SplitOverlapWarning, match=r"shares ids with a test list: 2 with test list 'vggss_test'"):
        warned = VGGSSDataset(tmp_path, split=[*leaked, clean])
    assert len(warned) == 3
    dropped = VGGSSDataset(tmp_path, split=[*leaked, clean], drop_test_overlap=True)
    assert dropped.sample_ids == [clean]
    assert dropped.skipped.counts() == {"excluded": 2}
    excluded = VGGSSDataset(tmp_path, split=[*leaked, clean], exclude="vggss_test")
    assert excluded.sample_ids == [clean]
    # The named 10k list: the warning carries the list's full overlap count.
    with pytest.warns(SplitOverlapWarning, match=r"split 'vggss_10k' shares ids .*238 with test list 'vggss_test'"):
        VGGSSDataset(tmp_path, split="vggss_10k", on_error="skip")


# ---------------------------------------------------------------------------------------------------- Flickr

FLICKR_IDS = ["10008553263", "10000130166", "10013411946"]  # real test ids, boxes in the derived file


def test_flickr_real_boxes_give_the_consensus_gt(tmp_path: Path) -> None:
    for n, i in enumerate(FLICKR_IDS):
        write_pair(tmp_path, i, seed=n, size=(256, 256))
    write_split(tmp_path / "flickr_test.csv", FLICKR_IDS, crlf=True, extra_column=True)
    ds = FlickrSoundNetDataset(tmp_path, split="flickr_test.csv", annotations="flickr")
    real = splits.load_annotations("flickr")
    for n in range(3):
        s = ds[n]
        expected = gt_map_from_boxes(real[s["sample_id"]], "flickr", 224).float()
        assert torch.equal(s["gt_map"], expected)
        assert s["num_sources"] == 1
        assert set(s["gt_map"].unique().tolist()) <= {0.0, 0.5, 1.0}
    # 10008553263 has two annotator boxes: their overlap has weight 1, the rest of each box 0.5.
    first = ds[0]["gt_map"]
    assert first[int(224 * 20 / 256), int(224 * 100 / 256)] == 1.0  # inside both
    assert first[int(224 * 200 / 256), int(224 * 170 / 256)] == 0.5  # only in [76, 19, 192, 256]


def test_flickr_xml_annotations(tmp_path: Path) -> None:
    for n, i in enumerate(["a", "b", "c"]):
        write_pair(tmp_path, i, seed=n)
    ann = tmp_path / "Annotations"
    write_flickr_xml(ann / "a.xml", [[[0, 0, 128, 128]], [[64, 64, 256, 256]], [[0, 0, 64, 64]]])
    # Outside the 256-px frame and zero-area: clipped, never wrapped, never NaN.
    write_flickr_xml(ann / "b.xml", [[[-40, -40, 128, 128]], [[0, 0, 300, 300]], [[50, 50, 50, 90]]])
    (ann / "c.xml").write_text(
        "<annotation><group><bbox><l>x</l><a>1</a><b>2</b><c>3</c><d>4</d></bbox><name>oops</name></group></annotation>"
    )
    ds = FlickrSoundNetDataset(tmp_path, split=["a", "b"], annotations="Annotations", image_size=256)
    a = ds[0]["gt_map"]
    assert a[10, 10] == 1.0
    assert a[100, 100] == 1.0
    assert a[100, 10] == 0.5
    assert a[200, 200] == 0.5
    assert a[200, 10] == 0
    b = ds[1]["gt_map"]
    assert b[:128, :128].min() == 1.0
    assert b[200, 200] == 0.5
    assert torch.isfinite(b).all()
    assert ds[0]["num_sources"] == 1
    bad = FlickrSoundNetDataset(tmp_path, split=["c"], annotations="Annotations")
    with pytest.raises(DataError, match=r"c\.xml: unexpected <name> under <group>"):
        bad[0]
    with pytest.raises(DataError, match=r"1 of 1 samples .*: d: no frame"):
        FlickrSoundNetDataset(tmp_path, split=["d"], annotations="Annotations")
    for text in ("nan", "inf"):  # NaN was blamed on the frame file; inf was clipped to the frame's edge
        (ann / "c.xml").write_text(
            f"<annotation><group><bbox><l>x</l><a>1</a><b>2</b><c>{text}</c><d>4</d></bbox></group></annotation>"
        )
        with pytest.raises(DataError, match=rf"c\.xml: box coordinates \[1\.0, 2\.0, {text}, 4\.0\] are not all"):
            bad[0]


def test_flickr_144k_warns_about_its_20_test_ids(tmp_path: Path) -> None:
    write_pair(tmp_path, FLICKR_IDS[0])
    with pytest.warns(SplitOverlapWarning, match=r"20 with test list 'flickr_test_250'"):
        ds = FlickrSoundNetDataset(tmp_path, split="flickr_144k", on_error="skip")
    assert len(ds) == 0
    assert ds.skipped.counts() == {"missing file": 144_000}


# ---------------------------------------------------------------------------------------------------- Folder


def test_folder_pairs_by_stem_across_extensions(tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "x.png", seed=1)
    write_image(tmp_path / "img" / "y.jpg", seed=2)
    write_image(tmp_path / "img" / "lonely.jpg", seed=3)
    (tmp_path / "img" / "notes.txt").write_text("ignored")
    write_wav(tmp_path / "snd" / "x.flac", seconds=0.5)
    write_wav(tmp_path / "snd" / "y.wav", seconds=0.5)
    write_box_json(tmp_path / "boxes.json", {"x": [[0.0, 0.0, 0.5, 1.0]], "y": []})
    mask = np.zeros((24, 32), dtype=np.uint8)
    mask[:, :16] = 1
    write_mask(tmp_path / "masks" / "x.png", mask)
    write_mask(tmp_path / "masks" / "y.png", np.zeros_like(mask))
    with pytest.raises(DataError, match=r"lonely: no audio .*lonely\.wav"):
        FolderDataset(tmp_path, image_dir="img", audio_dir="snd")
    ds = FolderDataset(
        tmp_path,
        image_dir="img",
        audio_dir="snd",
        annotations="boxes.json",
        masks_dir="masks",
        on_error="skip",
        image_size=32,
        duration=1.0,
    )
    assert ds.sample_ids == ["x", "y"]
    assert ds.skipped.counts() == {"missing file": 1}
    x = ds[0]
    assert x["audio"].shape == (16_000,)  # 0.5 s clip tiled to 1 s
    assert torch.equal(x["gt_map"][:, :16], torch.ones(32, 16))
    assert x["gt_map"][:, 16:].sum() == 0
    assert torch.equal(x["mask"], x["gt_map"])
    assert ds[1]["num_sources"] == 0
