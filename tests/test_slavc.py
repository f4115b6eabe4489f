"""SLAVC against its reference (stoneMo/SLAVC ``model.SLAVC`` and ``test.py``'s scoring) with identical weights and
inputs, and its momentum encoders."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor

from avsl.methods import SLAVC
from avsl.metrics.functional import slavc_confidence
from avsl.testing import fill_deterministic, tiny_args, tiny_data
from avsl.types import TrainBatch

REFERENCE = Path(__file__).parent / "data" / "slavc_reference.json"
TAU = 0.03


def inputs() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 224, 224, generator=g), 0.1 * torch.randn(4, 48000, generator=g)


def reference_model(weights: dict[str, Tensor], **kwargs: float | str) -> SLAVC:
    # Momentum 1 leaves the momentum encoders as they are, so training_losses is the reference's forward(mode='test').
    model = SLAVC(visual_momentum=1.0, audio_momentum=1.0, **kwargs)  # type: ignore[arg-type]
    model.load_state_dict({k: v for k, v in weights.items() if k in model.state_dict()})
    return model


def batch_of(image: Tensor, wave: Tensor) -> TrainBatch:
    return {"unlabeled": {"image": image, "audio": wave, "sample_id": [str(i) for i in range(4)]}}


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text())
    return data


@pytest.fixture(scope="module")
def weights() -> dict[str, Tensor]:
    # drawn name by name: the momentum encoders get other values than the online ones, so a map tells which made it
    return fill_deterministic(SLAVC(ogl_backbone="resnet18").state_dict())


def test_loss_and_maps_equal_the_reference_in_eval_mode(reference: dict[str, Any], weights: dict[str, Tensor]) -> None:
    torch.set_num_threads(1)
    image, wave = inputs()
    model = reference_model(weights).eval()  # dropout off, batch norms on their running statistics
    assert list(model.encoders.audio.frontend(wave).shape) == reference["spec_shape"]
    with torch.no_grad():
        loss = sum(model.training_losses(batch_of(image, wave)).values())
        savl_momentum = model(image, wave) / TAU  # the reference's map is the cosine over tau
        model.use_momentum_eval = False
        savl_online = model(image, wave) / TAU
        model.use_momentum_eval = True
        unit = model.unit_scores(model.localize(image, wave, normalize=False))  # test.py: bicubic to 224, fixed range
    torch.testing.assert_close(loss, torch.tensor(reference["loss"]), atol=1e-5, rtol=1e-5)
    shape = reference["savl_shape"]
    torch.testing.assert_close(savl_momentum, torch.tensor(reference["savl_momentum"]).view(shape), atol=1e-4, rtol=0)
    torch.testing.assert_close(savl_online, torch.tensor(reference["savl_online"]).view(shape), atol=1e-4, rtol=0)
    assert (savl_momentum - savl_online).abs().max() > 0.5  # the two encoders' maps differ: the test tells them apart
    expected = torch.tensor(reference["scores_av_every_32nd"]).view(4, 7, 7)
    torch.testing.assert_close(unit[:, ::32, ::32], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(slavc_confidence(unit), torch.tensor(reference["conf_av"]), atol=1e-5, rtol=0)


def test_loss_and_map_equal_the_reference_in_train_mode(reference: dict[str, Any], weights: dict[str, Tensor]) -> None:
    # With batch statistics the clips' features differ enough for the loss to tell them apart (in eval mode, randomly
    # filled ResNets give every clip nearly the same embedding and the loss is ~2 log 4 whatever the code).
    torch.set_num_threads(1)
    image, wave = inputs()
    model = reference_model(weights, visual_dropout=0.0).train()  # the reference with its dropout set to 0
    with torch.no_grad():
        loss = sum(model.training_losses(batch_of(image, wave)).values())
        savl = model(image, wave) / TAU
    assert abs(reference["loss_train"] - 2 * math.log(4)) > 1e-3
    torch.testing.assert_close(loss, torch.tensor(reference["loss_train"]), atol=1e-5, rtol=1e-5)
    expected = torch.tensor(reference["savl_train"]).view(reference["savl_shape"])
    torch.testing.assert_close(savl, expected, atol=1e-4, rtol=0)


def test_object_guided_scores_equal_test_py(reference: dict[str, Any], weights: dict[str, Tensor]) -> None:
    torch.set_num_threads(1)
    image, wave = inputs()
    model = reference_model(weights, ogl_backbone="resnet18").eval()  # ogl_alpha 0.9, SLAVC's test scripts
    with torch.no_grad():
        unit = model.unit_scores(model.localize(image, wave, normalize=False))
    expected = torch.tensor(reference["scores_av_obj_every_32nd"]).view(4, 7, 7)
    torch.testing.assert_close(unit[:, ::32, ::32], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(slavc_confidence(unit), torch.tensor(reference["conf_av_obj"]), atol=1e-5, rtol=0)


def test_a_training_step_moves_the_momentum_encoders_by_the_ema(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = 0.9
    model = SLAVC(**{**tiny_args(SLAVC), "visual_momentum": m, "audio_momentum": m})
    model.load_state_dict(fill_deterministic(model.state_dict()))  # momentum weights unlike the online ones
    online = [p.detach().clone() for p in model.encoders.parameters()]
    momentum = [p.detach().clone() for p in model.momentum_encoders.parameters()]
    assert all(not p.requires_grad for p in model.momentum_encoders.parameters())

    trainer = pl.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=tiny_data())

    # The update comes first in the step, from the online weights before the optimizer moves them (the reference's).
    for old_m, old_b, new_m in zip(momentum, online, model.momentum_encoders.parameters(), strict=True):
        torch.testing.assert_close(new_m.detach(), m * old_m + (1 - m) * old_b, atol=1e-6, rtol=1e-6)
        assert new_m.grad is None
    assert any(not torch.equal(a, b.detach()) for a, b in zip(online, model.encoders.parameters(), strict=True))
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.encoders.parameters()}  # the online encoders, nothing else


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="visual_dropout"):
        SLAVC(**tiny_args(SLAVC), visual_dropout=1.0)
    with pytest.raises(ValueError, match="audio_momentum"):
        SLAVC(**tiny_args(SLAVC), audio_momentum=1.5)
    with pytest.raises(ValueError, match="tau"):
        SLAVC(**tiny_args(SLAVC), tau=0.0)
    with pytest.raises(ValueError, match="ogl_alpha"):
        SLAVC(**tiny_args(SLAVC), ogl_alpha=-0.1)
