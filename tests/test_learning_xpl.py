"""XPL learns on SynthAV with 5 % labels: against its base method trained without labels and against single-model
pseudo-labeling, the latter over three seeds (slow: about 20 CPU minutes; the figures are in docs/methods/xpl.md).

Run: ``pytest -m slow tests/test_learning_xpl.py -s`` (prints the table).
"""

from __future__ import annotations

import json
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from avsl.data import AVDataModule, JointRandomCropFlip, SynthAV, split_labeled
from avsl.evaluate import centre_gaussian, evaluate
from avsl.methods import EZVSL, LocalizationMethod
from avsl.methods.xpl import XPL
from avsl.types import AVBatch, AVSample

SIZE = 96  # frames of 96 px keep three trainings within minutes on two CPU cores
CLIPS = 800  # the annotated pool: 5 % labeled (40 clips), the rest unlabeled
LABELED_FRACTION = 0.05
EPOCHS = 5
BATCH, LABELED_BATCH = 32, 16
TEST_CLIPS = 300
# The CPU EZ-VSL of the first recipes (tiny_cnn encoders, 64-band log-mel, tau 0.2, lr 1e-3; the shipped recipe changed
# since, see docs/methods/xpl.md), evaluated with the sspl protocol. This comparison keeps its own fixed setting.
PEER: dict[str, Any] = {
    "vision_backbone": "tiny_cnn",
    "audio_backbone": "tiny_cnn",
    "audio_frontend": "logmel",
    "embed_dim": 128,
    "tau": 0.2,
    "lr": 1e-3,
    "eval_protocol": "sspl",
    "frame_size": (SIZE, SIZE),
    "duration": 1.0,
}
# The first xpl_synthav.yaml's XPL arguments; the single-model ablation uses the same.
XPL_ARGS: dict[str, Any] = {
    "warmup_epochs": 2,
    "rampup_epochs": 1,
    "select_ramp_epochs": 3,
    "ema_momentum": 0.5,
    "lambda_cross": 0.3,
    "eval_protocol": "sspl",
}


def _fit(model: LocalizationMethod, unlabeled: Dataset[AVSample], labeled: Dataset[AVSample] | None) -> None:
    data = AVDataModule(unlabeled, labeled, batch_size=BATCH, labeled_batch_size=LABELED_BATCH)
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=data)
    model.eval()


def _splits() -> tuple[Subset[AVSample], Subset[AVSample], DataLoader[AVSample]]:
    """The labeled 5 % and the unlabeled rest of the annotated pool, and the test loader (the same in every run)."""
    labeled, unlabeled = split_labeled(SynthAV(num_clips=CLIPS, seed=0, image_size=SIZE), LABELED_FRACTION, seed=0)
    return labeled, unlabeled, DataLoader(SynthAV(num_clips=TEST_CLIPS, seed=2, image_size=SIZE), batch_size=100)


def run_comparison() -> dict[str, dict[str, float]]:
    """Train the three methods on the same clips and evaluate them and the centre baseline on the same test set."""
    labeled, unlabeled, test = _splits()
    # EZ-VSL trains as usual, with the dataset's random crop and flip; XPL augments on the device (its banks need the
    # un-augmented frames).
    augmented = Subset(
        SynthAV(num_clips=CLIPS, seed=0, image_size=SIZE, augment=JointRandomCropFlip()), unlabeled.indices
    )

    def score(model: LocalizationMethod) -> dict[str, float]:
        return evaluate(lambda b: model.localize(b["image"], b["audio"]), test, protocols=("sspl", "ezvsl"))

    results = {"centre Gaussian": evaluate(lambda b: centre_gaussian(SIZE, SIZE).expand(len(b["image"]), -1, -1), test)}
    pl.seed_everything(0)
    base = EZVSL(**PEER)
    _fit(base, augmented, None)
    results["EZ-VSL, no labels"] = score(base)

    pl.seed_everything(0)
    single = XPL("ezvsl", PEER, pseudo_labels="self", eval_model="a", **XPL_ARGS)
    _fit(single, unlabeled, labeled)
    results["single-model PL"] = score(single)

    pl.seed_everything(0)
    cross = XPL("ezvsl", PEER, **XPL_ARGS)
    _fit(cross, unlabeled, labeled)
    results["XPL (mean of A and B)"] = score(cross)
    for peer in ("a", "b"):
        cross.eval_model = peer
        results[f"XPL, model {peer.upper()}"] = score(cross)
    return results


