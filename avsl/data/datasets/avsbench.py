"""AVSBench (Zhou et al. ECCV'22) S4 and MS3: per-frame segmentation masks of the sounding objects."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Literal

from avsl.data.datasets.base import Augment, AVDataset, Entry, OnError, resolve_under
from avsl.data.io import DataError
from avsl.data.transforms import resize_mask
from avsl.types import AVSample

__all__ = ["AVSBenchDataset", "read_meta"]

FRAMES_PER_VIDEO = 5
"""AVSBench keeps 5 frames per 5-s video, one per second (frame k at about (k - 1) + 15/16 s)."""


def read_meta(path: Path, subset: Literal["s4", "ms3"]) -> list[tuple[str, str, str]]:
    """(name, category, split) of every video of an AVSBench metadata csv; category is "" for MS3. The reader and
    ``avsl prepare avsbench`` both read it here.

    Columns by header (name, category, split; any order), else by position as AVSBench's loaders read them (S4: 0
    name, 2 category, 3 split; MS3: 0 name, 1 split). A UTF-8 byte-order mark and blank lines are fine; split values
    are compared in lower case. Names, categories and splits become folder names, so each must be a plain one.

    Raises:
        DataError: the csv is empty, a row lacks a column, a value is not a plain name, or a name repeats.
    """
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(path, "empty metadata csv", kind="bad annotation")
    header = [c.strip().lower() for c in rows[0]]
    has_header = "split" in header or "name" in header
    body = rows[1:] if has_header else rows
    # AVSBench's loaders read the columns by position; the derived S4 test list orders them name, category, split, so
    # names win when there is a header.
    name_col = header.index("name") if "name" in header else 0
    split_col = header.index("split") if "split" in header else (3 if subset == "s4" else 1)
    cat_col = header.index("category") if "category" in header else (2 if subset == "s4" else None)
    need = max(name_col, split_col, cat_col or 0)
    out: list[tuple[str, str, str]] = []
    first_line: dict[str, int] = {}
    for line, row in enumerate(body, start=2 if has_header else 1):
        if len(row) <= need:
            raise DataError(path, f"line {line} has {len(row)} columns, expected at least {need + 1}", "bad annotation")
        name, split = row[name_col].strip(), row[split_col].strip().lower()
        category = row[cat_col].strip() if cat_col is not None else ""
        named = [("name", name), ("split", split)] + ([("category", category)] if cat_col is not None else [])
        for what, value in named:
            if not _plain(value):
                raise DataError(path, f"line {line}: {what} {value!r} is not a plain name", "bad annotation")
        if name in first_line:
            raise DataError(path, f"line {line}: {name!r} repeats line {first_line[name]}", "bad annotation")
        first_line[name] = line
        out.append((name, category, split))
    return out


def _plain(value: str) -> bool:
    """A non-empty name that stays one folder level: no separator, not '.' or '..'."""
    return bool(value) and value not in (".", "..") and not any(sep in value for sep in ("/", "\\", "\x00"))


class AVSBenchDataset(AVDataset):
    """AVSBench S4 (single source) or MS3 (multiple sources): one sample per (video, frame), with its mask.

    Layout: the published one (evaluation.md §7.5), with the waveforms in ``audio_wav/`` (written by AVSBench's own
    ``preprocess_scripts``, 16 kHz, and referenced by SSL-alignment's AVSBench box files)::

        root/s4_meta_data.csv                 name, start_time, category, split (read by header, else by position)
        root/s4_data/visual_frames/{split}/{category}/{name}/{name}_{k}.png      k = 1..5, 224x224
        root/s4_data/gt_masks/{split}/{category}/{name}/{name}_{k}.png           train: k = 1 only
        root/s4_data/audio_wav/{split}/{category}/{name}.wav

        root/ms3_meta_data.csv                name, ..., split
        root/ms3_data/visual_frames/{name}/{name}.mp4_{k}.png
        root/ms3_data/gt_masks/{split}/{name}/{name}_{k}.png                     palette PNGs
        root/ms3_data/audio_wav/{split}/{name}.wav

    ``root`` is the folder holding the meta csv and ``s4_data``/``ms3_data`` (AVSBench's ``Single-source`` or
    ``Multi-sources``); pointing it at ``s4_data`` itself also works when ``meta_csv`` is given or sits beside it.

    Audio: the published ``audio_log_mel/*.pkl`` hold VGGish log-mel tensors, not waveforms, and avsl methods compute
    their own spectrograms from waveforms, so they are not used (nor unpickled: pickles can run code). A layout with
    only the pickles raises a :class:`~avsl.data.io.DataError` that says so.

    Sample ``<name>_<k>``: frame k, the audio window of ``duration`` seconds centred on second k's segment
    ``[k - 1, k)`` (``duration=1.0``, the default, gives exactly that segment, as AVSBench pairs them; a longer
    window is shifted to stay inside the clip), ``mask`` (foreground = non-zero pixels / palette indices),
    ``gt_map`` = ``mask``, and ``num_sources`` 1 if the mask is non-empty, else 0 (for MS3, 1 means "at least one":
    the masks do not separate the sources; 29 MS3 test frames are empty).

    Args:
        root: see above.
        subset: ``"s4"`` or ``"ms3"``.
        split: ``"train"``, ``"val"`` or ``"test"`` (the meta csv's split column).
        meta_csv: the metadata csv; default ``root/{subset}_meta_data.csv``. For S4 test without the official csv,
            ``avsl.data.splits.split_path("avsbench_s4_test")`` lists the 740 test videos (name, category, split).
        with_masks: True: one sample per frame that has a mask (S4 train: frame 1 only), with ``mask`` and
            ``gt_map``. False: all 5 frames of every video, without masks (self-supervised training).
        image_size: frames and masks are resized to ``(image_size, image_size)`` (they are 224x224 already).
        sample_rate: audio is resampled to this rate.
        duration: seconds of audio per sample, centred on the frame's second.
        augment: applied after ``mask``/``gt_map`` are built.
        on_error: ``"raise"`` or ``"skip"``.
        allow_resample: if False, audio at another rate is an error.
        allow_silence: if True, digitally silent audio is accepted.
        verify: decode every sample at construction.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        subset: Literal["s4", "ms3"],
        split: Literal["train", "val", "test"] = "test",
        meta_csv: str | os.PathLike[str] | None = None,
        with_masks: bool = True,
        image_size: int = 224,
        sample_rate: int = 16000,
        duration: float = 1.0,
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
            audio_position=0.5,
            augment=augment,
            on_error=on_error,
            allow_resample=allow_resample,
            allow_silence=allow_silence,
        )
        if subset not in ("s4", "ms3"):
            raise ValueError(f"subset must be 's4' or 'ms3', got {subset!r}")
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        self.subset = subset
        self.split = split
        self.with_masks = with_masks
        root_path = Path(root)
        self.root = root_path
        if (root_path / f"{subset}_data").is_dir():
            data = root_path / f"{subset}_data"
        elif (root_path / "visual_frames").is_dir():
            data = root_path
        else:
            raise DataError(
                root_path, f"no {subset}_data/ (nor visual_frames/) directory: not an AVSBench root", "missing file"
            )
        self.data_dir = data
        self._source = f"root={str(root_path)!r}, subset={subset!r}, split={split!r}"

        audio_root = data / "audio_wav"
        if not audio_root.is_dir():
            if (data / "audio_log_mel").is_dir():
                raise DataError(
                    data,
                    "only audio_log_mel/ (VGGish log-mel pickles) was found, but avsl methods take waveforms: provide "
                    "audio_wav/{split}/... with the 16 kHz wavs (AVSBench's preprocess_scripts write them from the "
                    "videos); the pickles are not loaded",
                    kind="missing file",
                )
            raise DataError(audio_root, "audio_wav directory not found", kind="missing file")

        videos = self._read_meta(meta_csv, root_path, data)
        problems: list[tuple[str, str, str]] = []
        listings: dict[Path, set[str]] = {}

        def listing(d: Path) -> set[str]:
            if d not in listings:
                listings[d] = set(os.listdir(d)) if d.is_dir() else set()
            return listings[d]

        for name, category in videos:
            if subset == "s4":
                frame_dir = data / "visual_frames" / split / category / name
                mask_dir = data / "gt_masks" / split / category / name
                audio_path = audio_root / split / category / f"{name}.wav"
            else:
                frame_dir = data / "visual_frames" / name
                mask_dir = data / "gt_masks" / split / name
                audio_path = audio_root / split / f"{name}.wav"
            frames_here = listing(frame_dir)
            masks_here = listing(mask_dir)
            has_audio = audio_path.name in listing(audio_path.parent)
            if with_masks and not masks_here:
                for k in range(1, FRAMES_PER_VIDEO + 1):
                    problems.append((f"{name}_{k}", "missing file", f"{name}: no masks in {mask_dir}"))
                continue
            for k in range(1, FRAMES_PER_VIDEO + 1):
                sample_id = f"{name}_{k}"
                frame_name = f"{name}_{k}.png" if subset == "s4" else f"{name}.mp4_{k}.png"
                mask_name = f"{name}_{k}.png"
                if with_masks and mask_name not in masks_here:
                    continue  # S4 train has the first mask only: that frame is the labeled sample
                missing = [] if frame_name in frames_here else [f"frame {frame_dir / frame_name}"]
                missing += [] if has_audio else [f"audio {audio_path}"]
                if missing:
                    problems.append((sample_id, "missing file", f"{sample_id}: no {' and no '.join(missing)}"))
                    continue
                self.entries.append(
                    Entry(
                        sample_id=sample_id,
                        image=frame_dir / frame_name,
                        audio=audio_path,
                        mask=mask_dir / mask_name if with_masks else None,
                        time=k - 0.5,
                    )
                )
        drop = self._drop_or_raise(problems, root_path, f"samples of {subset} {split} cannot be used")
        self.entries = [e for e in self.entries if e.sample_id not in drop]
        if verify:
            self._verify()

    def _read_meta(self, meta_csv: str | os.PathLike[str] | None, root: Path, data: Path) -> list[tuple[str, str]]:
        """(name, category) of the videos of this split; category is "" for MS3."""
        if meta_csv is not None:
            path = resolve_under(meta_csv, root)
        else:
            candidates = [root / f"{self.subset}_meta_data.csv", data.parent / f"{self.subset}_meta_data.csv"]
            path = next((c for c in candidates if c.is_file()), candidates[0])
        if not path.is_file():
            raise DataError(path, "AVSBench metadata csv not found (pass meta_csv=...)", kind="missing file")
        rows = read_meta(path, self.subset)
        splits = {split for _, _, split in rows}
        if self.split not in splits:
            raise DataError(path, f"no video of split {self.split!r}; its splits: {sorted(splits)}", "bad annotation")
        return [(name, category) for name, category, split in rows if split == self.split]

    def _load_entry(self, entry: Entry) -> AVSample:
        image = self._load_image(entry)
        audio = self._load_audio(entry)
        mask = self._load_mask(entry)
        if mask is None:
            return self._assemble(entry, image, audio)
        mask = resize_mask(mask, self.image_size)
        return self._assemble(entry, image, audio, gt_map=mask, mask=mask, num_sources=int(bool(mask.any())))

    def _root_for_errors(self) -> str:
        return str(self.root)
