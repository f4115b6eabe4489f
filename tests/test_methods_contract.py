"""The shared contract every method in METHODS passes (DESIGN.md §3), with tiny backbones on tiny SynthAV data."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml

from avsl.methods import METHODS, LocalizationMethod, load_method, method_class
from avsl.testing import config_args, tiny_args, tiny_data

ROOT = Path(__file__).resolve().parents[1]

#: Tiny arguments of every shipped method (its config's wrapped methods included).
TINY: dict[str, dict[str, Any]] = {name: tiny_args(cls, config_args(name)) for name, cls in METHODS.items()}


def cli_flags(args: dict[str, Any], prefix: str = "--model.init_args") -> list[str]:
    """Command-line flags that set ``args`` (dicts such as ``base_args`` key by key, as dotted flags). None values are
    left to the config: jsonargparse (4.53) reads ``--x.base_args.key=null`` as the string ``"None"``."""
    flags: list[str] = []
    for key, value in args.items():
        if value is None:
            continue
        if isinstance(value, dict):
            flags += cli_flags(value, f"{prefix}.{key}")
        else:
            text = value if isinstance(value, str) else json.dumps(list(value) if isinstance(value, tuple) else value)
            flags.append(f"{prefix}.{key}={text}")
    return flags


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


def test_a_method_is_four_files() -> None:
    """Module, one import line in avsl/methods/__init__.py, config and docs page: nothing else names a method."""
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        nav = importlib.import_module("methods_nav").methods_nav(ROOT / "docs")
    finally:
        sys.path.remove(str(ROOT / "docs" / "hooks"))
    registry = (ROOT / "avsl" / "methods" / "__init__.py").read_text()
    pages = sorted(p.stem for p in (ROOT / "docs" / "methods").glob("*.md"))
    assert pages == sorted(METHODS), "every docs/methods page is a method's, and every method has one"
    for name, cls in METHODS.items():
        assert issubclass(cls, LocalizationMethod)
        assert cls.__module__ == f"avsl.methods.{name}", "one module per method, named like its METHODS key"
        assert registry.count(f"from avsl.methods.{name} import") == 1, "one import line registers a method"
        config = yaml.safe_load((ROOT / "avsl" / "configs" / "methods" / f"{name}.yaml").read_text())
        assert method_class(config["model"]["class_path"]) is cls
        assert {f"methods/{name}.md"} <= {path for entry in nav for path in entry.values()}
        assert TINY[name], "tiny arguments are derived for every method"


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
    assert restored.signal == model.signal and restored.signal.frame_size == (64, 64)
    assert restored.signal.num_samples == 8000
    torch.testing.assert_close(
        restored.localize(batch["image"], batch["audio"]), model.localize(batch["image"], batch["audio"])
    )
    resumed = tiny_trainer(tmp_path, max_steps=3)
    resumed.fit(METHODS[name](**TINY[name]), datamodule=tiny_data(), ckpt_path=ckpt)
    assert resumed.global_step == 3


#: Every method, and those that take an object network (OGL) with one.
RANGED = {
    **{name: (name, TINY[name]) for name in METHODS},
    **{f"{name}+ogl": (name, {**TINY[name], "ogl_backbone": "tiny_cnn"}) for name in ("ezvsl", "fnac", "slavc")},
}


@pytest.mark.parametrize("name", sorted(RANGED))
def test_raw_maps_lie_in_the_declared_score_range(name: str) -> None:
    """``signal.score_range`` is what fixed-threshold protocols (slavc, the extended one) and XPL map raw scores by,
    in training (XPL's peers) and in evaluation alike."""
    key, args = RANGED[name]
    torch.manual_seed(0)
    model = METHODS[key](**args)
    image, audio = torch.rand(3, 3, 64, 64), 0.3 * torch.randn(3, model.signal.num_samples)
    lo, hi = model.signal.score_range
    with torch.no_grad():
        for train in (True, False):
            raw = model.train(train)(image, audio)
            assert lo - 1e-5 <= float(raw.min()) and float(raw.max()) <= hi + 1e-5, (train, float(raw.min()), hi)


@pytest.mark.parametrize("name", ["ezvsl", "fnac"])
def test_object_guided_maps_reach_fixed_threshold_protocols_whole(name: str) -> None:
    """With OGL, EZ-VSL's and FNAC's evaluation map is min-max normalized (EZ-VSL ``test.py``); its unit scores are
    that map, so slavc's 0.5 threshold splits it. (They were [0.5, 1]: every pixel passed, cIoU = the GT's area.)"""
    torch.manual_seed(0)
    model = METHODS[name](**TINY[name], ogl_backbone="tiny_cnn").eval()
    image, audio = torch.rand(3, 3, 64, 64), 0.3 * torch.randn(3, model.signal.num_samples)
    unit = model.unit_scores(model.localize(image, audio, normalize=False)).flatten(1)
    torch.testing.assert_close(unit.amin(1), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(unit.amax(1), torch.ones(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(model.localize(image, audio), unit.view(3, 64, 64), atol=1e-6, rtol=0)


def test_localize_checks_shapes() -> None:
    model = METHODS["ezvsl"](**TINY["ezvsl"])
    with pytest.raises(ValueError, match="image must be"):
        model.localize(torch.rand(3, 64, 64), torch.randn(1, 8000))
    with pytest.raises(ValueError, match="audio must be"):
        model.localize(torch.rand(2, 3, 64, 64), torch.randn(3, 8000))
    image, audio = torch.rand(3, 3, 64, 64), torch.randn(3, 8000)
    image[1, 0, 5, 5] = float("nan")  # it made sample 1's whole map NaN, returned as a map
    with pytest.raises(ValueError, match=r"image of samples \[1\] contains NaN or infinite values"):
        model.localize(image, audio)
    audio[2, 7] = float("inf")
    with pytest.raises(ValueError, match=r"audio of samples \[2\] contains NaN"):
        model.localize(torch.rand(3, 3, 64, 64), audio)


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
