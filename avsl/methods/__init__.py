"""AVSL methods: LightningModules that share :class:`LocalizationMethod`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from avsl.methods.base import LocalizationMethod, import_method, read_checkpoint
from avsl.methods.ezvsl import EZVSL
from avsl.methods.semipl import SemiPL
from avsl.methods.sspl import SSPL
from avsl.methods.uspl import USPL
from avsl.methods.xpl import XPL

__all__ = ["EZVSL", "METHODS", "SSPL", "USPL", "XPL", "LocalizationMethod", "SemiPL", "load_method"]

# The literal list of shipped methods (explicit over magic). Adding a method touches this dict, the method's module,
# its config in avsl/configs/methods/ and its docs page; tests/test_methods_contract.py checks the four agree.
METHODS: dict[str, type[LocalizationMethod]] = {
    "ezvsl": EZVSL,
    "sspl": SSPL,
    "semipl": SemiPL,
    "xpl": XPL,
    "uspl": USPL,
}


def load_method(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> LocalizationMethod:
    """Load any avsl method (or a user's subclass) from a Lightning checkpoint, whatever its class.

    Checkpoints written by avsl record the method's import path; the class is imported and restored with
    ``load_from_checkpoint``.
    """
    path = Path(checkpoint_path)
    checkpoint = read_checkpoint(path)
    target = checkpoint.get("avsl_method")
    if not isinstance(target, str):
        raise ValueError(f"{path} was not written by an avsl method (no 'avsl_method' entry)")
    cls = _import_method(target, path)
    # Methods given to a wrapper (SemiPL's base, XPL's peers) are rebuilt from their recorded hyperparameters and
    # passed as the constructor arguments of the same name; the state dict then restores their weights.
    components: dict[str, Any] = {}
    if "_instantiator" not in checkpoint.get("hyper_parameters", {}):  # LightningCLI-built: Lightning rebuilds them
        for name, spec in checkpoint.get("avsl_components", {}).items():
            components[name] = _import_method(spec["class_path"], path)(**spec["init_args"])
    model = cls.load_from_checkpoint(path, map_location=map_location, **components)
    model.eval()
    return model


def _import_method(target: str, path: Path) -> type[LocalizationMethod]:
    try:
        return import_method(target)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
