"""Callbacks: :class:`ResumeState` (avsl adds it to every ``avsl fit``, beside :class:`avsl.viz.HeatmapLogger`),
:class:`ChannelsLast` (opt in: ``--trainer.callbacks+=avsl.callbacks.ChannelsLast``) and :class:`AudioControls`
(``avsl test --controls``)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from avsl.data.datamodule import EpochSampler

__all__ = ["AudioControls", "ChannelsLast", "ResumeState"]


class ResumeState(pl.Callback):
    """Makes a run resumed from a checkpoint continue as if it had never stopped (single process).

    Checkpoints get the random-number states (Python, NumPy, torch, and CUDA where present) and how many batches of
    the current epoch were done; on resume, the states come back just before training continues, and the training
    loaders of an :class:`~avsl.data.AVDataModule` skip the batches already done (their order and augmentations are
    drawn from ``(seed, epoch, index)``, see :class:`~avsl.data.datamodule.EpochSampler`). A checkpoint written at
    any step, mid-epoch included, then gives the weights, banks and metrics of the uninterrupted run, bit for bit on
    the CPU. Under DDP, Lightning's DistributedSampler orders the data and interrupted epochs restart (see
    docs/reliability.md).
    """

    def __init__(self) -> None:
        self.epoch = 0
        self.batches_done = 0
        self._pending: dict[str, Any] | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Before any ModelCheckpoint (Lightning runs checkpoint callbacks last), so a checkpoint of this step counts it.
        self.epoch, self.batches_done = trainer.current_epoch, batch_idx + 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch, self.batches_done = trainer.current_epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        version, state, gauss = random.getstate()
        # The legacy global NumPy generator is the one user code (and seed_everything) seeds.
        kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
        return {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            # Plain values and tensors only: checkpoints are read with restricted unpickling.
            "python": [version, list(state), gauss],
            "numpy": [
                kind,
                torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                int(pos),
                int(has_gauss),
                float(cached),
            ],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the checkpoint is restored and the loaders are built, before the first batch is drawn (a run restarted
        # mid-epoch calls no on_train_epoch_start).
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        if trainer.current_epoch == state["epoch"] and state["batches_done"]:
            for loader in _loaders(trainer.train_dataloader):
                sampler = getattr(loader, "sampler", None)
                if isinstance(sampler, EpochSampler) and loader.batch_size:
                    # A shorter loader cycles (max_size_cycle) in the same order: it is this far into this pass.
                    passes, done = divmod(state["batches_done"], len(loader))
                    sampler.skip(done * loader.batch_size, passes)
        version, keys, gauss = state["python"]
        random.setstate((version, tuple(keys), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _loaders(iterables: Any) -> list[Any]:
    """The DataLoaders of ``trainer.train_dataloader`` (a loader, or a dict or list of them)."""
    if isinstance(iterables, dict):
        iterables = list(iterables.values())
    return [x for item in iterables for x in _loaders(item)] if isinstance(iterables, (list, tuple)) else [iterables]


class ChannelsLast(pl.Callback):
    """Puts the method's 4-D weights in the channels-last memory format before any loop runs.

    Convolutions then run in NHWC, which cuDNN's tensor-core kernels and oneDNN's bf16 kernels prefer (PyTorch's
    channels-last tutorial); a convolution takes the layout of its weight when the input is NCHW, so batches need no
    change. Measured in ``benchmarks/gpu_check.py`` and ``bench_step.py`` (CPU: 1.25x in float32, 2.7x with bf16).
    Weights keep their values: checkpoints load into a model with either layout.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)


class AudioControls(pl.Callback):
    """Does the map depend on the sound? Tests a method on the same frames with other sounds, beside its own.

    For every test batch the method also localizes with another clip's sound (clip ``i`` of the batch hears clip
    ``i + B // 2``; a batch of one hears the previous batch's first clip), with silence and with white noise at each
    clip's level (:func:`avsl.evaluate.control_audio`), and the centred Gaussian prior is scored on the same ground
    truth. Each is logged beside the method's own ``test/<metric>`` as ``test/<control>/<metric>`` (cIoU, AUC, mean
    cIoU, pointing, mIoU and F-score with masks, the extended protocol with negatives), under the method's protocol.
    ``avsl test --controls`` adds it.

    Args:
        controls: which of ``"other"``, ``"silence"``, ``"noise"``, ``"centre"`` to run.
        seed: seed of the noise (offset by the process rank).
    """

    def __init__(self, controls: Sequence[str] = ("other", "silence", "noise", "centre"), seed: int = 0) -> None:
        unknown = set(controls) - {"other", "silence", "noise", "centre"}
        if unknown:
            raise ValueError(f"unknown audio controls {sorted(unknown)}; expected other, silence, noise, centre")
        self.controls = tuple(controls)
        self.seed = seed
        self._metrics: dict[str, Any] = {}
        self._previous: Tensor | None = None
        self._generator = torch.Generator()

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from avsl.metrics import EvaluationMetrics

        protocol = str(getattr(pl_module, "eval_protocol", "ezvsl"))
        self._metrics = {c: EvaluationMetrics(protocol).to(pl_module.device) for c in self.controls}
        self._generator.manual_seed(self.seed + trainer.global_rank)
        self._previous = None

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        from avsl.evaluate import centre_gaussian, control_audio
        from avsl.methods.base import LocalizationMethod

        if not isinstance(pl_module, LocalizationMethod):
            raise TypeError("AudioControls tests avsl methods (LocalizationMethod subclasses)")
        image, audio = batch["image"], batch["audio"]
        for control, metrics in self._metrics.items():
            if control == "centre":
                h, w = image.shape[-2:]
                raw = centre_gaussian(h, w).to(image.device).expand(image.shape[0], h, w)
                metrics.update(raw, raw, batch)
                continue
            if control == "other" and audio.shape[0] == 1:
                if self._previous is None:
                    continue  # a first batch of one clip has no other sound to hear
                heard = self._previous[:1]
            else:
                heard = control_audio(audio, control, self._generator if control == "noise" else None)
            raw = pl_module.localize(image, heard, normalize=False)
            metrics.update(raw, pl_module.unit_scores(raw).clamp(0.0, 1.0), batch)
        self._previous = audio.detach()

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for control, metrics in self._metrics.items():
            for key, value in metrics.compute_and_reset().items():
                pl_module.log(f"test/{control}/{key}", value.float())
