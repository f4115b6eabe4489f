"""Heatmap overlays and grids (PIL), and a callback that logs them to whichever logger is active."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

__all__ = ["HeatmapLogger", "colorize", "heatmap_grid", "overlay"]

# Control points of the "jet" colormap (value -> RGB): blue, cyan, yellow, red, as in the references' figures.
_JET = np.array(
    [
        [0.0, 0.0, 0.0, 0.5],
        [0.11, 0.0, 0.0, 1.0],
        [0.36, 0.0, 1.0, 1.0],
        [0.61, 1.0, 1.0, 0.0],
        [0.86, 1.0, 0.0, 0.0],
        [1.0, 0.5, 0.0, 0.0],
    ]
)


def colorize(heatmap: Tensor | np.ndarray) -> np.ndarray:
    """Map an (H, W) array in [0, 1] to an (H, W, 3) uint8 jet image (values outside [0, 1] are clipped)."""
    values = heatmap.detach().float().cpu().numpy() if isinstance(heatmap, Tensor) else heatmap  # bf16, grad
    h = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
    rgb: np.ndarray = np.stack([np.interp(h, _JET[:, 0], _JET[:, k]) for k in (1, 2, 3)], axis=-1)
    return np.asarray((rgb * 255).round(), dtype=np.uint8)


def _to_uint8_image(image: Tensor) -> np.ndarray:
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}")
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask (inside pixels with an outside 4-neighbour)."""
    pad = np.pad(mask, 1, constant_values=False)
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return np.asarray(mask & ~inner, dtype=bool)


def overlay(image: Tensor, heatmap: Tensor, alpha: float = 0.5, gt_map: Tensor | None = None) -> Image.Image:
    """Blend a (3, H, W) frame in [0, 1] with an (H, W) heatmap in [0, 1]; outline the ground truth in green (both
    maps are resized to the frame if their size differs)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    frame = _to_uint8_image(image)
    heat = heatmap.detach().float().cpu()
    if tuple(heat.shape) != frame.shape[:2]:
        heat = torch.nn.functional.interpolate(heat[None, None], size=frame.shape[:2], mode="bilinear")[0, 0]
    blended = ((1 - alpha) * frame + alpha * colorize(heat.numpy())).round().astype(np.uint8)
    if gt_map is not None:
        gt = gt_map.detach().float().cpu()
        if tuple(gt.shape) != frame.shape[:2]:
            gt = torch.nn.functional.interpolate(gt[None, None], size=frame.shape[:2], mode="nearest")[0, 0]
        edge = _outline(gt.numpy() > 0)
        edge |= np.roll(edge, 1, axis=0) | np.roll(edge, 1, axis=1)  # 2-px lines stay visible when downscaled
        blended[edge] = (0, 255, 0)
    return Image.fromarray(blended)


def heatmap_grid(
    images: Tensor,
    heatmaps: Tensor,
    gt_maps: Tensor | None = None,
    titles: list[str] | None = None,
    ncols: int = 4,
    alpha: float = 0.5,
) -> Image.Image:
    """A grid of (frame, overlay) pairs for a batch: images (B, 3, H, W), heatmaps (B, H, W) in [0, 1]."""
    n = images.shape[0]
    for name, given in (("heatmaps", heatmaps), ("gt_maps", gt_maps), ("titles", titles)):
        if given is not None and len(given) != n:
            raise ValueError(f"{n} images but {len(given)} {name}")
    h, w = images.shape[-2:]
    title_h = 14 if titles else 0
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    cell_w, cell_h = 2 * w + 4, h + title_h + 4
    grid = Image.new("RGB", (ncols * cell_w, nrows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        x, y = (i % ncols) * cell_w, (i // ncols) * cell_h
        grid.paste(Image.fromarray(_to_uint8_image(images[i])), (x, y + title_h))
        gt = None if gt_maps is None else gt_maps[i]
        grid.paste(overlay(images[i], heatmaps[i], alpha, gt), (x + w, y + title_h))
        if titles:
            draw.text((x + 2, y), titles[i][: max(4, cell_w // 7)], fill=(0, 0, 0))
    return grid


class HeatmapLogger(pl.Callback):
    """Logs a grid of heatmap overlays of the first validation samples after each validation epoch.

    TensorBoard gets an image, wandb a ``wandb.Image``; any other logger (CSV, none) gets PNG files under
    ``<log_dir>/heatmaps/``.

    Args:
        num_samples: how many validation samples to show.
        every_n_epochs: log every n-th validation run.
    """

    def __init__(self, num_samples: int = 8, every_n_epochs: int = 1) -> None:
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self._batch: dict[str, Any] | None = None

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        # The first num_samples samples, over as many batches as that takes (eval_batch_size may be smaller).
        taken = 0 if self._batch is None else len(self._batch["sample_id"])
        if dataloader_idx or taken >= self.num_samples:
            return
        k = self.num_samples - taken
        part = {key: v[:k].detach().cpu() if isinstance(v, Tensor) else list(v[:k]) for key, v in batch.items()}
        if self._batch is None:
            self._batch = part
            return
        for key, value in part.items():
            if key in self._batch:
                old = self._batch[key]
                self._batch[key] = torch.cat([old, value]) if isinstance(value, Tensor) else [*old, *value]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batch, self._batch = self._batch, None
        if batch is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        localize = getattr(pl_module, "localize", None)
        if localize is None:
            return
        heat = localize(batch["image"].to(pl_module.device), batch["audio"].to(pl_module.device)).cpu()
        grid = heatmap_grid(batch["image"], heat, batch.get("gt_map"), [str(s) for s in batch["sample_id"]])
        tag, step = "val/heatmaps", trainer.global_step
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if type(logger).__name__ == "TensorBoardLogger":
                experiment.add_image(tag, np.asarray(grid), step, dataformats="HWC")  # type: ignore[union-attr]
            elif type(logger).__name__ == "WandbLogger":
                logger.log_image(key=tag, images=[grid], step=step)  # type: ignore[attr-defined]
            elif logger.log_dir is not None:
                out = Path(logger.log_dir) / "heatmaps"
                out.mkdir(parents=True, exist_ok=True)
                grid.save(out / f"epoch={trainer.current_epoch:03d}-step={step}.png")
