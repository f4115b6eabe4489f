"""USPL: mask augmentation, affinity and random walk, stage switching and checkpoint hand-over between stages."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from avsl.methods import load_method
from avsl.methods.uspl import USPL, Stage, run_pipeline
from avsl.nn.affinity import (
    affinity_loss,
    affinity_pair_labels,
    neighbour_offsets,
    pairwise_affinity,
    random_walk,
    refine_map,
    seeds_from_map,
    shift,
)
from avsl.nn.masking import mask_augment, random_block_mask
from avsl.nn.segmentation import pseudo_mask_loss, pseudo_masks
from tests.test_methods_contract import TINY, tiny_data

# --------------------------------------------------------------------------------------------- mask augmentation


@pytest.mark.parametrize(("grid", "ratio", "hidden_cells"), [(4, 0.25, 4), (8, 0.3, 19), (4, 0.0, 0), (2, 0.5, 2)])
def test_block_mask_shapes_and_exact_ratio(grid: int, ratio: float, hidden_cells: int) -> None:
    masks = random_block_mask(5, 32, 48, grid, ratio, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (5, 1, 32, 48)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    # grid divides 32 and 48: every sample hides exactly `hidden_cells` whole cells
    per_sample = masks.flatten(1).mean(dim=1)
    torch.testing.assert_close(per_sample, torch.full((5,), hidden_cells / grid**2))
    cells = masks[:, 0].unfold(1, 32 // grid, 32 // grid).unfold(2, 48 // grid, 48 // grid)  # (B, g, g, bh, bw)
    flat = cells.flatten(3)
    assert bool((flat.amin(dim=3) == flat.amax(dim=3)).all()), "cells are hidden whole"


def test_block_masks_differ_between_samples_and_follow_the_generator() -> None:
    a = random_block_mask(8, 16, 16, 4, 0.5, generator=torch.Generator().manual_seed(1))
    b = random_block_mask(8, 16, 16, 4, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert len({tuple(m.flatten().tolist()) for m in a}) > 1
    # a grid that does not divide the frame still partitions it: the fraction is close to the ratio
    odd = random_block_mask(3, 30, 30, 7, 0.3)
    assert abs(float(odd.mean()) - 15 / 49) < 0.05
    with pytest.raises(ValueError, match="ratio"):
        random_block_mask(1, 8, 8, 2, 1.5)
    with pytest.raises(ValueError, match="grid"):
        random_block_mask(1, 8, 8, 9, 0.5)


def test_mask_augment_fills_hidden_pixels_only() -> None:
    image = torch.rand(2, 3, 8, 8)
    hidden = random_block_mask(2, 8, 8, 2, 0.5, generator=torch.Generator().manual_seed(0))
    fill = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    out = mask_augment(image, hidden, fill)
    keep = hidden.expand_as(image) == 0
    assert torch.equal(out[keep], image[keep])
    torch.testing.assert_close(out * (1 - hidden), image * (1 - hidden))
    torch.testing.assert_close((out * hidden).sum(dim=(2, 3)), (fill * hidden).sum(dim=(2, 3)))
    with pytest.raises(ValueError, match="does not match"):
        mask_augment(image, hidden[:1], fill)


# ----------------------------------------------------------------------------------------------------- affinity


def test_neighbour_offsets_cover_the_disc_once() -> None:
    assert neighbour_offsets(1) == [(0, 1), (1, 0)]
    for radius in (2, 3, 5):
        half = neighbour_offsets(radius)
        full = {(0, 0), *half, *[(-dy, -dx) for dy, dx in half]}
        disc = {(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)}
        disc = {o for o in disc if o[0] ** 2 + o[1] ** 2 <= radius**2}
        assert full == disc and len(full) == 2 * len(half) + 1


def test_shift_reads_the_neighbour_and_fills_outside() -> None:
    x = torch.arange(12.0).view(1, 3, 4)
    out = shift(x, 1, -1, fill=-1.0)
    assert out[0, 0].tolist() == [-1.0, 4.0, 5.0, 6.0]  # row 0 reads row 1, one column to the left
    assert out[0, 2].tolist() == [-1.0] * 4  # row 2 has no row below


def test_pairwise_affinity_hand_computed() -> None:
    # one channel, 1x3 image with values 0, 0, 2: right neighbours at distance 0 and 2
    feats = torch.tensor([0.0, 0.0, 2.0]).view(1, 1, 1, 3)
    aff = pairwise_affinity(feats, radius=1)  # offsets (0, 1), (1, 0)
    assert aff.shape == (1, 2, 1, 3)
    torch.testing.assert_close(aff[0, 0, 0], torch.tensor([1.0, math.exp(-2.0), 0.0]))
    assert aff[0, 1].abs().sum() == 0  # no row below


def test_affinity_loss_hand_computed() -> None:
    # 1x4 seeds: fg fg bg ignore; radius 1 pairs to the right: (fg,fg) (fg,bg) (bg,ignore) (none)
    seeds = torch.tensor([[[1, 1, 0, -1]]])
    fg, bg, neg = affinity_pair_labels(seeds, radius=1)
    assert fg[0, 0, 0].tolist() == [True, False, False, False]
    assert neg[0, 0, 0].tolist() == [False, True, False, False]
    assert not bool(bg.any())
    aff = torch.zeros(1, 2, 1, 4)
    aff[0, 0, 0] = torch.tensor([0.8, 0.3, 0.5, 0.0])
    expected = 0.25 * -math.log(0.8) + 0.25 * 0.0 + 0.5 * -math.log(1 - 0.3)
    torch.testing.assert_close(affinity_loss(aff, seeds, radius=1), torch.tensor(expected))
    seeds_map = seeds_from_map(torch.tensor([[0.9, 0.6, 0.4, 0.1]]), fg_threshold=0.6, bg_threshold=0.2)
    assert seeds_map.tolist() == [[1, 1, -1, 0]]


def test_random_walk_keeps_constants_and_checks_shapes() -> None:
    aff = pairwise_affinity(torch.randn(2, 4, 6, 6), radius=2)
    const = torch.full((2, 6, 6), 0.7)
    torch.testing.assert_close(random_walk(const, aff, 2, iterations=5), const)
    maps = torch.rand(2, 6, 6)
    assert torch.equal(random_walk(maps, aff, 2, iterations=0), maps)
    with pytest.raises(ValueError, match="does not match"):
        random_walk(maps, aff, radius=3)


def _edge_scene(size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A sharp square object and a blurred blob on it that spills over its edges."""
    obj = torch.zeros(size, size)
    obj[8:24, 8:24] = 1.0
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    blob = torch.exp(-((ys - 15.5) ** 2 + (xs - 15.5) ** 2) / (2 * 9.0**2))
    # embedding: the object's colour (two channels), as a stage-2 network would learn for this image
    feats = torch.stack([obj * 4.0, (1 - obj) * 4.0])[None]
    return obj, blob[None], feats


