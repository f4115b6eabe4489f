"""Callbacks: :class:`ResumeState` (avsl adds it to every ``avsl fit``, beside :class:`avsl.viz.HeatmapLogger`) and
:class:`ChannelsLast` (opt in: ``--trainer.callbacks+=avsl.callbacks.ChannelsLast``)."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from avsl.data.datamodule import EpochSampler

__all__ = ["ChannelsLast", "ResumeState"]


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
                    # A shorter loader cycles (max_size_cycle) in the same order: it is this far into its pass.
                    sampler.skip((state["batches_done"] % len(loader)) * loader.batch_size)
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
