"""Hand-built cases for avsl.metrics.functional: GT maps, every protocol's edge cases, cIoU, AUC, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsl.metrics import PROTOCOLS
from avsl.metrics import functional as F

# ----------------------------------------------------------------------------------------------------------------------
# gt_map_from_boxes
# ----------------------------------------------------------------------------------------------------------------------


def ref_flickr_gt(boxes: list[list[int]], size: int = 224) -> np.ndarray:
    """LVS ``utils.testset_gt`` (Flickr branch) after XML parsing, literally."""
    gt_map = np.zeros([size, size])
    bboxs = [[int(size * int(v) / 256) for v in box] for box in boxes]
    for item_ in bboxs:
        temp = np.zeros([size, size])
        temp[item_[1] : item_[3], item_[0] : item_[2]] = 1
        gt_map += temp
    gt_map /= 2
    gt_map[gt_map > 1] = 1
    return gt_map


def ref_vggss_gt(boxes: list[list[float]], size: int = 224) -> np.ndarray:
    """EZ-VSL ``load_all_bboxes`` + ``bbox2gtmap('vggss')``, literally."""
    bboxes = [(np.clip(np.array(bbox), 0, 1) * size).astype(int) for bbox in boxes]
    gt_map = np.zeros([size, size])
    for xmin, ymin, xmax, ymax in bboxes:
        temp = np.zeros([size, size])
        temp[ymin:ymax, xmin:xmax] = 1
        gt_map += temp
    gt_map[gt_map > 0] = 1
    return gt_map


def ref_vggss_gt_lvs(boxes: list[list[float]], size: int = 224) -> np.ndarray:
    """LVS ``utils.testset_gt`` (VGG-SS branch): ``int(224 * max(v, 0))``, no upper clip."""
    gt_map = np.zeros([size, size])
    for item_ in boxes:
        xmin, ymin, xmax, ymax = (int(size * max(x, 0)) for x in item_)
        temp = np.zeros([size, size])
        temp[ymin:ymax, xmin:xmax] = 1
        gt_map += temp
    gt_map[gt_map > 0] = 1
    return gt_map


def test_flickr_consensus_values_and_truncation() -> None:
    one = F.gt_map_from_boxes([[10, 20, 100, 30]], "flickr")
    # int(224 * 10 / 256) = 8, int(224 * 20 / 256) = 17, int(224 * 100 / 256) = 87, int(224 * 30 / 256) = 26
    expected = torch.zeros(224, 224, dtype=torch.float64)
    expected[17:26, 8:87] = 0.5
    assert one.dtype == torch.float64
    assert one.shape == (224, 224)
    assert torch.equal(one, expected)
    three = F.gt_map_from_boxes([[0, 0, 256, 256], [0, 0, 128, 256], [0, 0, 64, 256]], "flickr")
    assert set(three.unique().tolist()) == {0.5, 1.0}  # 2 or 3 annotators -> 1 (clipped), one annotator -> 0.5
    assert three[0, 0].item() == 1.0
    assert three[0, 200].item() == 0.5


def test_vggss_union_is_binary_and_clipped() -> None:
    gt = F.gt_map_from_boxes([[-0.5, 0.2, 1.5, 0.4], [0.1, 0.3, 0.2, 0.9]], "vggss")
    assert set(gt.unique().tolist()) == {0.0, 1.0}
    assert gt[44:89, :].min().item() == 1.0  # int(224 * 0.2) = 44, int(224 * 0.4) = 89, x clipped to [0, 224)
    assert gt[:44, :22].max().item() == 0.0


@pytest.mark.parametrize(
    "box",
    [
        [0.0, 0.53125, 0.0, 0.9875],  # zero width (vggss.json, YBd5lEnpT_8_000000)
        [0.26875, 1.0, 0.753125, 1.0],  # zero height at the border (M1P1xla8rg0_000000, its only box)
        [0.396875, 0.6625, -2.8823037615171176e16, 0.984375],  # garbage x2 (MKC9LvRivTM_000030, its only box)
        [0.8, 0.2, 0.3, 0.9],  # x2 < x1
    ],
)
def test_degenerate_vggss_boxes_add_nothing(box: list[float]) -> None:
    assert F.gt_map_from_boxes([box], "vggss").sum().item() == 0.0
    base = F.gt_map_from_boxes([[0.1, 0.1, 0.2, 0.2]], "vggss")
    assert torch.equal(F.gt_map_from_boxes([[0.1, 0.1, 0.2, 0.2], box], "vggss"), base)


def test_gt_maps_match_literal_reference_on_random_and_odd_boxes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = int(rng.integers(0, 5))
        flickr = rng.integers(-40, 300, size=(k, 4)).tolist()  # 1-based 256-px ints, plus out-of-frame garbage
        assert np.array_equal(F.gt_map_from_boxes(flickr, "flickr").numpy(), ref_flickr_gt(flickr))
        vgg = (rng.random((k, 4)) * 1.6 - 0.3).tolist()
        ours = F.gt_map_from_boxes(vgg, "vggss").numpy()
        assert np.array_equal(ours, ref_vggss_gt(vgg))
        assert np.array_equal(ours, ref_vggss_gt_lvs(vgg))
    sized = [[3, 9, 200, 250]]
    assert np.array_equal(F.gt_map_from_boxes(sized, "flickr", size=100).numpy(), ref_flickr_gt(sized, 100))


def test_gt_map_accepts_tensors_and_empty_box_lists() -> None:
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6]])
    assert torch.equal(F.gt_map_from_boxes(boxes, "vggss"), F.gt_map_from_boxes(boxes.tolist(), "vggss"))
    assert F.gt_map_from_boxes(torch.zeros(0, 4), "flickr").sum().item() == 0.0
    assert F.gt_map_from_boxes([], "vggss").shape == (224, 224)


@pytest.mark.parametrize(
    ("boxes", "style", "message"),
    [
        ([[1, 2, 3]], "flickr", "4 coordinates"),
        ([[0.1, float("nan"), 0.3, 0.4]], "vggss", "NaN"),
        ([[1, 2, float("inf"), 4]], "flickr", "non-finite"),
        ([[1, 2, 3, 4]], "coco", "unknown GT style"),
    ],
)
def test_gt_map_rejects_bad_boxes(boxes: list[list[float]], style: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        F.gt_map_from_boxes(boxes, style)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------------------
# binarize / ciou: hand-built edge cases on 2 x 4 maps (N = 8, median index 4)
# ----------------------------------------------------------------------------------------------------------------------

LEFT = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)  # GT: left half
EMPTY = torch.zeros(2, 4, dtype=torch.float64)
FULL = torch.ones(2, 4, dtype=torch.float64)


def _mask(protocol: str, heatmap: list[float], gt: torch.Tensor = LEFT) -> list[int]:
    h = torch.tensor(heatmap, dtype=torch.float32).reshape(1, 2, 4)
    return F.binarize(h, protocol, gt[None]).reshape(-1).int().tolist()  # type: ignore[arg-type]


def _ciou(protocol: str, heatmap: list[float], gt: torch.Tensor = LEFT) -> float:
    h = torch.tensor(heatmap, dtype=torch.float32).reshape(1, 2, 4)
    return F.ciou(h, gt[None], protocol).item()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("protocol", "zero", "negative", "positive"),
    [
        # constant maps: value 0, value -1, value 0.7 -> cIoU against the left half
        ("ezvsl", 0.5, 0.5, 0.5),  # normalize_img is a no-op, t = c, p >= t: full mask
        ("lvs", 0.5, 0.0, 0.5),  # p = 1 + c: full mask if 1 + c >= 1, else every value < 1 is zeroed
        ("sspl", 0.0, 0.0, 0.0),  # 0 / ptp = NaN: empty mask
        ("slavc", 0.0, None, 0.5),  # fixed threshold on the score itself (negative scores are rejected)
        ("sslalign", 0.0, 0.0, 0.0),  # p > t with t = p: empty mask
        ("sslalign_adaptive", 0.0, 0.0, 0.0),
    ],
)
def test_constant_maps(protocol: str, zero: float, negative: float | None, positive: float) -> None:
    assert _ciou(protocol, [0.0] * 8) == zero
    if negative is not None:
        assert _ciou(protocol, [-1.0] * 8) == negative
    assert _ciou(protocol, [0.7] * 8) == positive


def test_lvs_constant_map_rounding_to_one_keeps_the_full_mask() -> None:
    # 1 + (-1e-9) rounds to 1.0 in float32 (the reference's dtype), so the pixels survive pred[pred < 1] = 0.
    assert _mask("lvs", [-1e-9] * 8) == [1] * 8
    h = torch.full((1, 2, 4), -1e-9, dtype=torch.float64)
    assert not F.binarize(h, "lvs").any()  # in float64, 1 - 1e-9 < 1


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("ezvsl", 0.0),  # full mask, empty GT: 0 / 8
        ("lvs", 0.0),  # p = 1 + 0 = 1 everywhere: the full mask survives
        ("sspl", float("nan")),  # empty mask and empty GT: 0 / 0
        ("slavc", float("nan")),
        ("sslalign", float("nan")),
        ("sslalign_adaptive", float("nan")),  # empty GT -> K = N // 2, still p > max: empty
    ],
)
def test_all_zero_map_with_empty_gt(protocol: str, expected: float) -> None:
    value = _ciou(protocol, [0.0] * 8, EMPTY)
    assert value == expected or (np.isnan(value) and np.isnan(expected))


def test_ties_at_the_median() -> None:
    heat = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0]  # six pixels share the minimum and the median value
    assert _mask("ezvsl", heat) == [1] * 8  # p >= t with t = 0: everything
    assert _mask("lvs", heat) == [0, 0, 0, 0, 0, 0, 1, 1]  # p > 0 (two pixels), the max is among them
    assert _mask("sslalign", heat) == [0, 0, 0, 0, 0, 0, 1, 1]
    assert _mask("sspl", heat) == [0, 0, 0, 0, 0, 0, 1, 1]  # normalized 0.5 and 1.0 are >= 0.5
    one_pixel_gt = torch.zeros(2, 4, dtype=torch.float64)
    one_pixel_gt[1, 3] = 1
    assert _mask("sslalign_adaptive", heat, one_pixel_gt) == [0] * 8  # t = sort(p)[8 - 1] = max: p > max is empty
    three_pixel_gt = one_pixel_gt.clone()
    three_pixel_gt[1, 1:3] = 1
    assert _mask("sslalign_adaptive", heat, three_pixel_gt) == [0, 0, 0, 0, 0, 0, 1, 1]  # t = sort(p)[5] = 0


def test_half_or_more_pixels_at_the_maximum() -> None:
    heat = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.2]
    assert _mask("ezvsl", heat) == [1, 1, 1, 1, 1, 0, 0, 0]  # t = 1, p >= 1
    assert _mask("lvs", heat) == [1, 1, 1, 1, 1, 0, 0, 0]  # t = 1: nothing is > t, but p == 1 survives
    assert _mask("sslalign", heat) == [0] * 8  # strict > at the maximum: empty
    assert _mask("sspl", heat) == [1, 1, 1, 1, 1, 0, 1, 0]


def test_distinct_values_lvs_keeps_one_pixel_less_than_ezvsl() -> None:
    heat = [0.3, 0.1, 0.7, 0.2, 0.9, 0.4, 0.8, 0.6]
    assert sum(_mask("ezvsl", heat)) == 4  # the upper half, median included
    assert sum(_mask("lvs", heat)) == 3  # strictly above the upper median
    assert _ciou("ezvsl", heat, FULL) == 0.5
    assert _ciou("lvs", heat, FULL) == 3 / 8


def test_empty_gt_and_full_gt() -> None:
    heat = [0.3, 0.1, 0.7, 0.2, 0.9, 0.4, 0.8, 0.6]
    for protocol in ("ezvsl", "lvs", "sspl", "sslalign"):
        assert _ciou(protocol, heat, EMPTY) == 0.0  # non-empty mask, no GT: 0 / |mask|
        assert _ciou(protocol, heat, FULL) == sum(_mask(protocol, heat)) / 8
    # adaptive with an empty GT keeps the top N // 2 rule: t = sort(p)[8 - 4]
    assert _mask("sslalign_adaptive", heat, EMPTY) == _mask("sslalign", heat)
    # adaptive with a full GT: t = sort(p)[0], so everything above the minimum
    assert sum(_mask("sslalign_adaptive", heat, FULL)) == 7


def test_slavc_threshold_is_inclusive_and_absolute() -> None:
    scores = [0.5, 0.49999997, 0.6, 0.0, 1.0, 0.2, 0.5, 0.3]
    assert _mask("slavc", scores) == [1, 0, 1, 0, 1, 0, 1, 0]
    with pytest.raises(ValueError, match=r"fixed-range scores in \[0, 1\]"):
        _mask("slavc", [0.0, 33.0, -33.0, 0, 0, 0, 0, 0])


def test_consensus_weights_count_half() -> None:
    gt = torch.tensor([[1.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    # numerator 1 + 0.5; denominator sum(g) = 2 plus one predicted pixel with g = 0
    assert F.ciou_from_mask(mask[None], gt[None]).item() == 1.5 / 3


def test_ciou_landing_exactly_on_thresholds() -> None:
    # 20 GT pixels, masks covering exactly k of them and nothing else: cIoU = k / 20
    gt = torch.zeros(20, 4, 5, dtype=torch.float64)
    gt[:] = 1
    masks = (torch.arange(20)[None, :] < torch.arange(20, 0, -1)[:, None]).reshape(20, 4, 5)
    cious = F.ciou_from_mask(masks, gt)
    assert cious.tolist() == [k / 20 for k in range(20, 0, -1)]
    # 7 / 20 = 0.35 is below the Python product 0.05 * 7 = 0.35000000000000003: it fails that AUC threshold
    seven = torch.tensor([7 / 20], dtype=torch.float64)
    assert F.success_rate(seven, 0.05 * 7).item() == 0.0
    assert F.success_rate(seven, 0.35).item() == 1.0
    assert F.success_rate(torch.tensor([0.5]), 0.5).item() == 1.0  # exactly 0.5 is a success (>=)
    # AUC of a single sample at cIoU c: trapezoid over the steps it passes
    assert F.auc(seven).item() == pytest.approx(0.05 * 6 + 0.025)  # passes i = 0..6 only, not i = 7


def test_auc_and_success_rate_treat_nan_as_failure() -> None:
    values = torch.tensor([float("nan"), 1.0], dtype=torch.float64)
    assert F.success_rate(values).item() == 0.5
    assert F.auc(values).item() == pytest.approx(0.5)  # y_i = 1/2 for every threshold, width 1
    assert F.auc(torch.tensor([1.0])).item() == pytest.approx(1.0)
    assert F.auc(torch.tensor([0.0])).item() == pytest.approx(0.025)  # only the threshold 0 is passed


# ----------------------------------------------------------------------------------------------------------------------
# Dtypes, shapes, devices and input errors
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_output_types_and_batch_independence(protocol: str) -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 12, 10, generator=gen)
    gts = (torch.rand(5, 12, 10, generator=gen) > 0.6).double()
    values = F.ciou(maps, gts, protocol)
    assert values.dtype == torch.float64
    assert values.shape == (5,)
    masks = F.binarize(maps, protocol, gts)
    assert masks.dtype == torch.bool
    assert masks.shape == maps.shape
    one_by_one = torch.cat([F.ciou(maps[i : i + 1], gts[i : i + 1], protocol) for i in range(5)])
    assert torch.equal(values, one_by_one)
    assert F.ciou(maps[:0], gts[:0], protocol).shape == (0,)


@pytest.mark.parametrize(
    ("heatmaps", "gt", "error", "message"),
    [
        (torch.rand(4, 4), torch.zeros(4, 4), ValueError, r"shape \(B, H, W\)"),
        (torch.rand(2, 4, 4), torch.zeros(2, 4, 5), ValueError, "heatmaps' shape"),
        (torch.tensor([[[0.1, float("nan")], [0.2, 0.3]]]), None, ValueError, "1 NaN"),
        (torch.full((1, 4, 4), float("inf")), None, ValueError, "inf"),
        (torch.ones(1, 4, 4, dtype=torch.int64), None, TypeError, "floating-point"),
        (torch.rand(1, 4, 4), torch.full((1, 4, 4), 2.0), ValueError, r"\[0, 1\]"),
        (torch.rand(1, 0, 4), torch.zeros(1, 0, 4), ValueError, "non-empty"),
    ],
)
def test_bad_inputs_raise_clear_errors(
    heatmaps: torch.Tensor, gt: torch.Tensor | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        F.ciou(heatmaps, torch.zeros_like(heatmaps, dtype=torch.float64) if gt is None else gt, "ezvsl")


@pytest.mark.parametrize("gt_dtype", [torch.bool, torch.uint8, torch.float16, torch.bfloat16, torch.float32])
def test_gt_maps_of_any_real_dtype(gt_dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(2)
    maps = torch.rand(3, 10, 12, generator=gen)
    gts = torch.rand(3, 10, 12, generator=gen) > 0.5
    expected = F.ciou(maps, gts.double())
    assert torch.equal(F.ciou(maps, gts.to(gt_dtype)), expected)
    assert torch.equal(F.ciou_from_mask(F.binarize(maps), gts.to(gt_dtype)), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_heatmaps(dtype: torch.dtype) -> None:
    """Half types take the torch path; on maps whose normalization is exact they agree with float32."""
    gen = torch.Generator().manual_seed(4)
    maps = torch.randint(0, 5, (6, 9, 11), generator=gen).float() / 4  # values 0, 1/4, ..., 1 with min 0, max 1
    maps[:, 0, 0], maps[:, 0, 1] = 0.0, 1.0
    gts = (torch.rand(6, 9, 11, generator=gen) > 0.5).double()
    for protocol in PROTOCOLS:
        assert torch.equal(F.ciou(maps.to(dtype), gts, protocol), F.ciou(maps, gts, protocol)), protocol


def test_unknown_protocol_and_missing_gt() -> None:
    with pytest.raises(ValueError, match="unknown protocol 'median'"):
        F.binarize(torch.rand(1, 4, 4), "median")
    with pytest.raises(ValueError, match="needs gt_maps"):
        F.binarize(torch.rand(1, 4, 4), "sslalign_adaptive")


def test_auc_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        F.auc(torch.zeros(0))


def test_numpy_pairwise_sum_is_bitwise_numpy() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 7, 8, 9, 128, 129, 1000, 12544):
        for dtype in (np.float32, np.float64):
            values = (rng.random((3, n)) * 7).astype(dtype)
            ours = F.numpy_pairwise_sum(torch.from_numpy(values)).numpy()
            assert np.array_equal(ours, np.add.reduce(values, axis=1)), (n, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cuda_matches_cpu(protocol: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gen = torch.Generator().manual_seed(0)
    maps = torch.nn.functional.interpolate(torch.randn(64, 1, 7, 7, generator=gen), size=(224, 224), mode="bilinear")[
        :, 0
    ]
    if protocol == "slavc":
        maps = torch.sigmoid(maps)
    maps[:4] = maps[:4].relu()
    maps[4] = 0.0
    gts = (torch.rand(64, 224, 224, generator=gen) > 0.5).double()
    for dtype in (torch.float32, torch.float64):
        cpu = F.ciou(maps.to(dtype), gts, protocol)
        gpu = F.ciou(maps.to(dtype).cuda(), gts.cuda(), protocol).cpu()
        assert torch.equal(torch.isnan(cpu), torch.isnan(gpu))
        assert torch.equal(cpu.nan_to_num(-1), gpu.nan_to_num(-1))
    scores = torch.sigmoid(maps)
    assert torch.equal(F.slavc_confidence(scores), F.slavc_confidence(scores.cuda()).cpu())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_maps_out_of_range_or_empty(dtype: torch.dtype) -> None:
    """Half-precision maps are normalized in their dtype (as the references would): a float16 range above 65504 is
    infinite, and gave silently wrong masks (a ramp of +-40,000: ezvsl 0.31, sspl 0 instead of 1); an empty batch of
    slavc maps failed to check its range."""
    ramp = torch.linspace(-40000, 40000, 64).reshape(1, 8, 8)
    gt = torch.zeros(1, 8, 8)
    gt[0, 4:] = 1
    for protocol in ("ezvsl", "sspl", "lvs"):
        if dtype == torch.float16:
            with pytest.raises(ValueError, match="exceeds float16's: pass them in float32"):
                F.ciou(ramp.to(dtype), gt, protocol)
        else:
            assert F.ciou(ramp.to(dtype), gt, protocol).item() == F.ciou(ramp, gt, protocol).item(), protocol
    assert F.ciou(torch.rand(0, 8, 8).to(dtype), torch.zeros(0, 8, 8), "slavc").shape == (0,)
