"""VGG-Sound Source (VGG-SS, Chen et al. CVPR'21) and VGGSound training sets; also reads SynthAV folders."""

from __future__ import annotations

import os

from avsl.data import splits
from avsl.data.datasets.folder import Annotations, PairedFolderDataset

__all__ = ["VGGSSDataset"]


class VGGSSDataset(PairedFolderDataset):
    """VGG-SS / VGGSound in the LVS and EZ-VSL layout, and SynthAV folders written by ``avsl synth``.

    Layout (evaluation.md §7.4)::

        root/frames/<id>.jpg          one frame per clip (normally the middle frame)
        root/audio/<id>.wav           the clip's audio, any rate, mono or stereo
        root/masks/<id>.png           optional binary masks (SynthAV)
        root/splits/<name>.txt        optional local split lists (SynthAV: train, val, test)
        root/annotations.json         optional boxes (SynthAV), or use the shipped ``annotations="vggss"``

    Ground truth: boxes are normalized xyxy (``vggss.json`` schema: a list of ``{"file", "class", "bbox":
    [[x1, y1, x2, y2], ...]}``), and ``gt_map`` is their binary union after clipping to [0, 1]
    (:func:`avsl.metrics.functional.gt_map_from_boxes` with ``"vggss"``), built at ``image_size``. The 18
    degenerate or garbage boxes of ``vggss.json`` add nothing, as in the references; they are not repaired.
    A sample whose entry has an empty ``bbox`` list (a SynthAV negative) gets an all-zero ``gt_map``.
    ``num_sources`` is 1 if the entry has boxes, else 0 (or the entry's integer ``"num_sources"``).

    A SynthAV folder loads unchanged::

        VGGSSDataset(dir, split="test", annotations="annotations.json", masks_dir="masks")

    Training on a list that overlaps the VGG-SS test set (``vggss_10k``: 238 ids, ``vggss_144k``: 3,709) warns with a
    :class:`~avsl.data.splits.SplitOverlapWarning`; ``drop_test_overlap=True`` or ``exclude="vggss_test"`` drops them.

    Args:
        root: the dataset folder.
        split: a named list (``"vggss_test"``, ``"vggss_144k"``, ...; :func:`avsl.data.splits.list_splits`), a
            name under ``root/splits/`` (``"train"``), a csv/txt of ids (CRLF and extra columns are fine), a list
            of ids, or None for every id with both a frame and an audio file (EZ-VSL's "full" sets).
        annotations: ``"vggss"`` (the shipped ``vggss.json``), a JSON path in that schema (relative paths are
            looked up under ``root`` first), or None for an unlabeled set (no ``gt_map``, no ``num_sources``).
        masks_dir: folder of binary ``<id>.png`` masks, giving ``mask``.
        negatives: SLAVC non-sounding pairs appended to the set (``"vggss_test_plus_silent"``, a
            ``video,audio`` csv, or a list of pairs): the frame of one clip with the audio of another, id
            ``"<video>+<audio>"``, ``gt_map`` all zeros, ``num_sources`` 0. Needs ``annotations``.
        exclude: ids to leave out: a named list, a csv/txt path or a list of ids.
        drop_test_overlap: drop the ids of a training split that are in the VGG-SS test list (instead of warning).
        image_dir: frames folder, relative to ``root``.
        audio_dir: audio folder, relative to ``root``.
        image_size: frames are resized to ``(image_size, image_size)`` (EZ-VSL's ``Resize((224, 224))``: the aspect
            ratio changes but normalized boxes stay aligned).
        sample_rate: audio is resampled to this rate.
        duration: seconds of audio per sample (EZ-VSL, SSPL: 3 s; short clips are tiled).
        audio_position: where the window lies in the clip: 0.5 centres it (EZ-VSL, SSPL), 0 takes the start (LVS).
        augment: applied after ``gt_map`` and ``mask`` are built (e.g.
            :class:`~avsl.data.transforms.JointRandomCropFlip`).
        on_error: ``"raise"`` (default) or ``"skip"`` (see ``docs/data.md``, "Bad input").
        allow_resample: if False, audio at another rate than ``sample_rate`` is an error.
        allow_silence: if True, digitally silent audio is accepted (SLAVC-style silent negatives).
        verify: decode every sample at construction, so corrupt files are found up front.
    """

    gt_style = "vggss"
    benchmark = "vggss"

    def read_annotations(self, annotations: str | os.PathLike[str] | None) -> Annotations:
        if annotations == "vggss":  # the shipped vggss.json
            return Annotations({k: tuple(tuple(b) for b in v) for k, v in splits.load_annotations("vggss").items()})
        return super().read_annotations(annotations)
