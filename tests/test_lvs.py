"""LVS against its reference (hche11/Localizing-Visual-Sounds-the-Hard-Way ``model.AVENet``, its data loader's
spectrogram) with identical weights and inputs, and the properties of its trimap logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from avsl.losses import lvs_trimap_logits
from avsl.methods import LVS
from avsl.testing import fill_deterministic, tiny_args

REFERENCE = Path(__file__).parent / "data" / "lvs_reference.json"


def test_map_and_logits_equal_the_reference_with_the_same_weights() -> None:
    torch.set_num_threads(1)
    reference = json.loads(REFERENCE.read_text())
    model = LVS()  # the reference network: resnet18_lvs x2 without projection, loglinear spectrogram
    model.load_state_dict(fill_deterministic(model.state_dict()))
    model.eval()  # batch norm on its running statistics, as the reference's test.py
    g = torch.Generator().manual_seed(1)
    image, wave = torch.rand(3, 3, 224, 224, generator=g), 0.1 * torch.randn(3, 48000, generator=g)
    with torch.no_grad():
        visual, audio = model.visual(image), model.audio(wave)
        maps = model(image, audio=wave)
        variants = {
            "0.65_0.4_trimap1_neg1": model.logits(visual, audio),
            "0.65_0.4_trimap0_neg1": lvs_trimap_logits(visual, audio, 0.65, 0.4, trimap=False),
            "0.65_0.4_trimap1_neg0": lvs_trimap_logits(visual, audio, 0.65, 0.4, hard_negatives=False),
            # thresholds inside these weights' cosine range (0.50-0.55): soft masks far from 0 and 1
            "0.53_0.52_trimap1_neg1": lvs_trimap_logits(visual, audio, 0.53, 0.52),
        }
    assert list(model.audio.frontend(wave).shape) == reference["spec_shape_3s"] == [3, 1, 257, 200]
    assert maps.shape == (3, 14, 14)
    expected = torch.tensor(reference["A"]).view(reference["A_shape"])[:, 0]
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-5)
    for name, logits in variants.items():
        key = f"logits_eps{name}"
        expected = torch.tensor(reference[key]).view(reference[f"{key}_shape"])
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-5)  # values up to 760


def test_the_spectrogram_of_ten_seconds_is_the_reference_loaders() -> None:
    reference = json.loads(REFERENCE.read_text())
    g = torch.Generator().manual_seed(2)
    wave = 0.1 * torch.randn(1, 160000, generator=g)  # the reference took these float32 values in float64
    spec = LVS().audio.frontend(wave)  # the reference signal: 10 s at 16 kHz
    assert list(spec.shape) == reference["spec_shape_10s"] == [1, 1, 257, 671]
    expected = torch.tensor(reference["spec_10s_sub"]).view(reference["spec_10s_sub_shape"])
    torch.testing.assert_close(spec[0, 0, ::16, ::32], expected, atol=1e-4, rtol=1e-5)


def test_trimap_logits_rank_the_positive_and_exclude_the_pair() -> None:
    # Two locations per image: the sounding one matches its own sound (cosine 1), the other no sound (cosine 0).
    audio = torch.eye(4)[:3]
    visual = torch.zeros(3, 4, 1, 2)
    visual[:, :, 0, 0] = audio
    visual[:, 3, 0, 1] = 1.0
    logits = lvs_trimap_logits(visual, audio, 0.65, 0.4, tau=0.03, temperature=0.07)
    assert logits.shape == (3, 5)
    torch.testing.assert_close(logits[:, 0], torch.full((3,), 1 / 0.07), atol=1e-3, rtol=0)  # the positive region
    torch.testing.assert_close(logits[:, -1], torch.zeros(3), atol=1e-3, rtol=0)  # the background, cosine 0
    assert (logits.diagonal(offset=1) < -1000).all()  # the pair's own column: -99 x its similarity
    loss = F.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
    assert loss < 0.1
    assert lvs_trimap_logits(visual, audio, hard_negatives=False).shape == (3, 4)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="tau"):
        LVS(**tiny_args(LVS), tau=0.0)
    with pytest.raises(ValueError, match="epsilon2"):
        LVS(**tiny_args(LVS), epsilon=0.3, epsilon2=0.4)
    assert LVS(**tiny_args(LVS)).signal.align_corners is False
