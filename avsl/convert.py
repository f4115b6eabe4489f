"""Published checkpoints of the field's reference repositories, converted into avsl checkpoints.

Each repository saves its weights in its own layout: a dict entry (``model`` or ``model_state_dict``), ``module.``
prefixes from ``DataParallel``/DDP, its own module names, layers its network builds but never runs. A
:class:`Layout` says how one repository's names map onto an avsl method's, and which of its keys carry no weight
avsl uses. :func:`convert_checkpoint` reads a file with restricted unpickling, maps it, refuses it with the missing
and unexpected names when it does not fit, and writes a Lightning checkpoint of the avsl method built from the
method's reference config (``avsl/configs/methods/<key>.yaml``), which ``avsl test -c <key> -c vggss --ckpt_path``
and :func:`avsl.methods.load_method` read.

    avsl convert --from ezvsl ezvsl_vggss.pth --out ezvsl_vggss.ckpt
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning
import torch
from torch import Tensor

from avsl.lightning_cli import config_args
from avsl.methods import METHODS, LocalizationMethod, read_checkpoint

__all__ = ["LAYOUTS", "Conversion", "Layout", "convert_checkpoint", "convert_state_dict", "matching_layouts"]

# How many names an error lists before "... and N more".
_SHOWN = 8


@dataclass(frozen=True)
class Layout:
    """How one reference repository's checkpoints map onto an avsl method.

    Args:
        method: the avsl method key (:data:`avsl.methods.METHODS`); the model is built from its shipped config.
        source: the repository (and commit) whose save and load code the layout was read from.
        entries: where the state dict sits in the saved dict, tried in order (a bare state dict is also accepted).
        renames: ``(pattern, replacement)`` regular expressions on each name (after ``module.`` prefixes are
            stripped); the first pattern that matches renames the key.
        unused: patterns of reference names that hold no weight the reference's forward pass uses (layers built and
            never run); they are dropped and counted.
        extra_ok: the reference loads these files with ``strict=False``: names that match no pattern are reported and
            dropped instead of refused.
        init_args: arguments that differ from the method's shipped config when it scores these files as the
            reference's test scripts do.
    """

    method: str
    source: str
    entries: tuple[str, ...]
    renames: tuple[tuple[str, str], ...]
    unused: tuple[str, ...] = ()
    extra_ok: bool = False
    init_args: tuple[tuple[str, Any], ...] = ()


# EZ-VSL's network (stoneMo/EZ-VSL model.py): torchvision ResNet-18s without avgpool/fc (timm's resnet18 has the same
# names), a 1x1 conv and a linear projection. FNAC's model.FNAC has exactly these names (OpenNLPLab/FNAC_AVL model.py).
_EZVSL_RENAMES = (
    (r"^imgnet\.", "visual.backbone.model."),
    (r"^img_proj\.", "visual.proj."),
    (r"^audnet\.", "audio.backbone.model."),
    (r"^aud_proj\.", "audio.proj."),
)

# LVS's AVENet (hche11/Localizing-Visual-Sounds-the-Hard-Way models/base_models.py): one ResNet class for both
# modalities, with three first convolutions (conv1 for frames, conv1_a for spectrograms, conv1_flow) and an ImageNet
# classifier (fc), of which each network runs one conv and no fc; no projection.
_LVS_RENAMES = (
    (r"^audnet\.conv1_a\.", "audio.backbone.model.conv1."),
    (r"^imgnet\.", "visual.backbone.model."),
    (r"^audnet\.", "audio.backbone.model."),
)
_LVS_UNUSED = (r"^imgnet\.(conv1_a|conv1_flow|fc)\.", r"^audnet\.(conv1|conv1_flow|fc)\.")

# SLAVC (stoneMo/SLAVC model.py): EZ-VSL's networks with two projections per modality, and a momentum copy of each.
_SLAVC_RENAMES = tuple(
    (rf"^{prefix}{ref}\.", f"{target}.{avsl}.")
    for prefix, target in (("momentum_", "momentum_encoders"), ("", "encoders"))
    for ref, avsl in (
        ("imgnet", "visual.backbone.model"),
        ("img_proj1", "visual_heads.0"),
        ("img_proj2", "visual_heads.1"),
        ("audnet", "audio.backbone.model"),
        ("aud_proj1", "audio_heads.0"),
        ("aud_proj2", "audio_heads.1"),
    )
)

#: The published layouts by the name ``avsl convert --from`` takes.
LAYOUTS: dict[str, Layout] = {
    # train.py saves {'model': state_dict, 'optimizer', 'epoch', ...}; test.py strips 'module.'.
    "ezvsl": Layout("ezvsl", "stoneMo/EZ-VSL @95ff5bf", ("model",), _EZVSL_RENAMES),
    "fnac": Layout("fnac", "OpenNLPLab/FNAC_AVL @0a0ca78", ("model",), _EZVSL_RENAMES),
    # train.py saves {'model': ...} from DDP. The scripts that score the released models (scripts/test_extended_*.sh)
    # do not pass --use_mom_eval: test.py maps with the online encoders, and so does the converted method.
    "slavc": Layout(
        "slavc", "stoneMo/SLAVC @05b429c", ("model",), _SLAVC_RENAMES, init_args=(("use_momentum_eval", False),)
    ),
    # test.py loads checkpoint['model_state_dict'] saved from nn.DataParallel ('module.' prefixes) strictly.
    "lvs": Layout(
        "lvs", "hche11/Localizing-Visual-Sounds-the-Hard-Way @8fe8cbb", ("model_state_dict",), _LVS_RENAMES, _LVS_UNUSED
    ),
    # SSL-align's released models are LVS AVENets: test.py adds 'module.' to checkpoint['model_state_dict'] and loads
    # with strict=False, so keys the network lacks (training-only heads) are reported and dropped, not refused.
    "sslalign": Layout(
        "sslalign",
        "kaistmm/SSLalignment @e7ae3c5",
        ("model_state_dict",),
        _LVS_RENAMES,
        _LVS_UNUSED,
        extra_ok=True,
    ),
}


@dataclass
class Conversion:
    """What :func:`convert_state_dict` made of a reference state dict."""

    layout: str
    state_dict: dict[str, Tensor]
    dropped_unused: list[str] = field(default_factory=list)
    dropped_extra: list[str] = field(default_factory=list)


def _listing(names: list[str]) -> str:
    more = f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _state_dict_of(checkpoint: dict[str, Any], layout: Layout, where: str) -> dict[str, Tensor]:
    for entry in layout.entries:
        if isinstance(checkpoint.get(entry), dict):
            state: dict[str, Tensor] = checkpoint[entry]
            return state
    if checkpoint and all(isinstance(v, Tensor) for v in checkpoint.values()):
        return checkpoint  # a bare state dict
    keys = ", ".join(map(repr, list(checkpoint)[:_SHOWN]))
    wanted = " or ".join(repr(e) for e in layout.entries)
    raise ValueError(f"{where}: no state dict under {wanted} (a {layout.method} checkpoint's entry); it holds {keys}")


def _strip_module(name: str) -> str:
    while name.startswith("module."):  # DataParallel / DDP, possibly nested
        name = name[len("module.") :]
    return name


def convert_state_dict(state: dict[str, Tensor], layout: str | Layout, where: str = "the state dict") -> Conversion:
    """Rename a reference state dict onto the avsl method of ``layout`` (a :data:`LAYOUTS` key or a :class:`Layout`).

    Names outside the layout (not renamed, not known as unused) are refused unless the layout's reference loads with
    ``strict=False``. Whether every avsl weight is present is checked by :func:`convert_checkpoint` against the model.
    """
    if isinstance(layout, str) and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(LAYOUTS)}")
    spec = LAYOUTS[layout] if isinstance(layout, str) else layout
    name = layout if isinstance(layout, str) else spec.method
    out = Conversion(name, {})
    unexpected: list[str] = []
    for key, value in state.items():
        plain = _strip_module(key)
        if any(re.search(p, plain) for p in spec.unused):
            out.dropped_unused.append(key)
            continue
        for pattern, replacement in spec.renames:
            if re.search(pattern, plain):
                out.state_dict[re.sub(pattern, replacement, plain, count=1)] = value
                break
        else:
            unexpected.append(key)
    if unexpected and not spec.extra_ok:
        raise ValueError(
            f"{where} does not fit the {name} layout ({spec.source}): unexpected keys {_listing(unexpected)}"
            + _hint(state, name)
        )
    out.dropped_extra = unexpected
    return out


def _hint(state: dict[str, Tensor], tried: str) -> str:
    fits = [n for n in matching_layouts(state) if n != tried]
    return f". It fits the layout of {', '.join(fits)}: try --from {fits[0]}" if fits else ""


def _build(layout: Layout) -> LocalizationMethod:
    return METHODS[layout.method](**(config_args(f"methods/{layout.method}.yaml") | dict(layout.init_args)))


def _check_fit(model: LocalizationMethod, converted: dict[str, Tensor], where: str, layout: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    shapes = [
        f"{k} {tuple(converted[k].shape)} (avsl: {tuple(expected[k].shape)})"
        for k in expected
        if k in converted and converted[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys (avsl names) {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys (avsl names) {_listing(unexpected)}")
    if shapes:
        problems.append(f"shapes that differ {_listing(shapes)}")
    if problems:
        raise ValueError(f"{where} does not fit the {layout} layout: " + "; ".join(problems))


def matching_layouts(state: dict[str, Tensor]) -> list[str]:
    """The :data:`LAYOUTS` whose patterns (renamed or unused) cover every name of ``state`` (names only)."""
    plain = [_strip_module(k) for k in state]
    fits = []
    for name, spec in LAYOUTS.items():
        patterns = [p for p, _ in spec.renames] + list(spec.unused)
        if plain and all(any(re.search(p, k) for p in patterns) for k in plain):
            fits.append(name)
    return fits


def convert_checkpoint(
    source: str | Path, layout: str, out: str | Path | None = None, trust: bool = False
) -> tuple[LocalizationMethod, dict[str, Any]]:
    """Convert a published checkpoint of ``layout``'s repository into an avsl method, and write it to ``out``.

    The method is built from its shipped config (``avsl/configs/methods/<method>.yaml``: the reference's network and
    input geometry), the converted weights are loaded into it strictly, and ``out`` (if given) is a Lightning
    checkpoint that records the method, its signal and where the weights came from (``avsl_converted_from``: layout,
    repository, file name, SHA-256, dropped keys). Returns the model (eval mode) and that record.

    Raises:
        ValueError: unknown layout, an unreadable file, or weights that do not fit (the message lists the missing,
            unexpected or misshapen keys).
    """
    if layout not in LAYOUTS:  # before the file is read
        raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(LAYOUTS)}")
    path = Path(source)
    spec = LAYOUTS[layout]
    checkpoint = read_checkpoint(path, what=f"{layout} checkpoint", trust=trust)
    conversion = convert_state_dict(_state_dict_of(checkpoint, spec, str(path)), layout, str(path))
    model = _build(spec)
    _check_fit(model, conversion.state_dict, str(path), layout)
    model.load_state_dict(conversion.state_dict, strict=True)
    model.eval()
    record = {
        "layout": layout,
        "repository": spec.source,
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "tensors": len(conversion.state_dict),
        "dropped_unused": conversion.dropped_unused,
        "dropped_extra": conversion.dropped_extra,
    }
    if out is not None:
        # What Lightning's load_from_checkpoint and Trainer(ckpt_path=...) read, plus avsl's entries (method, signal).
        # "_class_path" as LightningCLI records it: `avsl test --ckpt_path` parses the hyperparameters as the model's
        # config, which a bare argument dict does not validate as (the model argument is a class_path + init_args).
        class_path = f"{type(model).__module__}.{type(model).__qualname__}"
        written: dict[str, Any] = {
            "state_dict": model.state_dict(),
            "hyper_parameters": {**model.hparams, "_class_path": class_path},
            "epoch": 0,
            "global_step": 0,
            "pytorch-lightning_version": lightning.__version__,
            "avsl_converted_from": record,
        }
        model.on_save_checkpoint(written)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        torch.save(written, out)
    return model, record
