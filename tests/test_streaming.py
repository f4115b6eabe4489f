"""Streaming shards (litdata): the same samples as the folder reader, under DDP each rank its part, and a resumed run
continues where it stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

pytest.importorskip("litdata")

from avsl.cli import main
from avsl.data import AVDataModule, JointRandomCropFlip, SynthAV, VGGSSDataset, write_synthav
from avsl.data.io import DataError
from avsl.data.prepare import prepare
from avsl.data.streaming import StreamingAVDataset, write_shards
from avsl.methods import EZVSL
from avsl.testing import tiny_args, write_video


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return set(a) == set(b) and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthav")
    write_synthav(root, {"train": SynthAV(24, seed=0, frame_size=(72, 128), duration=1.5, cache=False)}, progress=False)
    return root


def _reader(root: Path, **extra: Any) -> VGGSSDataset:
    return VGGSSDataset(
        root, split="train", annotations="annotations.json", masks_dir="masks", image_size=64, duration=0.5, **extra
    )


@pytest.fixture(scope="module")
def shards(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shards(_reader(folder), tmp_path_factory.mktemp("shards") / "train", workers=2)


def test_the_same_samples_both_ways(folder: Path, shards: Path) -> None:
    reader, streamed = _reader(folder), StreamingAVDataset(str(shards))
    assert (streamed.sample_rate, streamed.image_size, streamed.duration) == (16000, 64, 0.5)
    by_id = {s["sample_id"]: s for s in (streamed[i] for i in range(len(streamed)))}
    assert len(by_id) == len(reader) == 24
    for i in range(len(reader)):
        sample = reader.load(i, augment=False)
        assert _same(sample, by_id[sample["sample_id"]]), sample["sample_id"]
    # the augmentation is applied when reading, as by the reader
    torch.manual_seed(3)
    jittered = StreamingAVDataset(str(shards), augment=JointRandomCropFlip())[0]
    torch.manual_seed(3)
    assert _same(jittered, JointRandomCropFlip()(StreamingAVDataset(str(shards))[0]))


def test_samples_that_fail_to_decode_are_left_out_and_listed(tmp_path: Path) -> None:
    root = tmp_path / "synthav"
    write_synthav(root, {"train": SynthAV(8, seed=1, frame_size=(72, 128), duration=1.5, cache=False)}, progress=False)
    frames = sorted((root / "frames").glob("*.jpg"))
    frames[2].write_bytes(b"not a jpeg")
    frames[5].write_bytes(frames[6].read_bytes()[:100])  # truncated
    out = write_shards(_reader(root), tmp_path / "shards", workers=2)
    meta = json.loads((out / "avsl_shards.json").read_text())
    assert [s["sample_id"] for s in meta["skipped"]] == [frames[2].stem, frames[5].stem]
    assert str(frames[2]) in meta["skipped"][0]["problem"] and "corrupt" in meta["skipped"][0]["problem"]
    streamed = StreamingAVDataset(str(out))
    assert meta["samples"] == len(streamed) == 6
    assert {streamed[i]["sample_id"] for i in range(6)} == {f.stem for f in frames} - {frames[2].stem, frames[5].stem}

    for f in frames:
        f.write_bytes(b"")
    with pytest.raises(DataError, match="no sample of the dataset can be decoded"):
        write_shards(_reader(root), tmp_path / "none", workers=2)
    assert not (tmp_path / "none" / "index.json").exists()
    with pytest.raises(TypeError, match=r"write_shards takes an avsl reader .* got SynthAV"):  # was litdata's error
        write_shards(SynthAV(4), tmp_path / "synth")  # type: ignore[arg-type]


def test_sharding_real_size_frames_after_torch_ran_in_parallel(tmp_path: Path) -> None:
    """litdata forks its workers; a parent whose OpenMP pool has run (a parallel resize) used to leave them hung in
    their first resize of a 640x360 frame (write_shards itself decoded every sample in the parent first)."""
    root = tmp_path / "synthav"
    write_synthav(root, {"train": SynthAV(4, seed=2, frame_size=(360, 640), duration=1.0, cache=False)}, progress=False)
    script = textwrap.dedent(f"""
        import torch, torch.nn.functional as F
        from avsl.data import VGGSSDataset
        from avsl.data.streaming import write_shards
        torch.set_num_threads(2)
        F.interpolate(torch.rand(1, 3, 640, 640), size=(300, 300), mode="bilinear", antialias=True)
        reader = VGGSSDataset({str(root)!r}, split="train", image_size=224, duration=0.5)
        reader.load(0)
        write_shards(reader, {str(tmp_path / "shards")!r}, workers=2)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "shards" / "avsl_shards.json").read_text())["samples"] == 4


