from __future__ import annotations

import pytest
import torch

from avsl.data import AVDataModule, SynthAV, split_labeled


def _synth(n: int, seed: int = 0) -> SynthAV:
    return SynthAV(num_clips=n, seed=seed, image_size=32, duration=0.25, sample_rate=8000)


def test_split_labeled_is_deterministic_and_disjoint() -> None:
    data = _synth(20)
    labeled, unlabeled = split_labeled(data, 0.1, seed=3)
    again, _ = split_labeled(data, 0.1, seed=3)
    assert len(labeled) == 2 and len(unlabeled) == 18
    assert list(labeled.indices) == list(again.indices)
    assert not set(labeled.indices) & set(unlabeled.indices)
    assert sorted([*labeled.indices, *unlabeled.indices]) == list(range(20))
    other, _ = split_labeled(data, 0.1, seed=4)
    assert list(other.indices) != list(labeled.indices)
    tiny, rest = split_labeled(_synth(5), 0.01)
    assert len(tiny) == 1 and len(rest) == 4  # at least one sample on each side
    with pytest.raises(ValueError, match="fraction"):
        split_labeled(data, 1.5)


def test_train_batches_mix_labeled_and_unlabeled() -> None:
    labeled, unlabeled = split_labeled(_synth(12), 0.25)
    dm = AVDataModule(unlabeled, labeled, batch_size=4, labeled_batch_size=2)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 2  # one pass over the 9 unlabeled samples, last incomplete batch dropped
    seen_labeled = []
    for item in batches:
        batch = item[0] if isinstance(item, tuple) else item
        assert set(batch) == {"unlabeled", "labeled"}
        assert batch["unlabeled"]["image"].shape == (4, 3, 32, 32)
        assert isinstance(batch["unlabeled"]["sample_id"], list)
        seen_labeled += batch["labeled"]["sample_id"]
    # the 3 labeled samples come in batches of 2 and 1 (labeled batches are never dropped)
    assert len(seen_labeled) == 3 and len(set(seen_labeled)) == 3


def test_no_labeled_key_without_labeled_set() -> None:
    dm = AVDataModule(_synth(8), batch_size=4)
    item = next(iter(dm.train_dataloader()))
    batch = item[0] if isinstance(item, tuple) else item
    assert set(batch) == {"unlabeled"}
    assert dm.val_dataloader() == []  # no validation set: Lightning skips validation


def test_missing_sets_and_sample_rate() -> None:
    dm = AVDataModule(val=_synth(4), batch_size=2)
    with pytest.raises(ValueError, match="no 'unlabeled' training set"):
        dm.train_dataloader()
    with pytest.raises(ValueError, match="no 'test' set"):
        dm.test_dataloader()
    assert dm.sample_rate == 8000
    mixed = AVDataModule(_synth(4), val=SynthAV(num_clips=2, sample_rate=16000))
    with pytest.raises(ValueError, match="disagree on sample_rate"):
        _ = mixed.sample_rate
    eval_batch = next(iter(dm.val_dataloader()))
    assert torch.is_tensor(eval_batch["gt_map"]) and eval_batch["image"].shape[0] == 2


def test_a_training_set_that_gives_no_batch_is_an_error() -> None:
    """It trained no step and ended as if all were well (empty splits, or fewer clips than a dropped batch)."""
    with pytest.raises(ValueError, match=r"'unlabeled' set has 0 samples .* check its split and files"):
        AVDataModule(_synth(0), batch_size=2).train_dataloader()
    with pytest.raises(ValueError, match=r"'unlabeled' set has 3 samples .* lower batch_size \(4\) or drop_last"):
        AVDataModule(_synth(3), batch_size=4).train_dataloader()
    assert sum(1 for _ in AVDataModule(_synth(3), batch_size=4, drop_last=False).train_dataloader()) == 1
    with pytest.raises(ValueError, match="'labeled' set is empty"):
        AVDataModule(_synth(4), _synth(0), batch_size=2).train_dataloader()


class _Draws(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Items that are draws of torch's global generator, as an augmentation's are."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(3)


def test_seeded_samples_draw_from_seed_epoch_and_index_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from avsl.data.datamodule import SeededSamples, _mix

    samples = SeededSamples(_Draws(), seed=5)
    key = 2 * 4 + 3  # epoch 2, item 3
    expected = torch.rand(3, generator=torch.Generator().manual_seed(_mix(5, 2, 3)))
    before = torch.random.get_rng_state()
    assert torch.equal(samples[key], expected) and torch.equal(samples[key], expected)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global generator is put back
    assert not torch.equal(samples[key - 4], expected)  # another epoch, another draw

    # Only the CPU generator is seeded: torch.manual_seed also queues a seed for every accelerator not initialised
    # in the process, recording the Python stack each time (about 1 ms per sample in a DataLoader worker).
    def refuse(seed: int) -> None:
        raise AssertionError("torch.manual_seed called per sample")

    monkeypatch.setattr(torch, "manual_seed", refuse)
    assert torch.equal(samples[key], expected)


def test_a_labeled_set_that_cycles_draws_new_augmentations_each_pass() -> None:
    """A labeled set smaller than the unlabeled one is re-iterated within the epoch (max_size_cycle): every pass had
    the same crops, flips and audio shifts, so a 1 % split repeated one augmentation about a hundred times an epoch.
    Passes keep the order (a resumed run counts on it); the first pass draws as before (epoch and index alone)."""
    from avsl.data import JointRandomCropFlip
    from avsl.data.datamodule import _mix

    labeled = SynthAV(
        num_clips=2, seed=1, image_size=32, duration=0.25, sample_rate=8000, augment=JointRandomCropFlip()
    )
    dm = AVDataModule(_synth(12), labeled, batch_size=2, labeled_batch_size=2, seed=3)
    passes = []
    for item in dm.train_dataloader():  # 6 unlabeled batches: 6 passes over the labeled pair
        batch = (item[0] if isinstance(item, tuple) else item)["labeled"]
        passes.append((batch["sample_id"], batch["image"]))
    assert len(passes) == 6 and all(ids == passes[0][0] for ids, _ in passes)
    distinct = {tuple(images.flatten()[::97].tolist()) for _, images in passes}
    assert len(distinct) == 6  # before: 1
    # pass 0 is the augmentation of (seed, epoch 0, index), as before
    order = [int(sid.rsplit("_", 1)[1]) for sid in passes[0][0]]
    for row, index in enumerate(order):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(_mix(3, 0, index))
            assert torch.equal(labeled[index]["image"], passes[0][1][row])
