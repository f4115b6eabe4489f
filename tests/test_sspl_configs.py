"""Per-training-set SSPL and SemiPL configs run through the real CLI (tiny overrides) and carry the reference values.

``sspl.yaml`` and ``semipl.yaml`` themselves run in tests/test_cli_lightning.py (every METHODS key).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from avsl.cli import main
from avsl.lightning_cli import resolve_config
from avsl.methods import SemiPL
from tests._data_fixtures import write_image, write_split, write_wav
from tests.test_cli_lightning import TINY_DATA, TINY_TRAINER, _tiny_model
from tests.test_methods_contract import cli_flags, config_args, tiny_args

SSPL_CONFIGS = ["sspl_flickr10k", "sspl_vggsound10k", "sspl_144k", "sspl_pcm_vggsound144k", "sspl_synthav"]
# (lr for g and the rest, lr for the SimSiam head, PCM, epochs): the SSPL supplement's Table S1 and methods.md §2.6
REFERENCE = {
    "sspl": (2e-5, 5e-5, True, 20),
    "sspl_flickr10k": (5e-4, 2e-3, False, 100),
    "sspl_vggsound10k": (5e-3, 1e-2, False, 100),
    "sspl_144k": (1e-3, 5e-3, False, 100),
    "sspl_pcm_vggsound144k": (1e-5, 1e-5, True, 20),
}
TINY_LABELED = [f"--data.init_args.labeled.init_args.{k}={v}" for k, v in (("image_size", 64), ("duration", 0.5))]


def _config(name: str) -> dict:  # type: ignore[type-arg]
    return dict(yaml.safe_load(Path(resolve_config(name)).read_text()))


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_sspl_configs_carry_the_reference_hyperparameters(name: str) -> None:
    config = _config(name)
    args = config["model"]["init_args"]
    lr, lr_head, pcm, epochs = REFERENCE[name]
    assert (args["lr"], args["lr_head"], args["use_pcm"], config["trainer"]["max_epochs"]) == (lr, lr_head, pcm, epochs)
    assert args["vision_backbone"] == "vgg16_conv5" and args["audio_backbone"] == "vggish"
    assert args["weight_decay"] == 1e-4 and args["eval_protocol"] == "sspl"


def test_semipl_configs_wrap_sspl_with_pcm() -> None:
    for name in ("semipl", "semipl_chaotic_world"):
        args = _config(name)["model"]["init_args"]
        assert args["base"] == "sspl" and args["base_args"]["use_pcm"] is True
        assert (args["base_args"]["lr"], args["base_args"]["lr_head"]) == (2e-5, 5e-5)
    assert "labeled" in _config("semipl_chaotic_world")["data"]["init_args"], "the Chaotic World config has labels"
    assert _config("semipl_chaotic_world")["trainer"]["max_epochs"] == 350  # ly245422/SSPL, w/ PCM


def _fit(tmp_path: Path, *args: str) -> None:
    common = [f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", "--trainer.max_steps=1"]
    assert main(["fit", *args, *common, *TINY_DATA, *TINY_TRAINER[1:]]) == 0
    assert list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("name", SSPL_CONFIGS)
def test_sspl_configs_train_through_the_cli(name: str, tmp_path: Path) -> None:
    _fit(tmp_path, "-c", name, "-c", "synthav", *_tiny_model("sspl"))


def test_semipl_synthav_config_trains_through_the_cli(tmp_path: Path) -> None:
    labeled = [*TINY_LABELED, "--data.init_args.labeled.init_args.num_clips=8"]
    tiny = cli_flags(tiny_args(SemiPL, config_args("semipl_synthav")))  # its base is EZ-VSL
    _fit(tmp_path, "-c", "semipl_synthav", "-c", "synthav", *tiny, *labeled)


def test_semipl_chaotic_world_config_trains_through_the_cli(tmp_path: Path) -> None:
    # A tiny tree in the layout of SemiPL's preprocessing (ssl_train_frames_320x180/, ssl_train_wavs/, a list and the
    # box JSON), used as the labeled set; SynthAV stands in for the unlabeled and evaluation sets.
    root = tmp_path / "chaotic"
    ids = ["AAA_000010", "AAA_000020", "AAA_000030"]
    for n, sid in enumerate(ids):
        write_image(root / "ssl_train_frames_320x180" / f"{sid}.png", 320, 180, seed=n)
        write_wav(root / "ssl_train_wavs" / f"{sid}.wav", seconds=3.0)
    write_split(root / "train_list.csv", ids)
    boxes = [{"file": sid, "class": "run", "bbox": [40 + 20 * n, 20, 200, 150]} for n, sid in enumerate(ids)]
    (root / "ChaoticWorld_train.json").write_text(json.dumps(boxes))
    labeled = [*TINY_LABELED, f"--data.init_args.labeled.init_args.root={root}"]
    _fit(tmp_path / "run", "-c", "semipl_chaotic_world", "-c", "synthav", *_tiny_model("semipl"), *labeled)
