"""XPL under DDP with two CPU processes (gloo): every process ends with the same, complete pseudo-label banks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from avsl.methods.xpl import XPL
from avsl.nn.banks import hash_ids

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import lightning.pytorch as pl
    import torch
    from avsl.data import AVDataModule, SynthAV
    from avsl.methods import EZVSL
    from avsl.methods.xpl import XPL

    class RecordingXPL(XPL):
        # Records what this process contributes to each step's bank synchronization: its sample keys and labels.
        local = []

        def _sync_updates(self, *tensors):
            keys, _, *labels = tensors
            self.local.append({"keys": keys.tolist(), "labels": [t.tolist() for t in labels]})
            return super()._sync_updates(*tensors)

        def on_train_start(self):
            self.ignored = sorted(self.trainer.strategy.model.parameters_to_ignore)  # DDP's exclusions

    if __name__ == "__main__":
        out = Path(sys.argv[1])
        pl.seed_everything(0, workers=True)
        clips = SynthAV(num_clips=16, seed=0, image_size=64, duration=0.5)
        labeled = SynthAV(num_clips=4, seed=3, image_size=64, duration=0.5)
        data = AVDataModule(clips, labeled, batch_size=4, labeled_batch_size=2)
        peer = dict(vision_backbone="tiny_cnn", audio_backbone="tiny_cnn", audio_frontend="logmel", embed_dim=16,
                    frame_size=(64, 64), duration=0.5)
        model = RecordingXPL("ezvsl", peer, peer_seed=1, warmup_epochs=0, ema_momentum=0.5)
        trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=3, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                             default_root_dir=out)
        trainer.fit(model, datamodule=data)
        names = ("bank_a", "bank_b", "reliability")
        banks = {k: v.tolist() for k, v in model.state_dict().items() if k.split(".")[0] in names}
        result = {"banks": banks, "local": model.local, "ignored": model.ignored}
        (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))
        trainer.save_checkpoint(out / "ddp.ckpt")
    """
)


@pytest.mark.ddp
def test_banks_are_synchronized_across_processes(tmp_path: Path) -> None:
    script = tmp_path / "xpl_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    # identical banks on both processes, excluded from DDP's buffer broadcast
    assert ranks[0]["banks"] == ranks[1]["banks"]
    assert {"bank_a.values", "bank_b.keys", "reliability.values"} <= set(ranks[0]["ignored"])

    # 3 steps of 4 samples on each of 2 processes over a 16-clip epoch: every clip was seen in epoch 0 (2 steps), eight
    # of them again in epoch 1 (step 3); the banks hold exactly the clips either process saw
    banks = {k: torch.tensor(v) for k, v in ranks[0]["banks"].items()}
    seen = [key for r in ranks for step in r["local"] for key in step["keys"]]
    assert len(seen) == 24
    every_clip = hash_ids([f"synth0_{i:06d}" for i in range(16)]).tolist()
    assert set(banks["bank_a.keys"].tolist()) == set(seen) == set(every_clip)

    # each entry is the value computed by the process that saw the sample: a clip seen once holds that process's
    # sharpened map (first visit), a clip seen twice the PL-EMA of its two visits (beta = 0.5, so the order of the
    # visits does not matter)
    row = {k: i for i, k in enumerate(banks["bank_a.keys"].tolist())}
    visits: dict[int, list[torch.Tensor]] = {}
    for r in ranks:
        for step in r["local"]:
            for i, key in enumerate(step["keys"]):
                visits.setdefault(key, []).append(torch.tensor(step["labels"][0][i]))
    assert sorted(len(v) for v in visits.values()) == [1] * 8 + [2] * 8
    for key, labels in visits.items():
        expected = labels[0] if len(labels) == 1 else 0.5 * labels[0] + 0.5 * labels[1]
        torch.testing.assert_close(banks["bank_a.values"][row[key]], expected)

    # the checkpoint of the DDP run restores the same banks into a fresh model in one process
    checkpoint = torch.load(tmp_path / "ddp.ckpt", map_location="cpu", weights_only=True)
    peer = {"vision_backbone": "tiny_cnn", "audio_backbone": "tiny_cnn", "audio_frontend": "logmel", "embed_dim": 16}
    restored = XPL("ezvsl", peer)
    restored.load_state_dict(checkpoint["state_dict"])
    for key, value in banks.items():
        torch.testing.assert_close(restored.state_dict()[key].to(value.dtype), value)
