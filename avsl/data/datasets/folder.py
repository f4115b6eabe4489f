"""Readers of a folder of frames and a folder of audio paired by file stem.

:class:`PairedFolderDataset` is the engine behind :class:`~avsl.data.datasets.VGGSSDataset`,
:class:`~avsl.data.datasets.FlickrSoundNetDataset` and :class:`FolderDataset`: the layout every common AVSL
repository uses (LVS, EZ-VSL, SLAVC: ``<root>/frames/<id>.jpg`` and ``<root>/audio/<id>.wav``, evaluation.md §7.4).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from avsl.data import splits
from avsl.data.datasets.base import (
    Augment,
    AVDataset,
    Boxes,
    Entry,
    OnError,
    find_duplicates,
    list_media,
    resolve_under,
)
from avsl.data.io import AUDIO_SUFFIXES, IMAGE_SUFFIXES, DataError
from avsl.metrics.functional import gt_map_from_boxes
from avsl.types import AVSample

__all__ = ["Annotations", "FolderDataset", "PairedFolderDataset", "SplitArg", "parse_box_json", "resolve_split"]

SplitArg = Sequence[str] | str | os.PathLike[str] | None
"""A split: a named list (``"vggss_test"``), a name under ``<root>/splits/`` (``"train"``), a path to a csv/txt of
ids, a list of ids, or None for every id that has both files."""

NegativesArg = Sequence[tuple[str, str]] | str | os.PathLike[str] | None
ExcludeArg = Sequence[str] | str | os.PathLike[str] | None

_ID_FILE_SUFFIXES = (".txt", ".csv")


def _looks_like_path(s: str) -> bool:
    return s.endswith(_ID_FILE_SUFFIXES) or "/" in s or os.sep in s


def _read_ids(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise DataError(path, f"{what} file not found", kind="missing file")
    return splits.read_id_file(path)


def resolve_split(split: SplitArg, root: Path) -> tuple[list[str] | None, str]:
    """The ids of a split argument and a label for messages (None ids: every id with both files).

    A string is, in order: a path if it ends in ``.txt``/``.csv`` or contains a separator (resolved under ``root``
    first, then the cwd); ``<root>/splits/<name>.txt`` or ``.csv`` (the SynthAV layout); a named list of
    :mod:`avsl.data.splits`.
    """
    if split is None:
        return None, "all paired files"
    if isinstance(split, os.PathLike):
        path = resolve_under(split, root)
        return _read_ids(path, "split"), f"split file {path}"
    if isinstance(split, str):
        if _looks_like_path(split):
            path = resolve_under(split, root)
            return _read_ids(path, "split"), f"split file {path}"
        for suffix in _ID_FILE_SUFFIXES:
            local = root / "splits" / f"{split}{suffix}"
            if local.is_file():
                return splits.read_id_file(local), f"split {split!r} ({local})"
        try:
            return splits.load_split(split), f"split {split!r}"
        except KeyError:
            pass
        raise DataError(
            root,
            f"unknown split {split!r}: no file {root / 'splits' / (split + '.txt')} and not a named list "
            f"(known: {', '.join(splits.split_names())})",
            kind="missing file",
        )
    ids = list(split)
    for i in ids:
        if not isinstance(i, str):
            raise TypeError(f"split ids must be strings, got {type(i).__name__}: {i!r}")
    return ids, f"{len(ids)} given ids"


def _resolve_negatives(negatives: NegativesArg, root: Path) -> list[tuple[str, str]]:
    if negatives is None:
        return []
    if isinstance(negatives, str) and not _looks_like_path(negatives):
        return splits.load_negative_pairs(negatives)
    if isinstance(negatives, (str, os.PathLike)):
        path = resolve_under(negatives, root)
        if not path.is_file():
            raise DataError(path, "negatives file not found", kind="missing file")
        return splits.read_pair_file(path)
    return [(str(v), str(a)) for v, a in negatives]


def _resolve_exclude(exclude: ExcludeArg, root: Path) -> set[str]:
    if exclude is None:
        return set()
    if isinstance(exclude, (str, os.PathLike)):
        ids, _ = resolve_split(exclude, root)
        return set(ids or ())
    return set(exclude)


def parse_box_json(path: Path) -> tuple[dict[str, Boxes], dict[str, int], dict[str, str]]:
    """Parse a box file in the VGG-SS schema: a JSON list of ``{"file": id, "bbox": [[x1, y1, x2, y2], ...]}``.

    Extra keys (``"class"``, ``"in_test_250"``) are ignored, except an integer ``"num_sources"``, which overrides
    the default (1 if the entry has boxes, else 0). As in the reference loaders, a later entry for the same file
    replaces an earlier one. Boxes are kept verbatim (garbage values included: the GT rules clip them).

    Returns:
        ``(boxes, num_sources, bad)``: boxes per id, explicit num_sources per id, and a problem per malformed entry.

    Raises:
        DataError: the file is missing, not JSON, or not a list of objects with ``"file"`` and ``"bbox"``.
    """
    if not path.is_file():
        raise DataError(path, "annotation file not found", kind="missing file")
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(path, f"annotation file is not valid JSON ({err})", kind="bad annotation") from None
    if not isinstance(data, list):
        raise DataError(
            path, f"expected a JSON list of {{file, bbox}} objects, got {type(data).__name__}", "bad annotation"
        )
    boxes: dict[str, Boxes] = {}
    counts: dict[str, int] = {}
    bad: dict[str, str] = {}
    for n, item in enumerate(data):
        if not isinstance(item, dict) or "file" not in item or "bbox" not in item:
            raise DataError(path, f"entry {n} is not an object with 'file' and 'bbox': {item!r:.80}", "bad annotation")
        sample_id = str(item["file"])
        parsed = _parse_boxes(item["bbox"])
        if isinstance(parsed, str):
            bad[sample_id] = f"{path}: entry {n} ({sample_id}): {parsed}"
            continue
        sources = item.get("num_sources")
        if sources is not None and (type(sources) is not int or sources < 0):  # bool is an int: not a count
            bad[sample_id] = f"{path}: entry {n} ({sample_id}): 'num_sources' must be an integer >= 0, got {sources!r}"
            continue
        bad.pop(sample_id, None)
        boxes[sample_id] = parsed
        if sources is not None:
            counts[sample_id] = sources
    return boxes, counts, bad


def _parse_boxes(raw: Any) -> Boxes | str:
    """A tuple of 4-number boxes, or a problem description."""
    if not isinstance(raw, list):
        return f"'bbox' must be a list of [x1, y1, x2, y2] boxes, got {raw!r:.60}"
    out: list[tuple[float, ...]] = []
    for box in raw:
        numbers = isinstance(box, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        if not numbers or len(box) != 4:
            return f"a box must be 4 numbers [x1, y1, x2, y2], got {box!r:.60}"
        if not all(math.isfinite(float(v)) for v in box):
            return f"box {box} contains NaN or infinity"
        out.append(tuple(float(v) for v in box))
    return tuple(out)


@dataclass(frozen=True)
class Annotations:
    """What a reader's ``annotations`` argument gives: boxes per id (with optional source counts and the ids whose
    boxes are malformed), or a folder of per-id XML files parsed at load time (Flickr)."""

    boxes: dict[str, Boxes] | None = None
    counts: dict[str, int] | None = None
    bad: dict[str, str] | None = None
    directory: Path | None = None

    @property
    def given(self) -> bool:
        return self.boxes is not None or self.directory is not None


@dataclass(frozen=True)
class _Media:
    """The files found in a dataset's folders, by id."""

    image_root: Path
    audio_root: Path
    mask_root: Path | None
    frames: dict[str, Path]
    audio: dict[str, Path]
    masks: dict[str, Path] | None
    xmls: dict[str, Path] | None


