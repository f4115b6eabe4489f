"""The thin base class every avsl method subclasses."""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from avsl.losses import minmax_normalize
from avsl.metrics import PROTOCOLS, AVSBenchFScore, AVSBenchMIoU, CIoU, Pointing
from avsl.types import AVBatch, TrainBatch

__all__ = ["LocalizationMethod", "adopt_cli_init_args", "build_method", "import_method", "read_checkpoint"]


class LocalizationMethod(pl.LightningModule):
    """Base class of avsl methods: implement :meth:`forward` and :meth:`training_losses`.

    The base provides the one inference path (:meth:`localize`), validation and test metrics under a selectable
    evaluation protocol, ``predict_step``, loss logging and a default Adam optimizer (LightningCLI's ``optimizer:``
    section replaces it). Subclasses declare how their raw maps are upsampled (``upsample_mode``,
    ``align_corners``) and the range of their raw scores (``score_range``, used by fixed-threshold protocols).

    Args:
        eval_protocol: the cIoU protocol of validation and test (see :mod:`avsl.metrics`; ``"ezvsl"`` by default).
        lr: learning rate of the default optimizer.
        weight_decay: weight decay of the default optimizer.
    """

    upsample_mode: ClassVar[str] = "bilinear"
    align_corners: ClassVar[bool | None] = False
    score_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    def __init__(self, eval_protocol: str = "ezvsl", lr: float = 1e-4, weight_decay: float = 0.0) -> None:
        super().__init__()
        if eval_protocol not in PROTOCOLS:
            raise ValueError(f"unknown eval_protocol {eval_protocol!r}; expected one of {PROTOCOLS}")
        self.eval_protocol = eval_protocol
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_ciou = CIoU(protocol=eval_protocol)
        self.test_ciou = CIoU(protocol=eval_protocol)
        self.val_pointing, self.test_pointing = Pointing(), Pointing()
        # Segmentation metrics are updated only for batches that carry pixel masks (AVSBench, SynthAV).
        self.val_miou, self.test_miou = AVSBenchMIoU(reduction="dataset"), AVSBenchMIoU(reduction="dataset")
        self.val_fscore, self.test_fscore = AVSBenchFScore(reduction="dataset"), AVSBenchFScore(reduction="dataset")
        # Frame size and audio length seen in training, saved in checkpoints so that `avsl localize` can prepare
        # new inputs the same way.
        self.input_geometry: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------------ contract
    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """Raw localization scores (B, h, w) at the model's own resolution, for frames (B, 3, H, W) in [0, 1] and
        waveforms (B, T)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(image, audio)")

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        """Named, already-weighted loss terms of one training batch; the base sums and logs them."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_losses(batch)")

    # ------------------------------------------------------------------------------------------------ inference
    def upsample(self, raw: Tensor, size: tuple[int, int]) -> Tensor:
        """Resize raw (B, h, w) maps to ``size`` with the method's declared interpolation (keeps gradients)."""
        align = self.align_corners if self.upsample_mode in ("linear", "bilinear", "bicubic", "trilinear") else None
        return F.interpolate(raw[:, None], size=size, mode=self.upsample_mode, align_corners=align)[:, 0]

    @torch.no_grad()
    def localize(self, image: Tensor, audio: Tensor, normalize: bool = True) -> Tensor:
        """Heatmaps (B, H, W) at the input resolution: in [0, 1] (per-sample min-max) or, with
        ``normalize=False``, the raw upsampled scores (fixed-range protocols such as ``slavc`` need those)."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
        if audio.dim() != 2 or audio.shape[0] != image.shape[0]:
            raise ValueError(f"audio must be (B, T) with B={image.shape[0]}, got {tuple(audio.shape)}")
        maps = self.upsample(self(image, audio).float(), (image.shape[-2], image.shape[-1]))
        return minmax_normalize(maps) if normalize else maps

    def _metric_input(self, raw: Tensor) -> Tensor:
        if self.eval_protocol == "slavc":  # a fixed-range score in [0, 1], thresholded at 0.5 by the protocol
            lo, hi = self.score_range
            return ((raw - lo) / (hi - lo)).clamp(0.0, 1.0)
        return raw

    # ------------------------------------------------------------------------------------------------ loops
    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        if not self.input_geometry:
            image, audio = batch["unlabeled"]["image"], batch["unlabeled"]["audio"]
            self.input_geometry = {"height": image.shape[-2], "width": image.shape[-1], "num_samples": audio.shape[-1]}
        losses = self.training_losses(batch)
        if not losses:
            raise RuntimeError(f"{type(self).__name__}.training_losses returned no loss term")
        total = torch.stack([v for v in losses.values()]).sum()
        batch_size = batch["unlabeled"]["image"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=batch_size)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=batch_size)
        return total

    def _eval_step(self, batch: AVBatch, stage: str) -> None:
        if "gt_map" not in batch and "mask" not in batch:
            raise ValueError(f"{stage} batches need 'gt_map' or 'mask' to compute localization metrics")
        raw = self.localize(batch["image"], batch["audio"], normalize=False)
        if "gt_map" in batch:
            getattr(self, f"{stage}_ciou").update(self._metric_input(raw), batch["gt_map"], batch["sample_id"])
            # The raw maps: _metric_input may clamp (slavc), which can merge the peak with other pixels.
            getattr(self, f"{stage}_pointing").update(raw, batch["gt_map"], batch["sample_id"])
        if "mask" in batch:
            # AVSBench metrics take logits; the logit of the normalized map thresholds at 0.5 like sigmoid > 0.5.
            logits = torch.logit(minmax_normalize(raw).clamp(1e-6, 1 - 1e-6))
            for name in ("miou", "fscore"):
                getattr(self, f"{stage}_{name}").update(logits, batch["mask"], batch["sample_id"])

    def _log_eval(self, stage: str) -> None:
        ciou = getattr(self, f"{stage}_ciou")
        if ciou.update_count:
            result = ciou.compute()
            for key, value in result.items():
                self.log(f"{stage}/{key}", value.float(), prog_bar=stage == "val" and key == "ciou")
            ciou.reset()
        pointing = getattr(self, f"{stage}_pointing")
        if pointing.update_count:
            self.log(f"{stage}/pointing", pointing.compute()["pointing"].float())
            pointing.reset()
        for name in ("miou", "fscore"):
            metric = getattr(self, f"{stage}_{name}")
            if metric.update_count:
                self.log(f"{stage}/{name}", metric.compute().float())
                metric.reset()

    def validation_step(self, batch: AVBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def test_step(self, batch: AVBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def predict_step(self, batch: AVBatch, batch_idx: int) -> dict[str, Any]:
        return {"sample_id": batch["sample_id"], "heatmap": self.localize(batch["image"], batch["audio"])}

    # ------------------------------------------------------------------------------------------------ optim / io
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets `avsl localize --ckpt` and `avsl.methods.load_method` rebuild the right class from a checkpoint.
        checkpoint["avsl_method"] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint["avsl_input_geometry"] = dict(self.input_geometry)
        # Wrapper methods (SemiPL, XPL) take other methods as constructor arguments and keep them as child modules
        # of the same name; their class and hyperparameters are recorded so load_method can rebuild them.
        checkpoint["avsl_components"] = {
            name: {"class_path": f"{type(m).__module__}.{type(m).__qualname__}", "init_args": dict(m.hparams)}
            for name, m in self.named_children()
            if isinstance(m, LocalizationMethod)
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.input_geometry = dict(checkpoint.get("avsl_input_geometry", {}))


# ---------------------------------------------------------------------------------------------------- wrappers
# Methods that take other methods as arguments (SemiPL's base, XPL's peers) share these three helpers.


def import_method(target: str) -> type[LocalizationMethod]:
    """The :class:`LocalizationMethod` subclass at the dotted import path ``target`` (``"pkg.module.Class"``)."""
    module_name, _, class_name = target.rpartition(".")
    if not module_name:
        raise ValueError(f"{target!r} is not a dotted import path ('pkg.module.Class')")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, LocalizationMethod)):
        raise ValueError(f"{target} is not a LocalizationMethod")
    return cls


def build_method(spec: Mapping[str, Any]) -> LocalizationMethod:
    """A method from its YAML form, ``{"class_path": "pkg.Class", "init_args": {...}}``."""
    target = spec.get("class_path")
    if not isinstance(target, str) or "." not in target:
        raise ValueError(f"a method given as a mapping needs a dotted 'class_path', got keys {sorted(spec)}")
    return import_method(target)(**dict(spec.get("init_args") or {}))


def adopt_cli_init_args(wrapper: LocalizationMethod, children: Mapping[str, LocalizationMethod | None]) -> None:
    """Give the inner methods of a wrapper built by LightningCLI their own arguments back as hyperparameters.

    While LightningCLI instantiates a wrapper, a context variable hands the wrapper's parsed config to every
    ``save_hyperparameters()`` call (``lightning.pytorch.cli._InstantiatorFn``), so the inner methods it builds from
    YAML record the *wrapper's* config. The wrapper's own hyperparameters then hold each inner method as its
    ``{class_path, init_args}`` mapping (when the wrapper saved them, see SemiPL and XPL); this takes each child's
    ``init_args`` from there. Outside LightningCLI the wrapper ignores its children in ``save_hyperparameters`` and
    this does nothing.
    """
    for name, child in children.items():
        spec = wrapper.hparams.get(name)
        if child is not None and isinstance(spec, Mapping):
            child.hparams.clear()
            child.hparams.update(dict(spec.get("init_args") or {}))


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """The contents of a checkpoint file (a Lightning checkpoint or a bare state dict), on the CPU.

    Unpickling is restricted to tensors, numbers, strings and containers (``torch.load(weights_only=True)``, what
    Lightning's ``load_from_checkpoint`` uses too): a checkpoint from elsewhere cannot run code when it is read.
    Lightning and avsl checkpoints hold nothing else (hyperparameters are plain values).

    Raises:
        FileNotFoundError: no file at ``path`` (``what`` names its role, e.g. ``"init_from checkpoint"``).
        ValueError: the file is not a readable checkpoint or holds objects other than those, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{path} is not a {what} avsl can read (a torch checkpoint of tensors, numbers, strings and containers): "
            f"{str(err).splitlines()[0]}"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a {what} (a dict)")
    return checkpoint
