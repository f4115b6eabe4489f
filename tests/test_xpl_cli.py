"""XPL's configs through the real CLI: SynthAV (then load_method on the CLI checkpoint) and the semi-supervised
Flickr-SoundNet / VGG-SS data configs on tiny fixture trees in the benchmarks' layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avsl.cli import main
from avsl.data import SynthAV, splits
from avsl.lightning_cli import AVSLCLI
from avsl.methods import EZVSL, load_method
from avsl.methods.xpl import XPL
from tests._data_fixtures import write_pair
from tests.test_cli_lightning import TINY_TRAINER
from tests.test_methods_contract import TINY, cli_flags

# Tiny peers whose audio window (3 s) is that of the Flickr and VGG-SS data configs.
TINY_PEER = cli_flags({"model_a_args": {**TINY["xpl"]["model_a_args"], "duration": 3.0}})


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def _role(role: str, **values: object) -> list[str]:
    return [f"--data.init_args.{role}.init_args.{k}={v}" for k, v in values.items()]


def test_synthav_configs_train_and_the_checkpoint_loads(tmp_path: Path) -> None:
    args = ["fit", "-c", "xpl_synthav", "-c", "synthav_semi", f"--trainer.default_root_dir={tmp_path}"]
    args += ["--trainer.logger=false", "--data.init_args.batch_size=4", "--data.init_args.labeled_batch_size=2"]
    args += ["--model.init_args.model_a_args.embed_dim=16", "--model.init_args.warmup_epochs=0"]
    args += ["--model.init_args.model_a_args.frame_size=[64, 64]", "--model.init_args.model_a_args.duration=0.5"]
    for role, n in (("unlabeled", 8), ("labeled", 4), ("val", 4), ("test", 4)):
        args += _role(role, num_clips=n, image_size=64, duration=0.5)
    assert main(args + TINY_TRAINER) == 0
    ckpt = next(tmp_path.rglob("last.ckpt"))
    model = load_method(ckpt)
    assert isinstance(model, XPL) and isinstance(model.model_a, EZVSL) and isinstance(model.model_b, EZVSL)
    assert model.model_a.hparams["embed_dim"] == 16 and model.model_b.hparams["embed_dim"] == 16
    assert len(model.bank_a) == len(model.bank_b) == 8  # two steps of 4 clips: every unlabeled clip is banked
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    for key in ("bank_a.values", "bank_b.keys", "reliability.values"):
        assert torch.equal(model.state_dict()[key], checkpoint["state_dict"][key])
    clips = SynthAV(num_clips=2, seed=2, image_size=64)
    image = torch.stack([clips[i]["image"] for i in range(2)])
    audio = torch.stack([clips[i]["audio"] for i in range(2)])
    assert model.localize(image, audio).shape == (2, 64, 64)


def _flickr_tree(root: Path, ids: list[str]) -> None:
    for n, sid in enumerate(ids):
        write_pair(root, sid, seed=n, size=(40, 30))


def test_flickr_semi_config_on_a_fixture_tree(tmp_path: Path) -> None:
    # Real ids: two test images, two of the labeled pool, three unlabeled training clips (one of the 144k list that is
    # also in the labeled pool, which the config's `exclude` must drop).
    pool = splits.load_split("flickr_labeled_pool")
    test_ids = splits.load_split("flickr_test_249")[:2]
    shared = next(i for i in splits.load_split("flickr_144k") if i in set(pool))
    unlabeled_only = [i for i in splits.load_split("flickr_10k") if i not in set(pool)]
    train_ids = [*unlabeled_only[:2], shared]
    root = tmp_path / "flickr"
    _flickr_tree(root, [*test_ids, *pool[:2], *train_ids])
    args = ["-c", "xpl", "-c", "flickr_semi", *TINY_PEER, f"--trainer.default_root_dir={tmp_path / 'run'}"]
    args += ["--trainer.logger=false", "--data.init_args.batch_size=2", "--data.init_args.labeled_batch_size=2"]
    args += ["--data.init_args.num_workers=0", "--model.init_args.warmup_epochs=0"]
    args += _role("unlabeled", root=root, split=json.dumps(train_ids), image_size=64)
    args += _role("labeled", root=root, split=json.dumps(pool[:2]), image_size=64)
    for role in ("val", "test"):
        args += _role(role, root=root, split=json.dumps(test_ids), image_size=64)

    cli = AVSLCLI(args, run=False)
    unlabeled_ids = [s["sample_id"] for s in cli.datamodule.unlabeled]
    assert unlabeled_ids == train_ids[:2], "labeled-pool ids must leave the unlabeled set"
    assert [s["sample_id"] for s in cli.datamodule.labeled] == pool[:2]
    assert all("gt_map" in s for s in cli.datamodule.labeled)

    assert main(["fit", *args, "--trainer.max_steps=1", *TINY_TRAINER[1:]]) == 0
    assert list((tmp_path / "run").rglob("*.ckpt"))


def test_vggss_semi_config_on_fixture_trees(tmp_path: Path) -> None:
    test_ids = list(splits.load_annotations("vggss"))[:2]  # real VGG-SS test ids with their real boxes
    vggsound, flickr = tmp_path / "vggsound", tmp_path / "flickr"
    for n, sid in enumerate([*test_ids, "train_a", "train_b"]):
        write_pair(vggsound, sid, seed=n, size=(40, 30))
    pool = splits.load_split("flickr_labeled_pool")[:2]
    _flickr_tree(flickr, pool)
    args = ["fit", "-c", "xpl", "-c", "vggss_semi", *TINY_PEER, f"--trainer.default_root_dir={tmp_path / 'run'}"]
    args += ["--trainer.logger=false", "--data.init_args.batch_size=2", "--data.init_args.labeled_batch_size=2"]
    args += ["--data.init_args.num_workers=0", "--model.init_args.warmup_epochs=0", "--trainer.max_steps=1"]
    args += _role("unlabeled", root=vggsound, split=json.dumps(["train_a", "train_b"]), image_size=64)
    args += _role("labeled", root=flickr, split=json.dumps(pool), image_size=64)
    for role in ("val", "test"):
        args += _role(role, root=vggsound, split=json.dumps(test_ids), image_size=64)
    assert main(args + TINY_TRAINER[1:]) == 0
    assert list((tmp_path / "run").rglob("*.ckpt"))
