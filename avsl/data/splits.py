"""The real benchmark split lists and annotations, shipped with avsl and loaded by name.

The files in ``avsl/data/lists/`` are verbatim copies of the metadata of the public reference repositories (see
``avsl/data/lists/README.md`` for the repository and commit of each). Formats and caveats are in
``docs/data.md`` and in the research notes (``reference/evaluation.md`` §7):

- "Flickr test" is 249 ids (LVS, EZ-VSL, SSPL) or 250 (SLAVC, SSL-alignment); Senocak's own list has one id that
  differs from SLAVC's (3908875357 vs 3908875350). Report which you used.
- The training lists leak test ids: ``flickr_10k``/``flickr_144k`` contain 1/20 Flickr test ids, and
  ``vggss_10k``/``vggss_144k`` contain 238/3,709 VGG-SS test ids. Readers warn when a training split overlaps a
  test list and can drop the overlap (``exclude=`` or ``drop_test_overlap=True``); :func:`check_overlap` is the
  underlying utility.
- ``flickr_labeled_pool`` (annotated Flickr ids that are in no test list, for semi-supervised training) comes from
  the *derived* box file, which holds 2,786 annotated ids, not the 4,750 of Senocak et al.'s full release.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Literal

from avsl.data.io import DataError

__all__ = [
    "TEST_LISTS",
    "SplitOverlapWarning",
    "check_overlap",
    "list_splits",
    "load_annotations",
    "load_negative_pairs",
    "load_split",
    "read_id_file",
    "split_names",
    "split_path",
    "warn_test_overlap",
]

LISTS_DIR = Path(__file__).resolve().parent / "lists"

# name -> (file relative to LISTS_DIR, description). The order is the order of list_splits().
_SPLITS: dict[str, tuple[str, str]] = {
    "flickr_test_249": ("flickr_soundnet/flickr_test.csv", "Flickr-SoundNet test, 249 ids (LVS, EZ-VSL, SSPL)"),
    "flickr_test_250": (
        "flickr_soundnet/flickr_test_250_slavc.csv",
        "Flickr-SoundNet test, 250 ids (SLAVC, SSL-align)",
    ),
    "flickr_test_senocak": ("flickr_soundnet/senocak_test_list.txt", "Flickr-SoundNet test, 250 ids (Senocak'18 list)"),
    "flickr_10k": ("flickr_soundnet/flickr_10k.txt", "Flickr-SoundNet training, 10,000 ids (1 overlaps the test)"),
    "flickr_144k": ("flickr_soundnet/flickr_144k.txt", "Flickr-SoundNet training, 144,000 ids (20 overlap the test)"),
    "flickr_labeled_pool": (
        "flickr_soundnet/flickr_5k_labeled_boxes_from_gtdata_pkl.json",
        "annotated Flickr ids in no test list, 2,536 ids (derived box file: 2,786 annotated, not 4,750)",
    ),
    "vggss_test": ("vggss/vggss_test.csv", "VGG-SS test, 5,158 ids (LVS, EZ-VSL, SLAVC)"),
    "vggss_test_4692": ("vggss/vggss_test_4692_sspl.csv", "VGG-SS test subset SSPL could download, 4,692 ids"),
    "vggss_heard_test": ("vggss/vggss_heard_test.csv", "VGG-SS open-set test, heard 110 classes, 2,564 ids"),
    "vggss_unheard_test": ("vggss/vggss_unheard_test.csv", "VGG-SS open-set test, unheard 110 classes, 2,575 ids"),
    "vggss_heard_train": ("vggss/vggss_heard_train.txt", "VGGSound training, heard 110 classes, 59,468 ids"),
    "vggss_10k": ("vggss/vggss_10k.txt", "VGGSound training, 10,000 ids (238 overlap vggss_test)"),
    "vggss_144k": ("vggss/vggss_144k.txt", "VGGSound training, 144,000 ids (3,709 overlap vggss_test)"),
    "avsbench_s4_test": ("avsbench/s4_test_videos_derived.csv", "AVSBench S4 test video names, 740 (derived)"),
}

_PAIRS: dict[str, tuple[str, str]] = {
    "flickr_test_plus_silent": (
        "flickr_soundnet/flickr_test_plus_silent.csv",
        "SLAVC non-sounding pairs (test frame, other clip's audio), 250",
    ),
    "vggss_test_plus_silent": (
        "vggss/vggss_test_plus_silent.csv",
        "SLAVC non-sounding pairs (test frame, other clip's audio), 5,158",
    ),
}

_ANNOTATIONS: dict[str, tuple[str, str]] = {
    "vggss": ("vggss/vggss.json", "VGG-SS boxes, normalized xyxy, 5,158 clips (union GT)"),
    "flickr": (
        "flickr_soundnet/flickr_5k_labeled_boxes_from_gtdata_pkl.json",
        "Flickr-SoundNet boxes, 256-px xyxy, 2,786 images (derived; consensus GT)",
    ),
}

TEST_LISTS: dict[str, tuple[str, ...]] = {
    "flickr": ("flickr_test_250", "flickr_test_senocak", "flickr_test_249"),
    "vggss": ("vggss_test",),
}
"""Per benchmark, the test lists a training split must not overlap (``vggss_test`` contains every VGG-SS subset)."""

# Media suffixes stripped from ids in split files (Senocak's list names "<id>.png"; LVS appends ".mp4").
_ID_SUFFIXES = (".png", ".jpg", ".jpeg", ".wav", ".mp4", ".flac", ".mkv", ".webm")
# A first row whose first field is one of these is a header, not an id.
_HEADER_WORDS = frozenset({"id", "ids", "name", "names", "video", "video_id", "vid", "file", "filename", "sample_id"})


class SplitOverlapWarning(UserWarning):
    """A training split shares ids with a known test list (evaluation leakage)."""


def _strip_suffix(token: str) -> str:
    low = token.lower()
    for suffix in _ID_SUFFIXES:
        if low.endswith(suffix):
            return token[: -len(suffix)]
    return token


def _read_text(path: str | os.PathLike[str], what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        detail = f"{what} is not UTF-8 text ({err.reason} at byte {err.start})"
        raise DataError(path, detail, kind="bad split") from None


def read_id_file(path: str | os.PathLike[str]) -> list[str]:
    """Read the ids of a split file (csv or txt), in file order, duplicates kept.

    Handles the real files' quirks: CRLF line endings, extra columns (only the first is an id), a header row (a first
    field such as ``id``, ``name``, ``video`` or ``file``), blank lines, and media suffixes (``<id>.png`` becomes
    ``<id>``).

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: the file is not UTF-8 text.
    """
    text = _read_text(path, "split list")
    ids: list[str] = []
    for line_no, line in enumerate(text.splitlines()):
        token = line.split(",", 1)[0].strip().strip('"')
        if not token:
            continue
        if line_no == 0 and token.lower() in _HEADER_WORDS:
            continue
        ids.append(_strip_suffix(token))
    return ids


def _list_file(table: dict[str, tuple[str, str]], name: str, what: str) -> Path:
    try:
        rel = table[name][0]
    except KeyError:
        known = ", ".join(sorted(table))
        raise KeyError(f"unknown {what} {name!r}; known: {known}") from None
    return LISTS_DIR / rel


def split_path(name: str) -> Path:
    """The shipped file behind a named split, pair list or annotation set (for tools that want the raw file)."""
    for table in (_SPLITS, _PAIRS, _ANNOTATIONS):
        if name in table:
            return LISTS_DIR / table[name][0]
    known = ", ".join(sorted([*_SPLITS, *_PAIRS, *_ANNOTATIONS]))
    raise KeyError(f"unknown list {name!r}; known: {known}")


@cache
def _load_split_cached(name: str) -> tuple[str, ...]:
    if name == "flickr_labeled_pool":
        annotated = _load_boxes_cached("flickr")
        test = set().union(*(_load_split_cached(t) for t in TEST_LISTS["flickr"]))
        return tuple(i for i in annotated if i not in test)
    # avsbench_s4_test is "name,category,split" with a header: the first column is the video name.
    return tuple(read_id_file(_list_file(_SPLITS, name, "split")))


def load_split(name: str) -> list[str]:
    """The ids of a named split, in file order (see :func:`list_splits`).

    Raises:
        KeyError: unknown name (the message lists the known ones). A pair list (``*_plus_silent``) is not an id list:
            use :func:`load_negative_pairs`.
    """
    if name in _PAIRS:
        raise KeyError(f"{name!r} is a list of (video, audio) pairs: use load_negative_pairs({name!r})")
    return list(_load_split_cached(name))


def load_negative_pairs(name: str) -> list[tuple[str, str]]:
    """SLAVC's non-sounding pairs: ``(video_id, audio_id)``, the frame of one clip with the audio of another.

    Readers take them through their ``negatives=`` argument (SLAVC's extended protocol: ``gt_map`` all zeros,
    ``num_sources`` 0).
    """
    return list(_load_pairs_cached(name))


@cache
def _load_pairs_cached(name: str) -> tuple[tuple[str, str], ...]:
    path = _list_file(_PAIRS, name, "pair list")
    return tuple(read_pair_file(path))


def read_pair_file(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Read a ``video,audio[,label]`` csv (header optional) into ``(video_id, audio_id)`` pairs."""
    pairs: list[tuple[str, str]] = []
    for line_no, line in enumerate(_read_text(path, "pair list").splitlines()):
        fields = [f.strip() for f in line.split(",")]
        if not fields[0]:
            continue
        if line_no == 0 and fields[0].lower() in _HEADER_WORDS:
            continue
        if len(fields) < 2 or not fields[1]:
            raise DataError(path, f"line {line_no + 1} is not a 'video,audio' pair: {line!r}", "bad annotation")
        pairs.append((_strip_suffix(fields[0]), _strip_suffix(fields[1])))
    return pairs


