"""Accuracy ablation of SSPL on SynthAV: does its map depend on the sound? (docs/methods/sspl.md, "What we tried").

Each variant trains ``sspl_synthav.yaml``'s SSPL (tiny_cnn encoders, log-mel front-end, no PCM, reference views) with
one change, then evaluates it on held-out SynthAV clips with the ``sspl`` protocol, with the right sound and with
another clip's sound, beside a centred Gaussian. It also reports the pointing rate (the map's peak on a pixel of the
sounding object) and the mean cosine between the audio queries of different clips (1 = one query for every sound).

    python benchmarks/bench_sspl_synthav.py                       # every variant, about 20 minutes on 2 CPU cores
    python benchmarks/bench_sspl_synthav.py reference mismatched  # some of them
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor
from torch.utils.data import DataLoader

from avsl.data import AVDataModule, JointRandomCropFlip, SynthAV
from avsl.evaluate import centre_gaussian, evaluate
from avsl.lightning_cli import resolve_config
from avsl.methods import SSPL
from avsl.types import AVBatch, TrainBatch


class MismatchedSSPL(SSPL):
    """SSPL trained on mismatched pairs: every clip's frame meets the next clip's sound (a control, not a method)."""

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        data = batch["unlabeled"].copy()
        data["audio"] = data["audio"].roll(1, dims=0)
        return super().training_losses({**batch, "unlabeled": data})


class PlainBackgroundSynthAV(SynthAV):
    """SynthAV on a uniform grey background: no per-clip background colour or texture to tell clips apart."""

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        return np.full((self.image_size, self.image_size, 3), 0.45)


# name -> (description, changes to the model's arguments, changes to the run)
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "reference": ("reference views (resize 1.1, crop, flip), the shipped config", {}, {}),
    "mismatched": ("same, trained with mismatched sounds", {}, {"model_class": MismatchedSSPL}),
    "epochs10": ("same, 10 epochs", {}, {"epochs": 10}),
    "batch256": ("same, batch 256, 2,000 clips, 8 epochs", {}, {"batch_size": 256, "clips": 2000, "epochs": 8}),
    "plain_background": ("same, plain grey background", {}, {"dataset": PlainBackgroundSynthAV}),
    "frozen_audio": ("same, audio encoder frozen at its random init", {"audio_trainable": False}, {}),
    "pcm_reference_lr": (
        "w/ PCM, reference w/ PCM learning rates, 2,000 clips, 6 epochs",
        {"use_pcm": True, "lr": 2e-5, "lr_head": 5e-5},
        {"clips": 2000, "epochs": 6},
    ),
    "no_distractors": ("reference views, no distractors", {}, {"num_distractors": 0}),
}


def pointing(localize: Callable[[AVBatch], Tensor], loader: DataLoader[Any]) -> float:
    """Share of test clips whose map peaks on a pixel of the sounding object."""
    hits, total = 0.0, 0
    for batch in loader:
        peak = localize(batch).flatten(1).argmax(dim=1, keepdim=True)
        hits += batch["mask"].flatten(1).gather(1, peak).sum().item()
        total += peak.shape[0]
    return hits / total


def query_similarity(model: SSPL, loader: DataLoader[Any]) -> float:
    """Mean cosine between the audio queries of two different clips of the first batch."""
    audio = next(iter(loader))["audio"]
    with torch.no_grad():
        query = F.normalize(model.audio(audio)[1], dim=1)
    n = query.shape[0]
    return float(((query @ query.T).sum() - n) / (n * (n - 1)))


def run(name: str, test_clips: int, seed: int) -> dict[str, float]:
    _, model_changes, run_changes = VARIANTS[name]
    config = yaml.safe_load(Path(resolve_config("sspl_synthav")).read_text())
    args = {**config["model"]["init_args"], **model_changes}
    dataset: type[SynthAV] = run_changes.get("dataset", SynthAV)
    distractors = run_changes.get("num_distractors", 2)
    train = dataset(
        num_clips=run_changes.get("clips", 1000), seed=0, num_distractors=distractors, augment=JointRandomCropFlip()
    )
    test = dataset(num_clips=test_clips, seed=2, num_distractors=distractors)
    pl.seed_everything(seed)
    model: SSPL = run_changes.get("model_class", SSPL)(**args)
    trainer = pl.Trainer(
        max_epochs=run_changes.get("epochs", 4),
        accelerator="cpu",
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=AVDataModule(train, batch_size=run_changes.get("batch_size", 64)))
    model.eval()
    loader = DataLoader(test, batch_size=100)
    gauss = centre_gaussian(test.image_size, test.image_size)

    def right(batch: AVBatch) -> Tensor:
        return model.localize(batch["image"], batch["audio"], normalize=False)

    def wrong(batch: AVBatch) -> Tensor:
        return model.localize(batch["image"], batch["audio"].roll(1, dims=0), normalize=False)

    with torch.no_grad():
        centre = evaluate(lambda b: gauss.expand(b["image"].shape[0], -1, -1), loader, protocols=("sspl",))
        scores, wrong_scores = (evaluate(f, loader, protocols=("sspl",)) for f in (right, wrong))
        point_right, point_wrong = pointing(right, loader), pointing(wrong, loader)
    return {
        "centre_ciou": centre["sspl/ciou"],
        "ciou": scores["sspl/ciou"],
        "auc": scores["sspl/auc"],
        "wrong_ciou": wrong_scores["sspl/ciou"],
        "point_right": point_right,
        "point_wrong": point_wrong,
        "query_similarity": query_similarity(model, loader),
        "minutes": (time.perf_counter() - start) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help=f"any of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--test-clips", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args()
    unknown = sorted(set(cli.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    rows = []
    for name in cli.variants or list(VARIANTS):
        r = run(name, cli.test_clips, cli.seed)
        rows.append(
            f"| {VARIANTS[name][0]} | {r['ciou']:.3f} | {r['auc']:.3f} | {r['wrong_ciou']:.3f} | "
            f"{r['point_right']:.3f} / {r['point_wrong']:.3f} | {r['query_similarity']:.3f} | "
            f"{r['centre_ciou']:.3f} | {r['minutes']:.1f} |"
        )
        print(rows[-1], flush=True)
    header = "| variant | cIoU@0.5 | AUC | cIoU, wrong sound | pointing (right / wrong) | query similarity | centre |"
    print(f"\n{header} minutes |\n{'|---' * 8}|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
