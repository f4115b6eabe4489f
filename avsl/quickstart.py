"""The main job: train EZ-VSL on SynthAV on a CPU, evaluate it beside trivial baselines, and draw heatmaps.

``avsl quickstart --out DIR`` runs the shipped ``quickstart.yaml`` through the real LightningCLI, then evaluates the
last checkpoint on the held-out SynthAV test split under two protocols (``ezvsl``: median threshold, the default;
``sspl``: fixed threshold 0.5) and with pixel masks (mIoU), next to a centred Gaussian and a uniform map scored by
the same metrics. It writes ``metrics.json``, ``heatmaps.png`` and the Lightning logs and checkpoints under DIR.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from torch.utils.data import DataLoader

from avsl.evaluate import evaluate, evaluate_controls, uniform
from avsl.lightning_cli import AVSLCLI, resolve_config
from avsl.types import AVBatch
from avsl.viz import heatmap_grid

__all__ = ["run_quickstart"]

_ROWS: tuple[tuple[str, str], ...] = (
    ("ezvsl/ciou", "cIoU@0.5"),
    ("ezvsl/auc", "AUC"),
    ("ezvsl/mean_ciou", "mean cIoU"),
    ("sspl/ciou", "cIoU@0.5 (sspl)"),
    ("sspl/auc", "AUC (sspl)"),
    ("miou", "mIoU"),
    ("pointing", "pointing"),
)


def _table(results: dict[str, dict[str, float]]) -> str:
    names = list(results)
    lines = [f"{'metric':18s}" + "".join(f"{n:>20s}" for n in names)]
    for key, label in _ROWS:
        lines.append(f"{label:18s}" + "".join(f"{results[n].get(key, float('nan')):20.3f}" for n in names))
    return "\n".join(lines)


def run_quickstart(
    out: str | Path = "runs/quickstart",
    max_epochs: int | None = None,
    train_clips: int | None = None,
    test_clips: int | None = None,
    extra_args: list[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Run the main job and return ``{"EZ-VSL": metrics, "EZ-VSL, other sound": ..., "centre Gaussian": ...,
    "uniform": ...}``; "other sound" scores each test frame with another clip's sound
    (:func:`avsl.evaluate.evaluate_controls`).

    ``max_epochs``, ``train_clips`` and ``test_clips`` override the shipped config (the tests use tiny values);
    ``extra_args`` are passed to LightningCLI as they are (for example ``["--trainer.accelerator=cpu"]``).
    """
    start = time.time()
    out = Path(out)
    args = ["-c", resolve_config("quickstart.yaml"), f"--trainer.default_root_dir={out}"]
    args += [f"--trainer.logger.init_args.save_dir={out}"]
    if max_epochs is not None:
        args.append(f"--trainer.max_epochs={max_epochs}")
    if train_clips is not None:
        args.append(f"--data.init_args.unlabeled.init_args.num_clips={train_clips}")
        if train_clips < 64:  # the config's batch: fewer clips than a (dropped) batch would train nothing
            args.append(f"--data.init_args.batch_size={max(train_clips, 2)}")
    if test_clips is not None:
        args.append(f"--data.init_args.test.init_args.num_clips={test_clips}")
    cli = AVSLCLI([*args, *(extra_args or [])], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    model = cli.model.eval()
    test_set = cli.datamodule.test
    device = model.device
    controls = evaluate_controls(model, test_set, protocols=("ezvsl", "sspl"), batch_size=64)
    h, w = test_set[0]["image"].shape[-2:]
    flat = uniform(h, w)
    results = {
        "EZ-VSL": controls["right"],
        "EZ-VSL, other sound": controls["other"],
        "centre Gaussian": controls["centre"],
        "uniform": evaluate(lambda b: flat.expand(b["image"].shape[0], h, w), DataLoader(test_set, batch_size=64)),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    batch: AVBatch = next(iter(DataLoader(test_set, batch_size=16)))
    heat = model.localize(batch["image"].to(device), batch["audio"].to(device)).cpu()
    heatmap_grid(batch["image"], heat, batch["gt_map"], list(batch["sample_id"])).save(out / "heatmaps.png")

    print(f"\nSynthAV test set ({len(test_set)} clips), {time.time() - start:.0f} s in all")
    print(_table(results))
    print(f"\nmetrics: {out / 'metrics.json'}\nheatmaps: {out / 'heatmaps.png'} (green: ground truth)")
    return results
