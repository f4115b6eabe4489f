from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avsl.losses import heatmap_bce, heatmap_mass, mil_infonce, mil_similarity, negcos, simsiam_loss, slavc_loss
from avsl.nn.maps import minmax_normalize


def test_mil_similarity_is_the_max_over_locations() -> None:
    visual = torch.zeros(2, 2, 1, 2)
    visual[0, :, 0, 0] = torch.tensor([1.0, 0.0])
    visual[0, :, 0, 1] = torch.tensor([0.0, 1.0])
    visual[1, :, 0, :] = torch.tensor([0.6, 0.8])[:, None]
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = torch.tensor([[1.0, 1.0], [0.6, 0.8]])
    torch.testing.assert_close(mil_similarity(visual, audio), expected)


def test_mil_infonce_hand_computed() -> None:
    visual = torch.zeros(2, 2, 1, 1)
    visual[0, 0], visual[1, 1] = 1.0, 1.0
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = 0.5
    # logits = I / tau in both directions: each CE is log(1 + e^{-2}).
    expected = 2 * math.log(1 + math.exp(-1 / tau))
    assert mil_infonce(visual, audio, tau).item() == pytest.approx(expected, rel=1e-6)


def test_mil_infonce_with_gathered_negatives_matches_the_global_loss_rows() -> None:
    torch.manual_seed(0)
    visual = F.normalize(torch.randn(4, 8, 2, 2), dim=1)
    audio = F.normalize(torch.randn(4, 8), dim=1)
    full_va = F.cross_entropy(mil_similarity(visual, audio) / 0.1, torch.arange(4), reduction="none")
    full_av = F.cross_entropy(mil_similarity(visual, audio).t() / 0.1, torch.arange(4), reduction="none")
    # "rank 1" holds rows 2..3 and sees everybody's features: its loss is the mean of its rows of the global loss.
    local = mil_infonce(visual[2:], audio[2:], 0.1, visual_all=visual, audio_all=audio, offset=2)
    assert local.item() == pytest.approx((full_va[2:].mean() + full_av[2:].mean()).item(), rel=1e-6)


def test_contrastive_losses_refuse_a_batch_without_negatives() -> None:
    """One clip has no negative: the loss would be exactly 0 with no gradient, a step that trains nothing."""
    visual = F.normalize(torch.randn(1, 4, 2, 2), dim=1)
    audio = F.normalize(torch.randn(1, 4), dim=1)
    with pytest.raises(ValueError, match=r"2 clips or more.*got 1.*batch_size >= 2"):
        mil_infonce(visual, audio, 0.03)
    with pytest.raises(ValueError, match=r"2 clips or more.*got 1"):
        slavc_loss(visual, visual, audio, audio, 0.03)
    # One clip on this process is fine when the other processes' clips are its negatives (gather_negatives).
    others_v, others_a = F.normalize(torch.randn(1, 4, 2, 2), dim=1), F.normalize(torch.randn(1, 4), dim=1)
    loss = mil_infonce(
        visual, audio, 0.03, visual_all=torch.cat([visual, others_v]), audio_all=torch.cat([audio, others_a])
    )
    assert float(loss) > 0


def test_negcos_stops_the_gradient_of_its_target() -> None:
    p = torch.randn(3, 5, requires_grad=True)
    z = torch.randn(3, 5, requires_grad=True)
    loss = negcos(p, z)
    loss.backward()
    assert p.grad is not None and z.grad is None
    assert negcos(z.detach(), z.detach()).item() == pytest.approx(-1.0)
    p1, p2, z1, z2 = (torch.randn(2, 4) for _ in range(4))
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(0.5 * (negcos(p1, z2) + negcos(p2, z1)).item())


