"""Negatives are kept out of cIoU, AUC, pointing, mIoU and F-score and scored by SLAVC's extended protocol; audio
controls (another clip's sound, silence, noise, the centre prior) in `avsl test` and in Python agree."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import Subset

from avsl.callbacks import AudioControls
from avsl.cli import main
from avsl.data import AVDataModule, SynthAV
from avsl.evaluate import control_audio, evaluate, evaluate_controls
from avsl.methods import EZVSL
from avsl.metrics import EvaluationMetrics
from avsl.metrics.avsbench import frame_fscore_curves, frame_iou
from avsl.testing import tiny_args


def _batch(n: int, negatives: list[int], seed: int = 0) -> dict[str, object]:
    gen = torch.Generator().manual_seed(seed)
    gt = torch.zeros(n, 32, 32)
    for i in range(n):
        if i not in negatives:
            gt[i, 8:20, 4 + i % 8 : 16 + i % 8] = 1.0
    return {
        "sample_id": [f"s{i}" for i in range(n)],
        "gt_map": gt,
        "mask": gt.clone(),
        "num_sources": torch.tensor([0 if i in negatives else 1 for i in range(n)]),
        "raw": torch.rand(n, 32, 32, generator=gen),
    }


def _scores(batch: dict[str, object], keep: list[int] | None = None) -> dict[str, float]:
    metrics = EvaluationMetrics("ezvsl")
    raw = batch["raw"]
    assert isinstance(raw, torch.Tensor)
    if keep is not None:
        batch = {k: [v[i] for i in keep] if isinstance(v, list) else v[keep] for k, v in batch.items()}  # type: ignore[index]
        raw = raw[keep]
    metrics.update(raw, raw, batch)  # type: ignore[arg-type]
    return {k: float(v) for k, v in metrics.compute_and_reset().items()}


def test_negatives_are_kept_out_of_localization_metrics_and_scored_as_detection() -> None:
    batch = _batch(16, negatives=list(range(8, 16)))
    mixed, positives = _scores(batch), _scores(batch, keep=list(range(8)))
    for key in ("ciou", "auc", "mean_ciou", "pointing", "miou", "fscore"):
        assert mixed[key] == positives[key], key  # before: negatives scored cIoU 0 and moved mIoU
    assert mixed["num_negative"] == 8 and 0.0 <= mixed["ap"] <= 1.0 and "max_f1" in mixed
    assert "ap" not in positives  # a set without negatives has no detection task


def test_a_batch_of_negatives_only_is_counted_and_leaves_the_other_metrics_alone() -> None:
    """A batch whose clips are all negatives (SynthAV's negative_fraction at a small eval batch) crashed the F-score
    (an empty batch reshaped with (0, -1)); it is now counted by the extended protocol and nothing else."""
    batch = _batch(8, negatives=[4, 5, 6, 7])
    raw = batch["raw"]
    assert isinstance(raw, torch.Tensor)
    split = EvaluationMetrics("ezvsl")
    for rows in ([0, 1, 2, 3], [4, 5, 6, 7]):  # the second batch holds negatives only
        part = {k: [v[i] for i in rows] if isinstance(v, list) else v[rows] for k, v in batch.items()}  # type: ignore[index]
        split.update(raw[rows], raw[rows], part)  # type: ignore[arg-type]
    scores = {k: float(v) for k, v in split.compute_and_reset().items()}
    whole = _scores(batch)
    assert scores["num_negative"] == 4 and scores["ap"] == whole["ap"]
    for key in ("ciou", "auc", "mean_ciou", "pointing", "miou", "fscore"):
        assert scores[key] == whole[key], key
    only = EvaluationMetrics("ezvsl")
    part = {k: [v[i] for i in [4, 5]] if isinstance(v, list) else v[[4, 5]] for k, v in batch.items()}  # type: ignore[index]
    only.update(raw[[4, 5]], raw[[4, 5]], part)  # type: ignore[arg-type]
    result = only.compute_and_reset()
    assert int(result["num_negative"]) == 2 and "miou" not in result and "ciou" not in result  # no NaN mIoU


def test_avsbench_metrics_take_an_empty_batch() -> None:
    empty = torch.zeros(0, 16, 24)
    assert frame_fscore_curves(empty, empty.bool())[0].shape == (0, 255)
    assert frame_iou(empty, empty.bool()).shape == (0,)


def test_evaluate_keeps_negatives_out_too() -> None:
    batch = _batch(12, negatives=[1, 5, 9])
    raw = batch.pop("raw")
    assert isinstance(raw, torch.Tensor)
    keep = [i for i in range(12) if i not in (1, 5, 9)]
    mixed = evaluate(lambda b: raw, [batch], protocols=("ezvsl",))  # type: ignore[list-item]
    only = {k: v[keep] if isinstance(v, torch.Tensor) else [v[i] for i in keep] for k, v in batch.items()}  # type: ignore[index]
    clean = evaluate(lambda b: raw[keep], [only], protocols=("ezvsl",))  # type: ignore[list-item]
    assert {k: mixed[k] for k in clean} == clean and mixed["num_negative"] == 3


def test_control_audio() -> None:
    audio = torch.randn(4, 800)
    assert torch.equal(control_audio(audio, "other")[0], audio[2])
    assert not control_audio(audio, "silence").any()
    noise = control_audio(audio, "noise", torch.Generator().manual_seed(0))
    assert torch.allclose(noise.pow(2).mean(1).sqrt(), audio.pow(2).mean(1).sqrt(), rtol=0.15)
    with pytest.raises(ValueError, match="unknown audio control"):
        control_audio(audio, "reversed")


@pytest.fixture(scope="module")
def model() -> EZVSL:
    torch.manual_seed(0)
    return EZVSL(**tiny_args(EZVSL), eval_protocol="sspl").eval()


def test_avsl_test_controls_equal_the_python_evaluation(model: EZVSL, tmp_path: Path) -> None:
    data = SynthAV(num_clips=12, seed=1, image_size=64, duration=0.5, negative_fraction=0.25)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[AudioControls()], default_root_dir=tmp_path,
    )  # fmt: skip
    logged = trainer.test(model, datamodule=AVDataModule(test=data, batch_size=12), verbose=False)[0]
    python = evaluate_controls(model, data, protocols=("sspl",), batch_size=12)
    for control in ("other", "silence", "noise", "centre"):
        for key in ("ciou", "auc", "mean_ciou"):
            assert logged[f"test/{control}/{key}"] == pytest.approx(python[control][f"sspl/{key}"], abs=1e-6)
        for key in ("pointing", "ap", "num_negative"):
            assert logged[f"test/{control}/{key}"] == pytest.approx(python[control][key], abs=1e-6)
    assert logged["test/ciou"] == pytest.approx(python["right"]["sspl/ciou"], abs=1e-6)
    assert logged["test/num_negative"] == 3

    # the positives alone give the same localization scores as the set with its negatives
    positives = Subset(data, [i for i in range(12) if data[i]["num_sources"] > 0])
    alone = trainer.test(model, datamodule=AVDataModule(test=positives, batch_size=12), verbose=False)[0]
    assert "test/ap" not in alone and alone["test/ciou"] == logged["test/ciou"]


def test_the_cli_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_cli_lightning import TINY_DATA, TINY_TRAINER, _tiny_model

    args = ["test", "-c", "ezvsl", "-c", "synthav", *_tiny_model("ezvsl"), *TINY_DATA, *TINY_TRAINER, "--controls"]
    assert main([*args, f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"]) == 0
    out = capsys.readouterr().out
    assert "test/silence/ciou" in out and "test/other/pointing" in out and "test/centre/auc" in out
    assert main(["fit", "--controls"]) == 1
    assert "--controls is an option of avsl test" in capsys.readouterr().err


def test_several_protocols_share_one_pass_and_each_equals_its_own() -> None:
    """evaluate() with several protocols: one EvaluationMetrics (pointing, mIoU, the extended protocol computed once)
    whose per-protocol cIoU equals that protocol's alone."""
    batch = _batch(12, negatives=[2, 7])
    raw = batch.pop("raw")
    assert isinstance(raw, torch.Tensor)
    both = evaluate(lambda b: raw, [batch], protocols=("ezvsl", "sspl", "slavc"))  # type: ignore[list-item]
    for protocol in ("ezvsl", "sspl", "slavc"):
        alone = evaluate(lambda b: raw, [batch], protocols=(protocol,))  # type: ignore[list-item]
        for key, value in alone.items():
            assert both[key] == value, (protocol, key)
    with pytest.raises(ValueError, match="at least one"):
        evaluate(lambda b: raw, [batch], protocols=())  # type: ignore[list-item]


def test_evaluate_refuses_raw_scores_where_it_reads_unit_scores() -> None:
    """evaluate() clamped the maps before slavc's fixed threshold: cosine maps in [-0.8, 0.6] were scored silently
    (cIoU 0.75 where the unit scores give 1.0). Raw scores there, no batches and a bare string are errors now."""
    batch = _batch(4, negatives=[])
    raw = batch.pop("raw")
    assert isinstance(raw, torch.Tensor)
    cosine = 1.4 * raw - 0.8  # [-0.8, 0.6]
    with pytest.raises(ValueError, match=r"the 'slavc' protocol reads the maps as scores in \[0, 1\].*unit_scores"):
        evaluate(lambda b: cosine, [batch], protocols=("slavc",))  # type: ignore[list-item]
    assert evaluate(lambda b: 1.05 * raw, [batch], protocols=("slavc",))["slavc/ciou"] >= 0  # overshoot: clamped
    assert "ezvsl/ciou" in evaluate(lambda b: cosine, [batch], protocols=("ezvsl",))  # normalizing: any range
    with_negatives = _batch(4, negatives=[3])
    with_negatives.pop("raw")
    with pytest.raises(ValueError, match="the extended protocol reads the maps"):
        evaluate(lambda b: cosine, [with_negatives], protocols=("ezvsl",))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="evaluate got no samples"):
        evaluate(lambda b: cosine, [], protocols=("ezvsl",))
    with pytest.raises(ValueError, match="at least one cIoU protocol, as a sequence of names; got 'sspl'"):
        evaluate(lambda b: cosine, [batch], protocols="sspl")  # type: ignore[list-item]
