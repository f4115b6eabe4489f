"""Composite methods (SemiPL, XPL): built from data the same way from Python and LightningCLI, reloaded by one
function, localizing with their inner method's signal, optimizing with their inner methods' own arguments."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import torchmetrics

from avsl.cli import main
from avsl.data import AVDataModule, SynthAV, split_labeled
from avsl.data.io import load_audio, load_image
from avsl.data.transforms import audio_window, resize_image
from avsl.lightning_cli import AVSLCLI
from avsl.methods import EZVSL, SemiPL, Signal, load_method
from avsl.methods.xpl import XPL
from tests.test_cli_lightning import TINY_DATA, TINY_LABELED, TINY_TRAINER
from tests.test_methods_contract import cli_flags, tiny_trainer
from tests.test_xpl import TINY_PEER as PEER  # tiny EZ-VSL arguments at 64 px and 0.5 s

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

RATE_8K = [f"--data.init_args.{r}.init_args.sample_rate=8000" for r in ("unlabeled", "labeled", "val", "test")]


def _semi_data(sample_rate: int = 16000) -> AVDataModule:
    clips = SynthAV(num_clips=12, seed=0, image_size=64, duration=0.5, sample_rate=sample_rate)
    labeled, unlabeled = split_labeled(clips, 0.34, seed=0)
    evaluation = SynthAV(num_clips=4, seed=1, image_size=64, duration=0.5, sample_rate=sample_rate)
    return AVDataModule(unlabeled, labeled, val=evaluation, test=evaluation, batch_size=4)


def _probe(sample_rate: int = 16000) -> tuple[torch.Tensor, torch.Tensor]:
    clips = SynthAV(num_clips=2, seed=5, image_size=64, duration=0.5, sample_rate=sample_rate)
    return torch.stack([clips[i]["image"] for i in range(2)]), torch.stack([clips[i]["audio"] for i in range(2)])


# ------------------------------------------------------------------------------------------------ build and reload
@pytest.mark.parametrize(
    "flags",
    [
        ["-c", "semipl_synthav", *cli_flags({"base_args": PEER})],
        ["-c", "xpl", *cli_flags({"model_a_args": PEER, "warmup_epochs": 0})],
    ],
    ids=["semipl", "xpl"],
)
def test_cli_checkpoints_reload_with_load_method_and_give_the_same_maps(flags: list[str], tmp_path: Path) -> None:
    args = ["fit", *flags, "-c", "synthav_semi", f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"]
    cli = AVSLCLI(args + TINY_LABELED + TINY_DATA + TINY_TRAINER)
    model = cli.model.eval()
    inner = model.base if isinstance(model, SemiPL) else model.model_a
    # The inner method's hyperparameters are its own arguments, not its wrapper's config (Lightning #13181).
    assert inner.hparams["embed_dim"] == 16 and set(inner.hparams) == set(inspect.signature(type(inner)).parameters)
    ckpt = next(tmp_path.rglob("last.ckpt"))
    restored = load_method(ckpt)
    assert type(restored) is type(model) and restored.signal == model.signal
    image, audio = _probe()
    torch.testing.assert_close(restored.localize(image, audio), model.localize(image, audio))


@pytest.mark.parametrize("wrapper", ["semipl", "xpl"])
def test_python_checkpoints_reload_with_the_same_function(wrapper: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SemiPL("ezvsl", PEER) if wrapper == "semipl" else XPL("ezvsl", PEER, warmup_epochs=0)
    trainer = tiny_trainer(tmp_path)
    trainer.fit(model, datamodule=_semi_data())
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    restored = load_method(tmp_path / "model.ckpt")
    image, audio = _probe()
    model.eval()
    torch.testing.assert_close(restored.localize(image, audio), model.localize(image, audio))
    checkpoint = torch.load(tmp_path / "model.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["avsl_signal"] == model.signal.to_dict()
    assert "avsl_components" not in checkpoint, "inner methods are hyperparameters of their wrapper, as data"


# ------------------------------------------------------------------------------------------------ the signal
def test_a_wrapper_trained_at_8_khz_localizes_at_8_khz(tmp_path: Path) -> None:
    flags = cli_flags({"base_args": {**PEER, "sample_rate": 8000}})
    args = ["fit", "-c", "semipl_synthav", *flags, "-c", "synthav_semi", f"--trainer.default_root_dir={tmp_path}/run"]
    assert main([*args, "--trainer.logger=false", *TINY_LABELED, *TINY_DATA, *TINY_TRAINER, *RATE_8K]) == 0
    ckpt = next((tmp_path / "run").rglob("last.ckpt"))
    model = load_method(ckpt)
    assert model.signal == Signal(8000, (64, 64), 0.5, (-1.0, 1.0), "bilinear", False)  # the base's

    # a 16 kHz file: `avsl localize` resamples it to the model's 8 kHz and cuts its 0.5-s window
    assert main(["synth", "--out", str(tmp_path / "s"), "--train", "0", "--val", "0", "--test", "1", "--quiet"]) == 0
    frame = next((tmp_path / "s" / "frames").glob("*.jpg"))
    wav = next((tmp_path / "s" / "audio").glob("*.wav"))
    out = tmp_path / "o"
    assert main(["localize", "--ckpt", str(ckpt), "--image", str(frame), "--audio", str(wav), "--out", str(out)]) == 0
    written = torch.from_numpy(np.load(out / f"{frame.stem}_heatmap.npy"))
    image = resize_image(load_image(frame), (64, 64))[None]
    at_8k = audio_window(load_audio(wav, 8000), 4000)[None]
    torch.testing.assert_close(written, model.localize(image, at_8k)[0])
    at_16k = audio_window(load_audio(wav, 16000), 8000)[None]  # what a 16-kHz fallback would have fed the model
    assert not torch.allclose(written, model.localize(image, at_16k)[0], atol=1e-3)


def test_checkpoints_without_a_signal_or_with_another_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = EZVSL(**PEER)
    trainer = tiny_trainer(tmp_path, max_steps=1)
    trainer.fit(model, datamodule=_semi_data())
    trainer.save_checkpoint(tmp_path / "ok.ckpt")
    checkpoint = torch.load(tmp_path / "ok.ckpt", map_location="cpu", weights_only=True)
    del checkpoint["avsl_signal"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match=r"old\.ckpt records no signal .*\(sample_rate, frame_size, duration\)"):
        load_method(tmp_path / "old.ckpt")
    assert (
        main(["localize", "--ckpt", str(tmp_path / "old.ckpt"), "--video", "v.mp4", "--out", str(tmp_path / "o")]) == 1
    )
    assert "old.ckpt records no signal" in capsys.readouterr().err
    checkpoint["avsl_signal"] = {**model.signal.to_dict(), "sample_rate": 8000}
    torch.save(checkpoint, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="the checkpoint was trained with Signal\\(sample_rate=8000"):
        load_method(tmp_path / "other.ckpt")


def test_signal_is_checked() -> None:
    assert Signal(16000, [96, 128], 2).num_samples == 32000 and Signal(16000, [96, 128], 2).frame_size == (96, 128)
    for bad in ({"frame_size": (64,)}, {"sample_rate": 0}, {"duration": 0.0}, {"score_range": (1.0, 1.0)}):
        with pytest.raises(ValueError, match=r"frame_size must be|need sample_rate"):
            Signal(**{"sample_rate": 16000, "frame_size": (64, 64), "duration": 1.0, **bad})  # type: ignore[arg-type]
    assert Signal.from_dict(Signal(8000, (32, 48), 0.5).to_dict()) == Signal(8000, (32, 48), 0.5)


# ------------------------------------------------------------------------------------------------ optimizers, metrics
def test_each_inner_method_trains_at_its_own_learning_rate() -> None:
    model = XPL("ezvsl", {**PEER, "lr": 3e-4, "weight_decay": 0.01}, model_b="ezvsl", model_b_args={**PEER, "lr": 5e-5})
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    owner = {id(p): "a" for p in model.model_a.parameters()} | {id(p): "b" for p in model.model_b.parameters()}
    for group in optimizer.param_groups:
        peers = {owner[id(p)] for p in group["params"]}
        expected = {"a": (3e-4, 0.01), "b": (5e-5, 0.0)}[peers.pop()]
        assert not peers and (group["lr"], group["weight_decay"]) == expected
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))

    sspl = {k: v for k, v in PEER.items() if k != "embed_dim"}
    optimizer = SemiPL("sspl", {**sspl, "lr": 2e-5, "lr_head": 5e-5}).configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)  # SSPL's, with its two learning rates
    assert {g["lr"] for g in optimizer.param_groups} == {2e-5, 5e-5}


def test_inner_methods_hold_no_metrics(tmp_path: Path) -> None:
    model = XPL("ezvsl", PEER, warmup_epochs=0)
    trainer = tiny_trainer(tmp_path, max_steps=1)
    trainer.fit(model, datamodule=_semi_data())
    trainer.test(model, datamodule=_semi_data())
    metrics = [name for name, module in model.named_modules() if isinstance(module, torchmetrics.Metric)]
    assert metrics and all(name.startswith("eval_metrics.") for name in metrics), metrics
    assert not model.model_a.eval_metrics and model.model_b is not None and not model.model_b.eval_metrics
