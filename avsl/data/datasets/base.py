"""Machinery shared by every reader: the sample index, error policy, skip bookkeeping and sample assembly.

A reader builds a list of :class:`Entry` at construction (cheap: index files and directory listings, no decoding)
and decodes one entry per ``__getitem__``. What goes wrong is handled in one place:

- ``on_error="raise"`` (default): a problem of the index (duplicate ids, missing files, missing annotations) raises
  a :class:`~avsl.data.io.DataError` at construction; a file that fails to decode raises when it is loaded.
- ``on_error="skip"``: those samples are dropped and counted in ``dataset.skipped``; a file that fails to decode
  later is replaced by the next loadable sample (the metrics key results by ``sample_id``, so a substitute never
  counts twice) and announced with a :class:`~avsl.data.io.DataWarning`.
- ``verify=True`` decodes every sample at construction, so corrupt files are found (and reported or raised) up front.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from avsl.data.io import DataError, SkipLog, load_audio_window, load_image, load_mask, warn_data
from avsl.data.transforms import SampleTransform, audio_window, resize_image, resize_mask
from avsl.types import AVSample

__all__ = ["AVDataset", "Entry", "OnError"]

OnError = Literal["raise", "skip"]
Augment = SampleTransform
Boxes = tuple[tuple[float, ...], ...]

# How many examples an aggregated error message quotes.
_EXAMPLES = 3


@dataclass(frozen=True)
class Entry:
    """One sample of a reader's index: where its media are and what annotates it."""

    sample_id: str
    image: Path
    audio: Path
    boxes: Boxes | None = None
    """Boxes in the reader's coordinate convention, or None when the sample is unannotated (or annotated lazily)."""
    annotation_file: Path | None = None
    """A per-sample annotation file parsed at load time (Flickr XML)."""
    mask: Path | None = None
    time: float | None = None
    """Centre of the audio window in seconds; None places it at the reader's ``audio_position`` in the clip."""
    negative: bool = False
    """A non-sounding pair (SLAVC's extended protocol): empty gt_map, ``num_sources`` 0."""
    num_sources: int | None = None
    """From the annotation, when it says; None leaves the key out of the sample."""


