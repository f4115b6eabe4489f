"""SSPL's parts: the PCM, the attention module, the views, the audio path, stop-gradient, freezing, optimizer groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsl.losses import negcos, simsiam_loss
from avsl.methods import SSPL
from avsl.nn.augment import color_jitter, crop_flip, crop_flip_params
from avsl.nn.backbones import TinyCNN
from avsl.nn.pcm import PredictiveCodingModule
from avsl.nn.sspl import SSPLAudioEncoder, attention_map, attention_pool
from tests.test_methods_contract import TINY as CONTRACT_TINY

TINY: dict[str, Any] = CONTRACT_TINY["sspl"]  # small CNNs and embeddings, as in the contract test


def _batch(n: int = 4, size: int = 64, samples: int = 8000) -> dict[str, Any]:
    return {
        "image": torch.rand(n, 3, size, size),
        "audio": torch.randn(n, samples),
        "sample_id": [str(i) for i in range(n)],
    }


# ---------------------------------------------------------------------------------------------------------- PCM
@pytest.mark.parametrize(("size", "levels"), [(14, [(7, 7), (3, 3)]), (8, [(4, 4), (2, 2)]), (5, [(2, 2), (1, 1)])])
def test_pcm_keeps_the_visual_shape_at_any_map_size(size: int, levels: list[tuple[int, int]]) -> None:
    pcm = PredictiveCodingModule(visual_channels=16, audio_channels=8, cycles=2)
    seen: list[tuple[int, int]] = []
    pcm.pred_32.register_forward_hook(lambda m, i, o: seen.append(tuple(F.max_pool2d(o, 2).shape[-2:])))
    pcm.pred_21.register_forward_hook(lambda m, i, o: seen.append(tuple(F.max_pool2d(o, 2).shape[-2:])))
    out = pcm(torch.randn(2, 16, size, size), F.normalize(torch.randn(2, 8), dim=1))
    assert out.shape == (2, 16, size, size) and torch.isfinite(out).all()
    assert seen[:2] == levels  # level 2 at H/2 and level 1 at H/4 (floor), as 14 -> 7 -> 3 in the reference


@pytest.mark.parametrize("cycles", [0, 1, 4])
def test_pcm_runs_one_initial_pass_plus_its_cycles(cycles: int) -> None:
    pcm = PredictiveCodingModule(visual_channels=8, audio_channels=4, cycles=cycles)
    calls: list[int] = []
    pcm.pred_10.register_forward_hook(lambda m, i, o: calls.append(1))  # one audio prediction per step
    pcm(torch.randn(2, 8, 14, 14), torch.randn(2, 4))
    assert len(calls) == 1 + cycles
    # 5 BatchNorms per step (25 for the reference's 4 cycles), one set of gains a, b per level
    assert sum(isinstance(m, nn.BatchNorm2d) for m in pcm.modules()) == 5 * (1 + cycles)
    assert pcm.ff_gain.shape == pcm.fb_rate.shape == (3, 1, 8, 1, 1)
    assert torch.all(pcm.ff_gain == 1.0) and torch.all(pcm.fb_rate == 0.5)


def test_pcm_uses_the_audio_and_checks_its_inputs() -> None:
    pcm = PredictiveCodingModule(visual_channels=8, audio_channels=4, cycles=1).eval()
    visual = torch.randn(2, 8, 8, 8)
    a, b = torch.randn(2, 4), torch.randn(2, 4)
    assert not torch.allclose(pcm(visual, a), pcm(visual, b))
    with pytest.raises(ValueError, match="at least 4x4"):
        pcm(torch.randn(2, 8, 3, 8), a)
    with pytest.raises(ValueError, match="visual must be"):
        pcm(torch.randn(2, 6, 8, 8), a)
    with pytest.raises(ValueError, match="audio must be"):
        pcm(visual, torch.randn(2, 5))
    with pytest.raises(ValueError, match="cycles"):
        PredictiveCodingModule(8, 4, cycles=-1)


def test_the_reference_architecture_shapes() -> None:
    # VGG16 conv5_3 + VGGish + PCM with 4 cycles, random weights: 14x14 maps for 224-px frames and 3-s clips.
    model = SSPL(use_pcm=True).eval()
    assert model.pcm is not None
    assert (model.pcm.visual_channels, model.pcm.audio_channels, model.pcm.cycles) == (512, 128, 4)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.pcm.modules()) == 25
    with torch.no_grad():
        raw, query = model.audio(torch.randn(1, 48000))
        assert model.audio.embed(torch.randn(1, 48000)).shape == (1, 3, 128)  # three 0.96-s examples
        maps = model(torch.rand(1, 3, 224, 224), torch.randn(1, 48000))
    assert raw.shape == (1, 128) and query.shape == (1, 512)
    assert maps.shape == (1, 14, 14) and maps.abs().max() <= 1.0 + 1e-6
    # random encoders are trained by default (frozen random features cannot learn)
    assert all(p.requires_grad for p in model.visual.parameters())


# ------------------------------------------------------------------------------------------ attention module
def test_attention_map_and_pool_hand_computed() -> None:
    visual = torch.tensor([[[[1.0, 0.0, 2.0]], [[0.0, 1.0, 2.0]]]])  # (1, 2, 1, 3): features (1,0), (0,1), (2,2)
    audio = torch.tensor([[3.0, 0.0]])
    sim = attention_map(visual, audio)
    torch.testing.assert_close(sim, torch.tensor([[[1.0, 0.0, 2**-0.5]]]))
    # min-max weights (1, 0, 0.7071): a plain weighted sum of the un-normalized features
    pooled = attention_pool(visual, sim)
    torch.testing.assert_close(pooled, torch.tensor([[1.0 + 2 * 2**-0.5, 2 * 2**-0.5]]))
    # the weights keep their gradient: the audio learns through the pooling
    query = audio.clone().requires_grad_(True)
    attention_pool(visual, attention_map(visual, query + torch.tensor([[0.0, 1.0]]))).sum().backward()
    assert query.grad is not None and query.grad.abs().sum() > 0


def test_simsiam_loss_hand_computed() -> None:
    p1, z2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])  # D = -1
    p2, z1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])  # D = 0
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(-0.5)
    assert negcos(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(-(2**-0.5))


# ------------------------------------------------------------------------------------------------- views
def _view(images: torch.Tensor, scale: float, flip_p: float = 0.5, seed: int | None = None) -> torch.Tensor:
    """SSPL's view: resize by ``scale``, crop back to the frame size at a random place, flip with ``flip_p``."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    params = crop_flip_params(images.shape[0], 1 / scale, flip_p, max_scale=1 / scale, generator=gen)
    return crop_flip(images, params)


