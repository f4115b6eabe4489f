"""AVSL methods: LightningModules that share :class:`LocalizationMethod`.

A method is registered by importing its class here, one line each; :data:`METHODS` maps each module's name to the
class it defines (``"ezvsl"`` -> :class:`EZVSL`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from avsl.methods.base import LocalizationMethod, Signal, build_method, method_class, read_checkpoint

# The shipped methods: one line per method (the other three files of a method are its config in
# avsl/configs/methods/, its docs page in docs/methods/ and its module; tests/test_methods_contract.py checks them).
from avsl.methods.ezvsl import EZVSL as EZVSL
from avsl.methods.semipl import SemiPL as SemiPL
from avsl.methods.sspl import SSPL as SSPL
from avsl.methods.uspl import USPL as USPL
from avsl.methods.xpl import XPL as XPL

#: The shipped methods by key (the name of the module that defines each; the key of its config and docs page).
METHODS: dict[str, type[LocalizationMethod]] = {
    value.__module__.rpartition(".")[2]: value
    for value in list(globals().values())
    if isinstance(value, type) and issubclass(value, LocalizationMethod) and value.__module__ != "avsl.methods.base"
}

__all__ = ["METHODS", "LocalizationMethod", "Signal", "build_method", "load_method", "method_class", "read_checkpoint"]
__all__ += [cls.__name__ for cls in METHODS.values()]


def load_method(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> LocalizationMethod:
    """Load any avsl method (or a user's subclass, wrappers included) from a Lightning checkpoint, in eval mode.

    Checkpoints written by avsl record the method's import path (``avsl_method``) and its :class:`Signal`; the class
    is imported and restored with Lightning's own ``load_from_checkpoint``, which rebuilds it from its saved
    hyperparameters (a wrapper's inner methods are among them, as data).
    """
    path = Path(checkpoint_path)
    checkpoint = read_checkpoint(path)
    target = checkpoint.get("avsl_method")
    if not isinstance(target, str):
        raise ValueError(f"{path} was not written by an avsl method (no 'avsl_method' entry)")
    if "avsl_signal" not in checkpoint:
        raise ValueError(
            f"{path} records no signal (sample rate, frame size, audio window): it was written by an earlier "
            "development version of avsl. Build the method with the arguments it was trained with (sample_rate, "
            "frame_size, duration) and load the weights: model.load_state_dict(read_checkpoint(path)['state_dict'])"
        )
    try:
        cls = method_class(target)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    model = cls.load_from_checkpoint(path, map_location=map_location)
    model.eval()
    return model
