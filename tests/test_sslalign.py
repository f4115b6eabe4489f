"""SSL-align against its released inference code (kaistmm/SSLalignment ``model_lvs.AVENet`` and the spectrogram of
``datasets_lvs.py``) with identical weights and inputs, and its reconstructed multi-positive training loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avsl.losses import mil_infonce, mil_similarity, multi_positive_infonce
from avsl.methods import SSLAlign
from avsl.methods.sslalign import neighbour_mask
from avsl.testing import fill_deterministic, tiny_args

REFERENCE = Path(__file__).parent / "data" / "sslalign_reference.json"


def reference_name(name: str) -> str:
    """avsl's name of a weight -> model_lvs.AVENet's (a checkpoint's ``model_state_dict`` key)."""
    if name == "audio.backbone.model.conv1.weight":
        return "audnet.conv1_a.weight"  # the audio ResNet's 1-channel stem
    for ours, theirs in (("visual.backbone.model.", "imgnet."), ("audio.backbone.model.", "audnet.")):
        if name.startswith(ours):
            return theirs + name.removeprefix(ours)
    raise KeyError(name)


def lvs_window(clip: np.ndarray) -> np.ndarray:
    """The waveform datasets_lvs.py takes from a 10-s clip at 16 kHz: seconds 3.5 to 6.5, clipped to [-1, 1]."""
    return np.clip(clip[:160000][56000:104000], -1.0, 1.0)


def test_map_equals_the_reference_with_the_same_weights() -> None:
    reference = json.loads(REFERENCE.read_text())
    model = SSLAlign()  # the reference network: resnet18_lvs x2, no projections, noverlap-353 spectrogram
    weights = fill_deterministic(model.state_dict())
    model.load_state_dict(weights)
    model.eval()
    # every avsl weight has one reference name; the reference's other weights are the unused stems and classifiers
    names = {reference_name(k) for k in weights}
    assert len(names) == len(weights)
    assert names | set(reference["unused_reference_keys"]) == set(reference["reference_keys"])
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 3, 224, 224, generator=g)
    wave = (0.3 * torch.randn(3, 160000, generator=g))[:, 56000:104000].clamp(-1, 1)
    with torch.no_grad():
        assert list(model.audio.frontend(wave).shape) == reference["spec_shape"] == [3, 1, 257, 299]
        maps = model(image, wave)
    expected = torch.tensor(reference["A"]).view(reference["A_shape"])[:, 0]  # (3, 14, 14)
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-5)


def test_the_spectrogram_is_the_reference_loaders() -> None:
    signal = pytest.importorskip("scipy.signal")
    frontend = SSLAlign().audio.frontend
    rng = np.random.default_rng(0)
    t = np.arange(160000) / 16000
    clips = [0.3 * rng.standard_normal(160000), 1.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(160000)]
    for clip in clips:
        wave = lvs_window(clip)
        _, _, spec = signal.spectrogram(wave, 16000, nperseg=512, noverlap=353)
        expected = torch.from_numpy(np.log(spec + 1e-7) / 12.0)
        ours = frontend(torch.from_numpy(wave).float()[None])[0, 0].double()
        assert ours.shape == expected.shape == (257, 299)
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_the_upsampling_is_validate_lvs_on_vggss() -> None:
    # cv2.resize(..., INTER_LINEAR) of the 14 x 14 map reads each output pixel at its centre: align_corners=False
    model = SSLAlign(**tiny_args(SSLAlign))
    assert model.signal.upsample_mode == "bilinear" and model.signal.align_corners is False
    assert model.eval_protocol == "sslalign"


def test_one_positive_per_row_is_ezvsl_infonce() -> None:
    g = torch.Generator().manual_seed(0)
    visual = torch.nn.functional.normalize(torch.randn(5, 8, 3, 3, generator=g), dim=1)
    audio = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    logits = mil_similarity(visual, audio) / 0.07
    eye = torch.eye(5, dtype=torch.bool)
    symmetric = multi_positive_infonce(logits, eye) + multi_positive_infonce(logits.t(), eye)
    torch.testing.assert_close(symmetric, mil_infonce(visual, audio, 0.07))
    # two positives: the mean of their cross-entropies, weighted
    mask = eye.clone()
    mask[0, 1] = True
    row0 = -torch.log_softmax(logits[0], 0)
    per_row = torch.cat([((row0[0] + row0[1]) / 2)[None], -torch.log_softmax(logits, 1).diagonal()[1:]])
    torch.testing.assert_close(multi_positive_infonce(logits, mask), per_row.mean())
    weights = eye.float()
    weights[0, 1] = 0.5
    weighted = torch.cat([((row0[0] + 0.5 * row0[1]) / 1.5)[None], per_row[1:]])
    torch.testing.assert_close(multi_positive_infonce(logits, weights), weighted.mean())


def test_neighbours_are_the_most_similar_other_clips() -> None:
    audio = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.1]]), dim=1)
    visual = torch.zeros(4, 2, 2, 2)
    visual[:, 0] = 1.0  # every frame alike
    visual[3] = torch.tensor([0.0, 1.0]).view(2, 1, 1)
    mask = neighbour_mask(torch.nn.functional.normalize(visual, dim=1), audio, 1, 0)
    assert torch.equal(mask, mask.t()) and not mask.diagonal().any()
    assert mask[0, 1] and mask[2, 1] and mask[3, 2]  # audio neighbours of 0, 2 and 3 (symmetrized)
    assert not mask[0, 2] and not mask[0, 3]
    assert neighbour_mask(visual, audio, 0, 0).sum() == 0
    assert neighbour_mask(visual, audio, 10, 0).sum() == 12  # k is capped at B - 1: everyone


def test_training_losses_with_views_and_neighbours() -> None:
    torch.manual_seed(0)
    args = tiny_args(SSLAlign)
    batch = {"unlabeled": {"image": torch.rand(4, 3, 64, 64), "audio": 0.1 * torch.randn(4, 8000)}}
    plain = SSLAlign(**args, augmented_view=False, audio_neighbours=0, image_neighbours=0).eval()
    with torch.no_grad():
        loss = plain.training_losses(batch)["infonce"]
        visual, audio = plain.visual(batch["unlabeled"]["image"]), plain.audio(batch["unlabeled"]["audio"])
    # without views and neighbours, the loss is EZ-VSL's MIL InfoNCE
    torch.testing.assert_close(loss, mil_infonce(visual, audio, plain.tau))
    full = SSLAlign(**args, neighbour_warmup_epochs=0)
    losses = full.training_losses(batch)
    assert set(losses) == {"infonce"} and torch.isfinite(losses["infonce"])
    losses["infonce"].backward()
    assert all(p.grad is not None for p in full.audio.parameters() if p.requires_grad)
    image, wave = full.second_view(batch["unlabeled"]["image"], batch["unlabeled"]["audio"])
    assert image.shape == (4, 3, 64, 64) and wave.shape == (4, 8000)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="tau"):
        SSLAlign(**tiny_args(SSLAlign), tau=0.0)
    with pytest.raises(ValueError, match="view_min_scale"):
        SSLAlign(**tiny_args(SSLAlign), view_min_scale=0.0)
    with pytest.raises(ValueError, match="audio_neighbours"):
        SSLAlign(**tiny_args(SSLAlign), audio_neighbours=-1)
