"""The shared contract every method in METHODS passes (DESIGN.md §3), with tiny backbones on tiny SynthAV data."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml

from avsl.data import AVDataModule, SynthAV, split_labeled
from avsl.methods import METHODS, LocalizationMethod, load_method

ROOT = Path(__file__).resolve().parents[1]

# Tiny constructor arguments per method: small CNNs, small embeddings. A new method adds its line here.
TINY: dict[str, dict[str, Any]] = {
    "ezvsl": {"vision_backbone": "tiny_cnn", "audio_backbone": "tiny_cnn", "audio_frontend": "logmel", "embed_dim": 16},
    "sspl": {
        "vision_backbone": "tiny_cnn",
        "audio_backbone": "tiny_cnn",
        "audio_frontend": "logmel",
        "audio_hidden_dim": 32,
        "proj_dim": 32,
        "pred_hidden_dim": 16,
    },
    # A wrapper: its base is given as the {class_path, init_args} mapping of YAML, so that the CLI test can pass it as a
    # --model.init_args.base flag too. The base is SSPL with a one-cycle PCM.
    "semipl": {
        "base": {
            "class_path": "avsl.methods.SSPL",
            "init_args": {
                "vision_backbone": "tiny_cnn",
                "audio_backbone": "tiny_cnn",
                "audio_frontend": "logmel",
                "audio_hidden_dim": 32,
                "use_pcm": True,
                "pcm_cycles": 1,
                "proj_dim": 32,
                "pred_hidden_dim": 16,
            },
        }
    },
    # A wrapper of two peers: model_a as the {class_path, init_args} mapping of YAML (also a CLI flag); model_b is its
    # re-initialized copy. No warm-up, so the cross loss runs in the 2 steps; lambda_sup=0 because the CLI test's
    # SynthAV config has no labeled set (tests/test_xpl.py covers the supervised loss).
    "xpl": {
        "model_a": {
            "class_path": "avsl.methods.EZVSL",
            "init_args": {
                "vision_backbone": "tiny_cnn",
                "audio_backbone": "tiny_cnn",
                "audio_frontend": "logmel",
                "embed_dim": 16,
            },
        },
        "warmup_epochs": 0,
        "lambda_sup": 0.0,
    },
    "uspl": {
        "stage": "coarse",
        "vision_backbone": "tiny_cnn",
        "audio_backbone": "tiny_cnn",
        "audio_frontend": "logmel",
        "embed_dim": 16,
        "mask_grid": 4,
        "affinity_dim": 8,
        "affinity_radius": 2,
        "seg_hidden": 8,
    },
}


def tiny_data(batch_size: int = 4) -> AVDataModule:
    annotated = SynthAV(num_clips=12, seed=0, image_size=64, duration=0.5)
    labeled, unlabeled = split_labeled(annotated, 0.34, seed=0)
    evaluation = SynthAV(num_clips=6, seed=1, image_size=64, duration=0.5)
    return AVDataModule(unlabeled, labeled, val=evaluation, test=evaluation, batch_size=batch_size)


def tiny_trainer(root: Path, max_steps: int = 2) -> pl.Trainer:
    return pl.Trainer(
        max_steps=max_steps,
        limit_val_batches=1,
        limit_test_batches=1,
        limit_predict_batches=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        num_sanity_val_steps=0,
    )


def test_every_method_is_registered_in_the_four_places() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for name, cls in METHODS.items():
        assert issubclass(cls, LocalizationMethod)
        assert cls.__module__ == f"avsl.methods.{name}", "one module per method, named like its METHODS key"
        config = yaml.safe_load((ROOT / "avsl" / "configs" / "methods" / f"{name}.yaml").read_text())
        assert config["model"]["class_path"] == f"avsl.methods.{cls.__name__}"
        assert (ROOT / "docs" / "methods" / f"{name}.md").is_file()
        assert f"methods/{name}.md" in nav
        assert name in TINY
    assert set(TINY) == set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = METHODS[name](**TINY[name])
    data = tiny_data()
    before = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    trainer = tiny_trainer(tmp_path)
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    changed = [k for k, v in model.state_dict().items() if k in before and not torch.equal(before[k], v)]
    assert changed, "training changed no parameter"

    for stage, results in (
        ("val", trainer.validate(model, datamodule=data)),
        ("test", trainer.test(model, datamodule=data)),
    ):
        metrics = results[0]
        for key in ("ciou", "auc", "mean_ciou", "miou"):
            assert 0.0 <= metrics[f"{stage}/{key}"] <= 1.0

    predictions = trainer.predict(model, datamodule=data)
    assert predictions is not None
    first: dict[str, Any] = predictions[0]  # type: ignore[assignment]
    heat = first["heatmap"]
    assert heat.shape == (4, 64, 64) and len(first["sample_id"]) == 4
    assert float(heat.min()) >= 0.0 and float(heat.max()) <= 1.0

    # forward: raw maps at the model's own resolution, same type in train and eval mode
    batch = next(iter(data.test_dataloader()))
    model.eval()
    raw_eval = model(batch["image"], batch["audio"])
    model.train()
    raw_train = model(batch["image"], batch["audio"])
    assert raw_eval.dim() == raw_train.dim() == 3 and raw_eval.shape[0] == 4
    model.eval()
    raw = model.localize(batch["image"], batch["audio"], normalize=False)
    assert raw.shape == (4, 64, 64) and torch.isfinite(raw).all()

    # checkpoint: load_method restores the class and the outputs; fit resumes from the saved step
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    restored = load_method(ckpt)
    assert type(restored) is type(model)
    assert restored.input_geometry == {"height": 64, "width": 64, "num_samples": 8000}
    torch.testing.assert_close(
        restored.localize(batch["image"], batch["audio"]), model.localize(batch["image"], batch["audio"])
    )
    resumed = tiny_trainer(tmp_path, max_steps=3)
    resumed.fit(METHODS[name](**TINY[name]), datamodule=tiny_data(), ckpt_path=ckpt)
    assert resumed.global_step == 3


def test_localize_checks_shapes() -> None:
    model = METHODS["ezvsl"](**TINY["ezvsl"])
    with pytest.raises(ValueError, match="image must be"):
        model.localize(torch.rand(3, 64, 64), torch.randn(1, 8000))
    with pytest.raises(ValueError, match="audio must be"):
        model.localize(torch.rand(2, 3, 64, 64), torch.randn(3, 8000))


def test_unknown_protocol_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown eval_protocol"):
        METHODS["ezvsl"](**TINY["ezvsl"], eval_protocol="nope")


def test_load_method_rejects_foreign_checkpoints(tmp_path: Path) -> None:
    torch.save({"state_dict": {}}, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="not written by an avsl method"):
        load_method(tmp_path / "x.ckpt")
    with pytest.raises(FileNotFoundError):
        load_method(tmp_path / "missing.ckpt")
    assert importlib.import_module("avsl.methods") is not None


class _Payload:
    """Pickles to a call of ``Path.touch``: loading it with full unpickling would create a file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.target,))


def test_checkpoints_are_read_without_running_their_code(tmp_path: Path) -> None:
    # A checkpoint from elsewhere may carry objects whose unpickling runs code; avsl refuses them, naming the file.
    marker = tmp_path / "code_ran"
    torch.save({"avsl_method": "avsl.methods.EZVSL", "state_dict": {}, "extra": _Payload(marker)}, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match=r"x\.ckpt is not a checkpoint avsl can read"):
        load_method(tmp_path / "x.ckpt")
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.ckpt is not a checkpoint"):
        load_method(tmp_path / "garbage.ckpt")
    torch.save([1, 2], tmp_path / "list.ckpt")
    with pytest.raises(ValueError, match="holds a list, not a checkpoint"):
        load_method(tmp_path / "list.ckpt")
    assert not marker.exists()