def test_affinity_propagation_sharpens_a_blurred_blob_along_the_object_edge() -> None:
    obj, blob, feats = _edge_scene()
    aff = pairwise_affinity(feats, radius=3)
    refined = refine_map(blob, aff, radius=3, beta=8.0, iterations=10)[0]
    coarse = (blob[0] - blob.min()) / (blob.max() - blob.min())

    def iou(m: torch.Tensor) -> float:
        pred = m >= 0.5
        return float((pred & (obj > 0)).sum() / (pred | (obj > 0)).sum())

    # across the edge: the step between the pixels just inside and just outside the object grows
    inside = obj.bool() & ~torch.nn.functional.max_pool2d(1 - obj[None, None], 3, 1, 1)[0, 0].bool()
    outside = ~obj.bool() & torch.nn.functional.max_pool2d(obj[None, None], 3, 1, 1)[0, 0].bool()
    step_coarse = float(coarse[inside].mean() - coarse[outside].mean())
    step_refined = float(refined[inside].mean() - refined[outside].mean())
    assert step_refined > step_coarse + 0.3
    assert iou(refined) > iou(coarse) + 0.2 and iou(refined) > 0.9
    # and nothing crosses the edge from a flat feature map: uniform affinity only blurs
    flat = refine_map(blob, pairwise_affinity(torch.zeros_like(feats), 3), 3, 8.0, 10)[0]
    assert iou(flat) < iou(refined)