class AVDataset(Dataset[AVSample]):
    """Base class of the avsl readers. Subclasses fill ``self.entries`` and implement :meth:`_load_entry`.

    Attributes:
        entries: the index, one :class:`Entry` per sample.
        skipped: what was dropped and why (:class:`~avsl.data.io.SkipLog`).
    """

    def __init__(
        self,
        *,
        image_size: int,
        sample_rate: int,
        duration: float,
        audio_position: float,
        augment: Augment | None,
        on_error: OnError,
        allow_resample: bool,
        allow_silence: bool,
    ) -> None:
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if not (duration > 0 and math.isfinite(duration)):
            raise ValueError(f"duration must be a positive number of seconds, got {duration}")
        if not 0.0 <= audio_position <= 1.0:
            raise ValueError(f"audio_position must be in [0, 1], got {audio_position}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.image_size = image_size
        self.sample_rate = sample_rate
        self.duration = duration
        self.audio_position = audio_position
        self.augment = augment
        self.on_error: OnError = on_error
        self.allow_resample = allow_resample
        self.allow_silence = allow_silence
        self.entries: list[Entry] = []
        self.skipped = SkipLog()
        self._source = ""
        self._failed: set[int] = set()

    # ------------------------------------------------------------------------------------------ public API

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def num_samples(self) -> int:
        """Samples in the window: ``round(duration * sample_rate)``."""
        return round(self.duration * self.sample_rate)

    @property
    def sample_ids(self) -> list[str]:
        """The ids of the samples, in index order."""
        return [e.sample_id for e in self.entries]

    def __getitem__(self, index: int) -> AVSample:
        try:
            return self.load(index)
        except DataError as err:
            if self.on_error == "raise":
                raise
            self._record_failure(index, err)
        # Skip mode: substitute the next loadable sample so that a DataLoader never sees a hole.
        n = len(self.entries)
        for step in range(1, n):
            j = (index + step) % n
            if j in self._failed:
                continue
            try:
                return self.load(j)
            except DataError as err:
                self._record_failure(j, err)
        raise DataError(self._root_for_errors(), "no sample of this dataset can be loaded", kind="no samples")

    def load(self, index: int, *, augment: bool = True) -> AVSample:
        """Decode sample ``index`` (raising :class:`~avsl.data.io.DataError` whatever ``on_error`` says)."""
        sample = self._load_entry(self.entries[index])
        if augment and self.augment is not None:
            sample = self.augment(sample)
        self._check_finite(sample, self.entries[index])
        return sample

    def report(self) -> str:
        """One line for logs: reader, source, sample count and what was skipped (counted by kind)."""
        return f"{type(self).__name__}({self._source}): {len(self)} samples, {self.skipped.summary()}"

    def __repr__(self) -> str:
        return self.report()

    # --------------------------------------------------------------------------------------- for readers

    def _load_entry(self, entry: Entry) -> AVSample:
        """Decode one entry into a sample at ``image_size``, before augmentation."""
        raise NotImplementedError

    def _gt_map(self, entry: Entry) -> Tensor | None:
        """The entry's ground-truth map at ``image_size`` (float32), or None when it is unannotated."""
        return None

    def _root_for_errors(self) -> str:
        return self._source

    def _assemble(
        self,
        entry: Entry,
        image: Tensor,
        audio: Tensor,
        *,
        gt_map: Tensor | None = None,
        mask: Tensor | None = None,
        num_sources: int | None = None,
    ) -> AVSample:
        """Resize the image (and mask) to ``image_size`` and build the sample dict."""
        size = self.image_size
        sample: AVSample = {"image": resize_image(image, size), "audio": audio, "sample_id": entry.sample_id}
        if gt_map is not None:
            sample["gt_map"] = gt_map.to(torch.float32)
        if mask is not None:
            sample["mask"] = resize_mask(mask, size).to(torch.float32)
        if num_sources is not None:
            sample["num_sources"] = num_sources
        return sample

    def _load_image(self, entry: Entry) -> Tensor:
        return load_image(entry.image, self.image_size)

    def _load_mask(self, entry: Entry) -> Tensor | None:
        return None if entry.mask is None else load_mask(entry.mask)

    def _load_audio(self, entry: Entry) -> Tensor:
        """The audio window of an entry: centred at ``entry.time`` if set, else at ``audio_position`` in the clip."""
        return load_audio_window(
            entry.audio,
            self.sample_rate,
            self.num_samples,
            position=self.audio_position,
            centre=entry.time,
            allow_resample=self.allow_resample,
            allow_silence=self.allow_silence,
        )

    def _check_finite(self, sample: AVSample, entry: Entry) -> None:
        # Decoders already reject NaN/inf input; this guards the transforms (resampling, augmentation) as well.
        for key in ("image", "audio", "gt_map", "mask"):
            value = sample.get(key)
            # Values are bounded (images and maps in [0, 1], audio near [-1, 1]), so the sum cannot overflow and is
            # finite exactly when every element is; cheaper than isfinite().all().
            if isinstance(value, Tensor) and not math.isfinite(float(value.sum())):
                path = entry.audio if key == "audio" else entry.image
                raise DataError(path, f"non-finite values in {key} after decoding and transforms", kind="non-finite")

    def _record_failure(self, index: int, err: DataError) -> None:
        if index in self._failed:
            return
        self._failed.add(index)
        sample_id = self.entries[index].sample_id
        self.skipped.add(sample_id, err.kind, str(err))
        warn_data(
            f"skipped sample {sample_id!r}: {err} (on_error='skip'; a later sample is used instead; "
            "pass verify=True to find every bad file at construction)"
        )

    def _verify(self) -> None:
        """Decode every entry now: drop the failures (skip) or raise one error that lists them (raise)."""
        kept: list[Entry] = []
        failures: list[DataError] = []
        for i, entry in enumerate(self.entries):
            try:
                self.load(i, augment=False)
            except DataError as err:
                failures.append(err)
                if self.on_error == "skip":
                    self.skipped.add(entry.sample_id, err.kind, str(err))
                continue
            kept.append(entry)
        if failures and self.on_error == "raise":
            examples = "; ".join(str(e) for e in failures[:_EXAMPLES])
            raise DataError(
                self._root_for_errors(),
                f"{len(failures)} of {len(self.entries)} samples failed to decode (verify=True), e.g. {examples}; "
                "pass on_error='skip' to drop them",
                kind=failures[0].kind,
            )
        self.entries = kept

    def _drop_or_raise(
        self, problems: list[tuple[str, str, str]], where: str | os.PathLike[str], what: str
    ) -> set[str]:
        """Handle index problems found at construction: ``(sample_id, kind, detail)`` triples.

        Raise one :class:`~avsl.data.io.DataError` naming the count and examples (``on_error="raise"``), or record
        them in ``skipped`` and return the ids to drop.
        """
        if not problems:
            return set()
        if self.on_error == "raise":
            examples = "; ".join(detail for _, _, detail in problems[:_EXAMPLES])
            more = f" (and {len(problems) - _EXAMPLES} more)" if len(problems) > _EXAMPLES else ""
            raise DataError(
                where,
                f"{len(problems)} {what}: {examples}{more}; pass on_error='skip' to drop them",
                kind=problems[0][1],
            )
        for sample_id, kind, detail in problems:
            self.skipped.add(sample_id, kind, detail)
        return {sample_id for sample_id, _, _ in problems}


def window_at(wave: Tensor, num_samples: int, centre: float) -> Tensor:
    """A window of ``num_samples`` centred at sample position ``centre``, shifted to lie inside the clip.

    Clips shorter than the window are tiled first (as :func:`~avsl.data.transforms.audio_window` does), so the
    result always has ``num_samples`` samples.
    """
    length = wave.shape[-1]
    if length < num_samples:
        return audio_window(wave, num_samples, 0.0)
    start = round(centre - num_samples / 2)
    start = min(max(start, 0), length - num_samples)
    return wave[start : start + num_samples]


# ------------------------------------------------------------------------------------------------- index helpers


def resolve_under(path: str | os.PathLike[str], root: Path) -> Path:
    """A relative path names a file under ``root`` if it exists there, else it is taken relative to the cwd."""
    p = Path(path)
    if p.is_absolute():
        return p
    under = root / p
    return under if under.exists() else p


def list_media(directory: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    """Map stem -> file for the files of ``directory`` with one of ``suffixes`` (one directory listing, no decoding).

    When two files share a stem, the suffix listed first wins (``.jpg`` before ``.png``).

    Raises:
        DataError: the directory does not exist.
    """
    if not directory.is_dir():
        raise DataError(directory, f"{what} directory not found", kind="missing file")
    rank = {s: i for i, s in enumerate(suffixes)}
    best: dict[str, tuple[int, Path]] = {}
    with os.scandir(directory) as it:
        for item in it:
            stem, dot, ext = item.name.rpartition(".")
            if not dot or not stem:
                continue
            r = rank.get("." + ext.lower())
            if r is None:
                continue
            if stem not in best or r < best[stem][0]:
                best[stem] = (r, Path(item.path))
    return {stem: p for stem, (_, p) in best.items()}


def find_duplicates(ids: Iterable[str]) -> dict[str, int]:
    """Ids that occur more than once, with their counts."""
    seen: dict[str, int] = {}
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
    return {i: n for i, n in seen.items() if n > 1}
