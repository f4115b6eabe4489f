"""Trust: checkpoints never run code through any avsl entry point, models export without pickles, and errors in the
input are printed alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from avsl.cli import main
from avsl.data import AVDataModule, SynthAV, split_labeled
from avsl.methods import EZVSL, export_method, load_method
from avsl.methods.uspl import USPL
from avsl.methods.xpl import XPL
from tests.test_cli_lightning import TINY_DATA, TINY_TRAINER
from tests.test_methods_contract import TINY, cli_flags, tiny_data, tiny_trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


class _Payload:
    """Pickles to a call of ``Path.touch``: unpickling it in full would create the marker file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.target,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny EZ-VSL trained through the CLI for two steps: its last checkpoint."""
    root = tmp_path_factory.mktemp("run")
    args = ["fit", "-c", "ezvsl", "-c", "synthav", f"--trainer.default_root_dir={root}", "--trainer.logger=false"]
    assert main(args + cli_flags(TINY["ezvsl"]) + TINY_DATA + TINY_TRAINER) == 0
    return next(root.rglob("last.ckpt"))


def test_a_malicious_checkpoint_runs_no_code_through_any_entry_point(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code_ran"
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    checkpoint["callbacks"] = {"evil": _Payload(marker)}  # a real checkpoint with one booby-trapped entry
    bad = tmp_path / "bad.ckpt"
    torch.save(checkpoint, bad)

    with pytest.raises(ValueError, match=r"bad\.ckpt is not a checkpoint avsl can read safely.*--trust-checkpoint"):
        load_method(bad)
    with pytest.raises(ValueError, match=r"bad\.ckpt is not a init_from checkpoint avsl can read safely"):
        USPL(**TINY["uspl"], stage="refine", init_from=str(bad))
    with pytest.raises(ValueError, match="read safely"):
        export_method(bad, tmp_path / "export")
    common = ["-c", "ezvsl", "-c", "synthav", *cli_flags(TINY["ezvsl"]), *TINY_DATA, *TINY_TRAINER]
    common += [f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.logger=false"]
    commands = [
        ["localize", "--ckpt", str(bad), "--video", "clip.mp4", "--out", str(tmp_path / "o")],
        ["export", "--ckpt", str(bad), "--out", str(tmp_path / "e")],
        ["test", *common, f"--ckpt_path={bad}"],
        ["fit", *common, f"--ckpt_path={bad}"],
        ["predict", *common, "--ckpt_path", str(bad)],
    ]
    for command in commands:
        capsys.readouterr()
        assert main(command) == 1, command[0]
        err = capsys.readouterr().err
        assert "bad.ckpt" in err and "--trust-checkpoint" in err and "Traceback" not in err, (command[0], err)
    assert not marker.exists()

    # Lightning's commands never lift the restriction (LightningCLI reads --ckpt_path's hyperparameters itself).
    assert main(["test", *common, f"--ckpt_path={bad}", "--trust-checkpoint"]) == 1
    assert "restricted unpickling only" in capsys.readouterr().err and not marker.exists()
    # Opting in where avsl reads the file runs the payload: the flag does what it says.
    load_method(bad, trust=True)
    assert marker.exists()


def test_export_round_trip_without_pickles(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--ckpt", str(trained), "--out", str(tmp_path / "ez")]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    model, exported = load_method(trained), load_method(tmp_path / "ez")
    assert type(exported) is EZVSL and exported.signal == model.signal and not exported.training
    batch = next(iter(tiny_data().test_dataloader()))
    torch.testing.assert_close(
        exported.localize(batch["image"], batch["audio"]), model.localize(batch["image"], batch["audio"])
    )
    config = yaml.safe_load((tmp_path / "ez" / "config.yaml").read_text())
    assert config["model"]["class_path"] == "avsl.methods.ezvsl.EZVSL"
    assert not any(str(k).startswith("_") for k in config["model"]["init_args"])  # no LightningCLI bookkeeping
    # The exported config is a model section LightningCLI takes.
    run = ["fit", "-c", str(tmp_path / "ez" / "config.yaml"), "-c", "synthav", *TINY_DATA, *TINY_TRAINER]
    assert main([*run, f"--trainer.default_root_dir={tmp_path / 'again'}", "--trainer.logger=false"]) == 0
    # localize reads an export folder as it reads a checkpoint
    (tmp_path / "ez" / "config.yaml").write_text("model: [")
    with pytest.raises(ValueError, match=r"config\.yaml is not an avsl export config"):
        load_method(tmp_path / "ez")


def test_export_keeps_a_wrappers_buffers(tmp_path: Path) -> None:
    clips = SynthAV(num_clips=12, seed=0, image_size=64, duration=0.5)
    labeled, unlabeled = split_labeled(clips, 0.34, seed=0)
    model = XPL("ezvsl", TINY["xpl"]["model_a_args"], warmup_epochs=0)
    trainer = tiny_trainer(tmp_path)
    evaluation = SynthAV(num_clips=4, seed=1, image_size=64, duration=0.5)
    trainer.fit(model, datamodule=AVDataModule(unlabeled, labeled, val=evaluation, batch_size=4))
    trainer.save_checkpoint(tmp_path / "xpl.ckpt")
    exported = load_method(export_method(tmp_path / "xpl.ckpt", tmp_path / "x"))
    assert isinstance(exported, XPL) and len(exported.bank_a) == len(model.bank_a) == 8
    for key, value in model.state_dict().items():
        torch.testing.assert_close(exported.state_dict()[key], value)


def test_input_errors_are_printed_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["fit", "-c", "ezvsl", "-c", "vggss", f"--data.init_args.unlabeled.init_args.root={tmp_path / 'nowhere'}"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"avsl fit: error: {tmp_path / 'nowhere'}: dataset root directory not found"
    assert err[1:] == ["(--verbose shows the full traceback)"]
    with pytest.raises(Exception, match="nowhere"):
        main([*args, "--verbose"])


def test_checkpointing_can_be_off_or_the_users_own(tmp_path: Path) -> None:
    common = ["fit", "-c", "ezvsl", "-c", "synthav", *cli_flags(TINY["ezvsl"]), *TINY_DATA, *TINY_TRAINER]
    common += ["--trainer.logger=false"]
    assert (
        main([*common, f"--trainer.default_root_dir={tmp_path / 'off'}", "--trainer.enable_checkpointing=false"]) == 0
    )
    assert not list((tmp_path / "off").rglob("*.ckpt"))
    # an unmonitored ModelCheckpoint of the user's replaces avsl's (the two would share a state key) ...
    own = ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.filename=mine"]
    assert main([*common, f"--trainer.default_root_dir={tmp_path / 'own'}", *own]) == 0
    assert [p.name for p in (tmp_path / "own").rglob("*.ckpt")] == ["mine.ckpt"]
    # ... and a monitored one comes beside it
    monitored = ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.monitor=train/loss"]
    assert main([*common, f"--trainer.default_root_dir={tmp_path / 'both'}", *monitored]) == 0
    assert "last.ckpt" in {p.name for p in (tmp_path / "both").rglob("*.ckpt")}


def test_an_empty_evaluation_set_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["test", "-c", "ezvsl", "-c", "synthav", *cli_flags(TINY["ezvsl"]), *TINY_DATA, *TINY_TRAINER]
    assert main([*args, "--trainer.logger=false", "--data.init_args.test.init_args.num_clips=0"]) == 1
    assert "the 'test' set is empty" in capsys.readouterr().err


def test_stereo_that_cancels_in_the_down_mix_is_silent(tmp_path: Path) -> None:
    from avsl.data.io import DataError, load_audio
    from tests._data_fixtures import tone, write_wav

    left = tone(0.5, 16000, 440.0, 1).reshape(-1)
    path = write_wav(tmp_path / "antiphase.wav", data=np.stack([left, -left], axis=1))
    with pytest.raises(DataError, match=r"antiphase\.wav.*silent after the down-mix"):
        load_audio(path, 16000)
    assert float(load_audio(path, 16000, allow_silence=True).abs().max()) <= 2.0**-15
    same = write_wav(tmp_path / "same.wav", data=np.stack([left, left], axis=1))  # in phase: loads
    assert float(load_audio(same, 16000).abs().max()) > 0.4


def test_skips_in_dataloader_workers_are_summed_up_at_the_end_of_a_stage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging
    import warnings

    from avsl.data.datasets import FolderDataset
    from avsl.data.io import DataWarning
    from tests._data_fixtures import write_pair

    for i in range(6):
        write_pair(tmp_path, f"clip{i}", seed=i, seconds=0.5)
    (tmp_path / "frames" / "clip2.jpg").write_bytes(b"not a jpeg")  # found only when a worker decodes it
    (tmp_path / "audio" / "clip4.wav").write_bytes(b"RIFF")
    boxes = [{"file": f"clip{i}", "bbox": [[0.1, 0.1, 0.6, 0.6]]} for i in range(6)]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    test = FolderDataset(tmp_path, annotations="boxes.json", image_size=64, duration=0.5, on_error="skip")
    assert test.report().endswith("6 samples, nothing skipped")  # the index is fine: nothing is decoded yet
    data = AVDataModule(test=test, eval_batch_size=2, num_workers=2)
    model = EZVSL(**TINY["ezvsl"])
    with caplog.at_level(logging.INFO), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # each skip is announced by the worker that met it
        tiny_trainer(tmp_path / "run").test(model, datamodule=data)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[avsl] test set")]
    assert len(lines) == 1 and lines[0].endswith("2 skipped (1 corrupt audio, 1 corrupt image)"), lines


DDP_SKIPS = """
import logging, sys, warnings
from pathlib import Path
import lightning.pytorch as pl
from avsl.data import AVDataModule
from avsl.data.datasets import FolderDataset
from avsl.methods import EZVSL

