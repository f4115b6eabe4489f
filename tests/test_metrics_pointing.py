"""The pointing rate: ``avsl.metrics.functional.pointing`` and the ``avsl.metrics.Pointing`` metric."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from avsl.evaluate import evaluate, uniform
from avsl.metrics import Pointing
from avsl.metrics import functional as F
from tests.test_metrics_ddp import NUM_SAMPLES, WORLD_SIZE, Results, run_two_processes


def _box(h: int, w: int, y0: int, y1: int, x0: int, x1: int, value: float = 1.0) -> torch.Tensor:
    g = torch.zeros(h, w, dtype=torch.float64)
    g[y0:y1, x0:x1] = value
    return g


def _literal(heatmap: np.ndarray, gt: np.ndarray) -> float:
    """The definition, one sample in NumPy: the expected hit of a uniformly random pick among the maximal pixels."""
    if not (gt > 0).any():
        return math.nan
    peak = np.flatnonzero(heatmap.ravel() == heatmap.max())
    return float(np.mean([gt.ravel()[i] > 0 for i in peak]))


def _random(n: int = 17, h: int = 12, w: int = 15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth maps, some quantized (plateaus at the maximum), some constant; GTs binary, soft or empty."""
    gen = torch.Generator().manual_seed(seed)
    maps = tF.interpolate(torch.randn(n, 1, 4, 4, generator=gen), size=(h, w), mode="bilinear")[:, 0]
    maps[::3] = (maps[::3] * 2).round()  # ties, often at the maximum
    maps[1] = 0.7  # constant
    gts = torch.zeros(n, h, w, dtype=torch.float64)
    for i in range(n):
        if i % 5 == 4:
            continue  # empty GT
        y0, x0 = int(torch.randint(0, h - 3, (1,), generator=gen)), int(torch.randint(0, w - 3, (1,), generator=gen))
        gts[i, y0 : y0 + 5, x0 : x0 + 6] = 0.5 if i % 2 else 1.0
    return maps, gts


# ----------------------------------------------------------------------------------------------------------------------
# The per-sample score
# ----------------------------------------------------------------------------------------------------------------------


def test_unique_peak_inside_and_outside() -> None:
    gt = _box(8, 8, 2, 5, 2, 5)
    inside, outside = torch.zeros(8, 8), torch.zeros(8, 8)
    inside[3, 4] = 1.0
    outside[7, 0] = 1.0
    values = F.pointing(torch.stack([inside, outside]), torch.stack([gt, gt]))
    assert values.dtype == torch.float64
    assert values.tolist() == [1.0, 0.0]


def test_soft_gt_weight_counts_as_inside() -> None:
    heatmap = torch.zeros(1, 8, 8)
    heatmap[0, 3, 3] = 2.0
    assert F.pointing(heatmap, _box(8, 8, 2, 5, 2, 5, value=0.5)[None]).item() == 1.0


def test_constant_map_scores_the_area_fraction() -> None:
    gt = _box(10, 10, 0, 4, 0, 5)  # 20 of 100 pixels, including pixel (0, 0), which argmax would return
    for value in (0.0, -3.0, 1.0):
        assert F.pointing(torch.full((1, 10, 10), value), gt[None]).item() == 0.2


def test_two_tied_peaks_one_inside_score_one_half() -> None:
    heatmap = torch.zeros(1, 8, 8)
    heatmap[0, 0, 0] = heatmap[0, 3, 3] = 1.0  # argmax would pick (0, 0), outside
    gt = _box(8, 8, 2, 5, 2, 5)
    assert F.pointing(heatmap, gt[None]).item() == 0.5
    heatmap[0, 6, 6] = 1.0  # three tied peaks, one inside
    assert F.pointing(heatmap, gt[None]).item() == pytest.approx(1 / 3, abs=1e-16)


def test_empty_gt_is_nan() -> None:
    gts = torch.stack([torch.zeros(6, 6), _box(6, 6, 0, 6, 0, 6), torch.zeros(6, 6)])
    values = F.pointing(torch.rand(3, 6, 6), gts)
    assert values[1].item() == 1.0
    assert values.isnan().tolist() == [True, False, True]


