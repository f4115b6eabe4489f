"""Every shipped benchmark data config runs through the real CLI on a tiny fixture tree in the benchmark's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsl.cli import main
from avsl.data import splits
from tests._data_fixtures import write_image, write_pair, write_s4_tree, write_split, write_wav
from tests.test_cli_lightning import TINY_TRAINER, _tiny_model

ROLES = ("unlabeled", "val", "test")


def _role_args(role: str, **values: object) -> list[str]:
    return [f"--data.init_args.{role}.init_args.{k}={v}" for k, v in values.items()]


def _common(tmp_path: Path, duration: float) -> list[str]:
    """Tiny EZ-VSL and trainer flags; the method's audio window is the data config's (its signal must be the data's)."""
    args = [f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.logger=false", "--trainer.max_steps=1"]
    args += ["--data.init_args.batch_size=2", "--data.init_args.eval_batch_size=2", "--data.init_args.num_workers=0"]
    return args + _tiny_model("ezvsl") + TINY_TRAINER[1:] + [f"--model.init_args.duration={duration}"]


def _box_benchmark_tree(tmp_path: Path, test_ids: list[str]) -> Path:
    root = tmp_path / "data"
    for n, sid in enumerate([*test_ids, "train_a", "train_b"]):
        write_pair(root, sid, seed=n, size=(40, 30))
    write_split(root / "train.txt", ["train_a", "train_b"])
    write_split(root / "test.csv", test_ids, crlf=True, extra_column=True)  # the real lists' CRLF and 2nd column
    return root


@pytest.mark.parametrize(("config", "annotations"), [("vggss", "vggss"), ("flickr", "flickr")])
def test_box_benchmark_configs(config: str, annotations: str, tmp_path: Path) -> None:
    test_ids = list(splits.load_annotations(annotations))[:2]  # real ids with their real boxes
    root = _box_benchmark_tree(tmp_path, test_ids)
    args = ["fit", "-c", "ezvsl", "-c", config, *_common(tmp_path, 3.0)]
    args += _role_args("unlabeled", root=root, split=root / "train.txt", image_size=64)
    for role in ("val", "test"):
        args += _role_args(role, root=root, split=root / "test.csv", image_size=64)
    assert main(args) == 0
    assert list((tmp_path / "run").rglob("*.ckpt"))


def test_avsbench_s4_config(tmp_path: Path) -> None:
    root = write_s4_tree(tmp_path)
    args = ["fit", "-c", "ezvsl", "-c", "avsbench_s4", *_common(tmp_path, 1.0)]
    for role in ROLES:
        args += _role_args(role, root=root, image_size=64)
    assert main(args) == 0


def test_chaotic_world_config(tmp_path: Path) -> None:
    root = tmp_path / "ssl"
    for split, ids in (("train", ["AAA_000010", "AAA_000020"]), ("test", ["BBB_000005", "BBB_000030"])):
        for n, sid in enumerate(ids):
            write_image(root / f"ssl_{split}_frames_320x180" / f"{sid}.png", 320, 180, seed=n)
            write_wav(root / f"ssl_{split}_wavs" / f"{sid}.wav", seconds=3.0, rate=44100, channels=2)
        write_split(root / f"{split}_list.csv", ids)
    boxes = [{"file": "BBB_000005", "class": "scream", "bbox": [32, 18, 160, 90]}]
    boxes.append({"file": "BBB_000030", "class": "run", "bbox": [100, 20, 300, 170]})
    (root / "ChaoticWorld_test.json").write_text(json.dumps(boxes))
    args = ["fit", "-c", "ezvsl", "-c", "chaotic_world", *_common(tmp_path, 3.0)]
    for role in ROLES:
        args += _role_args(role, root=root, image_size=64)
    assert main(args) == 0