def test_prepared_videos_shard_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for sid in ("zpWuikVorYg_000032", "gEvCUcZ6w88_000030"):
        pictures = rng.integers(0, 255, (125, 36, 64, 3), dtype=np.uint8)
        write_video(videos / f"{sid}.mp4", pictures, 25, 0.3 * rng.standard_normal((2, 5 * 44100)), 44100)
    root = tmp_path / "prepared"
    prepare("vggsound", videos, root, workers=1, progress=False)
    out = tmp_path / "shards"
    args = ["shard", str(root), "--out", str(out), "--split", "vggss_test", "--annotations", "vggss"]
    assert main([*args, "--image-size", "64", "--duration", "1.0", "--workers", "1"]) == 0
    reader = VGGSSDataset(root, split="vggss_test", annotations="vggss", image_size=64, duration=1.0, on_error="skip")
    streamed = {s["sample_id"]: s for s in StreamingAVDataset(str(out))}
    assert sorted(streamed) == sorted(e.sample_id for e in reader.entries)
    for i in range(len(reader)):
        sample = reader.load(i)
        assert _same(sample, streamed[sample["sample_id"]])
    assert json.loads((out / "avsl_shards.json").read_text())["samples"] == 2
    assert "wrote 2 samples" in capsys.readouterr().out

    # a frame that no longer decodes: left out, counted and named in the report
    (root / "frames" / "gEvCUcZ6w88_000030.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert main([*args, "--out", str(tmp_path / "again"), "--image-size", "64", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 samples" in printed and "failed to decode: 1" in printed and "gEvCUcZ6w88_000030" in printed


class _Ids(pl.Callback):
    def __init__(self) -> None:
        self.ids: list[list[str]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, i: int) -> None:
        self.ids.append(list(batch["unlabeled"]["sample_id"]))


def _fit(shards: Path, root: Path, steps: int, ckpt: Path | None = None) -> tuple[_Ids, pl.Trainer]:
    data = AVDataModule(StreamingAVDataset(str(shards), shuffle=True, seed=7), batch_size=4, num_workers=0)
    ids = _Ids()
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root, callbacks=[ids], enable_checkpointing=False,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer.fit(EZVSL(**tiny_args(EZVSL)), datamodule=data, ckpt_path=ckpt)
    return ids, trainer


@pytest.mark.filterwarnings("ignore:Total length of `list` across ranks is zero")  # no validation set
def test_training_from_shards_resumes_where_it_stopped(shards: Path, tmp_path: Path) -> None:
    whole, _ = _fit(shards, tmp_path / "whole", 5)
    assert len(whole.ids) == 5 and len({i for batch in whole.ids for i in batch}) == 20  # an epoch, then a new one
    first, trainer = _fit(shards, tmp_path / "first", 2)
    trainer.save_checkpoint(tmp_path / "two.ckpt")
    rest, resumed = _fit(shards, tmp_path / "rest", 5, ckpt=tmp_path / "two.ckpt")
    assert resumed.global_step == 5
    assert first.ids + rest.ids == whole.ids  # the loader's position came back with the checkpoint


DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning.pytorch as pl
    import torch
    from avsl.data import AVDataModule
    from avsl.data.streaming import StreamingAVDataset
    from avsl.methods import EZVSL
    from avsl.testing import tiny_args

    class Ids(pl.Callback):
        def __init__(self):
            self.ids = []
        def on_train_batch_start(self, trainer, module, batch, i):
            self.ids += list(batch["unlabeled"]["sample_id"])

    if __name__ == "__main__":
        shards, out = sys.argv[1], sys.argv[2]
        ids = Ids()
        data = AVDataModule(StreamingAVDataset(shards, shuffle=True), batch_size=4)
        trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                             callbacks=[ids], default_root_dir=out)
        trainer.fit(EZVSL(**tiny_args(EZVSL)), datamodule=data)
        with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(ids.ids, f)
    """
)


@pytest.mark.ddp
def test_under_ddp_each_rank_streams_its_own_part(shards: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(shards), str(tmp_path)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = [set(json.loads((tmp_path / f"rank{r}.json").read_text())) for r in (0, 1)]
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    assert len(parts[0] | parts[1]) == 24
