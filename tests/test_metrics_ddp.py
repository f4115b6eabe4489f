"""Two-process (gloo, CPU) parity of the metrics with a single process, with DistributedSampler padding.

The test starts two worker processes running this file as a script (``python tests/test_metrics_ddp.py RANK ...``),
waits for them with a timeout and kills them if they hang, so a failure can never hang the suite or leave orphans.
7 samples on 2 ranks: the DistributedSampler gives each rank 4, repeating sample 0 as padding. Other test files
reuse the launcher with their own metrics: ``run_two_processes(tmp_path, "tests.test_x:run_fn")``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as tF

NUM_SAMPLES = 7
WORLD_SIZE = 2
TIMEOUT_S = 120

Results = dict[str, dict[str, torch.Tensor]]


def make_data() -> dict[str, torch.Tensor]:
    """Deterministic inputs for every metric; sample 0 is the padded one and has a NaN cIoU under ``sspl``."""
    gen = torch.Generator().manual_seed(1234)
    n, h, w = NUM_SAMPLES, 16, 20
    maps = tF.interpolate(torch.randn(n, 1, 4, 4, generator=gen), size=(h, w), mode="bilinear")[:, 0]
    maps[0] = 0.0
    gts = torch.zeros(n, h, w, dtype=torch.float64)
    for i in range(1, n):
        gts[i, i : i + 8, 2 * i : 2 * i + 8] = 1.0 if i % 2 else 0.5
    num_boxes = torch.tensor([0, 1, 2, 0, 1, 3, 1])
    masks = tF.interpolate(torch.randn(n, 1, 4, 4, generator=gen), size=(h, w), mode="bilinear")[:, 0] > 0.2
    return {"maps": maps, "gts": gts, "num_boxes": num_boxes, "logits": 3 * maps, "masks": masks}


def run_metrics(indices: list[int]) -> Results:
    """Update every metric with the samples ``indices`` in batches of 3 and return the computed results."""
    from avsl.metrics import AVSBenchFScore, AVSBenchMIoU, CIoU, ExtendedLocalization

    data = make_data()
    names = [f"clip_{i}" for i in range(NUM_SAMPLES)]
    metrics = {
        "ciou_ezvsl": CIoU("ezvsl"),
        "ciou_sspl": CIoU("sspl"),
        "ciou_no_ids": CIoU("ezvsl"),
        "extended": ExtendedLocalization(),
        "miou": AVSBenchMIoU(reduction="dataset"),
        "fscore": AVSBenchFScore(reduction="dataset"),
    }
    for start in range(0, len(indices), 3):
        idx = torch.tensor(indices[start : start + 3])
        ids = [names[i] for i in idx]
        maps, gts = data["maps"][idx], data["gts"][idx]
        metrics["ciou_ezvsl"].update(maps, gts, ids)
        metrics["ciou_sspl"].update(maps, gts, idx)  # integer ids
        metrics["ciou_no_ids"].update(maps, gts)
        metrics["extended"].update(torch.sigmoid(maps), gts, data["num_boxes"][idx], ids)
        metrics["miou"].update(data["logits"][idx], data["masks"][idx], ids)
        metrics["fscore"].update(data["logits"][idx], data["masks"][idx], ids)
    out: Results = {}
    for name, metric in metrics.items():
        value = metric.compute()
        out[name] = value if isinstance(value, dict) else {"value": value}
    return out


NEGATIVES = (0, 1, 3, 5)  # rank 1 draws 1, 3, 5 and the padding 0: negatives only


def run_evaluation(indices: list[int]) -> Results:
    """A validation stage's :class:`EvaluationMetrics` over ``indices`` in batches of 3, with negatives and masks."""
    from avsl.metrics import EvaluationMetrics

    data = make_data()
    metrics = EvaluationMetrics("ezvsl", also=("slavc",))
    for start in range(0, len(indices), 3):
        idx = indices[start : start + 3]
        batch = {
            "sample_id": [f"clip_{i}" for i in idx],
            "gt_map": data["gts"][idx].float(),
            "mask": data["masks"][idx].float(),
            "num_sources": torch.tensor([0 if i in NEGATIVES else 1 for i in idx]),
        }
        maps = data["maps"][idx]
        metrics.update(maps, torch.sigmoid(maps), batch)  # type: ignore[arg-type]
    return {"evaluation": metrics.compute_and_reset()}


