"""SSPL and SemiPL on SynthAV (slow: several CPU minutes): what each learns, against the centre baseline.

SSPL and SemiPL train with the same base (``sspl_synthav.yaml``'s settings) on the same 2000 clips; SemiPL also sees
the boxes of 10 % of them. Every number is measured by ``avsl.evaluate.evaluate`` on the held-out test split, beside a
centred Gaussian and the same model given the *wrong* sound (the batch's audio rolled by one), which tells whether a map
depends on what is heard. Figures are in docs/methods/sspl.md and docs/methods/semipl.md. SSPL beating the centre
with a sound-dependent map is an expected failure for now (``pytest.xfail``, checked after every other assertion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from avsl.cli import resolve_config
from avsl.data import AVDataModule, JointRandomCropFlip, SynthAV, split_labeled
from avsl.evaluate import centre_gaussian, evaluate
from avsl.methods import SSPL, LocalizationMethod, SemiPL
from avsl.types import AVBatch

EPOCHS = 4


def _sspl_synthav_args() -> dict[str, Any]:
    config = yaml.safe_load(Path(resolve_config("sspl_synthav")).read_text())
    return dict(config["model"]["init_args"])


def _fit(model: LocalizationMethod, data: AVDataModule, root: Path) -> None:
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(model, datamodule=data)


def _scores(model: LocalizationMethod, test: SynthAV) -> tuple[dict[str, float], dict[str, float]]:
    model.eval()
    loader = DataLoader(test, batch_size=100)

    def matched(batch: AVBatch) -> torch.Tensor:
        return model.localize(batch["image"], batch["audio"], normalize=False)

    def wrong_sound(batch: AVBatch) -> torch.Tensor:
        return model.localize(batch["image"], batch["audio"].roll(1, dims=0), normalize=False)

    return evaluate(matched, loader, protocols=("sspl",)), evaluate(wrong_sound, loader, protocols=("sspl",))


@pytest.mark.slow
def test_sspl_and_semipl_on_synthav(tmp_path: Path) -> None:
    train = SynthAV(num_clips=2000, seed=0, augment=JointRandomCropFlip())
    test = SynthAV(num_clips=500, seed=2)
    gauss = centre_gaussian(128, 128)
    centre = evaluate(lambda b: gauss.expand(b["image"].shape[0], 128, 128), DataLoader(test, batch_size=100))
    base_args = _sspl_synthav_args()

    pl.seed_everything(0)
    sspl = SSPL(**base_args)
    _fit(sspl, AVDataModule(train, batch_size=64), tmp_path / "sspl")
    sspl_scores, sspl_wrong = _scores(sspl, test)

    pl.seed_everything(0)
    semipl = SemiPL(SSPL(**base_args))
    labeled, _ = split_labeled(train, 0.1, seed=0)  # 200 of the same clips keep their boxes
    _fit(semipl, AVDataModule(train, labeled, batch_size=64, labeled_batch_size=16), tmp_path / "semipl")
    semi_scores, semi_wrong = _scores(semipl, test)

    # How different the attention module's audio queries of different clips are (1: one query whatever the sound).
    with torch.no_grad():
        query = torch.nn.functional.normalize(sspl.audio(next(iter(DataLoader(test, batch_size=100)))["audio"])[1])
    query_similarity = float(((query @ query.T).sum() - len(query)) / (len(query) * (len(query) - 1)))
    print({"centre": centre, "sspl": sspl_scores, "sspl_wrong_sound": sspl_wrong, "query_similarity": query_similarity})
    print({"semipl": semi_scores, "semipl_wrong_sound": semi_wrong})
    # SemiPL with 10 % labels beats SSPL on the same clips and the centre prior, clearly, and depends on the sound.
    assert semi_scores["sspl/ciou"] >= sspl_scores["sspl/ciou"] + 0.10
    assert semi_scores["sspl/ciou"] >= centre["sspl/ciou"] + 0.05
    assert semi_scores["sspl/auc"] >= centre["sspl/auc"] + 0.03
    assert semi_scores["miou"] >= centre["miou"] + 0.05
    assert semi_scores["sspl/ciou"] >= semi_wrong["sspl/ciou"] + 0.10
    # SSPL alone does not learn on SynthAV: measured at 0.31 cIoU / 0.355 AUC against the centre's 0.28 / 0.363,
    # and 0.32 with another clip's sound; its audio queries collapse to one (docs/methods/sspl.md, "Why SSPL ignores
    # the sound here"). Checked last, after every SemiPL assertion has run; issue 6 is blocked on it.
    sspl_learns = (
        sspl_scores["sspl/ciou"] >= centre["sspl/ciou"] + 0.05
        and sspl_scores["sspl/auc"] > centre["sspl/auc"]
        and sspl_scores["sspl/ciou"] >= sspl_wrong["sspl/ciou"] + 0.05
    )
    if not sspl_learns:
        pytest.xfail("SSPL on SynthAV does not beat the centre prior with a sound-dependent map (known, issue 6)")
