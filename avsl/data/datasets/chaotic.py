"""Chaotic World as SemiPL (Li et al., ICMEW'24; code ly245422/SSPL) uses it: event frames with one box each."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from avsl.data.datasets.base import Augment, Boxes, Entry, OnError, resolve_under
from avsl.data.datasets.folder import Annotations, PairedFolderDataset, SplitArg
from avsl.data.io import DataError

__all__ = ["ChaoticWorldDataset", "chaotic_gt_map"]

FRAME_SIZE = (320, 180)
"""(width, height) of the frames the Chaotic World boxes are drawn in."""


def chaotic_gt_map(box: Sequence[float], size: int = 224, frame_size: tuple[int, int] = FRAME_SIZE) -> Tensor:
    """SemiPL's test GT: one box in ``frame_size`` pixels, x scaled by ``size/width`` and y by ``size/height``.

    As the reference ``testset_gt`` ('ChaoticWorld'): ``int(v / 320 * 224)`` for x (divide, then multiply, then
    truncate) and ``int(v / 180 * 224)`` for y, the box filled with 1 (end exclusive). The independent scaling matches
    the squashing resize of the 320x180 frames. Negative coordinates (absent from the real data) are clipped to 0
    instead of wrapping around as a negative slice index would.

    Returns:
        A float32 (size, size) map in {0, 1}.
    """
    if len(box) != 4:
        raise ValueError(f"a box needs 4 coordinates (x1, y1, x2, y2), got {list(box)}")
    width, height = frame_size
    x0, x1 = (int(max(float(v), 0.0) / width * size) for v in (box[0], box[2]))
    y0, y1 = (int(max(float(v), 0.0) / height * size) for v in (box[1], box[3]))
    out = torch.zeros(size, size, dtype=torch.float32)
    out[y0:y1, x0:x1] = 1.0
    return out


def _parse_chaotic_json(path: Path) -> tuple[dict[str, Boxes], dict[str, str]]:
    """Boxes per id from ``ChaoticWorld_<split>.json``: ``[{"file", "class", "bbox"}, ...]``.

    ``bbox`` is one box ``[x1, y1, x2, y2]`` (what the reference preprocessing writes) or a list of boxes, of which
    only the first is used (SemiPL keeps ``bbox[0]`` of each annotation row); ``[]`` marks a negative.
    """
    if not path.is_file():
        raise DataError(path, "annotation file not found", kind="missing file")
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(path, f"annotation file is not valid JSON ({err})", kind="bad annotation") from None
    if not isinstance(data, list):
        raise DataError(path, "expected a JSON list of {file, bbox} objects", kind="bad annotation")
    boxes: dict[str, Boxes] = {}
    bad: dict[str, str] = {}
    for n, item in enumerate(data):
        if not isinstance(item, dict) or "file" not in item or "bbox" not in item:
            raise DataError(path, f"entry {n} is not an object with 'file' and 'bbox'", kind="bad annotation")
        sample_id = str(item["file"])
        raw = item["bbox"]
        if isinstance(raw, list) and raw and isinstance(raw[0], list):
            raw = raw[0]
        if raw == []:
            boxes[sample_id] = ()
            continue
        if (
            not isinstance(raw, list)
            or len(raw) != 4
            or not all(isinstance(v, (int, float)) and not math.isnan(float(v)) for v in raw)
        ):
            bad[sample_id] = (
                f"{path}: entry {n} ({sample_id}): a box must be 4 numbers [x1, y1, x2, y2], got {raw!r:.60}"
            )
            continue
        boxes[sample_id] = (tuple(float(v) for v in raw),)
    return boxes, bad


class ChaoticWorldDataset(PairedFolderDataset):
    """Chaotic World (human events) in the layout SemiPL's preprocessing writes.

    The reference pipeline (``metadata/generating_ssl_dataset.py`` of ly245422/SSPL; research notes methods.md §3.1)
    extracts 320x180 frames, turns each annotation row into one sample (the frame at ``start_fid`` and the audio
    from ``start_time - 1.5 s`` to ``start_time + 1.5 s`` at the native rate) and keeps only the first box of the
    row. avsl reads that output::

        root/ssl_{split}_frames_320x180/<video>_<fid:06d>.png
        root/ssl_{split}_wavs/<video>_<fid:06d>.wav      3 s around the annotated frame
        root/{split}_list.csv                             one id per line (the reference's list)
        root/ChaoticWorld_{split}.json                    [{"file", "class", "bbox": [x1, y1, x2, y2]}], 320x180 px

    Frames are squashed to ``(image_size, image_size)`` and ``gt_map`` is :func:`chaotic_gt_map` (x scaled by
    ``image_size/320``, y by ``image_size/180``, the box filled with 1). The default window (3 s centred) is the
    whole ±1.5 s clip. ``num_sources`` is 1 with a box, 0 with ``"bbox": []``.

    Args:
        root: the folder of the reference's ``ssl/`` output.
        split: ``"train"`` or ``"test"`` (reads ``root/{split}_list.csv``, or ``ChaoticWorld_{split}.csv``), a
            csv/txt path or a list of ids (then give ``frames_dir`` and ``audio_dir``), or None for every pair.
        annotations: the box JSON (relative paths are looked up under ``root`` first), or None for unlabeled.
        frames_dir: default ``ssl_{split}_frames_320x180``.
        audio_dir: default ``ssl_{split}_wavs``.
        frame_size: ``(width, height)`` the boxes are drawn in (the reference hard-codes 320x180).
        image_size: frames are resized to ``(image_size, image_size)``.
        sample_rate: audio is resampled to this rate (SSPL/SemiPL: 16 kHz).
        duration: seconds of audio per sample.
        audio_position: where the window lies in the clip (0.5: centred on the annotated frame).
        augment: applied after ``gt_map`` is built.
        on_error: ``"raise"`` or ``"skip"``.
        allow_resample: if False, audio at another rate is an error (the reference wavs keep the native rate).
        allow_silence: if True, digitally silent audio is accepted.
        verify: decode every sample at construction.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: SplitArg = "test",
        annotations: str | os.PathLike[str] | None = None,
        frames_dir: str | os.PathLike[str] | None = None,
        audio_dir: str | os.PathLike[str] | None = None,
        frame_size: tuple[int, int] = FRAME_SIZE,
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
        root_path = Path(root)
        split_arg: SplitArg = split
        if split in ("train", "test"):
            name = str(split)
            lists = [root_path / f"{name}_list.csv", root_path / f"ChaoticWorld_{name}.csv"]
            split_arg = next((p for p in lists if p.is_file()), lists[0])
            frames_dir = frames_dir if frames_dir is not None else f"ssl_{name}_frames_320x180"
            audio_dir = audio_dir if audio_dir is not None else f"ssl_{name}_wavs"
        if frames_dir is None or audio_dir is None:
            raise ValueError("frames_dir and audio_dir are required unless split is 'train' or 'test'")
        self.frame_size = frame_size
        super().__init__(
            root,
            split=split_arg,
            annotations=annotations,
            image_dir=frames_dir,
            audio_dir=audio_dir,
            image_size=image_size,
            sample_rate=sample_rate,
            duration=duration,
            audio_position=audio_position,
            augment=augment,
            on_error=on_error,
            allow_resample=allow_resample,
            allow_silence=allow_silence,
            verify=verify,
        )

    def read_annotations(self, annotations: str | os.PathLike[str] | None) -> Annotations:
        if annotations is None:
            return Annotations()
        boxes, bad = _parse_chaotic_json(resolve_under(annotations, self.root))
        return Annotations(boxes, bad=bad)

    def _gt_map(self, entry: Entry) -> Tensor | None:
        if entry.boxes is None:
            return None
        if not entry.boxes:
            return torch.zeros(self.image_size, self.image_size)
        return chaotic_gt_map(entry.boxes[0], self.image_size, self.frame_size)