def _worker(rank: int, init_file: str, out_file: str, run: Callable[[list[int]], Results]) -> None:
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        sampler = DistributedSampler(range(NUM_SAMPLES), num_replicas=WORLD_SIZE, rank=rank, shuffle=False)
        results = run(list(sampler))
        if rank == 0:
            torch.save(results, out_file)
        dist.barrier()  # neither rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()


def run_two_processes(tmp_path: Path, runner: str | None = None) -> Results:
    """Run ``runner`` on ``WORLD_SIZE`` gloo ranks, each given its DistributedSampler share of ``NUM_SAMPLES``.

    ``runner`` is ``"module:function"``, importable from the repository root (``"tests.test_x:run_fn"``), taking the
    list of sample indices and returning computed results; the default is this file's :func:`run_metrics`. Returns
    rank 0's results (after ``compute()``, which syncs every rank). Fails the test if a worker fails or hangs.
    """
    init_file, out_file = tmp_path / "init", tmp_path / "results.pt"
    extra = [] if runner is None else [runner]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(rank), str(init_file), str(out_file), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(WORLD_SIZE)
    ]
    deadline = time.monotonic() + TIMEOUT_S
    logs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            logs.append(out.decode(errors="replace"))
    except subprocess.TimeoutExpired:
        pytest.fail(f"DDP workers did not finish within {TIMEOUT_S} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    results: Results = torch.load(out_file)
    return results


@pytest.mark.ddp
def test_two_processes_match_one_process(tmp_path: Path) -> None:
    ddp = run_two_processes(tmp_path)
    single = run_metrics(list(range(NUM_SAMPLES)))
    for name in ("ciou_ezvsl", "ciou_sspl", "extended", "miou", "fscore"):
        for key, value in single[name].items():
            assert torch.equal(ddp[name][key].cpu().nan_to_num(-1), value.nan_to_num(-1)), (name, key)
    assert single["ciou_sspl"]["num_nan"].item() == 1  # the padded sample is the NaN one: counted once
    assert ddp["ciou_ezvsl"]["num_samples"].item() == NUM_SAMPLES
    # Without ids the padding repeat is counted: 8 samples instead of 7 (why avsl asks for sample_ids).
    assert ddp["ciou_no_ids"]["num_samples"].item() == WORLD_SIZE * -(-NUM_SAMPLES // WORLD_SIZE)


@pytest.mark.ddp
def test_a_process_whose_batches_are_all_negatives(tmp_path: Path) -> None:
    """Its metrics were not updated, so it skipped their compute(), a collective the other process ran: the syncs
    paired up wrongly (wrong numbers, a dead gloo peer, a hang on NCCL). An empty AVSBench update also synced an
    untyped placeholder against int64 ids."""
    ddp = run_two_processes(tmp_path, "tests.test_metrics_ddp:run_evaluation")["evaluation"]
    single = run_evaluation(list(range(NUM_SAMPLES)))["evaluation"]
    assert set(ddp) == set(single) and {"ciou", "slavc/ciou", "pointing", "miou", "fscore", "ap"} <= set(single)
    for key, value in single.items():
        assert torch.equal(ddp[key].cpu().nan_to_num(-1), value.nan_to_num(-1)), key
    assert int(single["num_negative"]) == len(NEGATIVES)
    # a set of negatives only: the extended protocol's numbers, and no cIoU, pointing or mIoU of nothing (NaN)
    assert set(run_evaluation([1, 3, 5])["evaluation"]) == {"ap", "max_f1", "f1", "precision_at_50", "num_negative"}


if __name__ == "__main__":
    import os

    run = run_metrics
    if len(sys.argv) > 4:  # "module:function" of another test file, imported from the repository root
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        module, _, function = sys.argv[4].partition(":")
        run = getattr(importlib.import_module(module), function)
    _worker(int(sys.argv[1]), sys.argv[2], sys.argv[3], run)
    # Skip the interpreter's teardown: gloo's background threads can abort it ("terminate called without an active
    # exception"), seen about once in tens of runs on 2 cores, after the results are written.
    sys.stdout.flush()
    os._exit(0)
