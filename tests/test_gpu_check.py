"""benchmarks/gpu_check.py runs on the CPU with tiny shapes (so that it cannot rot), and its detectors detect."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor

from avsl.methods import EZVSL, METHODS
from avsl.testing import tiny_args, tiny_data
from avsl.types import TrainBatch

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.ddp
def test_the_check_runs_on_the_cpu_with_tiny_shapes(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    result = _gpu_check().main(["--tiny", "--device", "cpu", "--workers", "0", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert out.with_suffix(".md").read_text().startswith("# gpu_check on cpu")
    assert "errors" not in result

    rows = result["methods"]
    assert {(r["method"], r["precision"]) for r in rows} == {(m, p) for m in METHODS for p in ("32-true", "bf16-mixed")}
    for r in rows:
        assert r["ok"], r
        assert r["steps_watched"] >= 2 and r["float64_ops"] == {} and r["host_syncs"] == {}
        assert 0.0 <= r["val_ciou"] <= 1.0
    assert all(r["ok"] and r["world_size"] == 2 and r["steps"] == 3 for r in result["ddp"]), result["ddp"]
    assert {r["method"] for r in result["ddp"]} == set(METHODS)
    assert all(r["ok"] and not r["differ"] for r in result["metrics"])

    throughput = result["throughput"]
    assert [r["loop"] for r in throughput["rows"]][:3] == ["plain loop", "plain loop", "avsl model, plain loop"]
    for r in throughput["rows"]:
        assert r["ok"], r
        assert r["samples_per_s"] > 0 and r["tflops"] > 0
    assert throughput["flops_per_sample"] > 1e9  # two ResNet-18s at 64 px, forward and backward
    fit = [r for r in throughput["rows"] if r["loop"].startswith("avsl Trainer.fit")]
    assert [r["loop"] for r in fit] == ["avsl Trainer.fit"] * 2 + ["avsl Trainer.fit, no self.log"]
    loader = result["loader"]
    assert [(r["reader"], r["workers"]) for r in loader] == [("folder", 0), ("folder", 2), ("shards", 0), ("shards", 2)]
    # one epoch of 8 x 8 clips in batches of 4: 15 batches after the first
    assert all(r["samples_per_s"] > 0 and "vs_step" in r and r["samples"] == 60 for r in loader)


class _Float64Loss(EZVSL):
    """EZ-VSL with a float64 op planted in its loss."""

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        losses = super().training_losses(batch)
        return {k: v.double().float() for k, v in losses.items()}


def test_the_step_watch_finds_a_planted_float64_op(tmp_path: Path) -> None:
    check = _gpu_check()
    hygiene = check.StepHygiene()
    model = _Float64Loss(**tiny_args(EZVSL))
    trainer = pl.Trainer(
        max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[hygiene], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=tiny_data())
    report = hygiene.report()
    assert report["steps_watched"] == 2
    planted = {k: v for k, v in report["float64_ops"].items() if "test_gpu_check.py" in k}
    assert planted and all(k.startswith("aten._to_copy") for k in planted), report


def test_the_progress_bar_loss_is_a_host_value_refreshed_every_log_interval(tmp_path: Path) -> None:
    seen: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
            seen.append(trainer.progress_bar_metrics["loss"])

    model = EZVSL(**tiny_args(EZVSL))
    trainer = pl.Trainer(
        max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[Record()], default_root_dir=tmp_path, log_every_n_steps=2,
    )  # fmt: skip
    trainer.fit(model, datamodule=tiny_data())
    assert isinstance(model._bar_loss, Tensor) and model._bar_loss.device.type == "cpu"
    # refreshed at steps 0, 2 and 4, kept in between
    assert seen[0] == seen[1] and seen[2] == seen[3] and seen[1] != seen[2] and seen[3] != seen[4]
    assert "train/loss" in trainer.callback_metrics and torch.isfinite(trainer.callback_metrics["train/loss"])