def test_heatmap_bce_values_and_weights() -> None:
    prob = torch.full((2, 2, 2), 0.5)
    target = torch.ones(2, 2, 2)
    assert heatmap_bce(prob, target).item() == pytest.approx(math.log(2))
    prob2 = torch.stack([torch.full((2, 2), 0.5), torch.full((2, 2), 0.9)])
    w = torch.tensor([0.0, 1.0])
    assert heatmap_bce(prob2, target, w).item() == pytest.approx(-math.log(0.9), rel=1e-5)
    assert torch.isfinite(heatmap_bce(torch.zeros(1, 2, 2), torch.ones(1, 2, 2)))  # saturated maps stay finite


def test_minmax_normalize_constant_maps_become_zero() -> None:
    maps = torch.stack([torch.full((2, 2), 3.0), torch.tensor([[0.0, 1.0], [2.0, 4.0]])])
    out = minmax_normalize(maps)
    assert torch.equal(out[0], torch.zeros(2, 2))
    torch.testing.assert_close(out[1], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))


def test_heatmap_mass_hand_computed() -> None:
    # Two pixels at 0, two at ln(3) (temperature 1): softmax masses 1/8, 1/8, 3/8, 3/8.
    scores = torch.tensor([[[0.0, 0.0], [math.log(3.0), math.log(3.0)]]])
    target = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    assert heatmap_mass(scores, target, 1.0).item() == pytest.approx(-math.log(3 / 8), rel=1e-6)
    soft = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])  # sum_i t_i p_i = 1/8 + 3/16
    assert heatmap_mass(scores, soft, 1.0).item() == pytest.approx(-math.log(5 / 16), rel=1e-6)
    # A shift of the map changes nothing; a lower temperature concentrates the mass on the maximum.
    assert heatmap_mass(scores + 7.0, target, 1.0).item() == pytest.approx(-math.log(3 / 8), rel=1e-5)
    assert heatmap_mass(scores, target, 0.01).item() == pytest.approx(math.log(2), rel=1e-4)


def test_heatmap_mass_gives_the_maximum_a_gradient_and_skips_empty_targets() -> None:
    scores = torch.tensor([[[0.0, 1.0], [0.2, 0.3]], [[0.5, 0.1], [0.0, 0.9]]], requires_grad=True)
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    loss = heatmap_mass(scores, target, 0.5, weight=torch.tensor([1.0, 0.0]))
    loss.backward()
    assert scores.grad is not None
    assert scores.grad[0, 0, 1] > 0  # the maximum, outside the target, is pushed down
    assert scores.grad[0, 0, 0] < 0  # the target pixel is pulled up
    assert torch.equal(scores.grad[1], torch.zeros(2, 2))  # the empty target of weight 0 adds nothing
    # Unweighted, an empty mask contributes 0 (never -log 0).
    assert torch.isfinite(heatmap_mass(scores.detach(), target, 0.5))
    with pytest.raises(ValueError, match="temperature"):
        heatmap_mass(scores, target, 0.0)


def test_mil_similarity_smooth_maximum() -> None:
    torch.manual_seed(0)
    visual = F.normalize(torch.randn(3, 8, 2, 3), dim=1)
    audio = F.normalize(torch.randn(2, 8), dim=1)
    cos = torch.einsum("ichw,jc->ijhw", visual, audio).flatten(2)
    # T log mean exp(cos / T): hand-computed, between the mean and the maximum, and the maximum as T -> 0.
    expected = 0.2 * torch.log(torch.exp(cos / 0.2).mean(dim=2))
    torch.testing.assert_close(mil_similarity(visual, audio, 0.2), expected)
    assert bool((expected <= cos.amax(2) + 1e-6).all() and (expected >= cos.mean(2) - 1e-6).all())
    torch.testing.assert_close(mil_similarity(visual, audio, 1e-4), mil_similarity(visual, audio), atol=2e-3, rtol=0)
    assert mil_infonce(visual[:2], audio, 0.1, pool_temperature=0.2).isfinite()
    with pytest.raises(ValueError, match="pool_temperature"):
        mil_similarity(visual, audio, 0.0)