if __name__ == "__main__":
    root = Path(sys.argv[1])
    warnings.simplefilter("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.INFO)
    test = FolderDataset(root, annotations="boxes.json", image_size=64, duration=0.5, on_error="skip")
    model = EZVSL(vision_backbone="tiny_cnn", audio_backbone="tiny_cnn", audio_frontend="logmel", embed_dim=8,
                  frame_size=(64, 64), duration=0.5)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=root / "run")
    trainer.test(model, datamodule=AVDataModule(test=test, eval_batch_size=1))
"""


@pytest.mark.ddp
def test_skips_of_every_process_are_summed_up(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests._data_fixtures import write_pair

    for i in range(4):
        write_pair(tmp_path, f"clip{i}", seed=i, seconds=0.5)
    # The sampler gives process 0 clips 0 and 2, process 1 clips 1 and 3: one bad file in each.
    (tmp_path / "frames" / "clip1.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "audio" / "clip2.wav").write_bytes(b"RIFF")
    (tmp_path / "boxes.json").write_text(
        json.dumps([{"file": f"clip{i}", "bbox": [[0.1, 0.1, 0.6, 0.6]]} for i in range(4)])
    )
    script = tmp_path / "skips_ddp.py"
    script.write_text(DDP_SKIPS)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "[avsl] test set" in line]
    assert len(lines) == 1 and lines[0].endswith("2 skipped (1 corrupt audio, 1 corrupt image)"), lines
