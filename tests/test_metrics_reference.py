"""Parity of avsl.metrics with literal re-implementations of the reference evaluators.

Each ``ref_*`` function below mirrors its reference's code path operation by operation, per sample, in NumPy (the
AVSBench ones in torch, like the original), in the heatmap's own dtype: the references normalize float32 maps
produced by ``cv2.resize`` or ``F.interpolate``. They are written from reading the sources named in each docstring.
The avsl implementations are batched code; on the CPU they must agree per sample bit for bit (soft GT weights
included, since the CPU path sums in NumPy's order), and the torch path used on CUDA to 1e-12, on random, smoothed,
plateau-heavy, tied and near-tied maps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from avsl.metrics import AVSBenchFScore, AVSBenchMIoU, ExtendedLocalization
from avsl.metrics import functional as F
from avsl.metrics.avsbench import frame_fscore_curves, frame_iou

# ----------------------------------------------------------------------------------------------------------------------
# Literal reference evaluators (NumPy, one sample at a time)
# ----------------------------------------------------------------------------------------------------------------------


def ref_normalize_img(value: np.ndarray) -> np.ndarray:
    """LVS / EZ-VSL / SLAVC / SSLalignment ``utils.normalize_img``: min-max unless the range is 0."""
    vmin = value.min()
    vmax = value.max()
    if vmax - vmin != 0:
        value = (value - vmin) / (vmax - vmin)
    return value


def ref_cal_ciou(infer: np.ndarray, gtmap: np.ndarray, thres: float, strict: bool = False) -> float:
    """``Evaluator.cal_CIOU`` (``>=``; SSLalignment ``Evaluator_iiou.cal_CIOU``: ``>``), any map size."""
    infer_map = np.zeros(gtmap.shape)
    if strict:
        infer_map[infer > thres] = 1
    else:
        infer_map[infer >= thres] = 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(infer_map * gtmap) / (np.sum(gtmap) + np.sum(infer_map * (gtmap == 0))))


def ref_lvs(heatmap: np.ndarray, gt_map: np.ndarray) -> float:
    """hche11/Localizing-Visual-Sounds-the-Hard-Way ``test.py`` main loop (after ``cv2.resize``)."""
    heatmap_now = ref_normalize_img(-heatmap)
    pred = heatmap_now
    pred = 1 - pred
    threshold = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1] / 2)]
    pred[pred > threshold] = 1
    pred[pred < 1] = 0
    return ref_cal_ciou(pred, gt_map, 0.5)


def ref_ezvsl(heatmap: np.ndarray, gt_map: np.ndarray) -> float:
    """stoneMo/EZ-VSL ``test.py validate`` (= SLAVC ``test.py --relative_prediction`` with pred_size 0.5)."""
    pred_av = ref_normalize_img(heatmap)
    thr_av = np.sort(pred_av.flatten())[int(pred_av.shape[0] * pred_av.shape[1] * 0.5)]
    return ref_cal_ciou(pred_av, gt_map, thr_av)


def ref_slavc(scores: np.ndarray, gt: np.ndarray, pred_thr: float = 0.5) -> float:
    """stoneMo/SLAVC ``utils.EvaluatorFull.update`` with the default absolute threshold."""
    infer = np.zeros(gt.shape)
    infer[scores >= pred_thr] = 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(infer * gt) / (np.sum(gt) + np.sum(infer * (gt == 0))))


def ref_sspl(heat_map: np.ndarray, gt_map: np.ndarray) -> float:
    """zjsong/SSPL ``test.py eval_cal_ciou`` with ``thres=0.5`` and ``utils.normalize_img`` (``np.ptp``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        heat_map = (heat_map - np.min(heat_map)) / np.ptp(heat_map)
        infer_map = np.zeros(gt_map.shape)
        infer_map[heat_map >= 0.5] = 1
        inter = np.sum(infer_map * gt_map)
        union = np.sum(gt_map) + np.sum(infer_map * (gt_map == 0))
        return float(inter / union)


def _sslalign_pred(heatmap: np.ndarray) -> np.ndarray:
    heatmap_now = ref_normalize_img(-heatmap)  # utils_lvs.normalize_img
    return 1 - heatmap_now


def ref_sslalign(heatmap: np.ndarray, gt_map: np.ndarray) -> float:
    """kaistmm/SSLalignment ``test.py validate_lvs`` + ``utils.Evaluator_iiou.cal_CIOU`` (strict ``>``)."""
    pred = _sslalign_pred(heatmap)
    threshold = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1] / 2)]
    return ref_cal_ciou(pred, gt_map, threshold, strict=True)


