"""The thin base class every avsl method subclasses, and how wrappers build the methods they wrap."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsl.metrics import PROTOCOLS, EvaluationMetrics
from avsl.nn.maps import minmax_normalize
from avsl.types import AVBatch, Signal, TrainBatch

__all__ = ["LocalizationMethod", "Signal", "build_method", "inner_methods", "method_class", "missing_signal"]

_INTERPOLATING = ("linear", "bilinear", "bicubic", "trilinear")


class LocalizationMethod(pl.LightningModule):
    """Base class of avsl methods: implement :meth:`forward` and :meth:`training_losses`.

    The base provides the one inference path (:meth:`localize`), validation and test metrics under a selectable
    evaluation protocol, ``predict_step``, loss logging and the optimizer over :meth:`param_groups` (LightningCLI's
    ``optimizer:`` section replaces it). A subclass declares its :class:`Signal` (sample rate, frame size, audio
    window, score range, upsampling) from its own arguments and passes it here.

    Args:
        signal: what the method takes and gives (see :class:`Signal`).
        eval_protocol: the cIoU protocol of validation and test (see :mod:`avsl.metrics`; ``"ezvsl"`` by default).
        lr: learning rate of the default parameter group.
        weight_decay: weight decay of the default parameter group.
    """

    #: The optimizer class over :meth:`param_groups` (a class attribute; a wrapper takes its inner methods').
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam

    def __init__(
        self, signal: Signal, eval_protocol: str = "ezvsl", lr: float = 1e-4, weight_decay: float = 0.0
    ) -> None:
        super().__init__()
        if eval_protocol not in PROTOCOLS:
            raise ValueError(f"unknown eval_protocol {eval_protocol!r}; expected one of {PROTOCOLS}")
        if not isinstance(signal, Signal):
            raise TypeError(f"signal must be an avsl.methods.Signal, got {type(signal).__name__}")
        self.signal = signal
        self.eval_protocol = eval_protocol
        self.lr = lr
        self.weight_decay = weight_decay
        # Validation and test metrics, built when first used (see _metrics): a method inside a wrapper never is.
        self.eval_metrics = nn.ModuleDict()
        self._checked_batch = False
        self._bar_loss: Tensor | None = None

    # ------------------------------------------------------------------------------------------------ contract
    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """Raw localization scores (B, h, w) at the model's own resolution, for frames (B, 3, H, W) in [0, 1] and
        waveforms (B, T)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(image, audio)")

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        """Named, already-weighted loss terms of one training batch; the base sums and logs them."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_losses(batch)")

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups, each with its own ``lr`` and ``weight_decay``.

        By default one group of every trainable parameter at ``lr`` / ``weight_decay``. Methods with several learning
        rates (SSPL) override it; wrappers (SemiPL, XPL) optimize the union of their inner methods' groups, so an
        inner method's own arguments rule its parameters.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": self.lr, "weight_decay": self.weight_decay}]

    # ------------------------------------------------------------------------------------------------ inference
    def upsample(self, raw: Tensor, size: tuple[int, int]) -> Tensor:
        """Resize raw (B, h, w) maps to ``size`` with the interpolation of the method's signal (keeps gradients)."""
        mode = self.signal.upsample_mode
        align = self.signal.align_corners if mode in _INTERPOLATING else None
        return F.interpolate(raw[:, None], size=size, mode=mode, align_corners=align)[:, 0]

    @torch.no_grad()
    def localize(self, image: Tensor, audio: Tensor, normalize: bool = True) -> Tensor:
        """Heatmaps (B, H, W) at the input resolution: in [0, 1] (per-sample min-max) or, with
        ``normalize=False``, the raw upsampled scores (fixed-range protocols such as ``slavc`` need those)."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
        if audio.dim() != 2 or audio.shape[0] != image.shape[0]:
            raise ValueError(f"audio must be (B, T) with B={image.shape[0]}, got {tuple(audio.shape)}")
        for name, values in (("image", image), ("audio", audio)):
            if not bool(torch.isfinite(values).all()):  # one NaN made a whole map NaN, returned as a map
                bad = sorted({int(i) for i in (~torch.isfinite(values)).flatten(1).any(1).nonzero()[:, 0]})
                raise ValueError(f"{name} of samples {bad} contains NaN or infinite values")
        maps = self.upsample(self(image, audio).float(), (image.shape[-2], image.shape[-1]))
        return minmax_normalize(maps) if normalize else maps

    def unit_scores(self, raw: Tensor) -> Tensor:
        """Raw scores mapped from the signal's ``score_range`` to [0, 1] (not clamped)."""
        lo, hi = self.signal.score_range
        return (raw - lo) / (hi - lo)

    # ------------------------------------------------------------------------------------------------ loops
    def setup(self, stage: str) -> None:
        # The data link: a datamodule that declares its audio rate (AVDataModule) must give the method's.
        # (getattr's default also covers an AVDataModule none of whose datasets declares a rate.)
        datamodule = getattr(self._trainer, "datamodule", None)
        rate = getattr(datamodule, "sample_rate", None)
        if rate is not None and int(rate) != self.signal.sample_rate:
            # A wrapper (SemiPL, XPL) takes the rate in its inner methods' arguments: name those.
            inner = inner_methods(type(self), dict(self.hparams)) or {"": ""}
            flags = " and ".join(f"--model.init_args.{f'{key}.' if key else ''}sample_rate" for key in inner)
            raise ValueError(
                f"the data is at {int(rate)} Hz but {type(self).__name__} takes {self.signal.sample_rate} Hz audio: "
                f"set the method's sample_rate to the data's ({flags})"
            )

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        if not self._checked_batch:
            self._check_geometry(batch["unlabeled"])
        losses = self.training_losses(batch)
        if not losses:
            raise RuntimeError(f"{type(self).__name__}.training_losses returned no loss term")
        total = torch.stack([v for v in losses.values()]).sum()
        batch_size = batch["unlabeled"]["image"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=batch_size)
        self.log("train/loss", total.detach(), batch_size=batch_size)
        # The progress bar's "loss" is a host copy refreshed every log_every_n_steps steps. Lightning turns each
        # progress-bar value into a Python number after every batch (its _ResultCollection.metrics), and for a value
        # on the GPU that makes the host wait for the step to finish: 11% of EZ-VSL's throughput on an H200
        # (benchmarks/gpu_check.py). Converting a host tensor waits for nothing.
        every = max(1, getattr(self._trainer, "log_every_n_steps", 1))  # 0 with Trainer(barebones=True)
        if self._bar_loss is None or self.global_step % every == 0:
            self._bar_loss = total.detach().float().cpu()
        self.log("loss", self._bar_loss, prog_bar=True, logger=False, batch_size=batch_size)
        return total

    def _check_geometry(self, batch: AVBatch) -> None:
        """The training frames and audio windows must be those the signal declares (checkpoints record it)."""
        size, samples = tuple(batch["image"].shape[-2:]), int(batch["audio"].shape[-1])
        if size != self.signal.frame_size or samples != self.signal.num_samples:
            s = self.signal
            raise ValueError(
                f"{type(self).__name__} declares {s.frame_size[0]}x{s.frame_size[1]} frames and {s.duration:g} s of "
                f"audio ({s.num_samples} samples at {s.sample_rate} Hz), but its training batches have "
                f"{size[0]}x{size[1]} frames and {samples} samples: set the method's frame_size and duration to the "
                "data's (a wrapper's, in its inner method's arguments)"
            )
        self._checked_batch = True

    def _metrics(self, stage: str) -> EvaluationMetrics:
        if stage not in self.eval_metrics:
            self.eval_metrics[stage] = EvaluationMetrics(self.eval_protocol).to(self.device)
        metrics: EvaluationMetrics = self.eval_metrics[stage]  # type: ignore[assignment]
        return metrics

    def _eval_step(self, batch: AVBatch, stage: str) -> None:
        if "gt_map" not in batch and "mask" not in batch:
            raise ValueError(f"{stage} batches need 'gt_map' or 'mask' to compute localization metrics")
        raw = self.localize(batch["image"], batch["audio"], normalize=False)
        # slavc and the extended protocol threshold a fixed-range score in [0, 1]; the others normalize the raw map.
        self._metrics(stage).update(raw, self.unit_scores(raw).clamp(0.0, 1.0), batch)

    def _log_eval(self, stage: str) -> None:
        if stage in self.eval_metrics:
            metrics: EvaluationMetrics = self.eval_metrics[stage]  # type: ignore[assignment]
            for key, value in metrics.compute_and_reset().items():
                self.log(f"{stage}/{key}", value.float(), prog_bar=stage == "val" and key == "ciou")

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
        groups = [g for g in self.param_groups() if g["params"]]
        return self.optimizer(groups)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets `avsl localize --ckpt` and `avsl.methods.load_method` rebuild the right class and prepare its inputs.
        checkpoint["avsl_method"] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint["avsl_signal"] = self.signal.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("avsl_signal")
        if saved is None:
            raise missing_signal("the checkpoint")
        if Signal.from_dict(saved) != self.signal:
            raise ValueError(
                f"the checkpoint was trained with {Signal.from_dict(saved)}, but the method built from its arguments "
                f"declares {self.signal}"
            )