@pytest.fixture(scope="module")
def results(one_thread: None) -> dict[str, dict[str, float]]:
    # One intra-op thread (tests/conftest.py): faster than two on shared CPU cores for these small models, and how the
    # figures in the docs were measured.
    out = run_comparison()
    keys = ("sspl/ciou", "sspl/auc", "sspl/mean_ciou", "ezvsl/ciou", "miou")
    print("\n" + json.dumps({name: {k: round(r[k], 3) for k in keys} for name, r in out.items()}, indent=1))
    return out


@pytest.mark.slow
def test_xpl_beats_its_base_without_labels(results: dict[str, dict[str, float]]) -> None:
    xpl, base, centre = results["XPL (mean of A and B)"], results["EZ-VSL, no labels"], results["centre Gaussian"]
    # fixed-threshold success rate: a perfect map scores 1.0, the centre prior 0.24 (96-px frames)
    assert xpl["sspl/ciou"] >= centre["sspl/ciou"] + 0.3
    assert xpl["sspl/mean_ciou"] >= centre["sspl/mean_ciou"] + 0.1
    assert xpl["sspl/ciou"] >= base["sspl/ciou"] + 0.04
    assert xpl["sspl/mean_ciou"] >= base["sspl/mean_ciou"] + 0.02


EXTRA_SEEDS = (1, 2)  # seed 0 is the comparison above


def _xpl_and_single(seed: int) -> dict[str, dict[str, float]]:
    """Single-model pseudo-labeling and XPL on the same clips, both started from ``seed``."""
    labeled, unlabeled, test = _splits()
    out = {}
    variants: dict[str, dict[str, Any]] = {"single-model PL": {"pseudo_labels": "self", "eval_model": "a"}, "XPL": {}}
    for name, kwargs in variants.items():
        pl.seed_everything(seed)
        model = XPL("ezvsl", PEER, **kwargs, **XPL_ARGS)
        _fit(model, unlabeled, labeled)

        def maps(batch: AVBatch, model: XPL = model) -> torch.Tensor:
            return model.localize(batch["image"], batch["audio"])

        out[name] = evaluate(maps, test, protocols=("sspl",))
    return out


@pytest.fixture(scope="module")
def seeds(results: dict[str, dict[str, float]], one_thread: None) -> list[dict[str, dict[str, float]]]:
    runs = [{"single-model PL": results["single-model PL"], "XPL": results["XPL (mean of A and B)"]}]
    runs += [_xpl_and_single(seed) for seed in EXTRA_SEEDS]
    keys = ("sspl/ciou", "sspl/mean_ciou")
    print("\n" + json.dumps([{n: {k: round(r[k], 3) for k in keys} for n, r in run.items()} for run in runs], indent=1))
    return runs


@pytest.mark.slow
def test_xpl_beats_single_model_pseudo_labels(seeds: list[dict[str, dict[str, float]]]) -> None:
    # Single runs of these small models vary by about 0.1 cIoU@0.5, so one run cannot separate the two: XPL must lead
    # on every seed and on average (measured over seeds 0-3: +0.09 to +0.23 cIoU@0.5, +0.05 to +0.11 mean cIoU).
    margins = [run["XPL"]["sspl/ciou"] - run["single-model PL"]["sspl/ciou"] for run in seeds]
    mean_margins = [run["XPL"]["sspl/mean_ciou"] - run["single-model PL"]["sspl/mean_ciou"] for run in seeds]
    assert min(margins) > 0, margins
    assert sum(margins) / len(margins) >= 0.05, margins
    assert sum(mean_margins) / len(mean_margins) >= 0.03, mean_margins
