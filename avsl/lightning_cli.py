"""avsl's LightningCLI (``avsl fit|validate|test|predict``) and the configs shipped in ``avsl/configs``.

:class:`AVSLCLI` is a plain :class:`lightning.pytorch.cli.LightningCLI` in subclass mode, so ``--model
avsl.methods.EZVSL`` and ``--model mypkg.MyMethod`` both work, with avsl's defaults: a checkpoint callback, the
heatmap logger and seed 0. ``-c NAME`` also accepts the name of a shipped config (``-c methods/ezvsl.yaml``,
``-c ezvsl``); :func:`shipped_configs` lists them.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from avsl.callbacks import ResumeState
from avsl.methods import LocalizationMethod
from avsl.viz import HeatmapLogger

__all__ = ["AVSLCLI", "config_args", "resolve_config", "shipped_configs"]


def _config_root() -> Path:
    return Path(str(resources.files("avsl") / "configs"))


def shipped_configs() -> list[str]:
    """Names of the YAML configs shipped in the package, relative to ``avsl/configs``."""
    root = _config_root()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


def resolve_config(value: str) -> str:
    """A path if it exists, else the shipped config it names (``ezvsl``, ``methods/ezvsl``, ``methods/ezvsl.yaml``)."""
    if Path(value).is_file() or value.startswith(("{", "[")):  # (a folder named like a shipped config is not one)
        return value
    root = _config_root()
    name = value if value.endswith((".yaml", ".yml")) else value + ".yaml"
    candidates = [root / name] + [root / sub / name for sub in ("methods", "data")]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return value  # let LightningCLI report the missing file


def config_args(config: str) -> dict[str, Any]:
    """``model.init_args`` of a method config: a shipped name (``"ezvsl"``, ``"methods/xpl_synthav.yaml"``) or a
    path."""
    spec = yaml.safe_load(Path(resolve_config(config)).read_text())
    return dict(spec["model"].get("init_args") or {})


def _resolve_config_args(args: Sequence[str]) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out):
        if arg in ("-c", "--config") and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + resolve_config(arg.split("=", 1)[1])
    return out


class AVSLCLI(LightningCLI):
    """LightningCLI with avsl's defaults: model and data in subclass mode, a checkpoint and a heatmap-logging
    callback, seed 0 unless ``--seed_everything`` says otherwise.

    Args:
        args: the command line after ``avsl`` (default: ``sys.argv[1:]``), e.g. ``["fit", "-c", "ezvsl", "-c",
            "synthav"]``; shipped config names are resolved.
        run: run the subcommand (False: only build the model, data and trainer, as ``LightningCLI(run=False)``).
    """

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        # LightningCLI 2.6 calls jsonargparse APIs deprecated in jsonargparse 4.49: noise for users, not theirs to fix.
        os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
        # The CPU recipes train in bf16-mixed; Lightning's model summary then says it counts sizes in 32 bits. Noise.
        warnings.filterwarnings("ignore", message="Precision bf16-mixed is not supported by the model summary")
        resolved = _resolve_config_args(sys.argv[1:] if args is None else args)
        # LightningCLI parses sys.argv (and Lightning's DDP launcher re-runs it in the other processes), so the resolved
        # arguments go there rather than into `args`; explicit `args` from Python leave sys.argv as it was afterwards.
        saved = sys.argv
        sys.argv = [saved[0], *resolved]
        try:
            super().__init__(
                LocalizationMethod,
                LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                run=run,
                trainer_defaults={"callbacks": [ModelCheckpoint(save_last=True), HeatmapLogger(), ResumeState()]},
                save_config_kwargs={"overwrite": True},
                seed_everything_default=0,  # reproducible by default; --seed_everything overrides
            )
        finally:
            if args is not None:
                sys.argv = saved

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, with avsl's ``ModelCheckpoint(save_last=True)`` unless checkpointing is off
        (``--trainer.enable_checkpointing false``) or one of the user's checkpoint callbacks would collide with it
        (the same state key: an unmonitored one)."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer = config.get("trainer") or {}
        given = trainer.get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        keys = {c.state_key for c in given if isinstance(c, ModelCheckpoint)}
        off = trainer.get("enable_checkpointing") is False
        self.trainer_defaults["callbacks"] = [
            c
            for c in self.trainer_defaults["callbacks"]
            if not (isinstance(c, ModelCheckpoint) and (off or c.state_key in keys))
        ]
        return super().instantiate_trainer(**kwargs)
