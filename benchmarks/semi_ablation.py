"""Do the unlabeled clips help? SemiPL and XPL against their base trained on the same labels alone, and without labels.

For each labeled share and seed, on one SynthAV setting (2,000 training clips, :func:`avsl.data.split_labeled` of them
labeled):

- ``semipl`` / ``xpl``: the recipe of ``avsl/configs/methods/<key>_synthav.yaml`` as shipped;
- ``semipl, labels only``: the same with ``lambda_unsup = 0`` (the base learns from the labeled clips alone);
- ``xpl, labels only``: the same with ``lambda_cross = 0`` and ``lambda_con = 0`` (both peers learn from the labeled
  clips alone; evaluation still averages the two peers' maps);
- ``ezvsl, no labels``: the base method's own recipe on all clips, without labels (once per seed).

Every run is scored by :func:`avsl.evaluate.evaluate_controls` on the setting's test split; the table gives the mean and
the spread (min-max) over seeds.

    python benchmarks/semi_ablation.py --setting crowd                          # 5 % and 10 %, seeds 0-2
    python benchmarks/semi_ablation.py --table runs/semi_ablation/results.jsonl  # print the table of earlier runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from avsl.data import SETTINGS
from avsl.evaluate import evaluate_controls
from avsl.recipes import train_recipe

# name -> (recipe, init_args overrides, trains with labels)
VARIANTS: dict[str, tuple[str, dict[str, float], bool]] = {
    "semipl": ("semipl", {}, True),
    "semipl, labels only": ("semipl", {"lambda_unsup": 0.0}, True),
    "xpl": ("xpl", {}, True),
    "xpl, labels only": ("xpl", {"lambda_cross": 0.0, "lambda_con": 0.0}, True),
    "ezvsl, no labels": ("ezvsl", {}, False),
}


def table(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["fraction"]), []).append(r)

    def cell(values: list[float]) -> str:
        mean = sum(values) / len(values)
        return f"{mean:.3f} ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else f"{mean:.3f}"

    lines = [
        "| variant | labeled | seeds | pointing, right sound | pointing, other sound | sspl cIoU@0.5 | mean cIoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for (variant, fraction), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], list(VARIANTS).index(kv[0][0]))):
        lines.append(
            f"| {variant} | {fraction:.0%} | {len(rs)} | {cell([r['right']['pointing'] for r in rs])} | "
            f"{cell([r['other']['pointing'] for r in rs])} | {cell([r['right']['sspl/ciou'] for r in rs])} | "
            f"{cell([r['right']['sspl/mean_ciou'] for r in rs])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", default="crowd", choices=sorted(SETTINGS))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--train-clips", type=int, default=2000)
    parser.add_argument("--test-clips", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="runs/semi_ablation")
    parser.add_argument("--table", default=None, help="print the table of a results.jsonl and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table([json.loads(line) for line in Path(args.table).read_text().splitlines() if line.strip()]))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    setting = SETTINGS[args.setting]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = set()
    if results.exists():
        for line in results.read_text().splitlines():
            r = json.loads(line)
            done.add((r["setting"], r["variant"], r["fraction"], r["seed"]))
    test = setting.dataset("test", args.test_clips)
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            recipe, overrides, labeled = VARIANTS[variant]
            for fraction in args.fractions if labeled else [0.0]:
                if (setting.name, variant, fraction, seed) in done:
                    continue
                start = time.time()
                model, seconds = train_recipe(
                    recipe, setting, args.train_clips, labeled_fraction=fraction, seed=seed, overrides=overrides
                )
                row = {"setting": setting.name, "variant": variant, "fraction": fraction, "seed": seed}
                row.update(minutes=seconds / 60, **evaluate_controls(model, test))
                with results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                rows.append(row)
                print(
                    f"{variant} {fraction:.0%} seed {seed}: pointing {row['right']['pointing']:.3f} "
                    f"({time.time() - start:.0f} s)",
                    flush=True,
                )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
