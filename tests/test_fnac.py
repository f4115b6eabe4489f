"""FNAC against its reference (OpenNLPLab/FNAC_AVL ``model.FNAC``) with identical weights and inputs, and its
schedule of loss terms."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from avsl.losses import fnac_regularizers, mil_infonce
from avsl.methods import FNAC
from avsl.nn.heads import cosine_map
from avsl.testing import fill_deterministic, tiny_args, tiny_data

REFERENCE = Path(__file__).parent / "data" / "fnac_reference.json"


def test_losses_and_map_equal_the_reference_with_the_same_weights() -> None:
    reference = json.loads(REFERENCE.read_text())
    model = FNAC()  # the reference network: ResNet-18 x2, 512-d, loglinear spectrogram
    model.load_state_dict(fill_deterministic(model.state_dict()))
    model.eval()  # dropout off, batch norm on its running statistics: the reference's eval-mode forward
    g = torch.Generator().manual_seed(1)
    image, wave = torch.rand(4, 3, 224, 224, generator=g), 0.1 * torch.randn(4, 48000, generator=g)
    with torch.no_grad():
        visual, audio = model.visual(image), model.audio(wave)
        losses = [mil_infonce(visual, audio, 0.03), *fnac_regularizers(visual, audio, 0.03, 0.6)]
        savl = cosine_map(visual, audio) / 0.03
    assert list(model.audio.frontend(wave).shape) == reference["spec_shape"]
    torch.testing.assert_close(torch.stack(losses), torch.tensor(reference["losses"]), atol=1e-5, rtol=1e-5)
    expected = torch.tensor(reference["savl"]).view(reference["savl_shape"])
    torch.testing.assert_close(savl, expected, atol=1e-4, rtol=1e-5)


def test_the_regularizers_start_after_the_warm_up(tmp_path: Path) -> None:
    class Terms(pl.Callback):
        def __init__(self) -> None:
            self.seen: list[set[str]] = []

        def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
            self.seen.append({k for k in trainer.callback_metrics if k.startswith("train/")})

    terms = Terms()
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[terms], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(FNAC(**{**tiny_args(FNAC), "warmup_epochs": 1}), datamodule=tiny_data())
    assert terms.seen[0] == {"train/infonce", "train/loss"}  # epoch 0: InfoNCE alone
    assert terms.seen[-1] == {"train/infonce", "train/fns1", "train/tns", "train/fns2", "train/loss"}
    assert all(torch.isfinite(trainer.callback_metrics[k]) for k in terms.seen[-1])


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="visual_dropout"):
        FNAC(**tiny_args(FNAC), visual_dropout=1.0)
    with pytest.raises(ValueError, match="tau"):
        FNAC(**tiny_args(FNAC), tau=0.0)