# ------------------------------------------------------------------------------------------------ pseudo-masks


def test_pseudo_masks_and_their_loss() -> None:
    refined = torch.tensor([[[0.9, 0.55, 0.4, 0.1]]])
    target, weight = pseudo_masks(refined, fg_threshold=0.6, bg_threshold=0.3)
    assert target.tolist() == [[[1.0, 0.0, 0.0, 0.0]]] and weight.tolist() == [[[1.0, 0.0, 0.0, 1.0]]]
    logits = torch.tensor([[[2.0, 5.0, -5.0, -1.0]]])
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    torch.testing.assert_close(pseudo_mask_loss(logits, target, weight), torch.tensor(expected))
    # targets at another resolution are resized to the logits
    assert pseudo_mask_loss(torch.zeros(1, 4, 4), torch.ones(1, 2, 2)).item() == pytest.approx(math.log(2.0))


# --------------------------------------------------------------------------------------------------- the method


def _trainable(model: USPL) -> set[str]:
    return {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}


def test_stages_build_the_right_networks_and_freeze_the_earlier_ones() -> None:
    coarse, refine, segment = (USPL(**(TINY["uspl"] | {"stage": s})) for s in ("coarse", "refine", "segment"))
    assert _trainable(coarse) == {"visual", "audio"} and coarse.affinity is None and coarse.segmenter is None
    assert _trainable(refine) == {"affinity"} and refine.segmenter is None
    assert _trainable(segment) == {"segmenter"}
    image, audio = torch.rand(2, 3, 64, 64), torch.randn(2, 8000)
    # in train mode, the frozen networks run in eval mode (BatchNorm statistics fixed) and stay in train mode after
    stats = {k: v.clone() for k, v in segment.state_dict().items() if "running" in k and not k.startswith("segmenter")}
    segment.train().training_losses({"unlabeled": {"image": image, "audio": audio, "sample_id": ["a", "b"]}})
    assert all(torch.equal(segment.state_dict()[k], v) for k, v in stats.items())
    assert all(m.training for m in segment.modules())
    for model in (coarse, refine, segment):
        with torch.no_grad():
            out = model.eval()(image, audio)
        assert out.dim() == 3 and float(out.min()) >= -1.0 and float(out.max()) <= 1.0
        assert out.shape[-1] == 64 // (model.visual.stride if model is coarse else 4)  # tiny_cnn stage -3: stride 4
    with pytest.raises(RuntimeError, match="stage 'refine' or 'segment'"):
        coarse.refined_map(image, audio)
    with pytest.raises(ValueError, match="stage must be one of"):
        USPL(stage="segmentation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stage 1 needs"):
        USPL(lambda_full=0.0, mask_ratio=0.0)


