"""Sample ids for the avsl metrics: stable int64 keys and de-duplication at ``compute()``.

Lightning's ``DistributedSampler`` pads the evaluation set with repeated samples so that every device gets the same
number of batches. Metrics that keep per-sample values keyed by a sample id can drop those repeats before
aggregating, which makes a multi-device result identical to the single-device one.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "PerSampleMetric",
    "SampleIds",
    "cat_state",
    "dedupe_by_id",
    "hash_sample_id",
    "sample_ids_to_tensor",
    "state_nonempty",
]

SampleIds = Sequence[str] | Sequence[int] | Tensor


def hash_sample_id(sample_id: str) -> int:
    """Map a string id to a signed int64 with BLAKE2b (8-byte digest).

    Stable across processes and runs, unlike Python's salted ``hash()``. Two distinct ids collide with probability
    2^-64 per pair.
    """
    digest = hashlib.blake2b(sample_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def sample_ids_to_tensor(sample_ids: SampleIds, batch_size: int, device: torch.device) -> Tensor:
    """Validate ``sample_ids`` for a batch of ``batch_size`` samples and return them as an int64 tensor.

    Accepts a sequence of str (hashed with :func:`hash_sample_id`), a sequence of int, or a 1-D integer tensor.
    """
    if isinstance(sample_ids, Tensor):
        if sample_ids.ndim != 1 or sample_ids.dtype.is_floating_point or sample_ids.dtype.is_complex:
            raise ValueError(
                f"sample_ids as a tensor must be 1-D and integer, got shape {tuple(sample_ids.shape)} and dtype "
                f"{sample_ids.dtype}"
            )
        if sample_ids.dtype == torch.bool:
            raise ValueError("sample_ids must be integers or strings, got a bool tensor")
        ids = sample_ids.detach().to(device=device, dtype=torch.int64)
    elif isinstance(sample_ids, str):
        raise TypeError("sample_ids must be a sequence of ids (one per sample), got a single str")
    else:
        items: list[object] = list(sample_ids)
        strings = [x for x in items if isinstance(x, str)]
        ints = [int(x) for x in items if isinstance(x, (int, np.integer)) and not isinstance(x, bool)]  # NumPy too
        if len(strings) == len(items):
            values = [hash_sample_id(x) for x in strings]
        elif len(ints) == len(items):
            values = ints
        else:
            raise TypeError("sample_ids must be all str or all int")
        ids = torch.tensor(values, dtype=torch.int64, device=device)
    if ids.numel() != batch_size:
        raise ValueError(f"got {ids.numel()} sample_ids for {batch_size} samples")
    return ids


def _same(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise equality where NaN equals NaN, reduced over every dim but the first."""
    eq = (a == b) | (torch.isnan(a) & torch.isnan(b)) if a.is_floating_point() else a == b
    return eq.reshape(eq.shape[0], -1).all(dim=1)


def dedupe_by_id(ids: Tensor, *values: Tensor) -> tuple[Tensor, ...]:
    """Keep one entry per id, ordered by id; return ``(unique_ids, *values_of_those_entries)``.

    The kept entry is the first occurrence. Repeats normally carry identical values (the padding of a
    ``DistributedSampler`` evaluates the same sample twice); if they do not, for example because the model is not
    deterministic across batch compositions, a ``UserWarning`` says so, since the result may then depend on the
    number of devices. Ordering by id makes every later reduction run in the same order on any number of devices.
    """
    n = ids.numel()
    for v in values:
        if v.shape[0] != n:
            raise ValueError(f"{n} sample ids but {v.shape[0]} values: pass sample_ids in every update or in none")
    uniq, inverse = torch.unique(ids, sorted=True, return_inverse=True)
    positions = torch.arange(n, device=ids.device)
    first = torch.full((uniq.numel(),), n, dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin", include_self=True)
    kept = [v[first] for v in values]
    if uniq.numel() < n:
        for v, k in zip(values, kept):
            if not bool(_same(v, k[inverse]).all()):
                warnings.warn(
                    "some sample_ids were seen more than once with different values; the first occurrence is kept, "
                    "so the result may depend on the number of devices",
                    UserWarning,
                    stacklevel=3,
                )
                break
    return (uniq, *kept)


def state_nonempty(state: list[Tensor] | Tensor) -> bool:
    """Whether a ``cat`` list state (a list before sync, a tensor after) holds any value."""
    if isinstance(state, Tensor):
        return state.numel() > 0
    return any(t.numel() > 0 for t in state)


def cat_state(state: list[Tensor] | Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Concatenate a ``cat`` list state along dim 0 (an empty 1-D tensor if it holds nothing)."""
    if isinstance(state, Tensor):
        return state.to(dtype)
    if not state:
        return torch.zeros(0, dtype=dtype, device=device)
    return dim_zero_cat(state).to(dtype)


class PerSampleMetric(Metric):
    """A metric that keeps one value per sample with the sample's id (``cat`` list states), so that
    :meth:`per_sample` drops the repeats a ``DistributedSampler`` adds (CIoU, Pointing).

    Subclasses compute a batch's values in ``update`` and hand them to :meth:`_store`; ``compute`` aggregates
    :meth:`per_sample`.
    """

    full_state_update = False
    values: list[Tensor] | Tensor  # a list while updating, a tensor after a sync
    sample_ids: list[Tensor] | Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("values", default=[], dist_reduce_fx="cat")
        self.add_state("sample_ids", default=[], dist_reduce_fx="cat")

    def _store(self, values: Tensor, sample_ids: SampleIds | None) -> None:
        values = values.to(self.device)
        self.values.append(values)  # type: ignore[union-attr]
        if sample_ids is not None:
            ids = sample_ids_to_tensor(sample_ids, values.numel(), self.device)
            self.sample_ids.append(ids)  # type: ignore[union-attr]

    def per_sample(self) -> tuple[Tensor, Tensor | None]:
        """The local per-sample values (float64) and their ids (int64, or None), de-duplicated by id.

        Reads this process's states; inside ``with metric.sync_context():`` they hold every device's samples.
        """
        values = dim_zero_cat(self.values) if state_nonempty(self.values) else torch.zeros(0, device=self.device)
        values = values.to(torch.float64)
        if not state_nonempty(self.sample_ids):
            return values, None
        ids = dim_zero_cat(self.sample_ids).to(torch.int64)
        uniq, kept = dedupe_by_id(ids, values)
        return kept, uniq