@cache
def _load_boxes_cached(name: str) -> dict[str, tuple[tuple[float, ...], ...]]:
    path = _list_file(_ANNOTATIONS, name, "annotation set")
    entries = json.loads(path.read_text(encoding="utf-8"))
    return {str(e["file"]): tuple(tuple(float(v) for v in b) for b in e["bbox"]) for e in entries}


def load_annotations(name: Literal["vggss", "flickr"]) -> dict[str, list[list[float]]]:
    """Boxes per id of a shipped annotation set.

    - ``"vggss"``: ``vggss.json``, normalized xyxy, several boxes = several sounding objects (VGG-SS union GT).
      Kept verbatim, including the 18 degenerate/garbage boxes the references also keep (they add nothing to the GT).
    - ``"flickr"``: the derived Flickr box file, 256-px xyxy ints (1-based), all annotators' boxes together
      (Flickr consensus GT). 2,786 ids, all 250 test ids included.
    """
    return {k: [list(b) for b in v] for k, v in _load_boxes_cached(name).items()}


def split_names() -> list[str]:
    """The names :func:`load_split` accepts."""
    return list(_SPLITS)


def list_splits() -> dict[str, str]:
    """Every named list avsl ships, with a one-line description: id lists, pair lists and annotation sets."""
    out = {name: desc for name, (_, desc) in _SPLITS.items()}
    out.update({name: desc + " [pairs: load_negative_pairs]" for name, (_, desc) in _PAIRS.items()})
    out.update({name: desc + " [annotations: load_annotations]" for name, (_, desc) in _ANNOTATIONS.items()})
    return out


