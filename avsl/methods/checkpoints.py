"""Reading, loading and exporting avsl models: restricted unpickling everywhere, and a pickle-free export.

:func:`load_method` takes a Lightning checkpoint written by avsl, or a folder written by :func:`export_method`
(``avsl export``): ``model.safetensors`` (the weights, with the method's class and signal as metadata) and
``config.yaml`` (the model section of a config: ``class_path`` and ``init_args``, usable with ``avsl fit -c``).
Neither form can run code when it is read, unless the user opts in with ``trust=True`` (``--trust-checkpoint``).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
import yaml

from avsl.methods.base import LocalizationMethod, method_class, missing_signal
from avsl.types import Signal

__all__ = ["export_method", "load_method", "read_checkpoint"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def read_checkpoint(path: str | Path, what: str = "checkpoint", trust: bool = False) -> dict[str, Any]:
    """The contents of a checkpoint file (a Lightning checkpoint or a bare state dict), on the CPU.

    Unpickling is restricted to tensors, numbers, strings and containers (``torch.load(weights_only=True)``): a
    checkpoint from elsewhere cannot run code when it is read. Lightning and avsl checkpoints hold nothing else
    (hyperparameters are plain values), so avsl allows no extra globals. ``trust=True`` unpickles everything: only for
    files you trust (``--trust-checkpoint`` on the command line).

    Raises:
        FileNotFoundError: no file at ``path`` (``what`` names its role, e.g. ``"init_from checkpoint"``).
        ValueError: the file is not a readable checkpoint or holds objects other than those, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{path} is not a {what} avsl can read safely (a torch checkpoint of tensors, numbers, strings and "
            f"containers): {_first_line(err)}. If you trust the file, pass --trust-checkpoint (Python: trust=True)"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a {what} (a dict)")
    return checkpoint


def load_method(
    checkpoint_path: str | Path, map_location: str | torch.device = "cpu", trust: bool = False
) -> LocalizationMethod:
    """Load any avsl method (or a user's subclass, wrappers included) in eval mode, from a Lightning checkpoint that
    avsl wrote or from a folder that :func:`export_method` wrote.

    Checkpoints record the method's import path (``avsl_method``) and its :class:`Signal`; the class is imported and
    restored with Lightning's own ``load_from_checkpoint``, which rebuilds it from its saved hyperparameters (a
    wrapper's inner methods are among them, as data). Files are read with restricted unpickling; ``trust=True`` lifts
    it for files you trust.
    """
    path = Path(checkpoint_path)
    if path.is_dir() or path.name in (WEIGHTS_FILE, CONFIG_FILE):
        return _load_export(path if path.is_dir() else path.parent, map_location)
    checkpoint = read_checkpoint(path, trust=trust)
    target = checkpoint.get("avsl_method")
    if not isinstance(target, str):
        raise ValueError(f"{path} was not written by an avsl method (no 'avsl_method' entry)")
    if "avsl_signal" not in checkpoint:  # found here to name the file; on_load_checkpoint cannot
        raise missing_signal(str(path))
    try:
        cls = method_class(target)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    # A checkpoint of `avsl fit` is rebuilt through LightningCLI's instantiator, which calls jsonargparse APIs that
    # jsonargparse 4.49+ reports as deprecated: noise for users, not theirs to fix (as in avsl.lightning_cli).
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    model = cls.load_from_checkpoint(path, map_location=map_location, weights_only=not trust)
    model.eval()
    return model


def _plain(value: Any) -> Any:
    """Hyperparameters as YAML-safe values (tuples as lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def export_method(checkpoint_path: str | Path, out: str | Path, trust: bool = False) -> Path:
    """Write a checkpoint's model as ``out/model.safetensors`` and ``out/config.yaml``; returns ``out``.

    The weights are the model's state dict (every buffer included, e.g. XPL's pseudo-label banks); the metadata of the
    safetensors file names the method's class and its :class:`Signal`; ``config.yaml`` holds ``model: {class_path,
    init_args}``. :func:`load_method` reads the folder back with no unpickling at all.
    """
    from safetensors.torch import save_file

    model = load_method(checkpoint_path, trust=trust)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    class_path = f"{type(model).__module__}.{type(model).__qualname__}"
    init_args = {k: v for k, v in model.hparams.items() if not str(k).startswith("_")}  # not LightningCLI's keys
    config = {"model": {"class_path": class_path, "init_args": _plain(init_args)}}
    (out / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    metadata = {"avsl_method": class_path, "avsl_signal": json.dumps(model.signal.to_dict())}
    save_file(state, str(out / WEIGHTS_FILE), metadata=metadata)
    return out


def _load_export(folder: Path, map_location: str | torch.device) -> LocalizationMethod:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    for needed in (weights, config_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found: an export folder holds {WEIGHTS_FILE} and {CONFIG_FILE}")
    try:
        with safe_open(str(weights), "pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights} is not a safetensors file avsl can read: {_first_line(err)}") from None
    try:
        config = yaml.safe_load(config_path.read_text())
        spec = config["model"]
        cls = method_class(str(spec["class_path"]))
        init_args = dict(spec.get("init_args") or {})
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{config_path} is not an avsl export config (model: class_path, init_args): {err}") from None
    model = cls(**init_args)
    model.load_state_dict(state)
    if "avsl_signal" in metadata and Signal.from_dict(json.loads(metadata["avsl_signal"])) != model.signal:
        raise ValueError(f"{weights} was trained with another signal than {config_path} declares")
    return model.to(map_location).eval()
