"""Streaming shards for training on many machines: a reader's samples as ``litdata`` optimized chunks.

:func:`write_shards` stores every sample of an avsl reader (:class:`~avsl.data.VGGSSDataset`,
:class:`~avsl.data.FlickrSoundNetDataset`, :class:`~avsl.data.AVSBenchDataset`, :class:`~avsl.data.FolderDataset`,
...) as the reader decodes it before augmentation: the frame at the reader's ``image_size``, the audio window, the
GT map and mask, the id. :class:`StreamingAVDataset` reads them back with ``litdata.StreamingDataset``, from a local
folder or object storage (``s3://``, ``gs://``), each rank and DataLoader worker reading its own part, and applies
the augmentation, so a sample is the folder reader's, value for value (frames decoded in 8 bits are stored in 8 bits,
16-bit audio at the target rate in 16 bits; anything else in float32). The decoding, the window and the GT are fixed
when the shards are written: re-shard to change ``image_size`` or ``duration``.

``litdata`` is an optional dependency: ``pip install 'avsl[stream]'``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from avsl.data.datasets.base import Augment, AVDataset
from avsl.data.io import DataError
from avsl.types import AVSample

try:
    import litdata
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("avsl's streaming shards need litdata: pip install 'avsl[stream]'") from None

__all__ = ["SHARDS_META", "StreamingAVDataset", "write_shards"]

SHARDS_META = "avsl_shards.json"  # beside litdata's index.json: the reader's signal and what was skipped


def _exact(values: Tensor, scale: float, dtype: np.dtype[Any]) -> np.ndarray:
    """``values`` as ``dtype`` integers of ``values * scale`` if that is lossless, else float32."""
    scaled = values.double().numpy() * scale
    info = np.iinfo(dtype)
    if np.array_equal(scaled, np.round(scaled)) and (
        not scaled.size or info.min <= scaled.min() <= scaled.max() <= info.max
    ):
        return scaled.astype(dtype)
    return values.numpy().astype(np.float32)


def _encode(sample: AVSample, signal: tuple[int, int, float]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "sample_id": str(sample["sample_id"]),
        "signal": np.array(signal, dtype=np.float64),  # (sample rate, image size, duration): a few bytes per sample
        "image": _exact(sample["image"], 255.0, np.dtype(np.uint8)),
        "audio": _exact(sample["audio"], 32768.0, np.dtype(np.int16)),
    }
    for key in ("gt_map", "mask"):
        if key in sample:
            item[key] = sample[key].numpy().astype(np.float16)  # {0, 0.5, 1} maps are exact in float16
    if "num_sources" in sample:
        item["num_sources"] = int(sample["num_sources"])
    return item


def _decode(item: dict[str, Any]) -> AVSample:
    image, audio = np.asarray(item["image"]), np.asarray(item["audio"])
    sample: dict[str, Any] = {
        "image": torch.from_numpy(image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.copy()),
        "audio": torch.from_numpy(audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio.copy()),
        "sample_id": item["sample_id"],
    }
    for key in ("gt_map", "mask"):
        if key in item:
            sample[key] = torch.from_numpy(np.asarray(item[key]).astype(np.float32))
    if "num_sources" in item:
        sample["num_sources"] = int(item["num_sources"])
    return sample  # type: ignore[return-value]


class _Encoder:
    """The function litdata's ``optimize`` maps over sample indices (picklable: it runs in worker processes).

    A generator, so that a sample that fails to decode yields nothing (litdata writes what a generator yields); the
    failure goes to a file of its worker process in ``skipped``, which :func:`write_shards` reads back. Each sample is
    decoded once, in the workers (before: once more in the parent process, one core, to find the bad ones)."""

    def __init__(self, dataset: AVDataset, skipped: Path) -> None:
        self.dataset, self.skipped = dataset, skipped
        self.parent = os.getpid()

    def __call__(self, index: int) -> Iterator[dict[str, Any]]:
        if os.getpid() != self.parent and torch.get_num_threads() != 1:
            # A process forked after its parent ran a parallel torch op inherits a dead OpenMP pool and hangs in its
            # first parallel op (resizing a 640x360 frame): one thread runs inline, as in DataLoader workers.
            torch.set_num_threads(1)
        d = self.dataset
        try:
            sample = d.load(index, augment=False)
        except DataError as err:
            record = {"index": index, "sample_id": d.entries[index].sample_id, "problem": str(err)}
            with open(self.skipped / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            return
        yield _encode(sample, (d.sample_rate, d.image_size, d.duration))


def write_shards(
    dataset: AVDataset,
    out: str | os.PathLike[str],
    chunk_bytes: str = "64MB",
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Write the samples of ``dataset`` (an avsl reader; its augmentation is not applied) as litdata chunks in
    ``out`` (a local folder; upload it to object storage as it is). Samples that fail to decode are left out and
    listed in ``out/avsl_shards.json``. ``progress`` shows litdata's progress bar and messages. Returns ``out``."""
    out = Path(out)
    if not isinstance(dataset, AVDataset):  # else litdata's "Failed processing item=0", hiding why
        raise TypeError(
            f"write_shards takes an avsl reader (an AVDataset: VGGSSDataset, FolderDataset, ...), got "
            f"{type(dataset).__name__}: write SynthAV to a folder first (avsl synth), and shard a reader of it"
        )
    if not len(dataset):
        raise DataError(str(out), "the dataset has no samples: nothing to shard", kind="no samples")
    with tempfile.TemporaryDirectory(prefix="avsl_shards_") as tmp:
        litdata.optimize(
            fn=_Encoder(dataset, Path(tmp)),
            inputs=list(range(len(dataset))),
            output_dir=str(out),
            chunk_bytes=chunk_bytes,
            num_workers=workers or min(len(dataset), os.cpu_count() or 1),
            verbose=progress,
            mode="overwrite",
            # fork: the encoder (a reader) needs no re-import, and a script read from stdin works too (spawn re-runs
            # the main module); litdata's own default is spawn
            start_method="fork" if os.name == "posix" else None,
        )
        records = [json.loads(line) for f in sorted(Path(tmp).glob("*.jsonl")) for line in f.read_text().splitlines()]
    bad = [{"sample_id": r["sample_id"], "problem": r["problem"]} for r in sorted(records, key=lambda r: r["index"])]
    written = len(dataset) - len(bad)
    if not written:
        (out / "index.json").unlink(missing_ok=True)  # litdata's index of nothing would read as an empty dataset
        raise DataError(str(out), "no sample of the dataset can be decoded: nothing to shard", kind="no samples")
    meta = {
        "sample_rate": dataset.sample_rate,
        "image_size": dataset.image_size,
        "duration": dataset.duration,
        "samples": written,
        "source": repr(dataset),
        "skipped": bad,
    }
    (out / SHARDS_META).write_text(json.dumps(meta, indent=1))
    return out


