"""AVSL methods: LightningModules that share :class:`LocalizationMethod`.

A method is registered by importing its class here, one line each; :data:`METHODS` maps each module's name to the
class it defines (``"ezvsl"`` -> :class:`EZVSL`).
"""

from __future__ import annotations

from avsl.methods.base import LocalizationMethod, Signal, build_method, method_class
from avsl.methods.checkpoints import export_method, load_method, read_checkpoint

# The shipped methods: one line per method (the other three files of a method are its config in
# avsl/configs/methods/, its docs page in docs/methods/ and its module; tests/test_methods_contract.py checks them).
from avsl.methods.ezvsl import EZVSL as EZVSL
from avsl.methods.fnac import FNAC as FNAC
from avsl.methods.lvs import LVS as LVS
from avsl.methods.semipl import SemiPL as SemiPL
from avsl.methods.slavc import SLAVC as SLAVC
from avsl.methods.sslalign import SSLAlign as SSLAlign
from avsl.methods.sspl import SSPL as SSPL
from avsl.methods.uspl import USPL as USPL
from avsl.methods.xpl import XPL as XPL

#: The shipped methods by key (the name of the module that defines each; the key of its config and docs page).
METHODS: dict[str, type[LocalizationMethod]] = {
    value.__module__.rpartition(".")[2]: value
    for value in list(globals().values())
    if isinstance(value, type) and issubclass(value, LocalizationMethod) and value.__module__ != "avsl.methods.base"
}

__all__ = [
    "METHODS",
    "LocalizationMethod",
    "Signal",
    "build_method",
    "export_method",
    "load_method",
    "method_class",
    "read_checkpoint",
]
__all__ += [cls.__name__ for cls in METHODS.values()]