def ref_sslalign_adaptive(heatmap: np.ndarray, gt_map: np.ndarray) -> float:
    """kaistmm/SSLalignment ``test.py validate_lvs`` adaptive branch + ``Evaluator_iiou.cal_CIOU_adap``."""
    pred = _sslalign_pred(heatmap)
    gt_nums = (gt_map != 0).sum()
    if int(gt_nums) == 0:
        gt_nums = int(pred.shape[0] * pred.shape[1]) // 2
    threshold = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1]) - int(gt_nums)]
    return ref_cal_ciou(pred, gt_map, threshold, strict=True)


REFERENCES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "ezvsl": ref_ezvsl,
    "lvs": ref_lvs,
    "sspl": ref_sspl,
    "slavc": ref_slavc,
    "sslalign": ref_sslalign,
    "sslalign_adaptive": ref_sslalign_adaptive,
}


def ref_auc(cious: list[float]) -> float:
    """LVS ``test.py`` / EZ-VSL ``finalize_AUC``: ``sklearn.metrics.auc`` = ``np.trapz`` for increasing x."""
    results = [np.sum(np.array(cious) >= 0.05 * i) / len(cious) for i in range(21)]
    x = [0.05 * i for i in range(21)]
    return float(np.trapezoid(results, x))


def ref_success(cious: list[float]) -> float:
    """EZ-VSL ``finalize_AP50``."""
    return float(np.mean(np.array(cious) >= 0.5))


