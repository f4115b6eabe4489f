"""The torchmetrics classes: CIoU, ExtendedLocalization, AVSBenchMIoU, AVSBenchFScore (single process)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from avsl.metrics import PROTOCOLS, AVSBenchFScore, AVSBenchMIoU, CIoU, ExtendedLocalization
from avsl.metrics import functional as F
from avsl.metrics._ids import hash_sample_id, sample_ids_to_tensor
from avsl.metrics.extended import average_precision, f1_curve, precision_recall


def _data(n: int = 23, h: int = 20, w: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    maps = tF.interpolate(torch.randn(n, 1, 5, 5, generator=gen), size=(h, w), mode="bilinear", align_corners=True)[
        :, 0
    ]
    maps[0] = 0.0  # constant map: NaN under sspl with the empty GT below
    gts = torch.zeros(n, h, w, dtype=torch.float64)
    for i in range(1, n):
        y0, x0 = int(torch.randint(0, h // 2, (1,), generator=gen)), int(torch.randint(0, w // 2, (1,), generator=gen))
        gts[i, y0 : y0 + h // 2, x0 : x0 + w // 2] = 1.0 if i % 3 else 0.5
    return maps, gts


# ----------------------------------------------------------------------------------------------------------------------
# CIoU
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ciou_metric_equals_functional_aggregates(protocol: str) -> None:
    maps, gts = _data()
    if protocol == "slavc":
        maps = torch.sigmoid(maps)
    metric = CIoU(protocol)
    for chunk in torch.arange(len(maps)).split(5):
        metric.update(maps[chunk], gts[chunk])
    out = metric.compute()
    values = F.ciou(maps, gts, protocol)
    assert set(out) == {"ciou", "auc", "mean_ciou", "num_samples", "num_nan"}
    assert out["ciou"].item() == F.success_rate(values).item()
    assert out["auc"].item() == F.auc(values).item()
    assert out["num_samples"].item() == len(maps)
    assert out["num_nan"].item() == int(values.isnan().sum())
    assert out["mean_ciou"].item() == pytest.approx(values.nan_to_num(0.0).mean().item(), abs=1e-15)


def test_nan_samples_count_as_zero_and_are_reported() -> None:
    maps = torch.zeros(2, 4, 4)
    maps[1, :2] = 1.0
    gts = torch.zeros(2, 4, 4, dtype=torch.float64)
    gts[1, :2] = 1.0  # sample 1: perfect (cIoU 1); sample 0: constant map, empty GT -> sspl NaN
    metric = CIoU("sspl")
    metric.update(maps, gts)
    out = metric.compute()
    assert out["num_nan"].item() == 1
    assert out["mean_ciou"].item() == 0.5  # (0 + 1) / 2, never NaN
    assert out["ciou"].item() == 0.5  # NaN fails the threshold, as in the references
    assert out["auc"].item() == pytest.approx(0.5)


@pytest.mark.parametrize("protocol", ["ezvsl", "lvs"])
def test_result_does_not_depend_on_the_batch_split(protocol: str) -> None:
    maps, gts = _data()
    ids = [f"vid_{i:03d}" for i in range(len(maps))]
    results = []
    for sizes in ([23], [1] * 23, [4, 9, 10], [11, 1, 11]):
        for with_ids in (True, False):
            metric = CIoU(protocol)
            order = torch.arange(len(maps))
            for chunk in order.split(sizes):
                metric.update(maps[chunk], gts[chunk], [ids[i] for i in chunk] if with_ids else None)
            results.append(metric.compute())
    for other in results[1:]:
        for key in results[0]:
            assert torch.equal(results[0][key], other[key]), key


def test_sample_ids_dedupe_repeats_and_order_is_irrelevant() -> None:
    maps, gts = _data()
    reference = CIoU()
    reference.update(maps, gts, list(range(len(maps))))
    padded = CIoU()
    perm = torch.randperm(len(maps), generator=torch.Generator().manual_seed(1))
    extra = perm[:5]  # repeats, as a DistributedSampler pads with the first samples
    idx = torch.cat([perm, extra])
    padded.update(maps[idx], gts[idx], idx)
    out, expected = padded.compute(), reference.compute()
    assert out["num_samples"].item() == len(maps)
    for key in expected:
        assert torch.equal(out[key], expected[key]), key
    values, ids = padded.per_sample()
    assert ids is not None
    assert torch.equal(ids, torch.arange(len(maps)))
    assert torch.equal(values.nan_to_num(-1), F.ciou(maps, gts).nan_to_num(-1))


def test_conflicting_repeats_warn() -> None:
    maps, gts = _data(n=3)
    metric = CIoU()
    metric.update(maps, gts, ["a", "b", "c"])
    flipped = -maps[1:2]  # the opposite map for sample "b": a different cIoU under the same id
    assert F.ciou(flipped, gts[1:2]).item() != F.ciou(maps[1:2], gts[1:2]).item()
    metric.update(flipped, gts[1:2], ["b"])
    with pytest.warns(UserWarning, match="different values"):
        metric.compute()


def test_ids_in_some_updates_only_is_an_error() -> None:
    maps, gts = _data(n=4)
    metric = CIoU()
    metric.update(maps[:2], gts[:2], ["a", "b"])
    metric.update(maps[2:], gts[2:])
    with pytest.raises(ValueError, match="every update or in none"):
        metric.compute()


def test_string_ids_use_a_stable_hash() -> None:
    digest = hashlib.blake2b(b"3908875350", digest_size=8).digest()
    assert hash_sample_id("3908875350") == int.from_bytes(digest, "little", signed=True)
    ids = sample_ids_to_tensor(["x", "y", "x"], 3, torch.device("cpu"))
    assert ids.dtype == torch.int64
    assert ids[0] == ids[2] != ids[1]


@pytest.mark.parametrize(
    ("ids", "error", "message"),
    [
        (["a", "b"], ValueError, "2 sample_ids for 3 samples"),
        (["a", 1, "c"], TypeError, "all str or all int"),
        (torch.tensor([True, False, True]), ValueError, "bool"),
        (torch.tensor([0.5, 1.0, 2.0]), ValueError, "integer"),
        ("abc", TypeError, "single str"),
    ],
)
def test_bad_sample_ids(ids: object, error: type[Exception], message: str) -> None:
    maps, gts = _data(n=3)
    with pytest.raises(error, match=message):
        CIoU().update(maps, gts, ids)  # type: ignore[arg-type]


def test_unknown_protocol_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        CIoU("cvpr")


def test_forward_reset_and_empty_compute() -> None:
    maps, gts = _data(n=6)
    metric = CIoU()
    batch = metric(maps[:3], gts[:3])  # forward: the batch's own values, state accumulates
    assert batch["num_samples"].item() == 3
    metric.update(maps[3:], gts[3:])
    assert metric.compute()["num_samples"].item() == 6
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        empty = metric.compute()
    assert empty["num_samples"].item() == 0
    assert torch.isnan(empty["ciou"])


# ----------------------------------------------------------------------------------------------------------------------
# ExtendedLocalization
# ----------------------------------------------------------------------------------------------------------------------


def test_extended_maths_on_a_hand_computed_case() -> None:
    conf = torch.tensor([0.9, 0.8, 0.7, 0.6], dtype=torch.float64)
    cious = torch.tensor([0.6, 0.3, 0.0, 0.7], dtype=torch.float64)
    boxes = torch.tensor([1, 1, 0, 2])
    # thresholds 0.8, 0.7, 0.6 (the sorted confidences without the largest, downwards):
    #   0.8: TP {0}, FP {1}, FN {3}       -> P = 1/2, R = 1/2
    #   0.7: TP {0}, FP {1, 2 (negative)} -> P = 1/3, R = 1/2
    #   0.6: TP {0, 3}, FP {1, 2}         -> P = 1/2, R = 1
    p, r = precision_recall(conf, cious, boxes, torch.tensor([0.8, 0.7, 0.6], dtype=torch.float64))
    assert p.tolist() == [1 / 2, 1 / 3, 1 / 2]
    assert r.tolist() == [1 / 2, 1 / 2, 1.0]
    # running max of P from the right: 1/2, 1/2, 1/2; AP = 1/2 * (1/2 - 1/2) + 1/2 * (1 - 1/2)
    assert average_precision(conf, cious, boxes).item() == 0.25
    # F1 at 0.6, 0.7, 0.8, 0.9: (1/2, 1), (1/3, 1/2), (1/2, 1/2), (1, 1/3)
    assert f1_curve(conf, cious, boxes).tolist() == pytest.approx([2 / 3, 2 / 5, 1 / 2, 1 / 2])
    # no detections and no positives: both denominators empty -> precision = recall = 1
    p, r = precision_recall(conf, cious, torch.zeros(4, dtype=torch.int64), torch.tensor([1.0]))
    assert (p.item(), r.item()) == (1.0, 1.0)


def test_extended_metric_prec50_is_strict_and_negatives_are_false_positives() -> None:
    scores = torch.zeros(3, 2, 4)
    scores[0, :, :1] = 1.0  # positive: 2 of its 4 GT pixels predicted -> cIoU exactly 0.5, confidence 1.0
    scores[1] = 0.8  # negative: confident (0.8) -> a false positive at every threshold <= 0.8
    scores[2, :, :2] = 1.0  # positive: perfect, confidence 1.0
    gts = torch.zeros(3, 2, 4, dtype=torch.float64)
    gts[0, :, :2] = 1.0
    gts[2, :, :2] = 1.0
    metric = ExtendedLocalization()
    metric.update(scores, gts, torch.tensor([1, 0, 1]), ["p0", "n0", "p1"])
    out = metric.compute()
    assert out["num_positive"].item() == 2
    assert out["num_negative"].item() == 1
    assert out["precision_at_50"].item() == 0.5  # cIoU > 0.5 only for the perfect one
    assert out["ciou"].item() == 1.0  # >= 0.5 for both
    # at confidence 0.5 everything is detected: TP 2, FP 1 (the negative) -> P = 2/3, R = 1
    assert out["f1"].item() == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))


def test_extended_metric_input_checks_and_empty_positives() -> None:
    scores, gts = torch.rand(2, 4, 4), torch.zeros(2, 4, 4)
    metric = ExtendedLocalization()
    with pytest.raises(ValueError, match="shape"):
        metric.update(scores, gts, [1, 0, 1])
    with pytest.raises(ValueError, match=">= 0"):
        metric.update(scores, gts, [1, -1])
    with pytest.raises(ValueError, match="integers or bools"):
        metric.update(scores, gts, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric.update(scores * 30, gts, [0, 0])
    metric.update(scores, gts, torch.tensor([False, False]))
    out = metric.compute()
    assert torch.isnan(out["auc"])
    assert torch.isnan(out["precision_at_50"])
    assert out["num_positive"].item() == 0


def test_extended_relative_mode_uses_ezvsl_masks() -> None:
    maps, gts = _data(n=8)
    scores = torch.sigmoid(maps)
    metric = ExtendedLocalization(protocol="ezvsl")
    metric.update(scores, gts, torch.ones(8, dtype=torch.int64))
    values = F.ciou(scores, gts, "ezvsl")
    assert metric.compute()["ciou"].item() == F.success_rate(values).item()
    assert torch.equal(metric.per_sample()["ciou"].nan_to_num(-1), values.nan_to_num(-1))


# ----------------------------------------------------------------------------------------------------------------------
# AVSBench
# ----------------------------------------------------------------------------------------------------------------------


def _avs(n: int = 15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = 4 * tF.interpolate(torch.randn(n, 1, 4, 4, generator=gen), size=(12, 12), mode="bilinear")[:, 0]
    masks = tF.interpolate(torch.randn(n, 1, 4, 4, generator=gen), size=(12, 12), mode="bilinear")[:, 0] > 0.4
    masks[3] = False
    return logits, masks


def test_avsbench_reference_reduction_depends_on_call_size_and_dataset_does_not() -> None:
    logits, masks = _avs()
    results = {}
    for sizes in ((5, 5, 5), (15,), (1,) * 15, (1, 4, 10)):
        metrics = {
            "ref_f": AVSBenchFScore(),
            "ref_j": AVSBenchMIoU(),
            "data_f": AVSBenchFScore(reduction="dataset"),
            "data_j": AVSBenchMIoU(reduction="dataset"),
        }
        for chunk in torch.arange(15).split(list(sizes)):
            for m in metrics.values():
                m.update(logits[chunk], masks[chunk])
        results[sizes] = {k: m.compute().item() for k, m in metrics.items()}
    dataset_j = results[(15,)]["data_j"]
    for sizes in ((5, 5, 5), (15,), (1,) * 15):  # equal call sizes: the mean of call means is the frame mean
        assert results[sizes]["ref_j"] == pytest.approx(dataset_j, abs=1e-12)
    assert results[(1, 4, 10)]["ref_j"] != pytest.approx(dataset_j, abs=1e-6)
    assert results[(5, 5, 5)]["ref_f"] != pytest.approx(results[(15,)]["ref_f"], abs=1e-6)  # F depends on batching
    assert results[(15,)]["ref_f"] == results[(15,)]["data_f"]  # one call is the dataset level
    for key in ("data_f", "data_j"):
        assert len({r[key] for r in results.values()}) == 1  # identical for every split


def test_avsbench_dataset_reduction_dedupes_ids() -> None:
    logits, masks = _avs()
    plain = AVSBenchFScore(reduction="dataset")
    plain.update(logits, masks, list(range(15)))
    padded = AVSBenchFScore(reduction="dataset")
    idx = torch.tensor([*list(range(15)), 0, 1])
    padded.update(logits[idx], masks[idx], idx)
    assert padded.compute().item() == plain.compute().item()


def test_avsbench_edge_cases_and_errors() -> None:
    frame = torch.zeros(1, 4, 4)  # logit 0 -> sigmoid 0.5 -> not predicted (strict >)
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    miou = AVSBenchMIoU()
    miou.update(frame, empty)
    assert miou.compute().item() == pytest.approx(1.0, abs=1e-7)  # empty mask: true-negative fraction 16 / 16
    f = AVSBenchFScore()
    f.update(frame, empty)
    assert f.compute().item() == 0.0  # a call without a non-empty mask scores 0
    with pytest.raises(ValueError, match="binary"):
        miou.update(frame, torch.full((1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="shape"):
        miou.update(frame, empty[:, :2])
    with pytest.raises(ValueError, match="non-finite"):
        miou.update(torch.full((1, 4, 4), float("nan")), empty)
    with pytest.raises(ValueError, match="unknown reduction"):
        AVSBenchMIoU(reduction="mean")  # type: ignore[arg-type]


def test_numpy_integer_sample_ids() -> None:
    maps, gts = torch.rand(4, 8, 8), torch.zeros(4, 8, 8)
    gts[:, 2:6, 2:6] = 1
    results = []
    for ids in (np.arange(4), [np.int64(i) for i in range(4)], torch.arange(4)):
        metric = CIoU("ezvsl")
        metric.update(maps, gts, ids)  # type: ignore[arg-type]
        results.append(metric.compute()["ciou"])
    assert results[0] == results[1] == results[2]


def test_evaluation_metrics_take_half_precision_maps_with_masks() -> None:
    """The masks' logits were taken in the maps' dtype, where 1 - 1e-6 is 1: an infinite logit, refused."""
    from avsl.metrics import EvaluationMetrics

    maps = torch.rand(2, 8, 8)
    masks = (maps > 0.5).float()
    batch = {"sample_id": ["a", "b"], "gt_map": masks, "mask": masks}
    scores = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        metrics = EvaluationMetrics("ezvsl")
        metrics.update(maps.to(dtype), maps.to(dtype), batch)  # type: ignore[arg-type]
        scores[dtype] = metrics.compute_and_reset()["miou"].item()
    assert scores[torch.float16] == scores[torch.bfloat16] == scores[torch.float32] == 1.0
