"""SemiPL: semi-supervised learning around a localization method (Li et al., ICMEW 2024, arXiv 2404.19615)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from avsl.losses import heatmap_bce, heatmap_mass, heatmap_mse, minmax_normalize
from avsl.methods.base import LocalizationMethod, adopt_cli_init_args, build_method
from avsl.types import AVBatch, TrainBatch

__all__ = ["SemiPL"]


def _concat(a: AVBatch, b: AVBatch) -> AVBatch:
    """One batch of the keys both batches carry (image, audio, sample_id and any shared maps)."""
    out: dict[str, Any] = {"sample_id": [*a["sample_id"], *b["sample_id"]]}
    for key in ("image", "audio", "gt_map", "mask", "num_sources"):
        if key in a and key in b:
            out[key] = torch.cat([a[key], b[key]])
    return out  # type: ignore[return-value]


class SemiPL(LocalizationMethod):
    """SemiPL: a supervised heatmap loss on labeled samples plus the base method's own unsupervised loss.

    The paper (SemiPL, Fig. "Semi-Loss") trains SSPL with PCM on Chaotic World with ``L = L_S + L_U``: a supervised
    loss from box-annotated frames and SSPL's negative-cosine consistency term. Here the base is any
    :class:`LocalizationMethod` that produces a map, given as an argument (YAML: nested ``class_path``/``init_args``):

    - ``L_S``: the base's raw map of each labeled frame, upsampled with the base's own interpolation to the size of
      ``gt_map``, min-max normalized per sample, against ``gt_map`` (which the dataset's augmentation transformed
      together with the frame): BCE (default) or MSE, averaged over the samples whose ``gt_map`` is not empty.
    - ``L_U``: ``base.training_losses`` on the unlabeled batch (SSPL: the SimSiam negative cosine; EZ-VSL: its MIL
      InfoNCE), optionally on the labeled samples as well (``unsup_on_labeled``).

    The loss equations, weights and batch mixing of the paper are not public: this is the reconstruction of
    methods.md §3.2 (see ``docs/methods/semipl.md``). Training needs a labeled set (``AVDataModule(labeled=...)``).

    Args:
        base: the wrapped method, kept as the child module ``base`` (its class and hyperparameters are saved in
            checkpoints). From Python, the ``{"class_path", "init_args"}`` mapping of YAML is accepted too.
        lambda_sup: weight of the supervised heatmap loss ``L_S``.
        lambda_unsup: weight of the base's unsupervised loss ``L_U`` (applied to each of its terms).
        sup_loss: ``"bce"`` (default) or ``"mse"`` between the min-max-normalized map and ``gt_map``, or ``"mass"``:
            ``-log`` of the share of the map's spatial softmax inside ``gt_map`` (:func:`avsl.losses.heatmap_mass`),
            which, unlike the other two, gives the map's maximum a gradient.
        sup_temperature: softmax temperature of ``"mass"``, in units of the base's score range mapped to [0, 1]
            (0.05 on a cosine map is ``softmax(cos / 0.1)``).
        unsup_on_labeled: also apply ``L_U`` to the labeled samples (they are valid unlabeled pairs as well); they are
            appended to the unlabeled batch when both have the same frame size and audio length.
        eval_protocol: cIoU protocol of validation and test (``"sspl"``: fixed threshold, as SemiPL's reference).
    """

    def __init__(
        self,
        base: LocalizationMethod,
        lambda_sup: float = 1.0,
        lambda_unsup: float = 1.0,
        sup_loss: Literal["bce", "mse", "mass"] = "bce",
        sup_temperature: float = 0.05,
        unsup_on_labeled: bool = False,
        eval_protocol: str = "sspl",
    ) -> None:
        if isinstance(base, Mapping):
            base = build_method(base)
        if not isinstance(base, LocalizationMethod):
            raise TypeError(f"base must be a LocalizationMethod, got {type(base).__name__}")
        if sup_loss not in ("bce", "mse", "mass"):
            raise ValueError(f"sup_loss must be 'bce', 'mse' or 'mass', got {sup_loss!r}")
        if sup_temperature <= 0:
            raise ValueError(f"sup_temperature must be positive, got {sup_temperature}")
        if lambda_sup < 0 or lambda_unsup < 0:
            raise ValueError(f"loss weights must be >= 0, got lambda_sup={lambda_sup}, lambda_unsup={lambda_unsup}")
        # The optimizer is the base's (SSPL: its parameter groups), so its lr and weight decay are this method's too.
        super().__init__(eval_protocol=eval_protocol, lr=base.lr, weight_decay=base.weight_decay)
        self.save_hyperparameters(ignore=["base"])
        # Built by LightningCLI, the hyperparameters are the parsed config (lightning.pytorch.cli._InstantiatorFn), in
        # which the base is a plain {class_path, init_args} mapping: keep it, so that load_from_checkpoint rebuilds the
        # base (`ignore` dropped it), and give the base its own arguments back from it.
        if "_instantiator" in self.hparams:
            self.save_hyperparameters()
        adopt_cli_init_args(self, {"base": base})
        self.base = base
        self.lambda_sup, self.lambda_unsup = lambda_sup, lambda_unsup
        self.sup_loss = sup_loss
        self.sup_temperature = sup_temperature
        self.unsup_on_labeled = unsup_on_labeled

    # ------------------------------------------------------------------------------------------------ inference
    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """The base's raw maps (B, h, w)."""
        out: Tensor = self.base(image, audio)
        return out

    def upsample(self, raw: Tensor, size: tuple[int, int]) -> Tensor:
        # The base's declared interpolation (SSPL: bilinear, align_corners=False; EZ-VSL: align_corners=True).
        return self.base.upsample(raw, size)

    def _metric_input(self, raw: Tensor) -> Tensor:
        if self.eval_protocol == "slavc":  # the base's score range maps its raw scores to [0, 1]
            lo, hi = self.base.score_range
            return ((raw - lo) / (hi - lo)).clamp(0.0, 1.0)
        return raw

    # ------------------------------------------------------------------------------------------------ training
    def supervised_loss(self, labeled: AVBatch) -> Tensor:
        """``L_S`` of a labeled batch: the upsampled base maps against ``gt_map`` (``sup_loss``)."""
        if "gt_map" not in labeled:
            raise ValueError("SemiPL's labeled batches need 'gt_map' (an annotated dataset as AVDataModule's labeled)")
        target = labeled["gt_map"]
        maps = self.base.upsample(self.base(labeled["image"], labeled["audio"]), (target.shape[-2], target.shape[-1]))
        # A sample whose ground truth is empty (a negative) cannot be matched by a normalized map: skip it.
        weight = (target.flatten(1).amax(dim=1) > 0).float()
        if self.sup_loss == "mass":
            lo, hi = self.base.score_range
            return heatmap_mass((maps.float() - lo) / (hi - lo), target, self.sup_temperature, weight)
        prob = minmax_normalize(maps.float())
        if self.sup_loss == "mse":
            return heatmap_mse(prob, target, weight)
        return heatmap_bce(prob, target, weight)

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        if "labeled" not in batch:
            raise ValueError(
                "SemiPL needs labeled batches, but the datamodule gave none: pass an annotated training set as "
                "AVDataModule(labeled=...) (in YAML: data.init_args.labeled; see avsl.data.split_labeled)"
            )
        labeled, unlabeled = batch["labeled"], batch["unlabeled"]
        losses = {"sup": self.lambda_sup * self.supervised_loss(labeled)}
        unsup_batch = unlabeled
        if self.unsup_on_labeled:
            same_geometry = (
                labeled["image"].shape[1:] == unlabeled["image"].shape[1:]
                and labeled["audio"].shape[1:] == unlabeled["audio"].shape[1:]
            )
            if not same_geometry:
                raise ValueError(
                    "unsup_on_labeled needs labeled and unlabeled batches of the same frame size and audio length, got "
                    f"{tuple(labeled['image'].shape[1:])}/{labeled['audio'].shape[-1]} and "
                    f"{tuple(unlabeled['image'].shape[1:])}/{unlabeled['audio'].shape[-1]}"
                )
            unsup_batch = _concat(unlabeled, labeled)
        for name, value in self.base.training_losses({"unlabeled": unsup_batch}).items():
            losses[f"unsup_{name}"] = self.lambda_unsup * value
        return losses

    def configure_optimizers(self) -> Any:
        # The base's optimizer over the base's parameters (SemiPL has none of its own): SSPL's parameter groups stay.
        return self.base.configure_optimizers()
