"""XPL: the pure functions on hand-computed values, the pseudo-label bank, the wrapper's losses and checkpoints."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import Subset

from avsl.data import AVDataModule, SynthAV
from avsl.losses import heatmap_bce, heatmap_mass
from avsl.methods import EZVSL, METHODS, load_method
from avsl.methods.xpl import XPL
from avsl.metrics._ids import hash_sample_id
from avsl.nn.augment import color_jitter, crop_flip, crop_flip_params
from avsl.nn.banks import PseudoLabelBank, ema_update, hash_ids
from avsl.nn.maps import map_agreement, map_confidence, minmax_normalize, sharpen, top_fraction_mask
from avsl.nn.schedules import selection_fraction, sigmoid_rampup
from avsl.types import TrainBatch

TINY_PEER: dict[str, Any] = {
    "vision_backbone": "tiny_cnn",
    "audio_backbone": "tiny_cnn",
    "audio_frontend": "logmel",
    "embed_dim": 16,
    "frame_size": (64, 64),
    "duration": 0.5,
}
SSPL_TINY: dict[str, Any] = {"vision_backbone": "tiny_cnn", "audio_backbone": "tiny_cnn", "audio_frontend": "logmel"}
NO_AUG: dict[str, Any] = {"strong_crop": 1.0, "strong_flip": 0.0, "strong_jitter": 0.0}


@cache
def clips() -> SynthAV:
    """Twelve small clips, generated once for the whole module (SynthAV keeps generated clips in memory)."""
    return SynthAV(num_clips=12, seed=0, image_size=64, duration=0.5)


def batch_of(clips: SynthAV, start: int, n: int) -> dict[str, Any]:
    samples = [clips[i] for i in range(start, start + n)]
    out: dict[str, Any] = {"sample_id": [s["sample_id"] for s in samples]}
    for key in ("image", "audio", "gt_map"):
        out[key] = torch.stack([s[key] for s in samples])  # type: ignore[literal-required]
    return out


def train_batch(n: int = 4, labeled: bool = True) -> TrainBatch:
    batch: dict[str, Any] = {"unlabeled": batch_of(clips(), 0, n)}
    if labeled:
        batch["labeled"] = batch_of(clips(), 8, 2)
    return batch  # type: ignore[return-value]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


# ------------------------------------------------------------------------------------------------ pure functions
def test_sharpen_on_hand_computed_values() -> None:
    p = torch.tensor([0.0, 0.2, 0.5, 0.75, 1.0])
    # T = 0.5: p^2 / (p^2 + (1 - p)^2); 0.2 -> 0.04 / 0.68, 0.75 -> 0.5625 / 0.625 = 0.9
    expected = torch.tensor([0.0, 0.04 / 0.68, 0.5, 0.9, 1.0])
    torch.testing.assert_close(sharpen(p, 0.5), expected)
    torch.testing.assert_close(sharpen(p, 1.0), p)
    # T = 0.25: 0.75^4 / (0.75^4 + 0.25^4) = 81 / 82
    assert float(sharpen(torch.tensor(0.75), 0.25)) == pytest.approx(81 / 82, abs=1e-6)
    with pytest.raises(ValueError, match="positive"):
        sharpen(p, 0.0)


def test_pl_ema_on_hand_computed_values() -> None:
    previous = torch.tensor([[0.2, 1.0], [0.5, 0.5]])
    current = torch.tensor([[0.8, 0.0], [1.0, 0.0]])
    # beta = 0.9 weights the previous label: 0.9 * 0.2 + 0.1 * 0.8 = 0.26, 0.9 * 1 + 0 = 0.9
    out = ema_update(previous, current, 0.9, seen=torch.tensor([True, False]))
    torch.testing.assert_close(out, torch.tensor([[0.26, 0.9], [1.0, 0.0]]))  # an unseen entry takes the current
    torch.testing.assert_close(ema_update(previous, current, 0.0), current)
    with pytest.raises(ValueError, match="momentum"):
        ema_update(previous, current, 1.0)


def test_agreement_and_confidence_on_hand_computed_values() -> None:
    p = torch.tensor([[[0.9, 0.1], [0.6, 0.2]]])
    q = torch.tensor([[[0.8, 0.7], [0.1, 0.1]]])
    # binarized at 0.5: {(0,0), (1,0)} vs {(0,0), (0,1)}: IoU 1/3
    assert float(map_agreement(p, q, "iou")) == pytest.approx(1 / 3)
    # soft IoU: sum(min) / sum(max) = (0.8 + 0.1 + 0.1 + 0.1) / (0.9 + 0.7 + 0.6 + 0.2)
    assert float(map_agreement(p, q, "soft_iou")) == pytest.approx(1.1 / 2.4)
    assert float(map_agreement(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))) == 0.0  # two empty masks: no location
    # confidence: mean |2p - 1| of (0, 1, 0.5, 0.75) = (1 + 1 + 0 + 0.5) / 4
    assert float(map_confidence(torch.tensor([[[0.0, 1.0], [0.5, 0.75]]]))) == pytest.approx(0.625)


def test_curriculum_schedules() -> None:
    assert [selection_fraction(e, 0.2, 4) for e in (0, 1, 2, 4, 10)] == pytest.approx([0.2, 0.4, 0.6, 1.0, 1.0])
    assert selection_fraction(0, 0.2, 0) == 1.0
    assert selection_fraction(-3, 0.5, 4) == 0.5
    assert sigmoid_rampup(0, 5) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(2.5, 5) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(5, 5) == sigmoid_rampup(9, 5) == sigmoid_rampup(0, 0) == 1.0
    population = torch.arange(1, 11, dtype=torch.float32) / 10  # 0.1 ... 1.0
    # top 30 % of 10 values: the 3rd largest (0.8) is the threshold, ties included
    mask = top_fraction_mask(torch.tensor([0.85, 0.8, 0.5]), population, 0.3)
    assert mask.tolist() == [True, True, False]
    assert top_fraction_mask(torch.tensor([0.0]), population, 1.0).tolist() == [True]
    assert top_fraction_mask(torch.tensor([1.0]), population, 0.0).tolist() == [False]
    with pytest.raises(ValueError, match="start"):
        selection_fraction(0, 1.5, 3)


def test_crop_flip_geometry() -> None:
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    identity = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(crop_flip(x, identity), x)
    torch.testing.assert_close(crop_flip(x, torch.tensor([[1.0, 0.0, 0.0, 1.0]])), x.flip(-1))
    # the top-right quadrant (scale 0.5 at x0 = 0.5, y0 = 0), read with nearest neighbour, each pixel twice
    quadrant = crop_flip(x, torch.tensor([[0.5, 0.5, 0.0, 0.0]]), mode="nearest")
    expected = torch.tensor([[2.0, 2.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0], [6.0, 6.0, 7.0, 7.0], [6.0, 6.0, 7.0, 7.0]])
    torch.testing.assert_close(quadrant[0, 0], expected)
    # the same parameters warp a frame and its low-resolution map alike: a box stays where the map says
    frame = torch.zeros(1, 1, 64, 64)
    frame[..., 32:, 48:] = 1.0
    small = torch.nn.functional.avg_pool2d(frame, 8)
    params = torch.tensor([[0.75, 0.25, 0.25, 1.0]])
    warped_small = crop_flip(small, params)
    warped_frame = torch.nn.functional.avg_pool2d(crop_flip(frame, params), 8)
    assert (warped_small - warped_frame).abs().max() < 0.2
    params = crop_flip_params(100, 0.7, 0.5)
    assert params.shape == (100, 4)
    assert bool((params[:, 0] >= 0.7).all()) and bool((params[:, 1:3] + params[:, :1] <= 1 + 1e-6).all())
    assert 0 < int(params[:, 3].sum()) < 100
    image = torch.rand(2, 3, 8, 8)
    jittered = color_jitter(image, 0.3, saturation=False)
    assert jittered.shape == image.shape and float(jittered.min()) >= 0 and float(jittered.max()) <= 1
    assert torch.equal(color_jitter(image, 0.0), image)


# ------------------------------------------------------------------------------------------------ the bank
def test_bank_write_read_grow_and_duplicates() -> None:
    bank = PseudoLabelBank()
    assert len(bank) == 0 and bank.entry_shape is None
    keys = hash_ids(["a", "b", "c"])
    assert keys.tolist() == [hash_sample_id(s) for s in "abc"]
    bank.write(keys, torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]).view(3, 1, 2))
    assert len(bank) == 3 and bank.entry_shape == (1, 2)
    # overwrite "b", append "d" twice in one call: the first occurrence wins
    bank.write(hash_ids(["b", "d", "d"]), torch.tensor([[[20.0, 20.0]], [[4.0, 4.0]], [[5.0, 5.0]]]))
    values, found = bank.read(hash_ids(["d", "b", "zzz", "a"]))
    assert found.tolist() == [True, True, False, True]
    torch.testing.assert_close(values[:, 0, 0], torch.tensor([4.0, 20.0, 0.0, 1.0]))
    assert len(bank) == 4
    with pytest.raises(ValueError, match="shape"):
        bank.write(hash_ids(["e"]), torch.zeros(1, 2, 2))


def test_bank_state_dict_restores_into_banks_of_other_sizes() -> None:
    saved = PseudoLabelBank()
    saved.write(hash_ids([f"s{i}" for i in range(5)]), torch.rand(5, 3, 3))
    state = saved.state_dict()
    for size in (0, 2, 9):  # fresh (empty), smaller and larger banks
        bank = PseudoLabelBank()
        if size:
            bank.write(hash_ids([f"t{i}" for i in range(size)]), torch.rand(size, 3, 3))
        bank.load_state_dict(state)
        assert torch.equal(bank.keys, saved.keys) and torch.equal(bank.values, saved.values)
        values, found = bank.read(hash_ids(["s3", "t0"]))  # the key index is rebuilt from the loaded keys
        assert found.tolist() == [True, False]
        torch.testing.assert_close(values[0], saved.values[3])


# ------------------------------------------------------------------------------------------------ the wrapper
def test_model_b_is_an_independent_seeded_copy() -> None:
    first, second = XPL("ezvsl", TINY_PEER, peer_seed=3), XPL("ezvsl", TINY_PEER, peer_seed=3)
    other = XPL("ezvsl", TINY_PEER, peer_seed=4)
    assert first.model_b is not None and second.model_b is not None and other.model_b is not None
    assert type(first.model_b) is EZVSL and first.model_b.hparams == first.model_a.hparams
    assert first.model_a.hparams["embed_dim"] == 16 and first.model_a.hparams["tau"] == 0.03  # given and default
    b1, b2, b3 = (m.model_b.state_dict() for m in (first, second, other))
    a = first.model_a.state_dict()
    weight = "visual.proj.weight"
    assert torch.equal(b1[weight], b2[weight]), "same peer_seed, same model_b"
    assert not torch.equal(b1[weight], b3[weight]) and not torch.equal(b1[weight], a[weight])
    # without peer_seed the seed is drawn from torch's global generator: reproducible under a global seed
    torch.manual_seed(0)
    c1 = XPL("ezvsl", TINY_PEER).model_b
    torch.manual_seed(0)
    c2 = XPL("ezvsl", TINY_PEER).model_b
    assert c1 is not None and c2 is not None and torch.equal(c1.state_dict()[weight], c2.state_dict()[weight])


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="self"):
        XPL("ezvsl", TINY_PEER, pseudo_labels="self")  # eval_model must be "a"
    with pytest.raises(ValueError, match="ema_momentum"):
        XPL("ezvsl", TINY_PEER, ema_momentum=1.0)
    with pytest.raises(ValueError, match="not a LocalizationMethod"):
        XPL("torch.nn.Linear")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        XPL("nope")
    with pytest.raises(ValueError, match="bad arguments for EZVSL"):
        XPL("ezvsl", {"no_such_argument": 1})
    with pytest.raises(ValueError, match="model_b_args needs model_b"):
        XPL("ezvsl", TINY_PEER, model_b_args=TINY_PEER)
    with pytest.raises(ValueError, match="peers must take the same inputs"):
        XPL("ezvsl", TINY_PEER, model_b="ezvsl", model_b_args={**TINY_PEER, "sample_rate": 8000})
    with pytest.raises(ValueError, match="with one optimizer, but model_a uses Adam and model_b AdamW"):
        XPL("ezvsl", TINY_PEER, model_b="sspl", model_b_args={**SSPL_TINY, "frame_size": (64, 64), "duration": 0.5})
    dotted = XPL("avsl.methods.EZVSL", TINY_PEER)
    assert isinstance(dotted.model_a, EZVSL) and dotted.model_a.hparams["embed_dim"] == 16
    assert METHODS["xpl"] is XPL


def test_data_at_another_rate_names_the_peers_arguments() -> None:
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.datamodule = AVDataModule(SynthAV(num_clips=4, seed=0, image_size=64, duration=0.5, sample_rate=8000))  # type: ignore[misc]
    a, b = "--model.init_args.model_a_args.sample_rate", "--model.init_args.model_b_args.sample_rate"
    for model, flags in ((XPL("ezvsl", TINY_PEER), a), (XPL("ezvsl", TINY_PEER, "ezvsl", TINY_PEER), f"{a} and {b}")):
        model.trainer = trainer
        with pytest.raises(ValueError, match=f"data is at 8000 Hz but XPL takes 16000 Hz audio: .*\\({flags}\\)$"):
            model.setup("fit")


def test_losses_cross_wiring_on_hand_computed_targets() -> None:
    # No augmentation, no PL-EMA memory, every sample selected: A's cross target is B's sharpened map and vice versa.
    torch.manual_seed(0)
    model = XPL(
        "ezvsl",
        TINY_PEER,
        warmup_epochs=0,
        rampup_epochs=0,
        select_start=1.0,
        ema_momentum=0.0,
        lambda_sup=0.0,
        **NO_AUG,
    )
    batch = train_batch()
    losses = model.training_losses(batch)
    assert set(losses) == {"a_infonce", "b_infonce", "a_cross", "b_cross"}
    data = batch["unlabeled"]
    assert model.model_b is not None
    with torch.no_grad():
        pa = minmax_normalize(model.model_a(data["image"], data["audio"]))
        pb = minmax_normalize(model.model_b(data["image"], data["audio"]))
        # oneDNN may pick other channels-last convolution kernels with and without autograd: equal to ~1e-5.
        close = {"rtol": 1e-4, "atol": 1e-5}
        torch.testing.assert_close(losses["a_cross"], heatmap_bce(pa, sharpen(pb, 0.5)), **close)
        torch.testing.assert_close(losses["b_cross"], heatmap_bce(pb, sharpen(pa, 0.5)), **close)
        torch.testing.assert_close(model.reliability.values, map_agreement(pa, pb))
        torch.testing.assert_close(model.bank_a.values, sharpen(pa, 0.5))

    # gradients reach both peers, and only through their own terms
    model.zero_grad()
    losses["a_cross"].backward()
    assert model.model_a.visual.proj.weight.grad is not None
    assert model.model_b.visual.proj.weight.grad is None


def test_mass_map_loss_on_hand_computed_targets() -> None:
    # map_loss="mass": the cross loss of A is heatmap_mass of A's unit-range map on the (un-augmented) batch against
    # B's sharpened map; the supervised loss of A is heatmap_mass of A's upsampled map against gt_map.
    torch.manual_seed(0)
    model = XPL(
        "ezvsl",
        TINY_PEER,
        warmup_epochs=0,
        rampup_epochs=0,
        select_start=1.0,
        ema_momentum=0.0,
        map_loss="mass",
        map_temperature=0.1,
        **NO_AUG,
    )
    batch = train_batch()
    losses = model.training_losses(batch)
    data, labeled = batch["unlabeled"], batch["labeled"]
    assert model.model_b is not None
    close = {"rtol": 1e-4, "atol": 1e-5}  # oneDNN kernels differ with and without autograd (see above)
    with torch.no_grad():
        ra = model.model_a(data["image"], data["audio"])
        pb = minmax_normalize(model.model_b(data["image"], data["audio"]))
        torch.testing.assert_close(losses["a_cross"], heatmap_mass((ra + 1) / 2, sharpen(pb, 0.5), 0.1), **close)
        gt = labeled["gt_map"].float()
        up = model.model_a.upsample(model.model_a(labeled["image"], labeled["audio"]), tuple(gt.shape[-2:]))
        torch.testing.assert_close(losses["a_sup"], heatmap_mass((up + 1) / 2, gt, 0.1), **close)
    with pytest.raises(ValueError, match="map_loss"):
        XPL("ezvsl", TINY_PEER, map_loss="kl")  # type: ignore[arg-type]


def test_losses_supervision_warmup_and_self_mode() -> None:
    torch.manual_seed(0)
    model = XPL("ezvsl", TINY_PEER, warmup_epochs=1)
    losses = model.training_losses(train_batch())
    assert set(losses) == {"a_infonce", "b_infonce", "a_sup", "b_sup"}  # epoch 0 is warm-up: no cross term
    assert len(model.bank_a) == len(model.bank_b) == len(model.reliability) == 4  # banks fill during warm-up
    total = torch.stack(list(losses.values())).sum()
    total.backward()
    assert model.model_a.audio.proj.weight.grad is not None  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="labeled"):
        model.training_losses(train_batch(labeled=False))

    single = XPL("ezvsl", TINY_PEER, pseudo_labels="self", eval_model="a", warmup_epochs=0, select_start=1.0)
    assert single.model_b is None
    losses = single.training_losses(train_batch())
    assert set(losses) == {"a_infonce", "a_cross", "a_sup"}
    assert len(single.bank_b) == 0 and len(single.bank_a) == 4


def test_curriculum_selects_the_most_agreeing_samples() -> None:
    # In its first epoch, selection keeps the top 25 % of banked samples by the agreement of the two maps; the cross
    # loss is the BCE averaged over exactly those samples.
    torch.manual_seed(0)
    model = XPL(
        "ezvsl",
        TINY_PEER,
        warmup_epochs=0,
        rampup_epochs=0,
        select_start=0.25,
        ema_momentum=0.0,
        lambda_sup=0.0,
        **NO_AUG,
    )
    batch = train_batch(n=8)
    losses = model.training_losses(batch)
    data = batch["unlabeled"]
    assert model.model_b is not None
    with torch.no_grad():
        pa = minmax_normalize(model.model_a(data["image"], data["audio"]))
        pb = minmax_normalize(model.model_b(data["image"], data["audio"]))
    agreement = map_agreement(pa, pb)
    keep = agreement >= torch.topk(agreement, 2).values[-1]
    assert 2 <= int(keep.sum()) < 8
    torch.testing.assert_close(losses["a_cross"], heatmap_bce(pa, sharpen(pb, 0.5), weight=keep.float()))
    unweighted = heatmap_bce(pa, sharpen(pb, 0.5))
    assert not torch.allclose(losses["a_cross"], unweighted)


def test_evaluation_map_choices() -> None:
    torch.manual_seed(0)
    model = XPL("ezvsl", TINY_PEER, lambda_sup=0.0).eval()
    data = train_batch()["unlabeled"]
    image, audio = data["image"], data["audio"]
    assert model.model_b is not None
    a = (model.model_a(image, audio) + 1) / 2  # EZ-VSL's cosine range (-1, 1) mapped to [0, 1]
    b = (model.model_b(image, audio) + 1) / 2
    torch.testing.assert_close(model(image, audio), (a + b) / 2)
    model.eval_model = "b"
    torch.testing.assert_close(model(image, audio), b)
    model.eval_model = "a"
    torch.testing.assert_close(model(image, audio), a)
    heat = model.localize(image, audio)
    assert heat.shape == (4, 64, 64) and float(heat.min()) >= 0 and float(heat.max()) <= 1


# ------------------------------------------------------------------------------------------------ checkpoints
class _BankSnapshot(pl.Callback):
    """Records the banks when training (re)starts, i.e. right after a checkpoint was restored."""

    def __init__(self) -> None:
        self.at_start: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.at_start = {k: v.clone() for k, v in pl_module.state_dict().items() if k.split(".")[0] in _BANK_NAMES}


_BANK_NAMES = ("bank_a", "bank_b", "reliability")


def _data() -> AVDataModule:
    return AVDataModule(Subset(clips(), range(8)), Subset(clips(), range(8, 12)), batch_size=4, labeled_batch_size=2)


def _trainer(root: Path, max_steps: int, callbacks: list[pl.Callback] | None = None) -> pl.Trainer:
    return pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
        limit_val_batches=0,
    )


def test_banks_survive_checkpoint_and_resume(tmp_path: Path) -> None:
    def make() -> XPL:
        return XPL("ezvsl", TINY_PEER, peer_seed=1, warmup_epochs=1, rampup_epochs=1, select_ramp_epochs=1)

    pl.seed_everything(0)
    model = make()
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(model, datamodule=_data())  # one epoch: all 8 unlabeled samples banked
    ckpt = tmp_path / "xpl.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[0] in _BANK_NAMES}
    assert saved["bank_a.keys"].shape == (8,) and saved["bank_a.values"].dim() == 3

    # resume into a fresh model (empty banks): the banks are restored, then keep being updated in epoch 1
    snapshot = _BankSnapshot()
    resumed_model = make()
    resumed = _trainer(tmp_path, max_steps=4, callbacks=[snapshot])
    resumed.fit(resumed_model, datamodule=_data(), ckpt_path=ckpt)
    assert resumed.global_step == 4
    assert set(snapshot.at_start) == set(saved)
    for key, value in saved.items():
        assert torch.equal(snapshot.at_start[key], value), key
    assert set(resumed_model.bank_a.keys.tolist()) == set(saved["bank_a.keys"].tolist())
    assert not torch.equal(resumed_model.bank_a.values, saved["bank_a.values"]), "PL-EMA kept updating"

    # load_method (built in Python): class, peers and banks come back
    restored = load_method(ckpt)
    assert isinstance(restored, XPL) and isinstance(restored.model_b, EZVSL)
    for key, value in saved.items():
        assert torch.equal(restored.state_dict()[key], value), key
    batch = train_batch()["unlabeled"]
    model.eval()
    torch.testing.assert_close(
        restored.localize(batch["image"], batch["audio"]), model.localize(batch["image"], batch["audio"])
    )
