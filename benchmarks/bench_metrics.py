"""Benchmarks of avsl.metrics: speed against a per-sample NumPy loop, and how much the protocol choice matters.

Speed (default): time to evaluate ``--num`` heatmaps of 224 x 224 with ``avsl.metrics.CIoU`` (batches of
``--batch-size``), against a straightforward per-sample NumPy loop of the kind the reference repositories run
(EZ-VSL ``test.py``: ``normalize_img``, ``np.sort`` threshold, ``Evaluator.cal_CIOU``, then the success rate and
``sklearn.metrics.auc``). Both see the same maps; the script checks that they produce the same per-sample values.

    python benchmarks/bench_metrics.py --num 5000

Protocol spread (``--spread``): success rate at cIoU 0.5 and AUC of every protocol on the same synthetic heatmaps
against Flickr-SoundNet consensus GT maps (the 250 real test annotations when avsl ships them, random boxes
otherwise), for several kinds of maps. This is the table in ``docs/metrics.md``.

    python benchmarks/bench_metrics.py --spread --num 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as tF

from avsl.metrics import PROTOCOLS, CIoU
from avsl.metrics import functional as F

SIZE = 224
FLICKR_BOXES = (
    Path(__file__).resolve().parents[1] / "avsl/data/lists/flickr_soundnet/flickr_5k_labeled_boxes_from_gtdata_pkl.json"
)


# ----------------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------------


def flickr_gt_maps(count: int, seed: int) -> tuple[torch.Tensor, str]:
    """``count`` Flickr consensus maps (float64): the real test-set boxes cycled, or random boxes if absent."""
    boxes: list[list[list[int]]]
    if FLICKR_BOXES.exists():
        records = json.loads(FLICKR_BOXES.read_text())
        boxes = [r["bbox"] for r in records if r.get("in_test_250")]
        source = f"the {len(boxes)} Flickr-SoundNet test annotations"
    else:
        rng = np.random.default_rng(seed)
        boxes = []
        for _ in range(250):
            x0, y0 = rng.integers(1, 160, size=2)
            w, h = rng.integers(40, 256 - max(x0, y0), size=2)
            boxes.append([[int(x0 + d), int(y0 + d), int(x0 + w - d), int(y0 + h - d)] for d in (0, 6, -4)])
        source = "250 random 3-annotator box sets"
    unique = torch.stack([F.gt_map_from_boxes(b, "flickr") for b in boxes])
    return unique[torch.arange(count) % len(unique)], source


def _smooth_noise(gen: torch.Generator, n: int, low: int = 7) -> torch.Tensor:
    """Gaussian noise at low resolution, upsampled like EZ-VSL (bilinear, align_corners=True): (n, 224, 224)."""
    noise = torch.randn(n, 1, low, low, generator=gen)
    return tF.interpolate(noise, size=(SIZE, SIZE), mode="bilinear", align_corners=True)[:, 0]


def _blob(gt: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A Gaussian bump near each GT's centre of mass, with a random offset and width (n, 224, 224)."""
    n = gt.shape[0]
    ys = torch.arange(SIZE, dtype=torch.float64)
    mass = gt.sum(dim=(1, 2)).clamp(min=1)
    cy = (gt.sum(2) * ys).sum(1) / mass + 25 * torch.randn(n, generator=gen, dtype=torch.float64)
    cx = (gt.sum(1) * ys).sum(1) / mass + 25 * torch.randn(n, generator=gen, dtype=torch.float64)
    sigma = mass.sqrt() / 2 * (0.5 + torch.rand(n, generator=gen, dtype=torch.float64))
    d2 = (ys[None, :, None] - cy[:, None, None]) ** 2 + (ys[None, None, :] - cx[:, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma[:, None, None] ** 2)).float()