class PairedFolderDataset(AVDataset):
    """A folder of frames and a folder of audio paired by stem, with optional boxes, masks and negatives.

    The readers :class:`FolderDataset`, :class:`~avsl.data.datasets.VGGSSDataset` and
    :class:`~avsl.data.datasets.FlickrSoundNetDataset` share its arguments (they document them) and differ in what
    ``annotations`` names (:meth:`read_annotations`), how boxes become ``gt_map`` (``gt_style``) and whose test lists
    a training split is checked against (``benchmark``).
    """

    gt_style: Literal["vggss", "flickr"] = "vggss"
    benchmark: Literal["vggss", "flickr"] | None = None
    """Whose test lists a training split is checked against (None: no check)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: SplitArg = None,
        annotations: str | os.PathLike[str] | None = None,
        masks_dir: str | os.PathLike[str] | None = None,
        negatives: NegativesArg = None,
        exclude: Sequence[str] | str | os.PathLike[str] | None = None,
        drop_test_overlap: bool = False,
        image_dir: str | os.PathLike[str] = "frames",
        audio_dir: str | os.PathLike[str] = "audio",
        image_size: int = 224,
        sample_rate: int = 16000,
        duration: float = 3.0,
        audio_position: float = 0.5,
        augment: Augment | None = None,
        on_error: OnError = "raise",
        allow_resample: bool = True,
        allow_silence: bool = False,
        verify: bool = False,
    ) -> None:
        super().__init__(
            image_size=image_size,
            sample_rate=sample_rate,
            duration=duration,
            audio_position=audio_position,
            augment=augment,
            on_error=on_error,
            allow_resample=allow_resample,
            allow_silence=allow_silence,
        )
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(self.root, "dataset root directory not found", kind="missing file")
        if drop_test_overlap and self.benchmark is None:
            raise ValueError(f"{type(self).__name__} has no benchmark test lists: drop ids with `exclude` instead")
        labels = self.read_annotations(annotations)
        media = self._list_media(image_dir, audio_dir, masks_dir, labels.directory)
        ids, label = self._select_ids(split, exclude, drop_test_overlap, media)
        self._source = f"root={str(self.root)!r}, {label}"
        pairs = _resolve_negatives(negatives, self.root)
        if pairs and not labels.given:
            raise ValueError("negatives need annotations, so that every sample of the set carries a gt_map")
        negative_pairs = dict(zip(self._dedupe([negative_id(v, a) for v, a in pairs], "the negative pairs"), pairs))
        problems = self._index_problems(ids, negative_pairs, media, labels)
        drop = self._drop_or_raise(
            problems, self.root, f"of {len(ids) + len(negative_pairs)} samples of {label} cannot be used"
        )
        self.entries += self._entries([i for i in ids if i not in drop], media, labels)
        for sid, (video, sound) in negative_pairs.items():
            if sid not in drop:
                entry = Entry(sid, media.frames[video], media.audio[sound], boxes=(), negative=True, num_sources=0)
                self.entries.append(entry)
        if verify:
            self._verify()

    def read_annotations(self, annotations: str | os.PathLike[str] | None) -> Annotations:
        """The boxes that ``annotations`` names: here a JSON in the VGG-SS schema (normalized xyxy boxes; relative
        paths are looked up under ``root`` first), or None for an unlabeled set. Readers override it."""
        if annotations is None:
            return Annotations()
        boxes, counts, bad = parse_box_json(resolve_under(annotations, self.root))
        return Annotations(boxes, counts, bad)

    def _list_media(
        self,
        image_dir: str | os.PathLike[str],
        audio_dir: str | os.PathLike[str],
        masks_dir: str | os.PathLike[str] | None,
        xml_dir: Path | None,
    ) -> _Media:
        image_root, audio_root = resolve_under(image_dir, self.root), resolve_under(audio_dir, self.root)
        mask_root = None if masks_dir is None else resolve_under(masks_dir, self.root)
        masks = None if mask_root is None else list_media(mask_root, (".png",), "masks")
        self._has_masks = masks is not None
        return _Media(
            image_root=image_root,
            audio_root=audio_root,
            mask_root=mask_root,
            frames=list_media(image_root, IMAGE_SUFFIXES, "frames"),
            audio=list_media(audio_root, AUDIO_SUFFIXES, "audio"),
            masks=masks,
            xmls=None if xml_dir is None else list_media(xml_dir, (".xml",), "annotation"),
        )

    def _select_ids(
        self, split: SplitArg, exclude: ExcludeArg, drop_test_overlap: bool, media: _Media
    ) -> tuple[list[str], str]:
        """The ids of ``split`` (every stem with a frame or an audio file if None), without duplicates and without
        the excluded ones (counted as skips), and a label of the split for messages."""
        ids, label = resolve_split(split, self.root)
        ids = self._dedupe(sorted(media.frames.keys() | media.audio.keys()) if ids is None else ids, label)
        excluded = _resolve_exclude(exclude, self.root)
        if drop_test_overlap:
            excluded |= self._test_overlap(ids)
        for i in ids:
            if i in excluded:
                self.skipped.add(i, "excluded", f"{i}: excluded from {label}")
        ids = [i for i in ids if i not in excluded]
        if self.benchmark is not None and not drop_test_overlap:
            splits.warn_test_overlap(ids, self.benchmark, f"{type(self).__name__} {label}")
        return ids, label

    @staticmethod
    def _index_problems(
        ids: list[str], negative_pairs: dict[str, tuple[str, str]], media: _Media, labels: Annotations
    ) -> list[tuple[str, str, str]]:
        """``(id, kind, message)`` of every sample that cannot be used, found from the directory listings and the
        annotation index only (nothing is decoded)."""

        def missing(frame: str, sound: str, mask: str | None) -> list[str]:
            out = [] if frame in media.frames else [f"frame {media.image_root}{os.sep}{frame}.jpg"]
            out += [] if sound in media.audio else [f"audio {media.audio_root}{os.sep}{sound}.wav"]
            if mask is not None and media.masks is not None and mask not in media.masks:
                out.append(f"mask {media.mask_root}{os.sep}{mask}.png")
            return out

        problems: list[tuple[str, str, str]] = []
        for i in ids:
            absent = missing(i, i, i)
            if absent:
                problems.append((i, "missing file", f"{i}: no {' and no '.join(absent)}"))
            elif labels.bad is not None and i in labels.bad:
                problems.append((i, "bad annotation", labels.bad[i]))
            elif labels.boxes is not None and i not in labels.boxes:
                problems.append((i, "no annotation", f"{i}: no entry in the annotations"))
            elif media.xmls is not None and i not in media.xmls:
                problems.append((i, "no annotation", f"{i}: no {labels.directory}{os.sep}{i}.xml"))
        for sid, (video, sound) in negative_pairs.items():
            absent = missing(video, sound, None)
            if absent:
                problems.append((sid, "missing file", f"{sid}: no {' and no '.join(absent)}"))
        return problems

    @staticmethod
    def _entries(ids: list[str], media: _Media, labels: Annotations) -> list[Entry]:
        entries = []
        for i in ids:
            boxes = None if labels.boxes is None else labels.boxes[i]
            count: int | None = None
            if labels.counts is not None and i in labels.counts:
                count = labels.counts[i]
            elif boxes is not None:
                count = 1 if boxes else 0
            entries.append(
                Entry(
                    sample_id=i,
                    image=media.frames[i],
                    audio=media.audio[i],
                    boxes=boxes,
                    annotation_file=None if media.xmls is None else media.xmls[i],
                    mask=None if media.masks is None else media.masks[i],
                    num_sources=count,
                )
            )
        return entries

    def _dedupe(self, ids: list[str], label: str) -> list[str]:
        dups = find_duplicates(ids)
        if not dups:
            return ids
        if self.on_error == "raise":
            examples = ", ".join(f"{i!r} x{n}" for i, n in list(dups.items())[:3])
            raise DataError(
                self.root,
                f"{len(dups)} duplicate ids in {label}, e.g. {examples}; pass on_error='skip' to keep the first "
                "occurrence of each",
                kind="duplicate id",
            )
        seen: set[str] = set()
        out: list[str] = []
        for i in ids:
            if i in seen:
                self.skipped.add(i, "duplicate id", f"{i}: duplicate id in {label} (first occurrence kept)")
                continue
            seen.add(i)
            out.append(i)
        return out

    def _test_overlap(self, ids: list[str]) -> set[str]:
        """Ids to drop with ``drop_test_overlap``: the overlap with the benchmark's test lists (none for a test set)."""
        assert self.benchmark is not None
        id_set = set(ids)
        test_sets = [set(splits.load_split(name)) for name in splits.TEST_LISTS[self.benchmark]]
        if any(id_set <= t for t in test_sets):
            return set()
        return id_set & set().union(*test_sets)

    def _load_entry(self, entry: Entry) -> AVSample:
        image = self._load_image(entry)
        audio = self._load_audio(entry)
        gt_map = self._gt_map(entry)
        mask = self._load_mask(entry)
        if entry.negative and self._has_masks:
            mask = torch.zeros(self.image_size, self.image_size)
        return self._assemble(entry, image, audio, gt_map=gt_map, mask=mask, num_sources=entry.num_sources)

    def _gt_map(self, entry: Entry) -> Tensor | None:
        if entry.boxes is None:
            return None
        return self._boxes_to_map(entry.boxes, entry)

    def _boxes_to_map(self, boxes: Boxes, entry: Entry) -> Tensor:
        try:
            return gt_map_from_boxes(boxes, self.gt_style, self.image_size)
        except ValueError as err:
            raise DataError(entry.image, f"bad boxes {boxes}: {err}", kind="bad annotation") from None

    def _root_for_errors(self) -> str:
        return str(self.root)


