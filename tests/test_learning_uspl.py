"""USPL learns on SynthAV: coarse maps beat the centre prior, refinement raises mIoU, the SPS head keeps the gain.

Slow (several CPU minutes): the model and data of the shipped ``uspl_synthav.yaml``, its three stages trained with
``run_pipeline``. The default "quick" schedule trains 3 / 1 / 2 epochs; ``AVSL_USPL_RECIPE=full`` runs the 4 / 2 / 3
epochs of the config's header (about twice as long). The figures are in docs/methods/uspl.md ("Results on SynthAV").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from avsl.cli import resolve_config
from avsl.data import AVDataModule, JointRandomCropFlip, SynthAV
from avsl.evaluate import centre_gaussian, evaluate
from avsl.methods import load_method
from avsl.methods.uspl import USPL, Stage, run_pipeline
from avsl.metrics import AVSBenchFScore, AVSBenchMIoU
from avsl.types import AVBatch

RECIPES: dict[str, dict[Stage, int]] = {
    "quick": {"coarse": 3, "refine": 1, "segment": 2},
    "full": {"coarse": 4, "refine": 2, "segment": 3},  # the header of uspl_synthav.yaml
}
EPOCHS = RECIPES[os.environ.get("AVSL_USPL_RECIPE", "quick")]


def _config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(Path(resolve_config("uspl_synthav")).read_text())
    return config


def _data(config: dict[str, Any]) -> AVDataModule:
    roles = config["data"]["init_args"]
    train_args = {k: v for k, v in roles["unlabeled"]["init_args"].items() if k != "augment"}
    return AVDataModule(
        SynthAV(**train_args, augment=JointRandomCropFlip()),
        test=SynthAV(**roles["test"]["init_args"]),
        batch_size=roles["batch_size"],
    )


def _up(maps: Tensor, size: int) -> Tensor:
    return F.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]


@pytest.mark.slow
def test_uspl_stages_improve_on_synthav(tmp_path: Path) -> None:
    config = _config()
    pl.seed_everything(config["seed_everything"])
    data = _data(config)
    model = USPL(**config["model"]["init_args"])
    assert model.stage == "coarse"

    def trainer(stage: Stage) -> pl.Trainer:
        return pl.Trainer(
            max_epochs=EPOCHS[stage],
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,  # the test set is evaluated once, at the end
        )

    checkpoints = run_pipeline(model, data, trainer, tmp_path)
    final = load_method(checkpoints["segment"])
    assert isinstance(final, USPL)
    final.eval()
    loader = data.test_dataloader()
    size = config["data"]["init_args"]["test"]["init_args"]["image_size"]

    # The networks of stages 1-2 are kept (frozen) inside the final model, so one model gives all three stages' maps.
    cached: list[tuple[AVBatch, dict[str, Tensor]]] = []
    with torch.no_grad():
        for batch in loader:
            image, audio = batch["image"], batch["audio"]
            maps = {"coarse": final.coarse_map, "refined": final.refined_map, "sps": final.segment_logits}
            cached.append((batch, {name: _up(fn(image, audio), size) for name, fn in maps.items()}))

    def evaluated(name: str) -> dict[str, float]:
        return evaluate(lambda b: b["map"], [{**b, "map": stage_maps[name]} for b, stage_maps in cached])  # type: ignore[misc]

    results: dict[str, dict[str, float]] = {name: evaluated(name) for name in ("coarse", "refined", "sps")}
    results["centre"] = evaluate(lambda b: centre_gaussian(size, size).expand(len(b["sample_id"]), -1, -1), loader)
    # The AVSBench reference rule for a segmentation network: sigmoid(logit) > 0.5 (evaluate() uses min-max).
    miou, fscore = AVSBenchMIoU(reduction="dataset"), AVSBenchFScore(reduction="dataset")
    for batch, maps in cached:
        miou.update(maps["sps"], batch["mask"], batch["sample_id"])
        fscore.update(maps["sps"], batch["mask"], batch["sample_id"])
    results["sps_sigmoid"] = {"miou": float(miou.compute()), "fscore": float(fscore.compute())}
    print(json.dumps(results, indent=1))
    (tmp_path / "results.json").write_text(json.dumps(results, indent=1))

    coarse, refined, sps, centre = results["coarse"], results["refined"], results["sps"], results["centre"]
    # Stage 1 localizes: above the centre prior (0.28 cIoU@0.5, 0.29 mIoU on the test seed) by the margins the EZ-VSL
    # test asks of the main job (its stage-1 loss is EZ-VSL's); measured +0.19 and +0.08 with the quick schedule.
    assert coarse["sspl/ciou"] >= centre["sspl/ciou"] + 0.15
    assert coarse["miou"] >= centre["miou"] + 0.05
    # Stage 2 follows object boundaries: higher mIoU and F-score than the coarse maps it refines.
    assert refined["miou"] >= coarse["miou"] + 0.02
    assert refined["fscore"] > coarse["fscore"]
    # Stage 3 is at least as good as its pseudo-labels, under the min-max rule and the sigmoid rule.
    assert sps["miou"] >= refined["miou"]
    assert results["sps_sigmoid"]["miou"] >= refined["miou"]
