"""SemiPL: the supervised heatmap loss, the base's unsupervised loss, wrapping SSPL and EZ-VSL, checkpoints, the CLI."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from avsl.cli import main
from avsl.data import AVDataModule, SynthAV, split_labeled
from avsl.methods import SSPL, LocalizationMethod, SemiPL, Signal, load_method
from avsl.types import TrainBatch
from tests.test_cli_lightning import TINY_DATA, TINY_LABELED, TINY_TRAINER
from tests.test_methods_contract import TINY, cli_flags, tiny_trainer

SSPL_TINY: dict[str, Any] = TINY["sspl"]
EZVSL_TINY: dict[str, Any] = TINY["ezvsl"]


class FixedMaps(LocalizationMethod):
    """A stub base: fixed 2x2 raw maps, nearest upsampling, and a constant 'unsupervised' loss."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(Signal(16000, (4, 4), 0.5, score_range=(-1.0, 1.0), upsample_mode="nearest"))
        self.save_hyperparameters()
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        maps = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).expand(image.shape[0], 2, 2)
        return maps * self.scale

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        return {"const": self.scale * batch["unlabeled"]["image"].shape[0]}


FIXED = f"{__name__}.FixedMaps"  # a base is named by its import path


def _batch(n: int = 2, size: int = 4, gt: Tensor | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"image": torch.rand(n, 3, size, size), "audio": torch.randn(n, 8000)}
    out["sample_id"] = [f"s{i}" for i in range(n)]
    if gt is not None:
        out["gt_map"] = gt
    return out


def _tiny_data(fraction: float = 0.34) -> AVDataModule:
    annotated = SynthAV(num_clips=12, seed=0, image_size=64, duration=0.5)
    labeled, unlabeled = split_labeled(annotated, fraction, seed=0)
    evaluation = SynthAV(num_clips=6, seed=1, image_size=64, duration=0.5)
    return AVDataModule(unlabeled, labeled, val=evaluation, test=evaluation, batch_size=4)


# ------------------------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("kind", ["bce", "mse"])
def test_supervised_loss_hand_computed(kind: str) -> None:
    # maps (0, 1, 2, 4) -> min-max (0, .25, .5, 1) -> nearest x2 to 4x4; GT: the right column = the last two values
    gt = torch.zeros(2, 4, 4)
    gt[:, :, 2:] = 1.0
    gt[1] = 0.0  # an empty ground truth (a negative) is left out of the mean
    model = SemiPL(FIXED, lambda_sup=2.0, lambda_unsup=0.5, sup_loss=kind)
    losses = model.training_losses({"unlabeled": _batch(3), "labeled": _batch(2, gt=gt)})  # type: ignore[typeddict-item]
    eps = 1e-6
    if kind == "bce":
        per_pixel = [-math.log(1 - eps), -math.log(0.25), -math.log(1 - 0.5), -math.log(1 - eps)]
    else:
        per_pixel = [0.0, 0.75**2, 0.5**2, 0.0]
    assert losses["sup"].item() == pytest.approx(2.0 * sum(per_pixel) / 4, rel=1e-5)
    assert losses["unsup_const"].item() == pytest.approx(0.5 * 3)  # the base's loss on the unlabeled batch, weighted
    assert set(losses) == {"sup", "unsup_const"}


def test_supervised_mass_loss_hand_computed() -> None:
    # FixedMaps' score range is the base's default (-1, 1): unit scores (m + 1) / 2 of the 4x4 nearest upsampling,
    # softmax at temperature 0.5 over the 16 pixels, -log of the mass in the right half.
    gt = torch.zeros(2, 4, 4)
    gt[:, :, 2:] = 1.0
    gt[1] = 0.0  # left out of the mean
    model = SemiPL(FIXED, sup_loss="mass", sup_temperature=0.5)
    losses = model.training_losses({"unlabeled": _batch(3), "labeled": _batch(2, gt=gt)})  # type: ignore[typeddict-item]
    unit = (torch.tensor([0.0, 1.0, 2.0, 4.0]) + 1) / 2
    weights = torch.exp(unit / 0.5)  # each value covers 4 pixels (a 2x2 block) of the 4x4 map
    inside = float(weights[1] + weights[3]) / float(weights.sum())
    assert losses["sup"].item() == pytest.approx(-math.log(inside), rel=1e-5)
    with pytest.raises(ValueError, match="sup_temperature"):
        SemiPL(FIXED, sup_loss="mass", sup_temperature=0.0)


def test_needs_labeled_batches_with_gt_maps() -> None:
    model = SemiPL(FIXED)
    with pytest.raises(ValueError, match="SemiPL needs labeled batches"):
        model.training_losses({"unlabeled": _batch()})  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match="gt_map"):
        model.training_losses({"unlabeled": _batch(), "labeled": _batch()})  # type: ignore[typeddict-item]


def test_unsup_on_labeled_appends_the_labeled_samples() -> None:
    gt = torch.ones(2, 4, 4)
    model = SemiPL(FIXED, unsup_on_labeled=True)
    losses = model.training_losses({"unlabeled": _batch(3), "labeled": _batch(2, gt=gt)})  # type: ignore[typeddict-item]
    assert losses["unsup_const"].item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="same frame size"):
        model.training_losses({"unlabeled": _batch(3), "labeled": _batch(2, size=8, gt=torch.ones(2, 8, 8))})  # type: ignore[typeddict-item]


