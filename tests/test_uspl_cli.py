"""USPL's configs through the real CLI: the three-stage chain on SynthAV, AVSBench S4/MS3 and VGG-SS fixture trees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from avsl.cli import main
from avsl.data import splits
from avsl.lightning_cli import AVSLCLI, resolve_config
from avsl.methods import load_method
from avsl.methods.uspl import USPL
from tests._data_fixtures import write_image, write_mask, write_pair, write_s4_tree, write_split, write_wav
from tests.test_cli_lightning import TINY_DATA, TINY_TRAINER, _tiny_model


def _last(root: Path) -> Path:
    return next(root.rglob("last.ckpt"))


def test_uspl_synthav_config_runs_the_three_stages_through_the_cli(tmp_path: Path) -> None:
    config = yaml.safe_load(Path(resolve_config("uspl_synthav")).read_text())
    assert config["model"]["class_path"] == "avsl.methods.USPL" and "data" in config  # a complete config
    common = ["-c", "uspl_synthav", "--trainer.logger=false", *_tiny_model("uspl"), *TINY_DATA, *TINY_TRAINER]
    previous: Path | None = None
    for stage in ("coarse", "refine", "segment"):
        args = ["fit", *common, f"--trainer.default_root_dir={tmp_path / stage}", f"--model.init_args.stage={stage}"]
        if previous is not None:
            args.append(f"--model.init_args.init_from={previous}")
        assert main(args) == 0
        previous = _last(tmp_path / stage)
    assert previous is not None
    for stage in ("coarse", "refine"):  # the final checkpoint loads without the earlier ones
        for ckpt in (tmp_path / stage).rglob("*.ckpt"):
            ckpt.unlink()
    model = load_method(previous)
    assert isinstance(model, USPL) and model.stage == "segment" and model.segmenter is not None
    # the final stage evaluated through the CLI: mIoU / F-score from SynthAV's masks, cIoU / AUC from its boxes
    evaluation = [f"--trainer.default_root_dir={tmp_path / 'segment'}", "--model.init_args.stage=segment"]
    cli = AVSLCLI(["test", *common, *evaluation, f"--ckpt_path={previous}"])
    for key in ("test/miou", "test/fscore", "test/ciou", "test/auc"):
        assert 0.0 <= float(cli.trainer.callback_metrics[key]) <= 1.0


def _ms3_tree(tmp_path: Path) -> Path:
    """AVSBench ``Multi-sources/`` with one test video (palette masks)."""
    root = tmp_path / "Multi-sources"
    data = root / "ms3_data"
    root.mkdir()
    (root / "ms3_meta_data.csv").write_text("video_id,split\nvm_1,test\n")
    mask = np.zeros((24, 24), dtype=np.uint8)
    mask[2:12, 2:22] = 1
    for k in range(1, 6):
        write_image(data / "visual_frames" / "vm_1" / f"vm_1.mp4_{k}.png", 24, 24, seed=k)
        write_mask(data / "gt_masks" / "test" / "vm_1" / f"vm_1_{k}.png", mask, mode="P")
    write_wav(data / "audio_wav" / "test" / "vm_1.wav", seconds=5.0)
    return root


def _roles(**values: Any) -> list[str]:
    return [f"--data.init_args.{r}.init_args.{k}={v}" for r in ("unlabeled", "val", "test") for k, v in values.items()]


def _benchmark_common(tmp_path: Path, duration: float) -> list[str]:
    # one epoch of one step: validation runs at its end (a max_steps stop would skip it)
    args = [f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.logger=false", "--trainer.max_epochs=1"]
    args += ["--trainer.limit_train_batches=1"]
    args += ["--data.init_args.batch_size=2", "--data.init_args.eval_batch_size=5", "--data.init_args.num_workers=0"]
    # the method's audio window is the data config's (its signal must be the data's)
    return args + _tiny_model("uspl") + TINY_TRAINER[1:] + [f"--model.init_args.duration={duration}"]


def test_uspl_on_avsbench_s4_and_ms3(tmp_path: Path) -> None:
    s4 = write_s4_tree(tmp_path)
    common = ["-c", "uspl", "-c", "avsbench_s4", *_benchmark_common(tmp_path, 1.0), *_roles(root=s4, image_size=64)]
    cli = AVSLCLI(["fit", *common])
    assert 0.0 <= float(cli.trainer.callback_metrics["val/miou"]) <= 1.0
    ckpt = _last(tmp_path / "run")
    # MS3: the same checkpoint on the multi-source test split
    ms3 = _ms3_tree(tmp_path)
    ms3_args = ["--data.init_args.test.init_args.subset=ms3", f"--data.init_args.test.init_args.root={ms3}"]
    cli = AVSLCLI(["test", *common, *ms3_args, f"--ckpt_path={ckpt}"])
    metrics = cli.trainer.callback_metrics
    for key in ("test/miou", "test/fscore", "test/ciou", "test/auc"):
        assert 0.0 <= float(metrics[key]) <= 1.0


def test_uspl_on_vggss(tmp_path: Path) -> None:
    test_ids = list(splits.load_annotations("vggss"))[:2]  # real ids with their real boxes
    root = tmp_path / "vggsound"
    for n, sid in enumerate([*test_ids, "train_a", "train_b"]):
        write_pair(root, sid, seed=n, size=(40, 30))
    write_split(root / "train.txt", ["train_a", "train_b"])
    write_split(root / "test.csv", test_ids)
    args = ["fit", "-c", "uspl", "-c", "vggss", *_benchmark_common(tmp_path, 3.0), *_roles(root=root, image_size=64)]
    args += [f"--data.init_args.unlabeled.init_args.split={root / 'train.txt'}"]
    args += [f"--data.init_args.{r}.init_args.split={root / 'test.csv'}" for r in ("val", "test")]
    cli = AVSLCLI(args)
    assert 0.0 <= float(cli.trainer.callback_metrics["val/ciou"]) <= 1.0
    assert "val/miou" not in cli.trainer.callback_metrics  # boxes only
