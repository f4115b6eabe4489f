"""The shipped split lists and annotations (avsl.data.splits): names, counts, parsing quirks and known overlaps."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from avsl.data import splits
from avsl.data.io import DataError

# Sizes from shared/data/README.md and evaluation.md §7-8.
EXPECTED_SIZES = {
    "flickr_test_249": 249,
    "flickr_test_250": 250,
    "flickr_test_senocak": 250,
    "flickr_10k": 10_000,
    "flickr_144k": 144_000,
    "flickr_labeled_pool": 2_536,
    "vggss_test": 5_158,
    "vggss_test_4692": 4_692,
    "vggss_heard_test": 2_564,
    "vggss_unheard_test": 2_575,
    "vggss_heard_train": 59_468,
    "vggss_10k": 10_000,
    "vggss_144k": 144_000,
    "avsbench_s4_test": 740,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_named_split_sizes_and_clean_ids(name: str) -> None:
    ids = splits.load_split(name)
    assert len(ids) == EXPECTED_SIZES[name]
    assert len(set(ids)) == len(ids)
    # CRLF, extra columns, headers and ".png" suffixes never leak into ids.
    assert not any(("\r" in i or "," in i or i.endswith(".png") or not i) for i in ids)
    assert splits.split_path(name).is_file()


def test_list_splits_names_everything() -> None:
    listed = splits.list_splits()
    assert set(EXPECTED_SIZES) <= set(listed)
    assert {"flickr_test_plus_silent", "vggss_test_plus_silent", "vggss", "flickr"} <= set(listed)
    assert all(isinstance(d, str) and d for d in listed.values())


def test_known_test_list_facts() -> None:
    f249, f250, sen = (set(splits.load_split(n)) for n in ("flickr_test_249", "flickr_test_250", "flickr_test_senocak"))
    assert f249 < f250
    assert f250 - f249 == {"3908875350"}
    assert f250 ^ sen == {"3908875350", "3908875357"}  # the probable typo between SLAVC's and Senocak's lists
    vt = set(splits.load_split("vggss_test"))
    for sub in ("vggss_test_4692", "vggss_heard_test", "vggss_unheard_test"):
        assert set(splits.load_split(sub)) <= vt


@pytest.mark.parametrize(
    ("train", "test", "count"),
    [("flickr_10k", "flickr_test_250", 1), ("flickr_144k", "flickr_test_250", 20), ("vggss_10k", "vggss_test", 238)],
)
def test_check_overlap_reproduces_the_known_leakage(train: str, test: str, count: int) -> None:
    assert len(splits.check_overlap(splits.load_split(train), test)) == count


def test_vggss_144k_overlap_and_no_overlap_for_heard_train() -> None:
    assert len(splits.check_overlap(splits.load_split("vggss_144k"), "vggss_test")) == 3_709
    assert splits.check_overlap(splits.load_split("vggss_heard_train"), "vggss_test") == set()


def test_warn_test_overlap_names_both_lists_and_the_count() -> None:
    train = splits.load_split("vggss_10k")
    with pytest.warns(
        splits.SplitOverlapWarning, match=r"split 'vggss_10k' shares ids .*238 with test list 'vggss_test'"
    ):
        out = splits.warn_test_overlap(train, "vggss", "split 'vggss_10k'")
    assert out == {"vggss_test": 238}
    # A test list (or a subset of one) is an evaluation split: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert splits.warn_test_overlap(splits.load_split("vggss_heard_test"), "vggss", "heard") == {}


def test_annotations_by_name() -> None:
    vggss = splits.load_annotations("vggss")
    assert len(vggss) == 5_158
    assert vggss["zpWuikVorYg_000032"] == [[0.403125, 0.253125, 0.6, 0.75]]
    flickr = splits.load_annotations("flickr")
    assert len(flickr) == 2_786
    assert set(splits.load_split("flickr_test_250")) <= set(flickr)
    assert flickr["10008553263"] == [[88.0, 18.0, 161.0, 136.0], [76.0, 19.0, 192.0, 256.0]]
    # The labeled pool is the annotated ids minus every Flickr test list.
    pool = set(splits.load_split("flickr_labeled_pool"))
    assert pool <= set(flickr)
    assert not pool & set(splits.load_split("flickr_test_250"))


def test_negative_pairs() -> None:
    flickr = splits.load_negative_pairs("flickr_test_plus_silent")
    assert len(flickr) == 250
    assert flickr[0] == ("10000130166", "10437048305")
    assert len(splits.load_negative_pairs("vggss_test_plus_silent")) == 5_158
    with pytest.raises(KeyError, match="load_negative_pairs"):
        splits.load_split("vggss_test_plus_silent")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown split 'vggss_tset'; known: .*vggss_test"):
        splits.load_split("vggss_tset")


def test_read_id_file_quirks(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_bytes(b"name,category\r\nabc.png,1\r\n\r\n def ,2\r\nghi_000010\r\n")
    assert splits.read_id_file(path) == ["abc", "def", "ghi_000010"]
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(b"video,audio,label\r\na,b,non-sounding\r\n")
    assert splits.read_pair_file(pairs) == [("a", "b")]
    pairs.write_text("a,b\nc\n")  # a DataError (on_error and `except DataError` see it), not a bare ValueError
    with pytest.raises(DataError, match=r"pairs\.csv: line 2 is not a 'video,audio' pair: 'c'"):
        splits.read_pair_file(pairs)
