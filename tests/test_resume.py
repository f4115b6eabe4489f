"""Exact resume: an `avsl fit` killed with SIGKILL mid-epoch and resumed from its last step checkpoint ends with the
weights (XPL's banks included) and test metrics of the same run left alone, bit for bit on the CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from avsl.data import SynthAV
from avsl.evaluate import evaluate
from avsl.methods import load_method
from tests.test_methods_contract import TINY, cli_flags

EPOCH_STEPS = 8  # 32 clips in batches of 4
TINY_RUN = [
    "--data.init_args.unlabeled.init_args.num_clips=32",
    "--data.init_args.val.init_args.num_clips=4",
    "--data.init_args.test.init_args.num_clips=8",
    "--data.init_args.batch_size=4",
    "--trainer.max_epochs=2",
    "--trainer.precision=32-true",
    "--trainer.limit_val_batches=1",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    # a checkpoint after every step, as a long run would write every N steps
    "--trainer.callbacks+=ModelCheckpoint",
    "--trainer.callbacks.every_n_train_steps=1",
    "--trainer.callbacks.save_top_k=-1",
    "--trainer.callbacks.filename={step}",
]
for role in ("unlabeled", "val", "test"):
    TINY_RUN += [f"--data.init_args.{role}.init_args.image_size=64", f"--data.init_args.{role}.init_args.duration=0.5"]
SEMI = [
    "--data.init_args.labeled.init_args.num_clips=8",
    "--data.init_args.labeled.init_args.image_size=64",
    "--data.init_args.labeled.init_args.duration=0.5",
    "--data.init_args.labeled_batch_size=4",
]
RECIPES = {
    "ezvsl": ["-c", "ezvsl_synthav", "-c", "synthav", *cli_flags(TINY["ezvsl"])],
    "xpl": [
        "-c",
        "xpl_synthav",
        "-c",
        "synthav_semi",
        *cli_flags({"model_a_args": TINY["xpl"]["model_a_args"]}),
        *SEMI,
    ],
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one thread: the same kernels in every run


def _fit(root: Path, args: list[str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "avsl.cli", "fit", *args, *TINY_RUN, f"--trainer.default_root_dir={root}"]
    command.append(f"--trainer.callbacks.dirpath={root / 'steps'}")
    return subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen[bytes]) -> None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-3000:]


@pytest.mark.parametrize(("method", "step"), [("ezvsl", 5), ("xpl", 5), ("ezvsl", EPOCH_STEPS + 1)])
def test_a_killed_and_resumed_fit_ends_as_the_uninterrupted_one(method: str, step: int, tmp_path: Path) -> None:
    """Killed after step 5 (mid-epoch) or after the first step of epoch 1, resumed from the previous step's
    checkpoint: step 4 (mid-epoch) or step 8 (the end of epoch 0)."""
    args = RECIPES[method]
    alone = _fit(tmp_path / "alone", args)
    killed = _fit(tmp_path / "killed", args)
    # kill as soon as the checkpoint of `step` appears, wherever the run then is
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "steps" / f"step={step}.ckpt").exists():
        assert killed.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    _finish(alone)
    resume_from = tmp_path / "killed" / "steps" / f"step={step - 1}.ckpt"  # written in full before `step`'s began
    _finish(_fit(tmp_path / "killed", [*args, f"--ckpt_path={resume_from}"]))

    final = {name: tmp_path / name / "steps" / f"step={2 * EPOCH_STEPS}.ckpt" for name in ("alone", "killed")}
    states = {
        name: torch.load(path, map_location="cpu", weights_only=True)["state_dict"] for name, path in final.items()
    }
    assert states["alone"].keys() == states["killed"].keys()
    differ = [k for k in states["alone"] if not torch.equal(states["alone"][k], states["killed"][k])]
    assert not differ, f"{len(differ)} of {len(states['alone'])} tensors differ, e.g. {differ[:3]}"
    test = SynthAV(num_clips=8, seed=2, image_size=64, duration=0.5)
    metrics = []
    for path in final.values():
        model = load_method(path)
        maps = lambda batch, model=model: model.localize(batch["image"], batch["audio"], normalize=False)  # noqa: E731
        metrics.append(evaluate(maps, torch.utils.data.DataLoader(test, batch_size=4)))
    assert metrics[0] == metrics[1]
