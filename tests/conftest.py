"""Shared pytest configuration."""

from __future__ import annotations

import os

# Unit tests never talk to wandb's servers (docs/install.md, pitfall 6).
os.environ.setdefault("WANDB_MODE", "disabled")
