"""The CPU recipes as Python: read ``avsl/configs/methods/<key>_synthav.yaml``, train it on a SynthAV setting.

A recipe is the model section of a method's CPU config plus its training schedule (``trainer.max_epochs`` and
``trainer.precision``; USPL's three stages give their epochs in the config's header comment, one ``avsl fit`` line per
stage). ``benchmarks/learning.py`` and the slow learning tests train every recipe on the settings of
:data:`avsl.data.SETTINGS` through :func:`train_recipe`, with the data roles and augmentations that ``avsl fit`` gives
them: the unlabeled training clips with the ``augment`` of ``avsl/configs/data/synthav.yaml`` (or, for the
semi-supervised methods, ``synthav_semi.yaml``, whose labeled share of the training clips has an ``augment`` too).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml

from avsl.data import AVDataModule, split_labeled
from avsl.data.settings import SynthAVSetting
from avsl.data.transforms import SampleTransform
from avsl.lightning_cli import resolve_config
from avsl.methods.base import LocalizationMethod, build_method, inner_methods, method_class

__all__ = ["RECIPES", "Recipe", "load_recipe", "train_recipe"]

#: The method keys that have a CPU recipe (``avsl/configs/methods/<key>_synthav.yaml``).
RECIPES: tuple[str, ...] = ("ezvsl", "fnac", "slavc", "lvs", "sslalign", "sspl", "semipl", "xpl", "uspl")

# The command of a recipe's header that names a data config: "avsl fit -c semipl_synthav -c synthav".
_DATA_CONFIG = re.compile(r"avsl fit -c \w+ -c (\w+)")
# One stage line of USPL's header: "avsl fit -c uspl_synthav --model.init_args.stage refine --trainer.max_epochs 2".
_STAGE_LINE = re.compile(r"--model\.init_args\.stage\s+(\w+)(?:.*?--trainer\.max_epochs\s+(\d+))?")


@dataclass(frozen=True)
class Recipe:
    """A method's CPU recipe.

    Attributes:
        key: the method key (``"ezvsl"``, ...).
        model: the model section, ``{"class_path": ..., "init_args": ...}``.
        max_epochs: epochs of training (of each stage without its own count, for USPL).
        precision: Lightning precision (``"32-true"`` or ``"bf16-mixed"``).
        batch_size: unlabeled batch size.
        labeled_batch_size: labeled batch size (semi-supervised methods).
        stage_epochs: USPL's epochs per stage, in order; empty for single-stage methods.
        needs_labels: the method trains with a labeled set.
        augment: the training augmentation of the unlabeled clips (from the data config the recipe is run with).
        labeled_augment: the training augmentation of the labeled clips.
    """

    key: str
    model: dict[str, Any]
    max_epochs: int
    precision: str
    batch_size: int
    labeled_batch_size: int
    stage_epochs: dict[str, int]
    needs_labels: bool
    augment: SampleTransform | None = None
    labeled_augment: SampleTransform | None = None


def load_recipe(key: str) -> Recipe:
    """Read the recipe of method ``key`` from its shipped ``<key>_synthav.yaml``."""
    if key not in RECIPES:
        raise ValueError(f"no CPU recipe for {key!r}; recipes exist for {RECIPES}")
    path = Path(resolve_config(f"methods/{key}_synthav.yaml"))
    text = path.read_text()
    config = yaml.safe_load(text)
    trainer = config.get("trainer") or {}
    data = ((config.get("data") or {}).get("init_args")) or {}
    max_epochs = int(trainer.get("max_epochs", 1))
    stages: dict[str, int] = {}
    for line in text.splitlines():
        match = _STAGE_LINE.search(line) if line.lstrip().startswith("#") else None
        if match:
            stages[match.group(1)] = int(match.group(2) or max_epochs)
    model = config["model"]
    needs_labels = key in ("semipl", "xpl") and float(model["init_args"].get("lambda_sup", 1.0)) > 0
    augment, labeled_augment = _augments(config, text)
    return Recipe(
        key=key,
        model=model,
        max_epochs=max_epochs,
        precision=str(trainer.get("precision", "32-true")),
        batch_size=int(data.get("batch_size", 64)),
        labeled_batch_size=int(data.get("labeled_batch_size", 16)),
        stage_epochs=stages,
        needs_labels=needs_labels,
        augment=augment,
        labeled_augment=labeled_augment,
    )


def _augments(config: dict[str, Any], header: str) -> tuple[SampleTransform | None, SampleTransform | None]:
    """The training augmentation of the unlabeled and the labeled clips, built, as ``avsl fit`` gets them from the
    command in the recipe's header: the recipe's own ``data`` section, then the data config after it
    (``avsl fit -c xpl_synthav -c synthav_semi``), which replaces what it sets."""
    sections = [(config.get("data") or {}).get("init_args") or {}]
    match = _DATA_CONFIG.search(header)
    if match:
        data_config = yaml.safe_load(Path(resolve_config(f"data/{match.group(1)}.yaml")).read_text())
        sections.append(data_config["data"]["init_args"])
    specs: dict[str, Any] = {"unlabeled": None, "labeled": None}
    for section in sections:
        for role in specs:
            spec = ((section.get(role) or {}).get("init_args") or {}).get("augment")
            specs[role] = spec if spec is not None else specs[role]
    return _build(specs["unlabeled"]), _build(specs["labeled"])


def _build(spec: Any) -> Any:
    """Instantiate a ``class_path`` / ``init_args`` spec (nested specs and lists too), as LightningCLI would."""
    if isinstance(spec, list):
        return [_build(v) for v in spec]
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = str(spec["class_path"]).rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: _build(v) for k, v in (spec.get("init_args") or {}).items()})
    return spec


def _with_signal(name: str, args: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """``args`` of method ``name`` with the data's signal ``facts`` (sample rate, frame size, audio window) set where
    the method takes them, and in the arguments of the methods it wraps (a method name argument ``X`` beside an
    ``X_args`` dict: SemiPL's ``base``, XPL's ``model_a``)."""
    cls = method_class(name)
    params = inspect.signature(cls).parameters
    out = {**args, **{k: v for k, v in facts.items() if k in params}}
    for key, inner in inner_methods(cls, out).items():
        out[key] = _with_signal(inner, dict(out.get(key) or {}), facts)
    return out


def _trainer(recipe: Recipe, epochs: int) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        precision=recipe.precision,  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        deterministic=False,
    )


def train_recipe(
    key: str | Recipe,
    setting: SynthAVSetting,
    train_clips: int = 2000,
    labeled_fraction: float = 0.1,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    max_epochs: int | None = None,
    workdir: str | Path | None = None,
) -> tuple[LocalizationMethod, float]:
    """Train a recipe on a setting's training split; returns the trained model (eval mode) and the seconds it took.

    Args:
        key: a method key of :data:`RECIPES` or a loaded :class:`Recipe`.
        setting: the SynthAV setting to train on.
        train_clips: clips in the training split; semi-supervised methods label ``labeled_fraction`` of them
            (:func:`avsl.data.split_labeled`) and see the rest as unlabeled.
        labeled_fraction: share of the training clips with ground truth, for recipes that need labels.
        seed: ``seed_everything`` before the model is built (initialization and batch order).
        overrides: ``init_args`` of the model (top level) to replace, e.g. ``{"lambda_unsup": 0.0}`` for ablations.
        max_epochs: train this many epochs (every stage, for USPL) instead of the recipe's (quick checks).
        workdir: where USPL's stage checkpoints go (a temporary folder by default).
    """
    recipe = load_recipe(key) if isinstance(key, str) else key
    if max_epochs is not None:
        recipe = replace(recipe, max_epochs=max_epochs, stage_epochs={s: max_epochs for s in recipe.stage_epochs})
    train = setting.dataset("train", train_clips, augment=recipe.augment)
    # The method takes the setting's signal, as `avsl fit` requires it to (LocalizationMethod checks the data).
    size = (train.image_size, train.image_size)  # SynthAV's samples (frames drawn at frame_size are resized to it)
    facts = {"sample_rate": train.sample_rate, "frame_size": size, "duration": train.duration}
    spec = copy.deepcopy(recipe.model)
    init_args = _with_signal(spec["class_path"], {**spec.get("init_args", {}), **(overrides or {})}, facts)
    pl.seed_everything(seed, verbose=False)
    model = build_method(spec["class_path"], init_args)
    if recipe.needs_labels:
        # The same clips split the same way, each role with its own augmentation.
        _, unlabeled = split_labeled(train, labeled_fraction, seed=seed)
        with_boxes = setting.dataset("train", train_clips, augment=recipe.labeled_augment)
        labeled, _ = split_labeled(with_boxes, labeled_fraction, seed=seed)
        data = AVDataModule(
            unlabeled, labeled, batch_size=recipe.batch_size, labeled_batch_size=recipe.labeled_batch_size
        )
    else:
        data = AVDataModule(train, batch_size=recipe.batch_size)
    start = time.time()
    if recipe.stage_epochs:
        model = _train_stages(recipe, model, data, workdir)
    else:
        _trainer(recipe, recipe.max_epochs).fit(model, datamodule=data)
    return model.eval(), time.time() - start


def _train_stages(
    recipe: Recipe, model: LocalizationMethod, data: AVDataModule, workdir: str | Path | None
) -> LocalizationMethod:
    """USPL: each stage of the header in order, handed over by checkpoint (:func:`avsl.methods.uspl.run_pipeline`)."""
    from avsl.methods import load_method
    from avsl.methods.uspl import USPL, Stage, run_pipeline

    if not isinstance(model, USPL):
        raise TypeError(f"stage schedules are for USPL, got {type(model).__name__}")
    stages: list[Stage] = list(recipe.stage_epochs)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(workdir) if workdir is not None else Path(tmp)
        checkpoints = run_pipeline(
            model, data, lambda stage: _trainer(recipe, recipe.stage_epochs[stage]), out, stages=stages
        )
        return load_method(checkpoints[stages[-1]])