def check_overlap(ids: Iterable[str], test: str | Iterable[str]) -> set[str]:
    """The ids of ``ids`` that also appear in ``test`` (a named split or an iterable of ids)."""
    test_ids = set(load_split(test)) if isinstance(test, str) else set(test)
    return {i for i in ids if i in test_ids}


def warn_test_overlap(ids: Sequence[str], benchmark: Literal["flickr", "vggss"], source: str) -> dict[str, int]:
    """Warn (:class:`SplitOverlapWarning`) when a training split overlaps the benchmark's test lists.

    A split contained in a test list (a test set or a subset of one) is an evaluation split and is not reported.

    Args:
        ids: the split's ids.
        benchmark: whose test lists (:data:`TEST_LISTS`) to check.
        source: how to name the split in the message, e.g. ``"split 'vggss_144k'"``.

    Returns:
        The overlap count per test list (only lists with an overlap); empty when nothing was reported.
    """
    id_set = set(ids)
    if not id_set:
        return {}
    overlaps: dict[str, int] = {}
    for name in TEST_LISTS[benchmark]:
        test_ids = set(_load_split_cached(name))
        if id_set <= test_ids:
            return {}
        n = len(id_set & test_ids)
        if n:
            overlaps[name] = n
    if overlaps:
        detail = ", ".join(f"{n} with test list '{name}'" for name, n in overlaps.items())
        warnings.warn(
            f"{source} shares ids with a test list: {detail} (known leakage, see docs/data.md); pass "
            f"exclude='{next(iter(overlaps))}' or drop_test_overlap=True to drop them",
            SplitOverlapWarning,
            stacklevel=4,
        )
    return overlaps