def test_unsupervised_term_is_the_bases_own_loss() -> None:
    gt = torch.ones(4, 64, 64)
    data = {"unlabeled": _batch(4, 64), "labeled": _batch(4, 64, gt=gt)}
    # EZ-VSL: its InfoNCE on the unlabeled batch
    torch.manual_seed(0)
    ez = SemiPL("ezvsl", EZVSL_TINY, lambda_unsup=0.5)
    expected = ez.base.training_losses({"unlabeled": data["unlabeled"]})["infonce"]
    torch.testing.assert_close(ez.training_losses(data)["unsup_infonce"], 0.5 * expected)  # type: ignore[arg-type]
    # SSPL: its SimSiam negative cosine (random views: same seed, same views; the supervised map comes first)
    torch.manual_seed(0)
    semi = SemiPL("sspl", SSPL_TINY).eval()  # eval: BatchNorm statistics do not move between the two calls
    torch.manual_seed(1)
    losses = semi.training_losses(data)  # type: ignore[arg-type]
    torch.manual_seed(1)
    semi.base(data["labeled"]["image"], data["labeled"]["audio"])
    expected = semi.base.training_losses({"unlabeled": data["unlabeled"]})["simsiam"]
    torch.testing.assert_close(losses["unsup_simsiam"], expected)


def test_the_supervised_loss_trains_the_wrapped_map() -> None:
    torch.manual_seed(0)
    model = SemiPL("ezvsl", EZVSL_TINY, lambda_unsup=0.0)
    gt = torch.zeros(4, 64, 64)
    gt[:, :, :32] = 1.0
    data = {"unlabeled": _batch(4, 64), "labeled": _batch(4, 64, gt=gt)}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.training_losses(data)["sup"].item()  # type: ignore[arg-type]
    for _ in range(15):
        optimizer.zero_grad()
        model.training_losses(data)["sup"].backward()  # type: ignore[arg-type]
        optimizer.step()
    assert model.training_losses(data)["sup"].item() < 0.7 * first  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------- wrapper
def test_takes_signal_and_optimizer_from_its_base() -> None:
    ez = SemiPL("ezvsl", EZVSL_TINY, eval_protocol="ezvsl")
    raw = torch.randn(2, 4, 4)
    torch.testing.assert_close(
        ez.upsample(raw, (16, 16)), F.interpolate(raw[:, None], (16, 16), mode="bilinear", align_corners=True)[:, 0]
    )
    assert ez.eval_protocol == "ezvsl" and isinstance(ez.configure_optimizers(), torch.optim.Adam)
    sspl = SemiPL("sspl", {**SSPL_TINY, "lr": 2e-5, "lr_head": 5e-5, "sample_rate": 8000})
    torch.testing.assert_close(
        sspl.upsample(raw, (16, 16)), F.interpolate(raw[:, None], (16, 16), mode="bilinear", align_corners=False)[:, 0]
    )
    optimizer = sspl.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW) and {g["lr"] for g in optimizer.param_groups} == {2e-5, 5e-5}
    assert sspl.eval_protocol == "sspl" and sspl.signal == sspl.base.signal and sspl.signal.sample_rate == 8000
    assert sspl.hparams["base"] == "sspl" and sspl.hparams["base_args"]["lr_head"] == 5e-5
    assert sspl.base.hparams["lr_head"] == 5e-5 and sspl.base.hparams["use_pcm"] is False  # given and default
    assert not sspl.base.eval_metrics, "an inner method builds no metrics"
    with pytest.raises(ValueError, match="not a LocalizationMethod"):
        SemiPL("torch.nn.Linear")
    with pytest.raises(ValueError, match="bad arguments for SSPL"):
        SemiPL("sspl", {"embed_dim": 8})
    with pytest.raises(ValueError, match="sup_loss"):
        SemiPL(FIXED, sup_loss="l1")  # type: ignore[arg-type]


@pytest.mark.parametrize("base", ["ezvsl", "sspl"])
def test_wraps_a_method_fits_and_round_trips_through_load_method(base: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SemiPL(base, EZVSL_TINY if base == "ezvsl" else {**SSPL_TINY, "use_pcm": True})
    trainer = tiny_trainer(tmp_path)
    trainer.fit(model, datamodule=_tiny_data())
    assert trainer.global_step == 2
    assert {"train/sup", "train/loss"} <= set(trainer.callback_metrics)
    ckpt = tmp_path / "semipl.ckpt"
    trainer.save_checkpoint(ckpt)
    restored = load_method(ckpt)
    assert isinstance(restored, SemiPL) and type(restored.base) is type(model.base)
    batch = next(iter(_tiny_data().test_dataloader()))
    model.eval()
    torch.testing.assert_close(
        restored.localize(batch["image"], batch["audio"]), model.localize(batch["image"], batch["audio"])
    )


def test_trained_through_the_cli_and_loaded_with_load_method(tmp_path: Path) -> None:
    args = ["fit", "-c", "semipl", "-c", "synthav_semi", f"--trainer.default_root_dir={tmp_path}"]
    args += ["--trainer.logger=false", *cli_flags(TINY["semipl"]), *TINY_LABELED]
    assert main(args + TINY_DATA + TINY_TRAINER) == 0
    ckpt = next(tmp_path.rglob("last.ckpt"))
    restored = load_method(ckpt)
    assert isinstance(restored, SemiPL) and isinstance(restored.base, SSPL) and restored.base.pcm is not None
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in restored.state_dict().items():
        torch.testing.assert_close(value, state[key])
    maps = restored.localize(torch.rand(2, 3, 64, 64), torch.randn(2, 8000))
    assert maps.shape == (2, 64, 64)
