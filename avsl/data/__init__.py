"""Datasets, transforms and the LightningDataModule."""

from __future__ import annotations

from avsl.data import splits
from avsl.data.datamodule import AVDataModule, split_labeled
from avsl.data.datasets import (
    AVSBenchDataset,
    ChaoticWorldDataset,
    FlickrSoundNetDataset,
    FolderDataset,
    VGGSSDataset,
    VideoDataset,
)
from avsl.data.io import DataError, DataWarning, load_audio, load_image
from avsl.data.settings import SETTINGS, SynthAVSetting
from avsl.data.splits import SplitOverlapWarning, check_overlap, list_splits, load_annotations, load_split
from avsl.data.synthetic import SynthAV, write_synthav
from avsl.data.transforms import AudioJitter, Compose, JointRandomCropFlip

__all__ = [
    "SETTINGS",
    "AVDataModule",
    "AVSBenchDataset",
    "AudioJitter",
    "ChaoticWorldDataset",
    "Compose",
    "DataError",
    "DataWarning",
    "FlickrSoundNetDataset",
    "FolderDataset",
    "JointRandomCropFlip",
    "SplitOverlapWarning",
    "SynthAV",
    "SynthAVSetting",
    "VGGSSDataset",
    "VideoDataset",
    "check_overlap",
    "list_splits",
    "load_annotations",
    "load_audio",
    "load_image",
    "load_split",
    "split_labeled",
    "splits",
    "write_synthav",
]
