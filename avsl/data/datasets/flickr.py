"""Flickr-SoundNet with Senocak et al.'s (CVPR'18) box annotations: the consensus GT protocol."""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

from torch import Tensor

from avsl.data import splits
from avsl.data.datasets.base import Boxes, Entry, resolve_under
from avsl.data.datasets.folder import Annotations, PairedFolderDataset
from avsl.data.io import DataError
from avsl.types import AVSample

__all__ = ["FLICKR_FRAME", "FlickrSoundNetDataset", "parse_flickr_xml"]

FLICKR_FRAME = 256
"""Side of the frame Flickr boxes are drawn in (SoundNet frames are 256x256)."""


def parse_flickr_xml(path: str | os.PathLike[str]) -> Boxes:
    """Read the boxes of one Senocak-style annotation XML (all annotators together), in 256-px coordinates.

    The schema is inferred from the one parser every reference shares (evaluation.md §7.1): the root's children are
    groups, every grandchild is a ``<bbox>`` element, and a ``<bbox>`` has five children: a label (skipped), then
    xmin, ymin, xmax, ymax. Where the references would crash (another grandchild, a short box, a non-number) this
    raises a :class:`~avsl.data.io.DataError` naming the file.
    """
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except (ET.ParseError, OSError) as err:
        raise DataError(p, f"unreadable annotation XML ({err})", kind="bad annotation") from None
    boxes: list[tuple[float, ...]] = []
    for group in root:
        for element in group:
            if element.tag != "bbox":
                raise DataError(
                    p,
                    f"unexpected <{element.tag}> under <{group.tag}>: every grandchild must be <bbox>",
                    "bad annotation",
                )
            values = list(element)[1:]
            if len(values) != 4:
                raise DataError(
                    p, f"a <bbox> needs a label and 4 coordinates, found {len(values) + 1} children", "bad annotation"
                )
            try:
                box = tuple(float((v.text or "").strip()) for v in values)
            except ValueError:
                texts = [v.text for v in values]
                raise DataError(p, f"non-numeric box coordinates {texts}", kind="bad annotation") from None
            if not all(math.isfinite(v) for v in box):  # "nan" and "inf" parse as floats (inf was clipped to 256)
                raise DataError(p, f"box coordinates {list(box)} are not all finite", kind="bad annotation")
            boxes.append(box)
    return tuple(boxes)


class FlickrSoundNetDataset(PairedFolderDataset):
    """Flickr-SoundNet (Senocak et al. 2018) in the LVS / EZ-VSL layout, with the consensus GT.

    Layout (evaluation.md §7.1, §7.4)::

        root/frames/<id>.jpg        256x256 SoundNet frames
        root/audio/<id>.wav
        root/Annotations/<id>.xml   optional: Senocak's XMLs (pass annotations="Annotations")

    Ground truth: boxes are xyxy pixels in the 256-px frame, all annotators' boxes of an image together; ``gt_map``
    is the consensus map ``min(sum_j box_j / 2, 1)`` with values {0, 0.5, 1}
    (:func:`avsl.metrics.functional.gt_map_from_boxes` with ``"flickr"``), built at ``image_size``. Coordinates
    are clipped to [0, 256] first: the real data never leaves the frame (its range is 1..256), and clipping keeps a
    stray negative coordinate from wrapping around as a negative slice index would. ``num_sources`` is 1 if the
    image has boxes, else 0.

    Test lists: ``"flickr_test_249"`` (LVS, EZ-VSL, SSPL) or ``"flickr_test_250"`` (SLAVC, SSL-alignment); report
    which. Training on ``flickr_10k``/``flickr_144k`` warns about their 1/20 test ids (:class:`~avsl.data.splits.
    SplitOverlapWarning`); ``drop_test_overlap=True`` drops them.

    Args:
        root: the dataset folder.
        split: a named list, a name under ``root/splits/``, a csv/txt of ids, a list of ids, or None for every id
            with both files.
        annotations: ``"flickr"`` (the shipped box file derived from the XMLs: 2,786 annotated ids, all 250 test
            ids included), a directory of ``<id>.xml`` files (relative paths are looked up under ``root``
            first), a JSON box file (``[{"file", "bbox": [[x1, y1, x2, y2], ...]}]`` in 256-px coordinates), or None
            for an unlabeled set.
        masks_dir: folder of binary ``<id>.png`` masks, giving ``mask``.
        negatives: SLAVC non-sounding pairs (``"flickr_test_plus_silent"``, a ``video,audio`` csv or a list of
            pairs), appended with ``gt_map`` all zeros and ``num_sources`` 0. Needs ``annotations``.
        exclude: ids to leave out: a named list, a csv/txt path or a list of ids.
        drop_test_overlap: drop the ids of a training split that are in a Flickr test list (instead of warning).
        image_dir: frames folder, relative to ``root``.
        audio_dir: audio folder, relative to ``root``.
        image_size: frames are resized to ``(image_size, image_size)``.
        sample_rate: audio is resampled to this rate.
        duration: seconds of audio per sample (short clips are tiled).
        audio_position: where the window lies in the clip: 0.5 centres it, 0 takes the start.
        augment: applied after ``gt_map`` and ``mask`` are built.
        on_error: ``"raise"`` (default) or ``"skip"``.
        allow_resample: if False, audio at another rate is an error.
        allow_silence: if True, digitally silent audio is accepted.
        verify: decode every sample (and parse every XML) at construction.
    """

    gt_style = "flickr"
    benchmark = "flickr"

    def read_annotations(self, annotations: str | os.PathLike[str] | None) -> Annotations:
        if annotations == "flickr":  # the shipped box file derived from the XMLs
            return Annotations({k: tuple(tuple(b) for b in v) for k, v in splits.load_annotations("flickr").items()})
        if annotations is not None and resolve_under(annotations, self.root).is_dir():
            return Annotations(directory=resolve_under(annotations, self.root))  # <id>.xml, parsed at load time
        return super().read_annotations(annotations)

    def _load_entry(self, entry: Entry) -> AVSample:
        if entry.annotation_file is not None:
            # XML annotations are parsed lazily, once per load.
            boxes = parse_flickr_xml(entry.annotation_file)
            entry = replace(entry, boxes=boxes, num_sources=1 if boxes else 0)
        return super()._load_entry(entry)

    def _gt_map(self, entry: Entry) -> Tensor | None:
        if entry.boxes is None:
            return None
        clipped = tuple(tuple(min(max(v, 0.0), float(FLICKR_FRAME)) for v in box) for box in entry.boxes)
        return self._boxes_to_map(clipped, entry)
