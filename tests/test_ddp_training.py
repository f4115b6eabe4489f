"""Training under DDP with two CPU processes (gloo): gathered negatives, and evaluation equal to one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest

from avsl.data import AVDataModule, SynthAV
from avsl.methods import load_method

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import lightning.pytorch as pl
    from avsl.data import AVDataModule, SynthAV
    from avsl.methods import EZVSL

    if __name__ == "__main__":
        out = Path(sys.argv[1])
        pl.seed_everything(0, workers=True)
        train = SynthAV(num_clips=16, seed=0, image_size=64, duration=0.5)
        val = SynthAV(num_clips=7, seed=1, image_size=64, duration=0.5)  # 7 samples: the sampler pads one
        data = AVDataModule(train, batch_size=4)
        evaluation = AVDataModule(val=val, eval_batch_size=2)
        model = EZVSL(vision_backbone="tiny_cnn", audio_backbone="tiny_cnn", audio_frontend="logmel", embed_dim=16,
                      gather_negatives=True, frame_size=(64, 64), duration=0.5)
        trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=3, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                             default_root_dir=out)
        trainer.fit(model, datamodule=data)
        metrics = trainer.validate(model, datamodule=evaluation, verbose=False)[0]
        trainer.save_checkpoint(out / "ddp.ckpt")
        if trainer.is_global_zero:
            result = {"world_size": trainer.world_size, "step": trainer.global_step, **metrics}
            (out / "result.json").write_text(json.dumps(result))
    """
)


@pytest.mark.ddp
def test_ddp_training_with_gathered_negatives_and_exact_evaluation(tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2 and result["step"] == 3

    # The same checkpoint evaluated by one process gives the same numbers: the padded duplicate is dropped.
    model = load_method(tmp_path / "ddp.ckpt")
    val = SynthAV(num_clips=7, seed=1, image_size=64, duration=0.5)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    single = trainer.validate(model, datamodule=AVDataModule(val=val, batch_size=4), verbose=False)[0]
    for key in ("val/ciou", "val/auc", "val/mean_ciou", "val/miou"):
        assert single[key] == pytest.approx(result[key], abs=1e-6), key
    assert single["val/num_samples"] == result["val/num_samples"] == 7
