"""The LightningDataModule that mixes labeled and unlabeled batches."""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader, rank_zero_info
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from avsl.data.io import SkipLog, SkippedSample, summarize_skips
from avsl.types import AVSample

__all__ = ["AVDataModule", "EpochSampler", "SeededSamples", "split_labeled"]


def split_labeled(
    dataset: Dataset[AVSample], fraction: float, seed: int = 0
) -> tuple[Subset[AVSample], Subset[AVSample]]:
    """Split one annotated dataset into a labeled ``fraction`` and an unlabeled rest, without overlap.

    The split is a seeded permutation of the indices, so it is the same on every process and every run. At least one
    sample goes to each side when ``0 < fraction < 1``.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    k = round(n * fraction)
    if 0.0 < fraction < 1.0 and n >= 2:
        k = min(max(k, 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, sorted(perm[:k])), Subset(dataset, sorted(perm[k:]))


#: Draw ids of a pass after an epoch's first: ``epoch + pass * _PASS_STRIDE`` (never another epoch's first pass).
_PASS_STRIDE = 2**24


class EpochSampler(Sampler[int]):
    """The training order of one epoch, drawn from ``(seed, epoch)`` alone; each index is yielded as the key
    ``draw * n + index``, which :class:`SeededSamples` turns back into the index and a seed for its augmentation.

    ``draw`` is the epoch on the epoch's first pass. A loader shorter than the others is iterated again within the
    epoch (Lightning's ``max_size_cycle``: a small labeled set): each further pass keeps the order but draws new
    augmentations (``draw = epoch + pass * 2**24``), or a 1 % labeled split would repeat one set of crops a hundred
    times an epoch.

    Lightning calls :meth:`set_epoch` at the start of every epoch. :meth:`skip` makes the next iteration start after
    its first ``count`` indices, in pass ``passes`` of the epoch: how a resumed run continues an interrupted epoch
    (``avsl.callbacks.ResumeState``).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.epoch = 0
        self._skip = 0
        self._pass = 0
        self._resume_pass = 0

    def set_epoch(self, epoch: int) -> None:
        # (After ResumeState.on_train_start, which sets where a resumed epoch continues, and before the first pass.)
        self.epoch = epoch
        self._pass, self._resume_pass = self._resume_pass, 0

    def skip(self, count: int, passes: int = 0) -> None:
        self._skip, self._resume_pass = count, passes

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(_mix(self.seed, self.epoch)))
        start, self._skip = self._skip, 0
        draw = self.epoch + self._pass * _PASS_STRIDE
        self._pass += 1
        return iter((draw * self.n + order[start:]).tolist())


class SeededSamples(Dataset[AVSample]):
    """A dataset whose random augmentation is drawn from ``(seed, draw, index)``: sample ``key`` (from
    :class:`EpochSampler`) is item ``key % n`` of ``dataset``, loaded with torch's generator seeded for it (and put
    back afterwards), so the draws do not depend on prefetching, workers or an interruption."""

    def __init__(self, dataset: Dataset[AVSample], seed: int) -> None:
        self.dataset, self.seed = dataset, seed
        self.n = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int) -> AVSample:
        draw, index = divmod(int(key), self.n)
        with torch.random.fork_rng(devices=[]):
            # The CPU generator alone (what augmentations draw from, and all that fork_rng restores): torch.manual_seed
            # would also queue a seed for each accelerator not initialised in this process, recording the Python
            # stack every time (cuda, xpu, mtia): 1.1 ms per sample under cProfile, beside 3.2 ms to decode and resize
            # a 640x360 frame.
            torch.default_generator.manual_seed(_mix(self.seed, draw, index))
            return self.dataset[index]


def _size(dataset: Dataset[AVSample]) -> int | None:
    """The number of samples, or None for a stream that does not know it."""
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return None


def _mix(*values: int) -> int:
    """A 62-bit seed from integers (a fixed polynomial hash: the same in every process and run)."""
    out = 0
    for v in values:
        out = (out * 1_000_003 + int(v) + 1) % 2**62
    return out