def test_batched_equals_per_sample_and_the_definition() -> None:
    maps, gts = _random()
    batched = F.pointing(maps, gts)
    assert batched.shape == (len(maps),) and batched.dtype == torch.float64
    for i in range(len(maps)):
        single = F.pointing(maps[i : i + 1], gts[i : i + 1])
        expected = _literal(maps[i].numpy(), gts[i].numpy())
        assert torch.equal(single.nan_to_num(-1), batched[i : i + 1].nan_to_num(-1)), i
        assert batched[i].nan_to_num(-1).item() == pytest.approx(-1 if math.isnan(expected) else expected, abs=1e-15)
    assert F.pointing(maps[:0], gts[:0]).shape == (0,)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_heatmaps_raise(value: float) -> None:
    maps, gts = _random(n=5)
    maps[1, 2, 3] = value
    maps[3, 0, 0] = value
    with pytest.raises(ValueError, match=r"2 of 5 samples contain NaN or inf \(batch indices 1, 3\)"):
        F.pointing(maps, gts)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        F.pointing(torch.rand(4, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="heatmaps' shape"):
        F.pointing(torch.rand(1, 4, 4), torch.zeros(1, 4, 5))
    with pytest.raises(TypeError, match="floating-point"):
        F.pointing(torch.ones(1, 4, 4, dtype=torch.int64), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.pointing(torch.rand(1, 4, 4), torch.full((1, 4, 4), 2.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes(dtype: torch.dtype) -> None:
    maps, gts = _random()
    got = F.pointing(maps.to(dtype), gts.to(torch.float32))
    assert got.dtype == torch.float64
    expected = [_literal(m, g) for m, g in zip(maps.to(dtype).double().numpy(), gts.numpy())]  # ties in `dtype`
    assert torch.equal(got.nan_to_num(-1), torch.tensor(expected, dtype=torch.float64).nan_to_num(-1))


def test_ties_are_taken_in_the_heatmaps_dtype() -> None:
    heatmap = torch.zeros(1, 4, 4, dtype=torch.float64)
    heatmap[0, 0, 0], heatmap[0, 2, 2] = 1.0, 1.0001  # distinct in float64, equal once rounded to float16
    gt = _box(4, 4, 2, 3, 2, 3)[None]
    assert F.pointing(heatmap, gt).item() == 1.0
    assert F.pointing(heatmap.half(), gt).item() == 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    maps, gts = _random(n=40)
    for dtype in (torch.float16, torch.float32, torch.float64):
        cpu = F.pointing(maps.to(dtype), gts)
        gpu = F.pointing(maps.to(dtype).cuda(), gts.cuda())
        assert gpu.device.type == "cuda"
        assert torch.equal(gpu.cpu().nan_to_num(-1), cpu.nan_to_num(-1)), dtype
    metric = Pointing().cuda()
    metric.update(maps.cuda(), gts.cuda(), [f"s{i}" for i in range(len(maps))])
    reference = Pointing()
    reference.update(maps, gts, [f"s{i}" for i in range(len(maps))])
    for key, value in reference.compute().items():
        assert torch.equal(metric.compute()[key].cpu(), value), key


# ----------------------------------------------------------------------------------------------------------------------
# The metric
# ----------------------------------------------------------------------------------------------------------------------


def test_metric_mean_over_non_empty_and_counts() -> None:
    maps, gts = _random()
    metric = Pointing()
    for chunk in torch.arange(len(maps)).split(4):
        metric.update(maps[chunk], gts[chunk])
    out = metric.compute()
    values = F.pointing(maps, gts)
    assert set(out) == {"pointing", "num_samples", "num_empty"}
    assert out["pointing"].dtype == torch.float64
    assert out["num_samples"].dtype == out["num_empty"].dtype == torch.int64
    assert out["num_samples"].item() == len(maps)
    assert out["num_empty"].item() == int(values.isnan().sum()) == 3
    assert out["pointing"].item() == pytest.approx(values[~values.isnan()].mean().item(), abs=1e-15)


def test_empty_gt_is_excluded_not_scored() -> None:
    heatmap = torch.zeros(3, 6, 6)
    heatmap[:, 1, 1] = 1.0
    gts = torch.stack([_box(6, 6, 0, 3, 0, 3), torch.zeros(6, 6, dtype=torch.float64), _box(6, 6, 3, 6, 3, 6)])
    metric = Pointing()
    metric.update(heatmap, gts, ["hit", "negative", "miss"])
    out = metric.compute()
    assert out["pointing"].item() == 0.5  # (1 + 0) / 2: the negative counts neither as a hit nor as a miss
    assert (out["num_samples"].item(), out["num_empty"].item()) == (3, 1)

    negatives_only = Pointing()
    negatives_only.update(heatmap[1:2], gts[1:2])
    out = negatives_only.compute()
    assert math.isnan(out["pointing"].item())
    assert (out["num_samples"].item(), out["num_empty"].item()) == (1, 1)


def test_metric_names_the_non_finite_samples() -> None:
    maps, gts = _random(n=4)
    maps[2, 0, 0] = float("nan")
    metric = Pointing()
    with pytest.raises(ValueError, match=r"1 of 4 samples contain NaN or inf \(sample ids 'c'\)"):
        metric.update(maps, gts, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"sample ids 12\)"):
        metric.update(maps, gts, torch.tensor([10, 11, 12, 13]))
    maps[:, 1, 1] = float("inf")
    with pytest.raises(ValueError, match=r"4 of 4 samples .* \(sample ids 0, 1, 2, 3\)"):
        metric.update(maps, gts, [0, 1, 2, 3])
    assert not metric.values  # nothing was stored


def test_dedupe_by_sample_id_and_order_is_irrelevant() -> None:
    maps, gts = _random()
    reference = Pointing()
    reference.update(maps, gts, [f"clip_{i}" for i in range(len(maps))])
    perm = torch.randperm(len(maps), generator=torch.Generator().manual_seed(1))
    idx = torch.cat([perm, perm[:5]])  # repeats, as a DistributedSampler pads the evaluation set
    padded = Pointing()
    for chunk in idx.split(6):
        padded.update(maps[chunk], gts[chunk], [f"clip_{i}" for i in chunk.tolist()])
    out, expected = padded.compute(), reference.compute()
    for key in expected:
        assert torch.equal(out[key].nan_to_num(-1), expected[key].nan_to_num(-1)), key
    assert out["num_samples"].item() == len(maps)
    _, ids = padded.per_sample()
    assert ids is not None and ids.numel() == len(maps)

    no_ids = Pointing()
    no_ids.update(maps[idx], gts[idx])
    assert no_ids.compute()["num_samples"].item() == len(idx)  # without ids the repeats are counted


def test_ids_in_some_updates_only_is_an_error() -> None:
    maps, gts = _random(n=4)
    metric = Pointing()
    metric.update(maps[:2], gts[:2], ["a", "b"])
    metric.update(maps[2:], gts[2:])
    with pytest.raises(ValueError, match="every update or in none"):
        metric.compute()


# ----------------------------------------------------------------------------------------------------------------------
# evaluate() and LocalizationMethod
# ----------------------------------------------------------------------------------------------------------------------


def test_evaluate_returns_pointing() -> None:
    maps, gts = _random()
    batches: list[Any] = [
        {"map": maps[s], "gt_map": gts[s], "sample_id": [f"v{i}" for i in range(s.start, min(s.stop, len(maps)))]}
        for s in (slice(0, 8), slice(8, 17))
    ]
    results = evaluate(lambda b: b["map"], batches)
    values = F.pointing(maps, gts)
    assert results["pointing"] == pytest.approx(values[~values.isnan()].mean().item(), abs=1e-15)
    area = (gts > 0).flatten(1).double().mean(dim=1)
    constant = evaluate(lambda b: uniform(12, 15).expand(len(b["sample_id"]), -1, -1), batches)
    assert constant["pointing"] == pytest.approx(area[area > 0].mean().item(), abs=1e-15)  # chance, not a hit
    masks_only: list[Any] = [{"map": maps, "mask": gts > 0, "sample_id": list(range(17))}]
    assert "pointing" not in evaluate(lambda b: b["map"], masks_only)


@pytest.mark.parametrize("protocol", ["ezvsl", "slavc"])
def test_method_scores_pointing_on_the_raw_maps(protocol: str) -> None:
    from avsl.methods import EZVSL
    from tests.test_methods_contract import TINY

    torch.manual_seed(0)
    model = EZVSL(**TINY["ezvsl"], eval_protocol=protocol).eval()
    image, audio = torch.rand(3, 3, 32, 32), torch.randn(3, 8000)
    gts = torch.stack([_box(32, 32, 0, 16, 0, 16), _box(32, 32, 8, 32, 4, 30, 0.5), torch.zeros(32, 32)])
    batch: Any = {"image": image, "audio": audio, "gt_map": gts, "sample_id": [0, 1, 2]}  # per_sample sorts by id
    model._eval_step(batch, "val")
    values, _ = model.eval_metrics["val"].pointing.per_sample()
    raw = model.localize(image, audio, normalize=False)
    assert torch.equal(values.nan_to_num(-1), F.pointing(raw, gts).nan_to_num(-1))


def test_validate_and_test_log_pointing(tmp_path: Path) -> None:
    from avsl.methods import EZVSL
    from tests.test_methods_contract import TINY, tiny_data, tiny_trainer

    torch.manual_seed(0)
    model, data, trainer = EZVSL(**TINY["ezvsl"]), tiny_data(), tiny_trainer(tmp_path)
    for stage, results in (
        ("val", trainer.validate(model, datamodule=data)),
        ("test", trainer.test(model, datamodule=data)),
    ):
        assert 0.0 <= results[0][f"{stage}/pointing"] <= 1.0


# ----------------------------------------------------------------------------------------------------------------------
# Two processes (gloo): the launcher of tests/test_metrics_ddp.py with the runner below
# ----------------------------------------------------------------------------------------------------------------------


def make_ddp_data() -> tuple[torch.Tensor, torch.Tensor]:
    """``NUM_SAMPLES`` maps; sample 0, the one the DistributedSampler repeats as padding, is a negative (empty GT)."""
    gen = torch.Generator().manual_seed(7)
    h, w = 16, 20
    maps = tF.interpolate(torch.randn(NUM_SAMPLES, 1, 4, 4, generator=gen), size=(h, w), mode="bilinear")[:, 0]
    maps[2] = 0.25  # constant: the GT's area fraction
    maps[3] = (maps[3] * 2).round()  # a plateau at the maximum
    gts = torch.zeros(NUM_SAMPLES, h, w, dtype=torch.float64)
    for i in range(1, NUM_SAMPLES):
        gts[i, i : i + 8, 2 * i : 2 * i + 8] = 1.0 if i % 2 else 0.5
    return maps, gts


def run_pointing(indices: list[int]) -> Results:
    """Update ``Pointing`` metrics with the samples ``indices`` in batches of 3 (the runner of the DDP test)."""
    maps, gts = make_ddp_data()
    metrics = {"str_ids": Pointing(), "int_ids": Pointing(), "no_ids": Pointing()}
    for start in range(0, len(indices), 3):
        idx = torch.tensor(indices[start : start + 3])
        metrics["str_ids"].update(maps[idx], gts[idx], [f"clip_{i}" for i in idx.tolist()])
        metrics["int_ids"].update(maps[idx], gts[idx], idx)
        metrics["no_ids"].update(maps[idx], gts[idx])
    return {name: metric.compute() for name, metric in metrics.items()}


@pytest.mark.ddp
def test_two_processes_match_one_process(tmp_path: Path) -> None:
    ddp = run_two_processes(tmp_path, "tests.test_metrics_pointing:run_pointing")
    single = run_pointing(list(range(NUM_SAMPLES)))
    for name in ("str_ids", "int_ids"):
        for key, value in single[name].items():
            assert torch.equal(ddp[name][key].cpu(), value), (name, key)
    assert single["str_ids"]["num_samples"].item() == NUM_SAMPLES
    assert single["str_ids"]["num_empty"].item() == 1  # the padded negative, counted once
    # Without ids the padding repeat is counted: 8 samples, 2 negatives.
    padded = WORLD_SIZE * -(-NUM_SAMPLES // WORLD_SIZE)
    assert (ddp["no_ids"]["num_samples"].item(), ddp["no_ids"]["num_empty"].item()) == (padded, 2)
