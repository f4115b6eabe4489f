"""Every shipped config through the real CLI (with tiny overrides), and the extra commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from avsl.cli import main
from avsl.lightning_cli import resolve_config, shipped_configs
from avsl.methods import METHODS
from tests._data_fixtures import write_video
from tests.test_methods_contract import TINY, cli_flags

TINY_DATA = [
    "--data.init_args.unlabeled.init_args.num_clips=8",
    "--data.init_args.unlabeled.init_args.image_size=64",
    "--data.init_args.unlabeled.init_args.duration=0.5",
    "--data.init_args.val.init_args.num_clips=4",
    "--data.init_args.val.init_args.image_size=64",
    "--data.init_args.val.init_args.duration=0.5",
    "--data.init_args.test.init_args.num_clips=4",
    "--data.init_args.test.init_args.image_size=64",
    "--data.init_args.test.init_args.duration=0.5",
    "--data.init_args.batch_size=4",
]
TINY_TRAINER = ["--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0"]
TINY_TRAINER += ["--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu"]


def _tiny_model(name: str) -> list[str]:
    return cli_flags(TINY[name])


def test_shipped_configs_are_listed_and_resolved(capsys: pytest.CaptureFixture[str]) -> None:
    names = shipped_configs()
    assert "quickstart.yaml" in names and "methods/ezvsl.yaml" in names and "data/synthav.yaml" in names
    assert resolve_config("ezvsl").endswith("methods/ezvsl.yaml")
    assert resolve_config("data/synthav").endswith("data/synthav.yaml")
    assert resolve_config("no/such.yaml") == "no/such.yaml"
    assert main(["configs"]) == 0
    assert "methods/ezvsl.yaml" in capsys.readouterr().out


TINY_LABELED = [
    "--data.init_args.labeled.init_args.num_clips=4",
    "--data.init_args.labeled.init_args.image_size=64",
    "--data.init_args.labeled.init_args.duration=0.5",
]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_config_trains_through_the_cli(name: str, tmp_path: Path) -> None:
    # Methods that train with labels (SemiPL, XPL) take the semi-supervised SynthAV data.
    data = ["-c", "synthav_semi", *TINY_LABELED] if name in ("semipl", "xpl") else ["-c", "synthav"]
    args = ["fit", "-c", name, *data, f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"]
    assert main(args + _tiny_model(name) + TINY_DATA + TINY_TRAINER) == 0
    assert list(tmp_path.rglob("*.ckpt")), "the default ModelCheckpoint wrote no checkpoint"


def test_custom_method_through_model_flag(tmp_path: Path) -> None:
    # `--model` takes any import path: here the 40-line example of examples/custom_method.py.
    args = ["fit", "--model=examples.custom_method.MeanPoolVSL", "-c", "synthav", "--model.init_args.embed_dim=16"]
    args += ["--model.init_args.frame_size=[64, 64]", "--model.init_args.duration=0.5"]
    args += [f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"]
    assert main(args + TINY_DATA + TINY_TRAINER) == 0


def test_validate_test_predict_and_localize(tmp_path: Path) -> None:
    common = ["-c", "ezvsl", "-c", "synthav", f"--trainer.default_root_dir={tmp_path}"]
    common += _tiny_model("ezvsl") + TINY_DATA + TINY_TRAINER
    assert main(["fit", *common, "--trainer.logger=false"]) == 0
    ckpt = next(tmp_path.rglob("last.ckpt"))
    for command in ("validate", "test", "predict"):
        assert main([command, *common, f"--ckpt_path={ckpt}", "--trainer.logger=false"]) == 0

    # localize one image + audio pair: the files of a SynthAV folder
    assert main(["synth", "--out", str(tmp_path / "synth"), "--train", "0", "--val", "0", "--test", "1"]) == 0
    frame = next((tmp_path / "synth" / "frames").glob("*.jpg"))
    wav = next((tmp_path / "synth" / "audio").glob("*.wav"))
    assert (
        main(
            ["localize", "--ckpt", str(ckpt), "--image", str(frame), "--audio", str(wav), "--out", str(tmp_path / "o")]
        )
        == 0
    )
    heat = __import__("numpy").load(tmp_path / "o" / f"{frame.stem}_heatmap.npy")
    assert heat.shape == (64, 64) and heat.min() >= 0.0 and heat.max() <= 1.0
    assert (tmp_path / "o" / f"{frame.stem}_overlay.png").is_file()

    # and a video file: an overlay video and a map for each of its 20 frames (2 s at 10 fps)
    video = write_video(tmp_path / "clip.mp4", seconds=2.0)
    assert main(["localize", "--ckpt", str(ckpt), "--video", str(video), "--out", str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "clip_overlay.mp4").stat().st_size > 0
    assert __import__("numpy").load(tmp_path / "v" / "clip_heatmaps.npy").shape == (20, 64, 64)


def test_localize_needs_image_and_audio_or_video(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["localize", "--ckpt", "x.ckpt", "--image", "a.jpg", "--out", "o"])
    assert "either --image and --audio, or --video" in capsys.readouterr().err


def test_quickstart_runs_end_to_end_on_tiny_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["quickstart", "--out", str(tmp_path), "--max-epochs", "1", "--train-clips", "64", "--test-clips", "16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "centre Gaussian" in out and "cIoU@0.5" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"EZ-VSL", "EZ-VSL, other sound", "centre Gaussian", "uniform"}
    assert 0.0 <= metrics["EZ-VSL"]["ezvsl/ciou"] <= 1.0
    assert 0.0 <= metrics["EZ-VSL, other sound"]["pointing"] <= 1.0
    assert (tmp_path / "heatmaps.png").stat().st_size > 0
    config = yaml.safe_load(next(tmp_path.rglob("config.yaml")).read_text())
    assert config["model"]["class_path"] == "avsl.methods.EZVSL"


def test_the_data_must_give_the_methods_signal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A method declares its sample rate, frame size and audio window; data that differs stops the run with an error
    that says what to set (for a wrapper too, whose signal is its inner method's)."""
    common = [f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", *TINY_DATA, *TINY_TRAINER]
    rates = [f"--data.init_args.{role}.init_args.sample_rate=8000" for role in ("unlabeled", "val", "test")]

    def error_of(args: list[str]) -> str:
        capsys.readouterr()
        assert main(args) == 1
        return capsys.readouterr().err

    assert "the data is at 8000 Hz but EZVSL takes 16000 Hz audio: set the method's sample_rate to the data's " in (
        error := error_of(["fit", "-c", "ezvsl", "-c", "synthav", *_tiny_model("ezvsl"), *common, *rates])
    )
    assert "(--model.init_args.sample_rate)" in error
    assert "the datasets disagree on sample_rate" in error_of(
        ["fit", "-c", "ezvsl", "-c", "synthav", *_tiny_model("ezvsl"), *common, rates[1]]
    )
    semi = ["fit", "-c", "semipl", "-c", "synthav_semi", *_tiny_model("semipl"), *common, *TINY_LABELED]
    assert "the data is at 16000 Hz but SemiPL takes 8000 Hz audio: set the method's sample_rate to the data's " in (
        error := error_of([*semi, "--model.init_args.base_args.sample_rate=8000"])
    )
    assert "(--model.init_args.base_args.sample_rate)" in error  # where a wrapper takes it
    wrong_window = (
        r"SemiPL declares 64x64 frames and 1 s .* batches have 64x64 frames and 8000 samples: set the method's"
    )
    assert re.search(wrong_window, error_of([*semi, "--model.init_args.base_args.duration=1.0"]))
    # set in the method as well, 8 kHz trains
    eight = [
        *rates,
        "--data.init_args.labeled.init_args.sample_rate=8000",
        "--model.init_args.base_args.sample_rate=8000",
    ]
    assert main([*semi, *eight]) == 0


def test_command_line_mistakes_get_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit of the command line: each gave a traceback, was ignored, or picked the wrong file."""
    import torch

    monkeypatch.chdir(tmp_path)
    (tmp_path / "synthav").mkdir()  # a folder named like a shipped config (`avsl synth --out synthav`)
    assert resolve_config("synthav").endswith("data/synthav.yaml")
    with pytest.raises(SystemExit):  # --video beside --image was ignored
        main(["localize", "--ckpt", "x.ckpt", "--video", "v.mp4", "--image", "i.png", "--out", "o"])
    assert "give either --image and --audio, or --video" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "s"), "--train", "-1"]) == 1
    assert "clip counts >= 0" in capsys.readouterr().err
    common = [f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", *TINY_DATA, *TINY_TRAINER]
    run = ["validate", "-c", "ezvsl", "-c", "synthav", *_tiny_model("ezvsl"), *common]
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    for ckpt, message in (
        (tmp_path / "missing.ckpt", "missing.ckpt"),
        (tmp_path / "plain.ckpt", "plain.ckpt is not a Lightning checkpoint"),
    ):
        assert main([*run, f"--ckpt_path={ckpt}"]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