class RefEvaluatorFull:
    """stoneMo/SLAVC ``utils.EvaluatorFull`` (the parts behind AP, F1, Prec@50, AUC), loops kept as written."""

    def __init__(self, default_conf_thr: float = 0.5) -> None:
        self.default_conf_thr = default_conf_thr
        self.ciou_list: list[float] = []
        self.confidence_list: list[np.floating] = []
        self.bb_list: list[int] = []

    def update(self, bb: int, gt: np.ndarray, conf: np.floating, pred: np.ndarray, pred_thr: float) -> None:
        infer = np.zeros(gt.shape)
        infer[pred >= pred_thr] = 1
        with np.errstate(invalid="ignore", divide="ignore"):
            ciou = np.sum(infer * gt) / (np.sum(gt) + np.sum(infer * (gt == 0)))
        self.confidence_list.append(conf)
        self.ciou_list.append(float(ciou))
        self.bb_list.append(bb)

    @staticmethod
    def calc_precision_recall(bb_list, ciou_list, confidence_list, confidence_thr, ciou_thr=0.5):  # type: ignore[no-untyped-def]
        true_pos, false_pos, false_neg = 0, 0, 0
        for bb, ciou, confidence in zip(bb_list, ciou_list, confidence_list):
            if bb == 0:
                if confidence >= confidence_thr:
                    false_pos += 1
            else:
                if confidence >= confidence_thr:
                    if ciou >= ciou_thr:
                        true_pos += 1
                    else:
                        false_pos += 1
                else:
                    false_neg += 1
        precision = 1.0 if true_pos + false_pos == 0 else true_pos / (true_pos + false_pos)
        recall = 1.0 if true_pos + false_neg == 0 else true_pos / (true_pos + false_neg)
        return precision, recall

    def calc_ap(self, iou_thr: float = 0.5) -> float:
        precision, recall, skip_thr = [], [], max(1, len(self.ciou_list) // 200)
        for thr in np.sort(np.array(self.confidence_list))[:-1][::-skip_thr]:
            p, r = self.calc_precision_recall(self.bb_list, self.ciou_list, self.confidence_list, thr, iou_thr)
            precision.append(p)
            recall.append(r)
        precision_max = [np.max(precision[i:]) for i in range(len(precision))]
        return float(sum([precision_max[i] * (recall[i + 1] - recall[i]) for i in range(len(precision_max) - 1)]))

    def f1_list(self, iou_thr: float = 0.5) -> list[float]:
        conf_thr = list(sorted(self.confidence_list))[:: max(1, len(self.confidence_list) // 10)]
        pr = [
            self.calc_precision_recall(self.bb_list, self.ciou_list, self.confidence_list, t, iou_thr) for t in conf_thr
        ]
        return [2 * r * p / (r + p) if r + p > 0 else 0.0 for p, r in pr]

    def f1_at_50(self) -> float:
        p, r = self.calc_precision_recall(
            self.bb_list, self.ciou_list, self.confidence_list, self.default_conf_thr, 0.5
        )
        return 2 * p * r / (p + r) if (p + r) > 0 else 0.0

    def precision_at_50(self) -> float:
        ss = [i for i, bb in enumerate(self.bb_list) if bb > 0]
        return float(np.mean(np.array([self.ciou_list[i] for i in ss]) > 0.5))

    def cal_auc(self) -> float:
        ciou = [self.ciou_list[i] for i, bb in enumerate(self.bb_list) if bb > 0]
        return ref_auc(ciou)


def ref_slavc_confidence(scores: np.ndarray) -> np.floating:
    """SLAVC ``test.py``: ``np.sort(scores_av.flatten())[-n//4:].mean()``."""
    n = scores.size
    return np.sort(scores.flatten())[-n // 4 :].mean()


def ref_mask_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """OpenNLPLab/AVSBench ``utility.mask_iou`` as written (torch)."""
    n = pred.size(0)
    num_pixels = pred.size(-1) * pred.size(-2)
    no_obj_flag = target.sum(2).sum(1) == 0
    temp_pred = torch.sigmoid(pred)
    pred = (temp_pred > 0.5).int()
    inter = (pred * target).sum(2).sum(1)
    union = torch.max(pred, target).sum(2).sum(1)
    inter_no_obj = ((1 - target) * (1 - pred)).sum(2).sum(1)
    inter[no_obj_flag] = inter_no_obj[no_obj_flag]
    union[no_obj_flag] = num_pixels
    return torch.sum(inter / (union + eps)) / n


def ref_eval_pr(y_pred: torch.Tensor, y: torch.Tensor, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """AVSBench ``utility._eval_pr`` with ``cuda_flag=False``."""
    prec, recall = torch.zeros(num), torch.zeros(num)
    thlist = torch.linspace(0, 1 - 1e-10, num)
    for i in range(num):
        y_temp = (y_pred >= thlist[i]).float()
        tp = (y_temp * y).sum()
        prec[i], recall[i] = tp / (y_temp.sum() + 1e-20), tp / (y.sum() + 1e-20)
    return prec, recall


def ref_fmeasure_curves(pred: torch.Tensor, gt: torch.Tensor, pr_num: int = 255) -> list[torch.Tensor | None]:
    """The per-frame ``f_score`` of AVSBench ``utility.Eval_Fmeasure`` (None for skipped frames)."""
    pred = torch.sigmoid(pred)
    beta2 = 0.3
    out: list[torch.Tensor | None] = []
    for img_id in range(pred.size(0)):
        if torch.mean(gt[img_id]) == 0.0:
            out.append(None)
            continue
        prec, recall = ref_eval_pr(pred[img_id], gt[img_id], pr_num)
        f_score = (1 + beta2) * prec * recall / (beta2 * prec + recall)
        f_score[f_score != f_score] = 0
        out.append(f_score)
    return out


def ref_fmeasure(pred: torch.Tensor, gt: torch.Tensor, pr_num: int = 255) -> float:
    """AVSBench ``utility.Eval_Fmeasure``: curves averaged over the call's valid frames, then the maximum."""
    avg_f, img_num = 0.0, 0
    score = torch.zeros(pr_num)
    for f_score in ref_fmeasure_curves(pred, gt, pr_num):
        if f_score is None:
            continue
        avg_f += f_score
        img_num += 1
        score = avg_f / img_num
    return float(score.max().item())  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------------------------------------
# Map and GT generators
# ----------------------------------------------------------------------------------------------------------------------

H, W = 24, 30  # small, non-square: the references generalize to any size; a few 224 x 224 cases run below


def _smoothed(gen: torch.Generator, b: int, h: int, w: int) -> torch.Tensor:
    low = torch.randn(b, 1, 7, 7, generator=gen)
    return tF.interpolate(low, size=(h, w), mode="bilinear", align_corners=True)[:, 0]


def heatmap_families(gen: torch.Generator, h: int = H, w: int = W, b: int = 6) -> Iterator[tuple[str, torch.Tensor]]:
    """Float32 (B, h, w) maps of every kind the protocols treat differently."""
    yield "uniform", torch.rand(b, h, w, generator=gen)
    smooth = _smoothed(gen, b, h, w)
    yield "smoothed", smooth
    yield "relu_plateau", smooth.relu()  # a large plateau at the minimum (ties at the median)
    q = torch.quantile(smooth.reshape(b, -1), 0.4, dim=1)[:, None, None]
    yield "max_plateau", torch.minimum(smooth, q)  # >= half of the pixels share the maximum
    yield "levels", torch.randint(0, 4, (b, h, w), generator=gen).float()  # few values, massive ties
    yield "binary_half", (torch.rand(b, h, w, generator=gen) < 0.5).float()
    consts = torch.tensor([0.0, 1.0, -1.0, 0.3, -1e-9, 5e-8], dtype=torch.float32)
    yield "constant", consts[:, None, None].expand(-1, h, w).contiguous()
    # Near ties: distinct float32 values one ulp apart; with one pixel at -100, ``x - min`` crosses into the next
    # binade and float32 normalization merges the pairs (float64 would keep them apart).
    base = 1000.0 + torch.randint(0, 3, (b, h, w), generator=gen).float()
    bump = torch.rand(b, h, w, generator=gen) < 0.5
    near = torch.where(bump, torch.nextafter(base, torch.tensor(2000.0)), base)
    near[:, 0, 0] = -100.0
    yield "near_ties", near
    yield (
        "one_hot",
        torch.zeros(b, h, w).index_put_(
            (torch.arange(b), torch.randint(0, h, (b,), generator=gen), torch.randint(0, w, (b,), generator=gen)),
            torch.ones(b),
        ),
    )


def gt_families(gen: torch.Generator, b: int, h: int = H, w: int = W) -> Iterator[tuple[str, torch.Tensor]]:
    """(B, h, w) float64 GT maps: consensus {0, .5, 1}, binary union, empty, full, soft."""
    consensus = torch.zeros(b, h, w, dtype=torch.float64)
    for _ in range(3):  # three annotators' boxes
        y0 = torch.randint(0, h - 1, (b,), generator=gen)
        x0 = torch.randint(0, w - 1, (b,), generator=gen)
        y1 = y0 + 1 + torch.randint(0, h, (b,), generator=gen)
        x1 = x0 + 1 + torch.randint(0, w, (b,), generator=gen)
        ys = torch.arange(h)[None, :, None]
        xs = torch.arange(w)[None, None, :]
        inside = (
            (ys >= y0[:, None, None]) & (ys < y1[:, None, None]) & (xs >= x0[:, None, None]) & (xs < x1[:, None, None])
        )
        consensus += inside
    yield "consensus", (consensus / 2).clamp(max=1)
    yield "union", (consensus > 0).double()
    empty = torch.zeros(b, h, w, dtype=torch.float64)
    yield "empty", empty
    yield "full", torch.ones(b, h, w, dtype=torch.float64)
    yield "soft", torch.rand(b, h, w, generator=gen, dtype=torch.float64) * (consensus > 0)


def _assert_same(ours: torch.Tensor, ref: list[float], exact: bool, what: str) -> None:
    r = torch.tensor(ref, dtype=torch.float64)
    assert torch.equal(torch.isnan(ours), torch.isnan(r)), f"{what}: NaN pattern differs: {ours} vs {r}"
    finite = ~torch.isnan(r)
    if exact:
        assert torch.equal(ours[finite], r[finite]), f"{what}: {ours} vs {r}"
    else:
        torch.testing.assert_close(ours[finite], r[finite], rtol=0, atol=1e-12, msg=what)


# ----------------------------------------------------------------------------------------------------------------------
# cIoU parity
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("protocol", list(REFERENCES))
def test_ciou_matches_reference_per_sample(protocol: str, dtype: torch.dtype) -> None:
    """float16 maps take avsl's torch path; NumPy's float16 arithmetic rounds the same way."""
    gen = torch.Generator().manual_seed(10 * F.PROTOCOLS.index(protocol) + (dtype == torch.float64))
    exact = dtype != torch.float16  # the torch path sums soft GT weights in its own order
    checked = 0
    for map_name, maps32 in heatmap_families(gen):
        maps = maps32.to(dtype)
        if protocol == "slavc":  # fixed-range scores in [0, 1]
            flat = maps.reshape(maps.shape[0], -1)
            lo, hi = flat.amin(1)[:, None, None], flat.amax(1)[:, None, None]
            maps = torch.where(hi > lo, (maps - lo) / (hi - lo), maps.clamp(0, 1))
            maps[0] = 0.5  # exactly at the threshold
        for gt_name, gts in gt_families(gen, maps.shape[0]):
            ours = F.ciou(maps, gts, protocol)
            ref = [REFERENCES[protocol](m.numpy().copy(), g.numpy()) for m, g in zip(maps, gts)]
            what = f"{protocol}/{map_name}/{gt_name}/{dtype}"
            _assert_same(ours, ref, exact=exact or gt_name != "soft", what=what)
            checked += len(ref)
    assert checked == 9 * 5 * 6


@pytest.mark.parametrize("protocol", list(REFERENCES))
def test_ciou_matches_reference_at_224(protocol: str) -> None:
    """The references' own size, with Flickr consensus and VGG-SS union maps from real-style boxes."""
    gen = torch.Generator().manual_seed(7)
    maps = torch.cat([_smoothed(gen, 3, 224, 224), _smoothed(gen, 1, 224, 224).relu(), torch.zeros(1, 224, 224)])
    if protocol == "slavc":
        maps = torch.sigmoid(maps)
    gts = torch.stack(
        [
            F.gt_map_from_boxes([[10, 20, 150, 200], [30, 40, 160, 220], [0, 0, 90, 120]], "flickr"),
            F.gt_map_from_boxes([[0.1, 0.2, 0.6, 0.9], [0.5, 0.5, 1.3, 0.8]], "vggss"),
            F.gt_map_from_boxes([[0.0, 0.53, 0.0, 0.98]], "vggss"),  # degenerate: empty GT
            F.gt_map_from_boxes([[-2.88e16, 0.1, 0.4, 0.7]], "vggss"),
            F.gt_map_from_boxes([[0, 0, 1, 1]], "vggss"),  # full image
        ]
    )
    ours = F.ciou(maps, gts, protocol)
    ref = [REFERENCES[protocol](m.numpy().copy(), g.numpy()) for m, g in zip(maps, gts)]
    _assert_same(ours, ref, exact=True, what=protocol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_path_matches_numpy_path(dtype: torch.dtype) -> None:
    """CPU float tensors go through NumPy, CUDA and half precision through torch: both must agree bit for bit."""
    gen = torch.Generator().manual_seed(21)
    for map_name, maps32 in heatmap_families(gen):
        maps = maps32.to(dtype)
        for protocol in REFERENCES:
            scores = torch.sigmoid(maps) if protocol == "slavc" else maps
            for gt_name, gts in gt_families(gen, maps.shape[0]):
                mask_np = F.binarize(scores, protocol, gts)
                flat_g = gts.reshape(gts.shape[0], -1)
                mask_t = F._binarize_torch(scores.reshape(scores.shape[0], -1), protocol, flat_g)
                assert torch.equal(mask_np.reshape(mask_t.shape), mask_t), (map_name, protocol, gt_name)
                ours_np, ours_t = F.ciou(scores, gts, protocol), F._ciou_torch(mask_t, flat_g)
                what = f"{map_name}/{protocol}/{gt_name}"
                _assert_same(ours_t, ours_np.tolist(), exact=gt_name != "soft", what=what)


def test_near_tie_maps_need_float32_normalization() -> None:
    """The near-tie family really exercises rounding: normalizing in float64 would change some masks."""
    gen = torch.Generator().manual_seed(3)
    maps = dict(heatmap_families(gen))["near_ties"]
    differs = 0
    for protocol in ("ezvsl", "lvs", "sspl", "sslalign"):
        m32 = F.binarize(maps, protocol)
        m64 = F.binarize(maps.double(), protocol)
        differs += int((m32 != m64).flatten(1).any(1).sum())
    assert differs > 0


def test_auc_and_success_rate_match_reference_bitwise() -> None:
    gen = torch.Generator().manual_seed(11)
    for values in (
        torch.rand(50, generator=gen, dtype=torch.float64),
        torch.tensor([0.05 * i for i in range(21)] + [i / 20 for i in range(21)], dtype=torch.float64),
        torch.tensor([float("nan"), 0.5, 0.35, 1.0, 0.0], dtype=torch.float64),
        torch.tensor([float("nan")], dtype=torch.float64),
    ):
        assert F.auc(values).item() == ref_auc(values.tolist())
        assert F.success_rate(values).item() == ref_success(values.tolist())


# ----------------------------------------------------------------------------------------------------------------------
# SLAVC extended protocol
# ----------------------------------------------------------------------------------------------------------------------


def test_slavc_confidence_is_bitwise_numpy_mean() -> None:
    gen = torch.Generator().manual_seed(5)
    for h, w in ((224, 224), (7, 9), (3, 5), (1, 1), (33, 17)):
        for dtype in (torch.float32, torch.float64):
            scores = torch.rand(4, h, w, generator=gen).to(dtype)
            ours = F.slavc_confidence(scores)
            ref = [ref_slavc_confidence(s.numpy()) for s in scores]
            assert ours.dtype == dtype
            assert ours.tolist() == [float(r) for r in ref], (h, w, dtype)


@pytest.mark.parametrize("n", [9, 57, 450])
def test_extended_localization_matches_evaluator_full(n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    h, w = 16, 20
    # Positives get a blob of high scores where their GT is; negatives a diffuse map. Some confidences tie.
    scores = torch.sigmoid(2 * _smoothed(gen, n, h, w))
    scores[::7] = 0.5  # constant maps: tied confidences exactly at the confidence threshold
    num_boxes = torch.randint(0, 3, (n,), generator=gen)
    families = torch.stack([g for _, g in gt_families(gen, n, h, w)])  # (5, n, h, w)
    gts = families[torch.arange(n) % 5, torch.arange(n)]
    gts[num_boxes == 0] = 0
    metric = ExtendedLocalization()
    ids = [f"clip{i}" for i in range(n)]
    for chunk in torch.arange(n).split(16):
        metric.update(scores[chunk], gts[chunk], num_boxes[chunk], [ids[i] for i in chunk])
    got = metric.compute()

    ref = RefEvaluatorFull()
    for s, g, bb in zip(scores, gts, num_boxes.tolist()):
        ref.update(bb, g.numpy(), ref_slavc_confidence(s.numpy()), s.numpy(), 0.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = {
            "ap": ref.calc_ap(0.5),
            "max_f1": max(ref.f1_list(0.5)),
            "f1": ref.f1_at_50(),
            "precision_at_50": ref.precision_at_50(),
            "auc": ref.cal_auc(),
        }
    for key, value in expected.items():
        assert got[key].item() == pytest.approx(value, abs=1e-12), key
    assert got["ap"].item() == expected["ap"]  # the sum order is replicated, so AP is bitwise equal
    assert got["num_positive"].item() == int((num_boxes > 0).sum())


# ----------------------------------------------------------------------------------------------------------------------
# AVSBench
# ----------------------------------------------------------------------------------------------------------------------


def _avs_batch(gen: torch.Generator, n: int, h: int = 16, w: int = 18) -> tuple[torch.Tensor, torch.Tensor]:
    logits = 3 * _smoothed(gen, n, h, w)
    logits[0] = 0.0  # sigmoid(0) = 0.5: not predicted (strict >), but >= the 0.5-ish F thresholds
    logits[1] = torch.randint(-2, 3, (h, w), generator=gen).float() * 20  # saturated probabilities 0 and 1
    masks = (_smoothed(gen, n, h, w) > 0.3).float()
    masks[2] = 0  # empty mask
    return logits, masks


def test_avsbench_per_frame_values_match_reference() -> None:
    gen = torch.Generator().manual_seed(2)
    logits, masks = _avs_batch(gen, 8)
    ours = frame_iou(logits, masks)
    for i in range(8):  # per frame, one-frame calls of the reference
        assert ours[i].item() == ref_mask_iou(logits[i : i + 1], masks[i : i + 1]).item()
    curves, valid = frame_fscore_curves(logits, masks)
    for i, ref_curve in enumerate(ref_fmeasure_curves(logits, masks)):
        assert bool(valid[i]) == (ref_curve is not None)
        if ref_curve is not None:
            assert torch.equal(curves[i], ref_curve)


@pytest.mark.parametrize("call_sizes", [[5, 5, 5], [1, 4, 10], [15]])
def test_avsbench_reference_reduction_matches_per_call_averaging(call_sizes: list[int]) -> None:
    gen = torch.Generator().manual_seed(sum(call_sizes) + len(call_sizes))
    logits, masks = _avs_batch(gen, 15)
    miou, fscore = AVSBenchMIoU(reduction="reference"), AVSBenchFScore(reduction="reference")
    ref_miou, ref_f = [], []
    for chunk in torch.arange(15).split(call_sizes):
        miou.update(logits[chunk], masks[chunk])
        fscore.update(logits[chunk], masks[chunk])
        ref_miou.append(ref_mask_iou(logits[chunk], masks[chunk]).item())
        ref_f.append(ref_fmeasure(logits[chunk], masks[chunk]))
    # Per-frame values are bitwise equal; averages are float64 here and float32 sums in the reference.
    assert miou.compute().item() == pytest.approx(float(np.mean(ref_miou)), abs=1e-6)
    assert fscore.compute().item() == pytest.approx(float(np.mean(ref_f)), abs=1e-6)


def test_avsbench_dataset_reduction_equals_one_reference_call() -> None:
    gen = torch.Generator().manual_seed(4)
    logits, masks = _avs_batch(gen, 12)
    miou, fscore = AVSBenchMIoU(reduction="dataset"), AVSBenchFScore(reduction="dataset")
    for chunk in torch.arange(12).split([3, 7, 2]):
        miou.update(logits[chunk], masks[chunk])
        fscore.update(logits[chunk], masks[chunk])
    assert miou.compute().item() == pytest.approx(ref_mask_iou(logits, masks).item(), abs=1e-6)
    assert fscore.compute().item() == pytest.approx(ref_fmeasure(logits, masks), abs=1e-6)