def test_fixed_scale_views_identity_flip_and_crop() -> None:
    images = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(_view(images, 1.0, flip_p=0.0), images)
    torch.testing.assert_close(_view(images, 1.0, flip_p=1.0), images.flip(-1))
    # scale 2: a half-size window resampled to the full size; a constant image stays constant, views differ
    out = _view(images, 2.0, seed=0)
    assert out.shape == images.shape
    assert not torch.allclose(out, images)
    flat = torch.full((2, 3, 8, 8), 0.25)
    torch.testing.assert_close(_view(flat, 1.5), flat)
    # a ramp along x: the crop covers 1/scale of it, so its values span about half the range
    ramp = torch.linspace(0, 1, 64).expand(1, 3, 64, 64).contiguous()
    crop = _view(ramp, 2.0, flip_p=0.0, seed=1)
    assert 0.45 < float(crop.max() - crop.min()) < 0.55
    with pytest.raises(ValueError, match="min_scale"):
        _view(images, 0.5)


def test_color_jitter() -> None:
    images = torch.rand(6, 3, 8, 8)
    torch.testing.assert_close(color_jitter(images, strength=0.0), images)
    torch.testing.assert_close(color_jitter(images, strength=0.4, p=0.0), images)
    out = color_jitter(images, strength=0.4, p=1.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert all(not torch.allclose(out[i], images[i]) for i in range(6))
    grey = torch.full((1, 3, 4, 4), 0.5)  # a grey frame: only brightness changes it, and it stays grey
    out = color_jitter(grey, strength=0.4, p=1.0)
    torch.testing.assert_close(out, out[:, :1].expand_as(out))
    # without saturation, a pixel's channels keep their differences up to the brightness and contrast factors
    colour = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    out = color_jitter(colour, strength=0.3, saturation=False, generator=torch.Generator().manual_seed(2))
    ratio = (out[0, 2] - out[0, 1]) / (out[0, 1] - out[0, 0])
    torch.testing.assert_close(ratio, torch.ones_like(ratio))
    with pytest.raises(ValueError, match="strength"):
        color_jitter(images, strength=1.0)


# ---------------------------------------------------------------------------------------------- audio path
def test_audio_paths_for_vggish_and_registry_backbones() -> None:
    enc = SSPLAudioEncoder("tiny_cnn", "vggish", hidden_dim=16, out_dim=24)
    assert enc.examples(torch.randn(2, 32000)).shape == (2, 2, 1, 96, 64)  # two 0.96-s examples in 2 s
    raw, query = enc(torch.randn(2, 32000))
    assert raw.shape == (2, enc.embed_dim) and query.shape == (2, 24)
    torch.testing.assert_close(raw.norm(dim=1), torch.ones(2))
    # g is applied per example, then averaged
    emb = enc.embed(torch.randn(2, 32000))
    wave = torch.randn(2, 32000)
    emb = enc.embed(wave)
    torch.testing.assert_close(enc(wave)[1], enc.transform(emb).mean(dim=1))
    clip = SSPLAudioEncoder("tiny_cnn", "logmel", hidden_dim=16, out_dim=24)
    assert clip.examples(torch.randn(2, 8000)).shape[:3] == (2, 1, 1)  # one example per clip
    with pytest.raises(ValueError, match="audio_frontend='vggish'"):
        SSPLAudioEncoder("vggish", "logmel")


# ------------------------------------------------------------------------------------------------- method
def test_forward_is_the_raw_cosine_map_of_the_frame_and_upsamples_like_cv2() -> None:
    torch.manual_seed(0)
    model = SSPL(**TINY, use_pcm=True).eval()
    batch = _batch(2)
    raw = model(batch["image"], batch["audio"])
    audio_raw, query = model.audio(batch["audio"])
    torch.testing.assert_close(raw, attention_map(model.visual_map(batch["image"], audio_raw), query))
    assert raw.shape == (2, 4, 4) and raw.abs().max() <= 1.0 + 1e-6
    up = model.localize(batch["image"], batch["audio"], normalize=False)
    torch.testing.assert_close(
        up, F.interpolate(raw[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    )
    assert model.eval_protocol == "sspl"


def test_stop_gradient_the_targets_get_gradient_only_through_the_predictor() -> None:
    torch.manual_seed(0)
    model = SSPL(**TINY)
    zs: list[Tensor] = []
    ps: list[Tensor] = []
    model.projector.register_forward_hook(lambda m, i, o: zs.append(o))
    model.predictor.register_forward_hook(lambda m, i, o: ps.append(o))
    loss = model.training_losses({"unlabeled": _batch()})["simsiam"]  # type: ignore[typeddict-item]
    assert len(zs) == len(ps) == 2
    grad_z = torch.autograd.grad(loss, zs, retain_graph=True)
    grad_p = torch.autograd.grad(loss, ps, retain_graph=True)
    # with stop-gradient, dL/dz is exactly the gradient that comes back through p = predictor(z)
    through_p = torch.autograd.grad(ps, zs, grad_outputs=grad_p, retain_graph=True)
    for direct, expected in zip(grad_z, through_p, strict=True):
        torch.testing.assert_close(direct, expected)
        assert direct.abs().sum() > 0
    # without it, the direct target term would add a gradient: check the test can tell
    no_sg = 0.5 * (-F.cosine_similarity(ps[0], zs[1]).mean() - F.cosine_similarity(ps[1], zs[0]).mean())
    grad_no_sg = torch.autograd.grad(no_sg, zs, retain_graph=True)
    assert not torch.allclose(grad_no_sg[0], through_p[0])


def test_frozen_parts_stay_frozen_and_the_others_learn() -> None:
    torch.manual_seed(0)
    model = SSPL(**TINY, use_pcm=True, vision_trainable=False, audio_trainable=False)
    model.train()
    assert not model.visual.training and not model.audio.backbone.training  # frozen: eval mode (BN stats fixed)
    frozen_before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    frozen_before.update({f"a.{k}": v.clone() for k, v in model.audio.backbone.state_dict().items()})
    optimizer = model.configure_optimizers()
    loss = model.training_losses({"unlabeled": _batch()})["simsiam"]  # type: ignore[typeddict-item]
    loss.backward()
    optimizer.step()
    for module in (model.visual, model.audio.backbone):
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())
    after = {k: v for k, v in model.visual.state_dict().items()}
    after.update({f"a.{k}": v for k, v in model.audio.backbone.state_dict().items()})
    for key, value in frozen_before.items():
        assert torch.equal(value, after[key]), key
    assert model.pcm is not None
    for module in (model.audio.transform, model.pcm, model.projector, model.predictor):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads if g is not None)


def test_backbones_with_loaded_weights_are_frozen_by_default(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(TinyCNN(in_chans=3).state_dict(), path)
    loaded = SSPL(**TINY, vision_checkpoint=str(path))
    assert not any(p.requires_grad for p in loaded.visual.parameters())
    assert all(p.requires_grad for p in loaded.audio.backbone.parameters())  # random: trained
    forced = SSPL(**TINY, vision_checkpoint=str(path), vision_trainable=True)
    assert all(p.requires_grad for p in forced.visual.parameters())


def test_optimizer_groups_follow_the_reference() -> None:
    model = SSPL(**TINY, use_pcm=True, lr=2e-5, lr_head=5e-5, weight_decay=1e-4)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = {(g["lr"], g["weight_decay"]): {id(p) for p in g["params"]} for g in optimizer.param_groups}
    head = {id(p) for m in (model.projector, model.predictor) for p in m.parameters()}
    assert model.pcm is not None
    assert groups[(5e-5, 1e-4)] == head
    assert groups[(2e-5, 0.0)] == {id(model.pcm.ff_gain), id(model.pcm.fb_rate)}
    rest = {id(p) for p in model.parameters()} - head - groups[(2e-5, 0.0)]
    assert groups[(2e-5, 1e-4)] == rest


def test_training_changes_the_views_and_rejects_bad_arguments() -> None:
    torch.manual_seed(0)
    model = SSPL(**TINY)
    batch = {"unlabeled": _batch()}
    first = model.training_losses(batch)["simsiam"]  # type: ignore[arg-type]
    second = model.training_losses(batch)["simsiam"]  # type: ignore[arg-type]
    assert first.item() != second.item()  # fresh random views every step
    assert -1.0 <= first.item() <= 1.0
    one = {key: value[:1] for key, value in batch["unlabeled"].items()}
    with pytest.raises(ValueError, match=r"SSPL needs 2 clips or more.*got 1"):  # not BatchNorm's message
        model.training_losses({"unlabeled": one})  # type: ignore[arg-type, typeddict-item]
    with pytest.raises(ValueError, match="view_scale"):
        SSPL(**TINY, view_scale=0.9)