class AVDataModule(pl.LightningDataModule):
    """Data for AVSL training and evaluation, from dataset objects.

    Training batches are dicts ``{"unlabeled": batch, "labeled": batch}`` from a
    ``CombinedLoader(mode="max_size_cycle")``; the ``labeled`` key exists only when ``labeled`` is given, and the
    labeled loader cycles, so one epoch is one pass over the unlabeled data (when it is the larger set). The datamodule
    never inspects the model: a method that needs labels raises a clear error when they are missing.

    Args:
        unlabeled: the training set whose labels (if any) are not used for training.
        labeled: an optional annotated training set (``gt_map`` per sample) for semi-supervised methods.
        val: validation set (with ``gt_map`` to compute localization metrics).
        test: test set.
        predict: set for ``predict`` (defaults to ``test``).
        batch_size: unlabeled batch size.
        labeled_batch_size: labeled batch size (defaults to ``batch_size``).
        eval_batch_size: batch size of validation, test and predict (defaults to ``batch_size``).
        num_workers: DataLoader workers per loader.
        pin_memory: pin host memory (useful on GPU).
        drop_last: drop the last incomplete training batch (contrastive losses prefer full batches).
        seed: seed of the training order and of the random augmentations (per epoch and sample); None takes torch's
            initial seed (``seed_everything``'s, 0 from the CLI), so runs are reproducible and resume exactly.
    """

    def __init__(
        self,
        # Bare `Dataset` on purpose: jsonargparse (4.53) cannot parse nested class_path arguments of a dataset given
        # for a parametrized `Dataset[...]`, such as a SynthAV's `augment` inside this datamodule's YAML.
        unlabeled: Dataset | None = None,  # type: ignore[type-arg]
        labeled: Dataset | None = None,  # type: ignore[type-arg]
        val: Dataset | None = None,  # type: ignore[type-arg]
        test: Dataset | None = None,  # type: ignore[type-arg]
        predict: Dataset | None = None,  # type: ignore[type-arg]
        batch_size: int = 32,
        labeled_batch_size: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.unlabeled: Dataset[AVSample] | None = unlabeled
        self.labeled: Dataset[AVSample] | None = labeled
        self.val: Dataset[AVSample] | None = val
        self.test: Dataset[AVSample] | None = test
        self.predict: Dataset[AVSample] | None = predict
        self.batch_size = batch_size
        self.labeled_batch_size = labeled_batch_size or batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self._spool_dir: Path | None = None
        self.seed = int(torch.initial_seed() if seed is None else seed) % 2**62

    @property
    def datasets(self) -> dict[str, Dataset[AVSample]]:
        """The datasets that were given, by role."""
        roles = {"unlabeled": self.unlabeled, "labeled": self.labeled, "val": self.val, "test": self.test}
        roles["predict"] = self.predict
        return {k: v for k, v in roles.items() if v is not None}

    def _common(self, attribute: str) -> Any:
        values = {}
        for role, ds in self.datasets.items():
            base = ds.dataset if isinstance(ds, Subset) else ds
            if hasattr(base, attribute):
                values[role] = getattr(base, attribute)
        if not values:
            raise AttributeError(f"no dataset of this datamodule declares {attribute!r}")
        if len(set(values.values())) > 1:
            raise ValueError(f"the datasets disagree on {attribute}: {values}")
        return next(iter(values.values()))

    @property
    def sample_rate(self) -> int:
        """The audio sample rate shared by all datasets (a method checks it against its signal when training starts)."""
        return int(self._common("sample_rate"))

    def _readers(self) -> dict[int, tuple[list[str], Any]]:
        """The datasets behind the roles (a Subset's dataset; two roles may share one), by identity."""
        readers: dict[int, tuple[list[str], Any]] = {}
        for role, ds in self.datasets.items():
            base = ds.dataset if isinstance(ds, Subset) else ds
            readers.setdefault(id(base), ([], base))[0].append(role)
        return readers

    def setup(self, stage: str) -> None:
        # Samples that fail to decode while loading are skipped in DataLoader workers (on_error="skip"): each reader's
        # log gets a spool file that every process appends to, so that teardown can count them all.
        if self._spool_dir is None:
            self._spool_dir = Path(tempfile.mkdtemp(prefix="avsl-skips-"))
            atexit.register(shutil.rmtree, self._spool_dir, True)
        for key, (_, base) in self._readers().items():
            log = getattr(base, "skipped", None)
            if isinstance(log, SkipLog) and log.spool is None:
                log.spool = self._spool_dir / f"{key}.jsonl"

    def teardown(self, stage: str) -> None:
        """One line per dataset of the stage: what it skipped and why, over every worker and process."""
        roles = {"fit": ("unlabeled", "labeled", "val"), "validate": ("val",), "test": ("test",)}
        roles["predict"] = ("predict",) if self.predict is not None else ("test",)
        for _, (names, base) in self._readers().items():
            log = getattr(base, "skipped", None)
            if not isinstance(log, SkipLog) or not set(names) & set(roles.get(stage, ())):
                continue
            records = [(r.sample_id, r.kind, r.detail) for r in log.merged()]
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                gathered: list[Any] = [None] * torch.distributed.get_world_size()
                torch.distributed.all_gather_object(gathered, records)
                records = [r for part in gathered for r in part]
            unique = {(sid, kind): SkippedSample(sid, kind, detail) for sid, kind, detail in records}
            source = getattr(base, "_source", "")
            what = f"{type(base).__name__}({source})" if source else type(base).__name__
            rank_zero_info(f"[avsl] {'/'.join(names)} set, {what}: {summarize_skips(list(unique.values()))}")

    def _loader(self, dataset: Dataset[AVSample], batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader[Any]:
        streaming = sys.modules.get("avsl.data.streaming")  # imported only where litdata is installed
        if streaming is not None and isinstance(dataset, streaming.StreamingAVDataset):
            # litdata shards: the dataset splits itself across ranks and workers (and shuffles if it was built with
            # shuffle=True); its loader's position is saved in checkpoints by Lightning (a stateful loader).
            from litdata import StreamingDataLoader

            # Lightning warns about any IterableDataset with a __len__ that workers might read twice; litdata gives
            # every rank and worker its own chunks, so the warning does not apply.
            warnings.filterwarnings("ignore", "Your `IterableDataset` has `__len__` defined", UserWarning)
            loader: DataLoader[Any] = StreamingDataLoader(
                dataset.for_this_process(),
                batch_size=batch_size,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                drop_last=drop_last,
            )
            return loader
        distributed = self.trainer is not None and self.trainer.world_size > 1
        sampler: EpochSampler | None = None
        if shuffle and not distributed:
            # Training order and augmentation drawn from (seed, epoch, index) alone, never from the global generator:
            # a resumed run can then skip to where it stopped (avsl.callbacks.ResumeState). Under DDP, Lightning's
            # DistributedSampler shuffles instead.
            sampler = EpochSampler(len(dataset), self.seed)  # type: ignore[arg-type]
            dataset = SeededSamples(dataset, self.seed)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            # An own generator: creating an iterator draws a worker base seed, which must not move the global one.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> CombinedLoader:
        if self.unlabeled is None:
            raise ValueError("AVDataModule: no 'unlabeled' training set was given")
        # An epoch without a batch would "train" without a step and end as if all were well.
        size = _size(self.unlabeled)
        if size == 0 or (size is not None and self.drop_last and size < self.batch_size):
            raise ValueError(
                f"AVDataModule: the 'unlabeled' set has {size} samples ({type(self.unlabeled).__name__}), so no "
                "training batch: "
                + ("check its split and files" if size == 0 else f"lower batch_size ({self.batch_size}) or drop_last")
            )
        if self.labeled is not None and _size(self.labeled) == 0:
            raise ValueError(f"AVDataModule: the 'labeled' set is empty ({self.labeled!r}): check its split and files")
        loaders = {"unlabeled": self._loader(self.unlabeled, self.batch_size, True, self.drop_last)}
        if self.labeled is not None:
            # Labeled sets are small: never drop their last batch, or a tiny set could yield no batch at all.
            loaders["labeled"] = self._loader(self.labeled, self.labeled_batch_size, True, False)
        return CombinedLoader(loaders, mode="max_size_cycle")

    def _eval_loader(self, dataset: Dataset[AVSample] | None, role: str) -> DataLoader[Any]:
        if dataset is None:
            raise ValueError(f"AVDataModule: no '{role}' set was given")
        if _size(dataset) == 0:
            # An empty evaluation set would run, log no metric and exit as if all were well.
            raise ValueError(f"AVDataModule: the '{role}' set is empty ({dataset!r}): check its split and files")
        return self._loader(dataset, self.eval_batch_size, False, False)

    def val_dataloader(self) -> DataLoader[Any] | list[DataLoader[Any]]:
        # Without a validation set, Lightning skips validation when given no loaders.
        return [] if self.val is None else self._eval_loader(self.val, "val")

    def test_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader(self.test, "test")

    def predict_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader(self.predict if self.predict is not None else self.test, "predict")
