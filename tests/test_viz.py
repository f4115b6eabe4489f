from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from avsl.data import AVDataModule, SynthAV
from avsl.methods import EZVSL
from avsl.viz import HeatmapLogger, colorize, heatmap_grid, overlay


def test_colorize_range_and_endpoints() -> None:
    rgb = colorize(np.array([[0.0, 1.0], [np.nan, 2.0]]))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (0, 0, 128)  # dark blue at 0
    assert tuple(rgb[0, 1]) == (128, 0, 0)  # dark red at 1
    assert tuple(rgb[1, 0]) == tuple(rgb[0, 0]) and tuple(rgb[1, 1]) == tuple(rgb[0, 1])  # NaN -> 0, clipped


def test_overlay_outlines_ground_truth_and_grid_layout() -> None:
    image = torch.zeros(3, 16, 16)
    heat = torch.zeros(16, 16)
    gt = torch.zeros(16, 16)
    gt[4:12, 4:12] = 1
    out = np.asarray(overlay(image, heat, gt_map=gt))
    assert tuple(out[4, 8]) == (0, 255, 0) and tuple(out[8, 8]) != (0, 255, 0)
    grid = heatmap_grid(torch.rand(5, 3, 16, 16), torch.rand(5, 16, 16), titles=list("abcde"), ncols=2)
    assert grid.size == (2 * (2 * 16 + 4), 3 * (16 + 14 + 4))
    with pytest.raises(ValueError, match="heatmaps"):
        heatmap_grid(torch.rand(2, 3, 8, 8), torch.rand(3, 8, 8))
    # what gave raw IndexErrors or wrapped colours: titles or GT maps that do not match, alpha outside [0, 1]
    with pytest.raises(ValueError, match="3 images but 1 titles"):
        heatmap_grid(torch.rand(3, 3, 8, 8), torch.rand(3, 8, 8), titles=["a"])
    with pytest.raises(ValueError, match="3 images but 2 gt_maps"):
        heatmap_grid(torch.rand(3, 3, 8, 8), torch.rand(3, 8, 8), gt_maps=torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 1.5"):
        overlay(image, heat, alpha=1.5)
    half = np.asarray(overlay(image, heat, gt_map=gt[::2, ::2]))  # a GT at another size is resized to the frame
    assert tuple(half[4, 8]) == (0, 255, 0) and tuple(half[8, 8]) != (0, 255, 0)
    ramp = torch.linspace(0, 1, 16).reshape(4, 4).requires_grad_()
    assert np.array_equal(colorize(ramp.bfloat16()), colorize(ramp.detach().bfloat16().float().numpy()))


def test_heatmap_logger_collects_its_samples_over_batches() -> None:
    """With eval batches smaller than num_samples it showed the first batch only."""
    callback = HeatmapLogger(num_samples=5)
    for i in range(4):
        batch = {"image": torch.rand(2, 3, 8, 8), "sample_id": [f"s{2 * i}", f"s{2 * i + 1}"]}
        callback.on_validation_batch_end(None, None, None, batch, i)  # type: ignore[arg-type]
    assert callback._batch is not None
    assert callback._batch["sample_id"] == ["s0", "s1", "s2", "s3", "s4"]
    assert callback._batch["image"].shape == (5, 3, 8, 8)


def _fit_with(logger: pl.loggers.Logger, root: Path) -> None:
    data = AVDataModule(
        SynthAV(num_clips=8, image_size=32, duration=0.5),
        val=SynthAV(num_clips=4, seed=1, image_size=32, duration=0.5),
        batch_size=4,
    )
    model = EZVSL(
        vision_backbone="tiny_cnn",
        audio_backbone="tiny_cnn",
        audio_frontend="logmel",
        embed_dim=8,
        frame_size=(32, 32),
        duration=0.5,
    )
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=logger,
        callbacks=[HeatmapLogger(num_samples=2)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=data)


def test_heatmap_logger_writes_pngs_for_csv_logger(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, name="run")
    _fit_with(logger, tmp_path)
    pngs = list(Path(logger.log_dir).glob("heatmaps/*.png"))
    assert len(pngs) == 1


def test_heatmap_logger_adds_an_image_to_tensorboard(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, name="run")
    _fit_with(logger, tmp_path)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert "val/heatmaps" in events.Tags()["images"]


def test_heatmap_logger_with_offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(project="avsl-test", save_dir=str(tmp_path))
    _fit_with(logger, tmp_path)
    import wandb

    wandb.finish()
    images = list(tmp_path.rglob("media/images/val/heatmaps*.png"))
    assert images, "wandb stored no heatmap image offline"