# ---------------------------------------------------------------------------------------------------- wrappers
def method_class(name: str) -> type[LocalizationMethod]:
    """The method class a wrapper's ``base``-style argument names: a key of :data:`avsl.methods.METHODS`
    (``"ezvsl"``) or the dotted import path of any :class:`LocalizationMethod` subclass (``"mypkg.MyMethod"``)."""
    from avsl.methods import METHODS  # here: avsl.methods imports this module

    if name in METHODS:
        return METHODS[name]
    module_name, _, class_name = name.rpartition(".")
    if not module_name:
        raise ValueError(f"unknown method {name!r}: give one of {sorted(METHODS)} or a dotted path 'pkg.module.Class'")
    try:
        cls = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError as err:
        raise ValueError(f"cannot import {name!r}: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, LocalizationMethod)):
        raise ValueError(f"{name} is not a LocalizationMethod")
    return cls


def inner_methods(cls: type[LocalizationMethod], args: Mapping[str, Any]) -> dict[str, str]:
    """The methods a wrapper class builds, as ``{argument dict: method name}``: every ``X_args`` argument beside an
    argument ``X`` that names a method (from ``args``, else ``X``'s default), e.g. ``{"base_args": "sspl"}`` for
    SemiPL, ``{"model_a_args": "ezvsl"}`` for XPL with its default second peer. Empty for a plain method."""
    params = inspect.signature(cls).parameters
    out: dict[str, str] = {}
    for key in params:
        inner = key.removesuffix("_args")
        name = args.get(inner, params[inner].default) if key != inner and inner in params else None
        if isinstance(name, str):
            out[key] = name
    return out


def missing_signal(where: str) -> ValueError:
    """The error for a checkpoint without ``avsl_signal``, which says how to use its weights anyway."""
    return ValueError(
        f"{where} records no signal (sample rate, frame size, audio window): it was written by an earlier "
        "development version of avsl, or not by avsl. Build the method with the arguments it was trained with "
        "(sample_rate, frame_size, duration) and load the weights: "
        "model.load_state_dict(avsl.methods.read_checkpoint(path)['state_dict'])"
    )


def build_method(name: str, args: Mapping[str, Any] | None = None) -> LocalizationMethod:
    """The method ``name`` (see :func:`method_class`) built with ``args``: how wrappers build their inner methods.

    The method's ``hparams`` are set to the arguments it was built with (defaults included), the same whether the
    wrapper is built from Python or by LightningCLI: while LightningCLI builds a model it hands the model's config to
    every ``save_hyperparameters()`` call made meanwhile (Lightning issues #13181, #20432), which would give an inner
    method its wrapper's config. A wrapper's checkpoint does not depend on this: it records ``name`` and ``args``.
    """
    cls = method_class(name)
    args = dict(args or {})
    try:
        bound = inspect.signature(cls).bind(**args)
    except TypeError as err:
        raise ValueError(f"bad arguments for {cls.__name__}: {err}") from None
    method = cls(**args)
    bound.apply_defaults()
    method.hparams.clear()  # save_hyperparameters adds to what is there
    method.save_hyperparameters(dict(bound.arguments))
    return method
