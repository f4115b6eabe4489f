"""Benchmark readers: one ``torch.utils.data.Dataset`` per benchmark, each yielding :class:`avsl.types.AVSample`.

Readers are cheap to construct (they read an index and list directories; media are decoded in ``__getitem__``) and
share one error policy (``on_error``, ``verify``, ``skipped``, ``report()``); see ``docs/data.md``.
"""

from __future__ import annotations

from avsl.data.datasets.avsbench import AVSBenchDataset
from avsl.data.datasets.base import AVDataset, Entry
from avsl.data.datasets.chaotic import ChaoticWorldDataset, chaotic_gt_map
from avsl.data.datasets.flickr import FlickrSoundNetDataset, parse_flickr_xml
from avsl.data.datasets.folder import FolderDataset
from avsl.data.datasets.vggss import VGGSSDataset
from avsl.data.datasets.video import VideoDataset

__all__ = [
    "AVDataset",
    "AVSBenchDataset",
    "ChaoticWorldDataset",
    "Entry",
    "FlickrSoundNetDataset",
    "FolderDataset",
    "VGGSSDataset",
    "VideoDataset",
    "chaotic_gt_map",
    "parse_flickr_xml",
]