def negative_id(video: str, audio: str) -> str:
    """The sample id of a non-sounding pair: ``"<video>+<audio>"``."""
    return f"{video}+{audio}"


class FolderDataset(PairedFolderDataset):
    """Your own data: a folder of frames and a folder of audio paired by file stem.

    Layout (directory names are arguments)::

        root/frames/<id>.jpg|.png|...     one frame per clip
        root/audio/<id>.wav|.flac|.mp4|.m4a|...
        root/boxes.json                   optional: [{"file": id, "bbox": [[x1, y1, x2, y2], ...]}, ...]
                                          (normalized xyxy; GT = the union of the boxes, as VGG-SS)
        root/masks/<id>.png               optional binary masks

    Args:
        root: the dataset folder.
        split: which ids (see :data:`SplitArg`); None = every stem with both a frame and an audio file.
        annotations: a box JSON in the VGG-SS schema (normalized xyxy), giving ``gt_map`` (union) and
            ``num_sources`` (1 if the entry has boxes, else 0, or the entry's ``"num_sources"``).
        masks_dir: folder of ``<id>.png`` binary masks, giving ``mask``.
        negatives: non-sounding pairs appended to the set (a ``video,audio`` csv or a list of pairs; see
            :class:`~avsl.data.datasets.VGGSSDataset`). Needs ``annotations``.
        exclude: ids to leave out (a list, a csv/txt path or a named list).
        drop_test_overlap: not available (your data has no benchmark test lists): use ``exclude``.
        image_dir: frames folder, relative to ``root`` (or absolute).
        audio_dir: audio folder, relative to ``root`` (or absolute).
        image_size: frames are resized to ``(image_size, image_size)`` (aspect ratio not kept, so boxes stay
            aligned).
        sample_rate: audio is resampled to this rate.
        duration: seconds of audio per sample (short clips are tiled).
        audio_position: where the window lies in the clip: 0.5 centres it, 0 takes the start.
        augment: applied to the sample after ``gt_map`` and ``mask`` are built, e.g.
            :class:`~avsl.data.transforms.JointRandomCropFlip`.
        on_error: ``"raise"`` or ``"skip"`` (see ``docs/data.md``, "Bad input").
        allow_resample: if False, audio at another rate is an error.
        allow_silence: if True, digitally silent audio is accepted.
        verify: decode every sample at construction.
    """
