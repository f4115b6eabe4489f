"""SemiPL: semi-supervised learning around a localization method (Li et al., ICMEW 2024, arXiv 2404.19615)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from avsl.losses import heatmap_bce, heatmap_mass, heatmap_mse
from avsl.methods.base import LocalizationMethod, build_method
from avsl.nn.maps import minmax_normalize
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
    :class:`LocalizationMethod` that produces a map, named by ``base`` and built by SemiPL from ``base_args``:

    - ``L_S``: the base's raw map of each labeled frame, upsampled with the base's own interpolation to the size of
      ``gt_map``, min-max normalized per sample, against ``gt_map`` (which the dataset's augmentation transformed
      together with the frame): BCE (default) or MSE, averaged over the samples whose ``gt_map`` is not empty.
    - ``L_U``: ``base.training_losses`` on the unlabeled batch (SSPL: the SimSiam negative cosine; EZ-VSL: its MIL
      InfoNCE), optionally on the labeled samples as well (``unsup_on_labeled``).

    The loss equations, weights and batch mixing of the paper are not public: this is the reconstruction of
    methods.md §3.2 (see ``docs/methods/semipl.md``). Training needs a labeled set (``AVDataModule(labeled=...)``).

    SemiPL is a composite method (``docs/concepts.md``): its signal (sample rate, frame size, audio window, score range,
    upsampling) is the base's, and so is its optimizer: the base's :meth:`~LocalizationMethod.param_groups` with the
    base's learning rates (SemiPL adds no parameters).

    Args:
        base: the wrapped method: a key of ``avsl.methods.METHODS`` (``"sspl"``, ``"ezvsl"``) or the dotted path of a
            :class:`LocalizationMethod` subclass. It is built here and kept as the child module ``base``.
        base_args: the base's constructor arguments (its defaults where absent).
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
        base: str = "sspl",
        base_args: dict[str, Any] | None = None,
        lambda_sup: float = 1.0,
        lambda_unsup: float = 1.0,
        sup_loss: Literal["bce", "mse", "mass"] = "bce",
        sup_temperature: float = 0.05,
        unsup_on_labeled: bool = False,
        eval_protocol: str = "sspl",
    ) -> None:
        if sup_loss not in ("bce", "mse", "mass"):
            raise ValueError(f"sup_loss must be 'bce', 'mse' or 'mass', got {sup_loss!r}")
        if sup_temperature <= 0:
            raise ValueError(f"sup_temperature must be positive, got {sup_temperature}")
        if lambda_sup < 0 or lambda_unsup < 0:
            raise ValueError(f"loss weights must be >= 0, got lambda_sup={lambda_sup}, lambda_unsup={lambda_unsup}")
        inner = build_method(base, base_args)
        super().__init__(inner.signal, eval_protocol=eval_protocol)
        self.save_hyperparameters()
        self.optimizer = inner.optimizer
        self.base = inner
        self.lambda_sup, self.lambda_unsup = lambda_sup, lambda_unsup
        self.sup_loss = sup_loss
        self.sup_temperature = sup_temperature
        self.unsup_on_labeled = unsup_on_labeled

    # ------------------------------------------------------------------------------------------------ inference
    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """The base's raw maps (B, h, w)."""
        out: Tensor = self.base(image, audio)
        return out

    # ------------------------------------------------------------------------------------------------ training
    def supervised_loss(self, labeled: AVBatch) -> Tensor:
        """``L_S`` of a labeled batch: the upsampled base maps against ``gt_map`` (``sup_loss``)."""
        if "gt_map" not in labeled:
            raise ValueError("SemiPL's labeled batches need 'gt_map' (an annotated dataset as AVDataModule's labeled)")
        target = labeled["gt_map"]
        maps = self.upsample(self.base(labeled["image"], labeled["audio"]), (target.shape[-2], target.shape[-1]))
        # A sample whose ground truth is empty (a negative) cannot be matched by a normalized map: skip it.
        weight = (target.flatten(1).amax(dim=1) > 0).float()
        if self.sup_loss == "mass":
            return heatmap_mass(self.unit_scores(maps.float()), target, self.sup_temperature, weight)
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

    def param_groups(self) -> list[dict[str, Any]]:
        # SemiPL has no parameters of its own: the base's groups, with the base's learning rates (SSPL: two).
        return self.base.param_groups()
