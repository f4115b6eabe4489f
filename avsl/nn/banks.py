"""Per-sample pseudo-label banks (used by XPL, ``avsl.methods.xpl``).

:class:`PseudoLabelBank` stores one tensor per ``sample_id`` (hashed to int64 by :func:`hash_ids`) and grows as new
ids arrive. Its content is a pair of buffers, so it is saved in checkpoints and restored on resume, whatever its size.
:func:`ema_update` is PL-EMA, the blend of a new pseudo-label into the stored one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from avsl.metrics._ids import sample_ids_to_tensor

__all__ = ["PseudoLabelBank", "ema_update", "hash_ids"]


def ema_update(previous: Tensor, current: Tensor, momentum: float, seen: Tensor | None = None) -> Tensor:
    """PL-EMA: ``(1 - momentum) * current + momentum * previous``; entries not ``seen`` before take ``current``.

    Args:
        previous: (N, ...) stored pseudo-labels (anything where ``seen`` is False).
        current: (N, ...) new (sharpened) pseudo-labels.
        momentum: the weight of the previous label (the XPL figure's beta), in [0, 1).
        seen: (N,) bool, whether ``previous`` holds a real value; None means all seen.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if previous.shape != current.shape:
        raise ValueError(f"previous {tuple(previous.shape)} and current {tuple(current.shape)} differ in shape")
    blended = momentum * previous + (1.0 - momentum) * current
    if seen is None:
        return blended
    mask = seen.view(-1, *([1] * (current.dim() - 1)))
    return torch.where(mask, blended, current)


def hash_ids(sample_ids: Sequence[str] | Sequence[int] | Tensor, device: torch.device | None = None) -> Tensor:
    """Sample ids as int64 keys (strings hashed with BLAKE2b, stable across processes and runs)."""
    n = sample_ids.shape[0] if isinstance(sample_ids, Tensor) else len(sample_ids)
    return sample_ids_to_tensor(sample_ids, n, device or torch.device("cpu"))


def _device_index(values: list[int], device: torch.device) -> Tensor:
    """A host list as an int64 tensor on ``device``. On CUDA through pinned memory with a non-blocking copy: a copy
    from pageable memory would make the host wait for the device (torch.cuda.set_sync_debug_mode reports it)."""
    host = torch.tensor(values, dtype=torch.int64)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


class PseudoLabelBank(nn.Module):
    """One stored tensor per sample, keyed by int64 sample keys (see :func:`hash_ids`).

    Two buffers hold the content: ``keys`` (N,) int64 and ``values`` (N, *shape) float, in insertion order; the
    per-entry ``shape`` is fixed by the first :meth:`write`. The bank grows when unknown keys are written, and
    loading a state dict resizes it to the saved size, so checkpoints of any size restore into a freshly built
    (empty) bank. A Python dict from key to row makes lookups O(batch); it is rebuilt after loading. Keys given on the
    host (CPU, as :func:`hash_ids` returns them) keep lookups and writes free of device synchronisations.

    Writing the same key twice in one call keeps the first occurrence (a ``DistributedSampler`` pads an epoch with
    repeats of early samples; they carry the same sample).
    """

    keys: Tensor
    values: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("values", torch.zeros(0))
        self._rows: dict[int, int] | None = {}

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def entry_shape(self) -> tuple[int, ...] | None:
        """The shape of one entry, or None while the bank is empty."""
        return tuple(self.values.shape[1:]) if len(self) else None

    def _index(self) -> dict[int, int]:
        if self._rows is None:
            self._rows = {k: i for i, k in enumerate(self.keys.tolist())}
        return self._rows

    def rows(self, keys: Tensor) -> Tensor:
        """Row of every key (B,) in the bank, -1 where unknown (on the bank's device)."""
        index = self._index()
        return _device_index([index.get(k, -1) for k in keys.tolist()], self.values.device)

    def read(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        """``(values (B, *shape), found (B,) bool)``; unknown keys read as zeros (the bank must not be empty)."""
        if not len(self):
            raise RuntimeError("the bank is empty: write before reading")
        rows = self.rows(keys)
        found = rows >= 0
        out = self.values[rows.clamp_min(0)]
        # torch.where, not out[~found] = 0: a boolean index would wait for the device to count the unknown keys
        return torch.where(found.view(-1, *([1] * (out.dim() - 1))), out, torch.zeros_like(out)), found

    def write(self, keys: Tensor, values: Tensor) -> None:
        """Store ``values`` (B, *shape) under ``keys`` (B,): overwrite known keys, append new ones."""
        if keys.dim() != 1 or values.shape[0] != keys.shape[0]:
            raise ValueError(f"keys (B,) and values (B, ...) expected, got {tuple(keys.shape)}, {tuple(values.shape)}")
        shape = self.entry_shape
        if shape is not None and tuple(values.shape[1:]) != shape:
            raise ValueError(f"entries of this bank have shape {shape}, got {tuple(values.shape[1:])}")
        index = self._index()
        key_list = keys.tolist()
        first: dict[int, int] = {}
        for pos, k in enumerate(key_list):
            first.setdefault(k, pos)
        known = [(pos, index[k]) for k, pos in first.items() if k in index]
        new = [(pos, k) for k, pos in first.items() if k not in index]
        values = values.detach()
        if not len(self):
            # The entry shape is fixed by the first write; the dtype stays the buffer's (float32 unless converted).
            self.values = torch.zeros(0, *values.shape[1:], dtype=self.values.dtype, device=values.device)
            self.keys = self.keys.to(values.device)
        values = values.to(self.values.device, self.values.dtype)
        if known:
            src = _device_index([p for p, _ in known], values.device)
            self.values[_device_index([r for _, r in known], values.device)] = values[src]
        if new:
            start = len(self)
            self.keys = torch.cat([self.keys, _device_index([k for _, k in new], self.keys.device)])
            self.values = torch.cat([self.values, values[_device_index([p for p, _ in new], values.device)]])
            for offset, (_, k) in enumerate(new):
                index[k] = start + offset

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A checkpoint's bank usually differs in size from a freshly built one (empty, or grown since): take the
        # saved shapes before the default copy, which requires equal shapes.
        for name in ("keys", "values"):
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor):
                current: Tensor = getattr(self, name)
                setattr(self, name, torch.empty(saved.shape, dtype=current.dtype, device=current.device))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._rows = None  # rebuilt from the loaded keys on the next lookup
