"""XPL: cross pseudo-labeling for semi-supervised audio-visual source localization (Guo et al., ICASSP 2024).

No code of the paper is public and its full text could not be read: what follows implements the mechanisms of the
paper's framework figure and abstract (two peer models, soft pseudo-labels with sharpening and PL-EMA, curriculum data
selection by the agreement of the two models' maps, cross supervision, an audio-visual contrastive loss, supervision
on labeled pairs), and chooses everything the paper leaves open. ``docs/methods/xpl.md`` lists which is which.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import torch
from torch import Tensor

from avsl.losses import heatmap_bce, heatmap_mass
from avsl.methods.base import LocalizationMethod, build_method
from avsl.nn.augment import color_jitter, crop_flip, crop_flip_params
from avsl.nn.banks import PseudoLabelBank, ema_update, hash_ids
from avsl.nn.maps import map_agreement, map_confidence, minmax_normalize, resize_like, sharpen, top_fraction_mask
from avsl.nn.schedules import selection_fraction, sigmoid_rampup
from avsl.types import AVBatch, TrainBatch

__all__ = ["XPL"]

_BANKS = ("bank_a", "bank_b", "reliability")


class XPL(LocalizationMethod):
    """Cross pseudo-labeling around two peer localization methods (EZ-VSL by default).

    Every training step, on the unlabeled batch:

    1. Both peers predict maps of the *un-augmented* frames (no gradient). Each map is min-max normalized to a
       probability map, sharpened (``sharpen_temperature``) and blended into the peer's per-sample bank with PL-EMA
       (``new = (1 - ema_momentum) * sharpened + ema_momentum * previous``). The agreement of the two probability
       maps (``agreement``) is stored per sample too.
    2. One strong augmentation (random crop, flip, brightness/contrast), drawn on the device with known parameters,
       is applied to the frames; the banked pseudo-labels are warped with the same crop and flip.
    3. Losses per peer k: the peer's own audio-visual contrastive loss on the augmented batch (``lambda_con``); the
       cross loss, BCE between k's map on the augmented frames and the *other* peer's warped pseudo-label
       (``lambda_cross``, after ``warmup_epochs``, with a sigmoid ramp-up over ``rampup_epochs``), averaged over the
       samples that curriculum data selection keeps: those whose agreement lies in the top fraction of all banked
       samples, a fraction that grows from ``select_start`` to 1 over ``select_ramp_epochs``; and, on the labeled
       batch (also strongly augmented, ground truth warped alike), BCE between the upsampled probability map and
       ``gt_map`` (``lambda_sup``).

    Banks are updated from the un-augmented view so that they live in one frame however the view is augmented: the
    dataset of the unlabeled set must therefore not augment (the XPL configs give it no ``augment``). Under DDP the
    bank updates of all processes are all-gathered every step, so every process holds the same banks.

    ``pseudo_labels="self"`` is the single-model ablation: only ``model_a`` is built and trained, on its own
    pseudo-labels, with data selection by its own confidence (mean ``|2q - 1|``).

    XPL is a composite method (``docs/concepts.md``): it builds its peers from their names and arguments. Its signal is
    the evaluated peer's with scores in [0, 1] (both peers must take the same sample rate, frames and audio window);
    its optimizer is the peers' optimizer class over the union of their :meth:`~LocalizationMethod.param_groups`, so
    each peer trains at its own ``lr`` and ``weight_decay``.

    Args:
        model_a: the first peer: any method whose ``forward`` gives maps and whose ``training_losses`` gives its
            unsupervised loss on ``{"unlabeled": batch}``, named by a key of ``avsl.methods.METHODS`` or a dotted
            class path.
        model_a_args: its constructor arguments (its defaults where absent).
        model_b: the second peer. None builds an independently initialized copy of ``model_a``: the same class and
            arguments, constructed again with torch's CPU generator seeded by ``peer_seed`` (pretrained weights are
            loaded again, freshly initialized parts differ).
        model_b_args: the second peer's arguments (only with ``model_b``).
        peer_seed: seed of ``model_b``'s initialization; None draws it from torch's global generator, so it follows
            ``seed_everything``.
        pseudo_labels: ``"cross"`` (XPL) or ``"self"`` (one model trained on its own pseudo-labels).
        sharpen_temperature: temperature T of the per-pixel sharpening (T < 1 sharpens).
        ema_momentum: PL-EMA weight beta of the previous pseudo-label, in [0, 1).
        agreement: how the two maps' agreement is measured: ``"iou"`` (binarized at 0.5) or ``"soft_iou"``.
        select_start: fraction of unlabeled samples selected in the first epoch of cross supervision.
        select_ramp_epochs: epochs over which the selected fraction grows linearly to 1.
        warmup_epochs: epochs without the cross loss (supervised and contrastive losses only); banks fill meanwhile.
        rampup_epochs: epochs of the sigmoid ramp-up of the cross-loss weight after the warm-up.
        lambda_sup: weight of the supervised loss (> 0 needs a labeled set).
        lambda_cross: weight of the cross (pseudo-label) loss.
        lambda_con: weight of the peers' own contrastive losses.
        map_loss: how a peer's map meets a target (its pseudo-label or ``gt_map``): ``"bce"``, the BCE of the
            min-max-normalized map, or ``"mass"``, ``-log`` of the share of the map's spatial softmax inside the target
            (:func:`avsl.losses.heatmap_mass`; every pixel, the maximum included, gets a gradient).
        map_temperature: softmax temperature of ``"mass"``, in units of the peer's score range mapped to [0, 1].
        strong_crop: smallest side of the random square crop, as a fraction of the frame side (1 disables).
        strong_flip: probability of a horizontal flip.
        strong_jitter: strength of the random brightness and contrast change (0 disables).
        eval_model: which map evaluation and inference use: ``"a"``, ``"b"`` or ``"mean"`` (the average of the two
            maps, each mapped to [0, 1] by its peer's ``score_range``).
        eval_protocol: see :class:`LocalizationMethod`.
    """

    def __init__(
        self,
        model_a: str = "ezvsl",
        model_a_args: dict[str, Any] | None = None,
        model_b: str | None = None,
        model_b_args: dict[str, Any] | None = None,
        peer_seed: int | None = None,
        pseudo_labels: Literal["cross", "self"] = "cross",
        sharpen_temperature: float = 0.5,
        ema_momentum: float = 0.9,
        agreement: Literal["iou", "soft_iou"] = "iou",
        select_start: float = 0.2,
        select_ramp_epochs: int = 10,
        warmup_epochs: int = 5,
        rampup_epochs: int = 5,
        lambda_sup: float = 1.0,
        lambda_cross: float = 1.0,
        lambda_con: float = 1.0,
        map_loss: Literal["bce", "mass"] = "bce",
        map_temperature: float = 0.05,
        strong_crop: float = 0.8,
        strong_flip: float = 0.5,
        strong_jitter: float = 0.2,
        eval_model: Literal["a", "b", "mean"] = "mean",
        eval_protocol: str = "ezvsl",
    ) -> None:
        if pseudo_labels not in ("cross", "self"):
            raise ValueError(f"pseudo_labels must be 'cross' or 'self', got {pseudo_labels!r}")
        if eval_model not in ("a", "b", "mean"):
            raise ValueError(f"eval_model must be 'a', 'b' or 'mean', got {eval_model!r}")
        if pseudo_labels == "self" and (model_b is not None or eval_model != "a"):
            raise ValueError("pseudo_labels='self' trains model_a alone: leave model_b unset and use eval_model='a'")
        if model_b is None and model_b_args is not None:
            raise ValueError("model_b_args needs model_b (without model_b, the second peer is a copy of model_a)")
        if sharpen_temperature <= 0:
            raise ValueError(f"sharpen_temperature must be positive, got {sharpen_temperature}")
        if not 0.0 <= ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {ema_momentum}")
        if agreement not in ("iou", "soft_iou"):
            raise ValueError(f"agreement must be 'iou' or 'soft_iou', got {agreement!r}")
        if not 0.0 <= select_start <= 1.0:
            raise ValueError(f"select_start must be in [0, 1], got {select_start}")
        if min(select_ramp_epochs, warmup_epochs, rampup_epochs) < 0:
            raise ValueError("select_ramp_epochs, warmup_epochs and rampup_epochs must be >= 0")
        if min(lambda_sup, lambda_cross, lambda_con) < 0:
            raise ValueError("loss weights must be >= 0")
        if not 0.0 < strong_crop <= 1.0 or not 0.0 <= strong_flip <= 1.0 or strong_jitter < 0:
            raise ValueError("strong_crop must be in (0, 1], strong_flip in [0, 1] and strong_jitter >= 0")
        peer_a = build_method(model_a, model_a_args)
        peer_b: LocalizationMethod | None = None
        if model_b is not None:
            peer_b = build_method(model_b, model_b_args)
        elif pseudo_labels == "cross":
            peer_b = _fresh_copy(model_a, model_a_args, peer_seed)
        evaluated = peer_b if eval_model == "b" and peer_b is not None else peer_a
        if peer_b is not None:
            _check_peers(peer_a, peer_b)
        # Maps in [0, 1]: each peer's raw scores are mapped from its own score range (see forward).
        super().__init__(replace(evaluated.signal, score_range=(0.0, 1.0)), eval_protocol=eval_protocol)
        self.save_hyperparameters()
        self.optimizer = peer_a.optimizer
        self.model_a = peer_a
        self.model_b = peer_b
        self.pseudo_labels = pseudo_labels
        self.sharpen_temperature = sharpen_temperature
        self.ema_momentum = ema_momentum
        self.agreement = agreement
        self.select_start = select_start
        self.select_ramp_epochs = select_ramp_epochs
        self.warmup_epochs = warmup_epochs
        self.rampup_epochs = rampup_epochs
        self.lambda_sup = lambda_sup
        self.lambda_cross = lambda_cross
        self.lambda_con = lambda_con
        if map_loss not in ("bce", "mass"):
            raise ValueError(f"map_loss must be 'bce' or 'mass', got {map_loss!r}")
        if map_temperature <= 0:
            raise ValueError(f"map_temperature must be positive, got {map_temperature}")
        self.map_loss, self.map_temperature = map_loss, map_temperature
        self.strong_crop = strong_crop
        self.strong_flip = strong_flip
        self.strong_jitter = strong_jitter
        self.eval_model = eval_model

        self.bank_a = PseudoLabelBank()
        self.bank_b = PseudoLabelBank()
        self.reliability = PseudoLabelBank()
        # The banks are kept equal on every process by an all-gather of each step's updates (see _sync_updates);
        # DDP's default broadcast of buffers from rank 0 before every forward would resend whole banks each step.
        self._ddp_params_and_buffers_to_ignore = [f"{bank}.{buf}" for bank in _BANKS for buf in ("keys", "values")]

    # ------------------------------------------------------------------------------------------------ inference
    def _peers(self) -> list[tuple[str, LocalizationMethod]]:
        peers = [("a", self.model_a)]
        if self.model_b is not None:
            peers.append(("b", self.model_b))
        return peers

    def param_groups(self) -> list[dict[str, Any]]:
        # Each peer's own groups, at its own learning rate and weight decay (XPL adds no parameters).
        return [group for _, peer in self._peers() for group in peer.param_groups()]

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """Maps (B, h, w) in [0, 1] of the peer(s) chosen by ``eval_model`` (each mapped by its ``score_range``)."""
        if self.eval_model == "a" or self.model_b is None:
            return self.model_a.unit_scores(self.model_a(image, audio))
        if self.eval_model == "b":
            return self.model_b.unit_scores(self.model_b(image, audio))
        a = self.model_a.unit_scores(self.model_a(image, audio))
        b = resize_like(self.model_b.unit_scores(self.model_b(image, audio)), a)
        return 0.5 * (a + b)

    # ------------------------------------------------------------------------------------------------ training
    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        if self.lambda_sup > 0 and "labeled" not in batch:
            raise ValueError(
                "XPL's supervised loss needs labeled data: give AVDataModule a 'labeled' set (e.g. "
                "`-c data/synthav_semi`, `-c data/flickr_semi`), or set lambda_sup=0 to train without labels"
            )
        data = batch["unlabeled"]
        image, audio = data["image"], data["audio"]
        keys = hash_ids(data["sample_id"])  # on the host: the banks look keys up there (no device sync)
        peers = self._peers()
        epoch = self.current_epoch

        with torch.no_grad():
            probs = {name: minmax_normalize(peer(image, audio).float()) for name, peer in peers}
            labels = {name: sharpen(p, self.sharpen_temperature) for name, p in probs.items()}
            if self.model_b is not None:
                score = map_agreement(probs["a"], resize_like(probs["b"], probs["a"]), self.agreement)
            else:
                score = map_confidence(labels["a"])
            self._update_banks(keys, labels, score)

        losses: dict[str, Tensor] = {}
        params = crop_flip_params(image.shape[0], self.strong_crop, self.strong_flip, image.device)
        strong = color_jitter(crop_flip(image, params), self.strong_jitter, saturation=False)
        cross_weight = 0.0
        if epoch >= self.warmup_epochs:
            cross_weight = self.lambda_cross * sigmoid_rampup(epoch - self.warmup_epochs + 1, self.rampup_epochs)
        selected = torch.ones(image.shape[0], dtype=torch.bool, device=image.device)
        if cross_weight > 0:
            fraction = selection_fraction(epoch - self.warmup_epochs, self.select_start, self.select_ramp_epochs)
            own_score, _ = self.reliability.read(keys)
            selected = top_fraction_mask(own_score, self.reliability.values, fraction)
            if self._trainer is not None:
                self.log("train/selected", selected.float().mean(), batch_size=image.shape[0])
        if self._trainer is not None:
            self.log("train/reliability", score.mean(), batch_size=image.shape[0])

        for name, peer in peers:
            if self.lambda_con > 0:
                strong_batch: AVBatch = {**data, "image": strong}
                for term, value in peer.training_losses({"unlabeled": strong_batch}).items():
                    losses[f"{name}_{term}"] = self.lambda_con * value
            if cross_weight > 0:
                source = self.bank_a if self.pseudo_labels == "self" or name == "b" else self.bank_b
                stored, _ = source.read(keys)
                target = crop_flip(stored[:, None], params)[:, 0]
                raw = peer(strong, audio).float()
                target = resize_like(target, raw)
                losses[f"{name}_cross"] = cross_weight * self._map_loss(peer, raw, target, selected.float())
            if self.lambda_sup > 0:
                losses[f"{name}_sup"] = self.lambda_sup * self._supervised(peer, batch["labeled"])
        return losses

    def _supervised(self, peer: LocalizationMethod, labeled: AVBatch) -> Tensor:
        if "gt_map" not in labeled:
            raise ValueError("XPL's labeled batches need 'gt_map' (give the labeled dataset its annotations)")
        image, gt = labeled["image"], labeled["gt_map"].float()
        params = crop_flip_params(image.shape[0], self.strong_crop, self.strong_flip, image.device)
        image = color_jitter(crop_flip(image, params), self.strong_jitter, saturation=False)
        gt = crop_flip(gt[:, None], params)[:, 0]
        raw = peer.upsample(peer(image, labeled["audio"]).float(), (gt.shape[-2], gt.shape[-1]))
        return self._map_loss(peer, raw, gt, (gt.flatten(1).amax(dim=1) > 0).float())

    def _map_loss(self, peer: LocalizationMethod, raw: Tensor, target: Tensor, weight: Tensor) -> Tensor:
        """``map_loss`` between a peer's raw maps and targets of the same size, averaged over the weighted samples."""
        if self.map_loss == "mass":
            return heatmap_mass(peer.unit_scores(raw), target, self.map_temperature, weight)
        return heatmap_bce(minmax_normalize(raw), target, weight=weight)

    def _update_banks(self, keys: Tensor, labels: dict[str, Tensor], score: Tensor) -> None:
        """PL-EMA update of every peer's bank and the stored reliability, with the updates of all processes."""
        names = sorted(labels)
        gathered = self._sync_updates(keys, score, *(labels[n] for n in names))
        all_keys, all_score, all_labels = gathered[0], gathered[1], gathered[2:]
        for name, new in zip(names, all_labels):
            bank = self.bank_a if name == "a" else self.bank_b
            if len(bank):
                previous, seen = bank.read(all_keys)
                new = ema_update(previous.to(new.dtype), new, self.ema_momentum, seen)
            bank.write(all_keys, new)
        self.reliability.write(all_keys, all_score)

    def _sync_updates(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """All-gather rows (B_r, ...) from every process in rank order (batch sizes may differ across processes).
        Host tensors (the keys) travel through the module's device and come back to the host."""
        world = self.trainer.world_size if self._trainer is not None else 1
        if world == 1:
            return tensors
        size = torch.tensor([tensors[0].shape[0]], device=self.device)
        sizes = [int(s) for s in torch.as_tensor(self.all_gather(size)).flatten().tolist()]
        longest = max(sizes)
        out = []
        for t in tensors:
            padded = torch.cat([t, t.new_zeros(longest - t.shape[0], *t.shape[1:])]).to(self.device)
            rows = torch.as_tensor(self.all_gather(padded))  # (world, longest, ...)
            out.append(torch.cat([rows[r, : sizes[r]] for r in range(world)]).to(t.device))
        return tuple(out)


def _check_peers(a: LocalizationMethod, b: LocalizationMethod) -> None:
    """Both peers see the same batches and share one optimizer: they must agree on their inputs and its class."""
    fa, fb = (replace(m.signal, score_range=(0.0, 1.0), upsample_mode="", align_corners=None) for m in (a, b))
    if fa != fb:
        raise ValueError(f"XPL's peers must take the same inputs; model_a: {a.signal}, model_b: {b.signal}")
    if a.optimizer is not b.optimizer:
        names = [getattr(m.optimizer, "__name__", m.optimizer) for m in (a, b)]
        raise ValueError(
            f"XPL trains both peers with one optimizer, but model_a uses {names[0]} and model_b {names[1]}"
        )


def _fresh_copy(name: str, args: dict[str, Any] | None, seed: int | None) -> LocalizationMethod:
    """Method ``name`` built again with ``args``, initialized from torch's CPU generator seeded by ``seed``."""
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return build_method(name, args)