def _quick_trainer(root: Path) -> pl.Trainer:
    return pl.Trainer(
        max_steps=1,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[Stage, Path]:
    """The three stages trained for one step each by run_pipeline (checkpoint hand-over between stages)."""
    root = tmp_path_factory.mktemp("uspl_pipeline")
    torch.manual_seed(0)
    model = USPL(**TINY["uspl"])
    return run_pipeline(model, tiny_data(), lambda stage: _quick_trainer(root), root)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return model.state_dict()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = _state(a), _state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_run_pipeline_hands_over_by_checkpoint_and_keeps_earlier_stages_frozen(pipeline: dict[Stage, Path]) -> None:
    assert list(pipeline) == ["coarse", "refine", "segment"]
    coarse, refine, segment = (load_method(pipeline[s]) for s in ("coarse", "refine", "segment"))
    assert isinstance(coarse, USPL) and isinstance(refine, USPL) and isinstance(segment, USPL)
    assert [m.stage for m in (coarse, refine, segment)] == ["coarse", "refine", "segment"]
    assert refine.init_from == str(pipeline["coarse"]) and segment.init_from == str(pipeline["refine"])
    assert refine.affinity is not None and segment.affinity is not None and segment.segmenter is not None
    # stage-1 networks (weights and BatchNorm statistics) pass through stages 2 and 3 unchanged, as does the
    # affinity network through stage 3
    for name in ("visual", "audio"):
        assert _same(getattr(coarse, name), getattr(refine, name)) and _same(
            getattr(coarse, name), getattr(segment, name)
        )
    assert _same(refine.affinity, segment.affinity)

    # the new networks of a stage start from the earlier ones...
    fresh_refine = USPL(**(TINY["uspl"] | {"stage": "refine"}), init_from=str(pipeline["coarse"]))
    assert fresh_refine.affinity is not None
    trunk = _state(coarse.visual.backbone)
    assert all(torch.equal(v, trunk[k]) for k, v in _state(fresh_refine.affinity.backbone).items())
    fresh_segment = USPL(**(TINY["uspl"] | {"stage": "segment"}), init_from=str(pipeline["refine"]))
    assert fresh_segment.segmenter is not None
    assert _same(fresh_segment.segmenter.visual, coarse.visual) and _same(fresh_segment.segmenter.audio, coarse.audio)
    # ...and then train: one step moved them away from their starting point
    assert not _same(refine.affinity.backbone, fresh_refine.affinity.backbone)
    assert not _same(segment.segmenter.visual, fresh_segment.segmenter.visual)


def test_later_checkpoints_load_without_the_earlier_files(pipeline: dict[Stage, Path], tmp_path: Path) -> None:
    moved = tmp_path / "segment.ckpt"
    shutil.copy(pipeline["segment"], moved)
    for stage in ("coarse", "refine"):
        shutil.move(pipeline[stage], tmp_path / f"{stage}.bak")
    try:
        restored = load_method(moved)
    finally:
        for stage in ("coarse", "refine"):
            shutil.move(tmp_path / f"{stage}.bak", pipeline[stage])
    original = load_method(pipeline["segment"])
    image, audio = torch.rand(2, 3, 64, 64), torch.randn(2, 8000)
    torch.testing.assert_close(restored.localize(image, audio), original.localize(image, audio))


def test_bad_hand_overs_are_explained(pipeline: dict[Stage, Path], tmp_path: Path) -> None:
    tiny = {k: v for k, v in TINY["uspl"].items() if k != "stage"}
    with pytest.raises(ValueError, match=r"lacks .* that stage 'segment' needs"):
        USPL(stage="segment", init_from=str(pipeline["coarse"]), **tiny)
    with pytest.raises(ValueError, match="shapes differ"):
        USPL(stage="refine", init_from=str(pipeline["coarse"]), **tiny | {"embed_dim": 8})
    for other in ({"sample_rate": 8000}, {"frame_size": (48, 64)}, {"duration": 1.0}):  # a mis-set later stage
        with pytest.raises(ValueError, match="build every stage with the same sample_rate, frame_size and duration"):
            USPL(stage="refine", init_from=str(pipeline["coarse"]), **tiny | other)
    with pytest.raises(FileNotFoundError):
        USPL(stage="refine", init_from=str(tmp_path / "missing.ckpt"), **tiny)
    with pytest.raises(ValueError, match="must start with"):
        run_pipeline(
            USPL(stage="refine", **tiny), tiny_data(), lambda s: _quick_trainer(tmp_path), tmp_path, ["segment"]
        )
    with pytest.warns(UserWarning, match="starts without init_from"):
        _quick_trainer(tmp_path).fit(USPL(stage="refine", **tiny), datamodule=tiny_data())