def cosine_maps(kind: str, gt: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Cosine-similarity-like maps in [-1, 1] (float32) of one kind, for GT maps ``gt`` (n, 224, 224)."""
    n = gt.shape[0]
    if kind == "noise":  # uninformative, smooth
        return torch.tanh(_smooth_noise(gen, n))
    informative = torch.tanh(3 * _blob(gt, gen) - 1 + 0.4 * _smooth_noise(gen, n))
    if kind == "informative":
        return informative
    if kind == "informative_relu":  # negative similarities clipped: a plateau at the minimum
        return informative.relu()
    if kind == "informative_quantized":  # 8-bit maps (e.g. saved as images): many ties
        return torch.round((informative + 1) * 127.5) / 127.5 - 1
    if kind == "centre_gaussian":  # the same centred Gaussian for every sample
        ys = (torch.arange(SIZE, dtype=torch.float32) + 0.5) / SIZE - 0.5
        g = torch.exp(-(ys[:, None] ** 2 + ys[None, :] ** 2) / (2 * 0.25**2))
        return (2 * g - 1).expand(n, -1, -1).contiguous()
    raise ValueError(kind)


MAP_KINDS = ("noise", "informative", "informative_relu", "informative_quantized", "centre_gaussian")


# ----------------------------------------------------------------------------------------------------------------------
# The per-sample NumPy loop (the way the reference repositories evaluate)
# ----------------------------------------------------------------------------------------------------------------------


def numpy_loop(maps: Iterator[np.ndarray], gts: Iterator[np.ndarray]) -> tuple[list[float], float, float]:
    """EZ-VSL-style evaluation, one sample at a time: per-sample cIoU, success rate and AUC (``np.trapezoid``)."""
    cious = []
    for heatmap, gt_map in zip(maps, gts):
        vmin, vmax = heatmap.min(), heatmap.max()
        pred = (heatmap - vmin) / (vmax - vmin) if vmax - vmin != 0 else heatmap
        thr = np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1] * 0.5)]
        infer_map = np.zeros((SIZE, SIZE))
        infer_map[pred >= thr] = 1
        cious.append(np.sum(infer_map * gt_map) / (np.sum(gt_map) + np.sum(infer_map * (gt_map == 0))))
    success = float(np.mean(np.array(cious) >= 0.5))
    y = [np.sum(np.array(cious) >= 0.05 * i) / len(cious) for i in range(21)]
    return [float(c) for c in cious], success, float(np.trapezoid(y, [0.05 * i for i in range(21)]))


# ----------------------------------------------------------------------------------------------------------------------
# Modes
# ----------------------------------------------------------------------------------------------------------------------


def bench_speed(args: argparse.Namespace) -> None:
    gen = torch.Generator().manual_seed(0)
    pool = min(args.num, 500)  # distinct maps, cycled: the timing does not depend on the content beyond its kind
    gt_pool, source = flickr_gt_maps(pool, seed=0)
    map_pool = cosine_maps("informative", gt_pool, gen)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    order = torch.arange(args.num) % pool
    batches = [order[i : i + args.batch_size] for i in range(0, args.num, args.batch_size)]
    staged = [(map_pool[b].to(device), gt_pool[b].to(device)) for b in batches[: min(len(batches), 3)]]

    metric = CIoU("ezvsl").to(device)
    for maps, gts in staged:  # warm-up (allocator, kernels)
        metric.update(maps, gts)
    metric.reset()
    elapsed = 0.0
    for b in batches:
        maps, gts = map_pool[b].to(device), gt_pool[b].to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        metric.update(maps, gts)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
    start = time.perf_counter()
    result = metric.compute()
    elapsed += time.perf_counter() - start
    ours = torch.cat([c.cpu() for c in metric.cious])  # type: ignore[union-attr]

    np_maps, np_gts = map_pool.numpy(), gt_pool.numpy()
    start = time.perf_counter()
    ref_cious, ref_success, ref_auc = numpy_loop((np_maps[i] for i in order), (np_gts[i] for i in order))
    loop_time = time.perf_counter() - start

    assert ours.tolist() == ref_cious, "per-sample cIoU differs from the NumPy loop"
    assert result["ciou"].item() == ref_success
    assert abs(result["auc"].item() - ref_auc) < 1e-12
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, {device}")
    print(f"inputs: {args.num} float32 heatmaps {SIZE}x{SIZE}, GT from {source}, batches of {args.batch_size}")
    print(f"avsl CIoU (ezvsl): {elapsed:.2f} s ({1e3 * elapsed / args.num:.3f} ms/sample)")
    print(f"NumPy per-sample loop: {loop_time:.2f} s ({1e3 * loop_time / args.num:.3f} ms/sample)")
    print(f"speed-up: {loop_time / elapsed:.1f}x; identical per-sample values, success rate and AUC")


def bench_spread(args: argparse.Namespace) -> None:
    gen = torch.Generator().manual_seed(1)
    gts, source = flickr_gt_maps(args.num, seed=1)
    print(f"{args.num} maps of each kind against {source} (success rate at cIoU 0.5 / AUC, in %)\n")
    header = "| maps | " + " | ".join(f"`{p}`" for p in PROTOCOLS) + " | max per-sample spread |"
    print(header)
    print("|" + "---|" * (len(PROTOCOLS) + 2))
    for kind in MAP_KINDS:
        cos = torch.cat([cosine_maps(kind, g, gen) for g in gts.split(args.batch_size)])
        cells, values = [], []
        for protocol in PROTOCOLS:
            maps = (cos + 1) / 2 if protocol == "slavc" else cos  # SLAVC's fixed range: (cos + 1) / 2
            metric = CIoU(protocol)
            for m, g in zip(maps.split(args.batch_size), gts.split(args.batch_size)):
                metric.update(m, g)
            out = metric.compute()
            values.append(metric.per_sample()[0].nan_to_num(0.0))
            cells.append(f"{100 * out['ciou'].item():.1f} / {100 * out['auc'].item():.1f}")
        stacked = torch.stack(values)
        spread = (stacked.max(0).values - stacked.min(0).values).max().item()
        print(f"| {kind} | " + " | ".join(cells) + f" | {spread:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=5000, help="number of heatmaps")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--spread", action="store_true", help="measure the protocol spread instead of the speed")
    args = parser.parse_args()
    if args.spread:
        bench_spread(args)
    else:
        bench_speed(args)


if __name__ == "__main__":
    main()