class StreamingAVDataset(litdata.StreamingDataset):
    """Samples of :func:`write_shards` chunks, streamed with ``litdata.StreamingDataset``.

    Under DDP every rank, and in it every DataLoader worker, reads its own part of the chunks. With
    :class:`~avsl.data.AVDataModule` it is loaded by a ``litdata.StreamingDataLoader``, whose position Lightning saves
    in checkpoints, so a resumed run continues where it stopped. ``sample_rate``, ``image_size`` and ``duration`` are
    the writing reader's (read from the first sample).

    Args:
        input_dir: the shards: a local folder, or ``s3://...`` / ``gs://...`` (read through litdata's cache).
        augment: applied to each sample, as a reader's ``augment``.
        shuffle: shuffle chunks and samples (training); the order is drawn from ``seed`` and the epoch.
        seed: the shuffling seed.
        cache_dir: where remote chunks are cached (litdata's default when None).
        drop_last: give every rank the same number of samples (litdata's choice under DDP when None).
    """

    def __init__(
        self,
        input_dir: str,
        augment: Augment | None = None,
        shuffle: bool = False,
        seed: int = 42,
        cache_dir: str | None = None,
        drop_last: bool | None = None,
    ) -> None:
        # batch_decode=0: deserialize the requested sample alone. litdata's default decodes a window of 8-16 samples
        # of this size and keeps it for the next read, which a shuffled order rarely is: 3.6x slower shuffled
        # (measured through AVDataModule without workers on 2,000 shards of 224-px frames).
        super().__init__(
            input_dir, cache_dir=cache_dir, shuffle=shuffle, seed=seed, drop_last=drop_last, batch_decode=0
        )
        self.augment = augment
        self.source = input_dir
        self._args = (input_dir, augment, shuffle, seed, cache_dir, drop_last)
        rate, size, duration = (float(v) for v in super().__getitem__(0)["signal"])
        self.sample_rate, self.image_size, self.duration = int(rate), int(size), duration

    def for_this_process(self) -> StreamingAVDataset:
        """The same dataset built again: litdata reads the rank and world size when a dataset is built, and one built
        before the DDP processes started (in a script, by LightningCLI) would read all chunks on rank 0.
        :class:`~avsl.data.AVDataModule` calls it when it makes a loader."""
        return type(self)(*self._args)

    def __getitem__(self, index: Any) -> AVSample:
        sample = _decode(super().__getitem__(index))
        return self.augment(sample) if self.augment is not None else sample

    def __repr__(self) -> str:
        return f"StreamingAVDataset({self.source!r})"
