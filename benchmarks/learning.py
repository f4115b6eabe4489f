"""Does each method learn, on data it was not tuned on? Train every CPU recipe on every SynthAV setting and score it.

For each (setting, method): the recipe of ``avsl/configs/methods/<key>_synthav.yaml`` (its model section and schedule,
see :mod:`avsl.recipes`) is trained on the setting's training split (2,000 clips; 10 % of them labeled for SemiPL and
XPL), then scored on the setting's test split (500 clips) with the right sound, with another clip's sound (clip
``i`` paired with the audio of clip ``i + N/2``), and beside the centred Gaussian: ``sspl`` cIoU@0.5 (fixed
threshold), AUC, mean cIoU and the pointing rate (the map's peak inside the ground truth).

    python benchmarks/learning.py                                # every method on every setting
    python benchmarks/learning.py --methods ezvsl xpl --settings camera crowd
    python benchmarks/learning.py --held-out                     # the settings no recipe was tuned on
    python benchmarks/learning.py --table runs/learning/results.jsonl   # print the table of earlier runs
    python benchmarks/learning.py --settings clutter widescreen --controls   # docs/results.md: the audio controls
    python benchmarks/learning.py --methods ezvsl --settings camera --set lr=1e-3 --name "ezvsl, lr 1e-3"  # a variant
    python benchmarks/learning.py --methods ezvsl --settings crowd --augment frame --name "ezvsl, no AudioJitter"

Each finished run is appended to ``--out``/results.jsonl, so a long benchmark can be stopped and resumed
(``--resume`` skips the pairs already there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from avsl.data import SETTINGS, AudioJitter, Compose, JointRandomCropFlip
from avsl.data.settings import SynthAVSetting
from avsl.data.transforms import SampleTransform
from avsl.evaluate import evaluate_controls
from avsl.recipes import RECIPES, load_recipe, train_recipe

# --augment: the unlabeled clips' augmentation instead of the recipe's (ablations of docs/methods/ezvsl.md).
AUGMENTS: dict[str, SampleTransform | None] = {
    "none": None,
    "frame": JointRandomCropFlip(),
    "sound": AudioJitter(),
    "both": Compose([JointRandomCropFlip(), AudioJitter()]),
}

KEYS = ("sspl/ciou", "sspl/auc", "sspl/mean_ciou", "pointing")


def run(method: str, setting: SynthAVSetting, args: argparse.Namespace) -> dict[str, Any]:
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    recipe = load_recipe(method)
    if args.augment != "recipe":
        recipe = replace(recipe, augment=AUGMENTS[args.augment])
    model, seconds = train_recipe(
        recipe,
        setting,
        train_clips=args.train_clips,
        labeled_fraction=args.labeled,
        seed=args.seed,
        overrides=overrides,
        max_epochs=args.epochs,
    )
    scores = evaluate_controls(model, setting.dataset("test", args.test_clips))
    return {
        "setting": setting.name,
        "held_out": setting.held_out,
        "method": args.name or method,
        "seed": args.seed,
        "train_clips": args.train_clips,
        "minutes": seconds / 60,
        **scores,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| setting | method | sspl cIoU@0.5 (right / other) | AUC | mean cIoU (right / other) | "
        "pointing (right / other) | centre: cIoU@0.5 / pointing | train min |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        a, b, c = r["right"], r["other"], r["centre"]
        setting = r["setting"] + (" (held out)" if r["held_out"] else "")
        method = r["method"] + (f" (seed {r['seed']})" if r.get("seed", 0) else "")
        lines.append(
            f"| {setting} | {method} | {a['sspl/ciou']:.3f} / {b['sspl/ciou']:.3f} | {a['sspl/auc']:.3f} | "
            f"{a['sspl/mean_ciou']:.3f} / {b['sspl/mean_ciou']:.3f} | {a['pointing']:.3f} / {b['pointing']:.3f} | "
            f"{c['sspl/ciou']:.3f} / {c['pointing']:.3f} | {r['minutes']:.1f} |"
        )
    return "\n".join(lines)


def controls_table(rows: list[dict[str, Any]]) -> str:
    """The audio controls side by side (docs/results.md): the pointing rate with the right sound, another clip's,
    silence and noise, the centre prior's, and cIoU / AUC with the right sound and another clip's."""
    head = (
        "| setting | method | pointing: right | other sound | silence | noise | centre prior | "
        "sspl cIoU@0.5 (right / other) | AUC (right / other) | train min |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        p = {k: r[k]["pointing"] for k in ("right", "other", "silence", "noise", "centre")}
        a, b = r["right"], r["other"]
        setting = r["setting"] + (" (held out)" if r["held_out"] else "")
        lines.append(
            f"| {setting} | {r['method']} | **{p['right']:.3f}** | {p['other']:.3f} | {p['silence']:.3f} | "
            f"{p['noise']:.3f} | {p['centre']:.3f} | {a['sspl/ciou']:.3f} / {b['sspl/ciou']:.3f} | "
            f"{a['sspl/auc']:.3f} / {b['sspl/auc']:.3f} | {r['minutes']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--settings", nargs="+", default=None, choices=sorted(SETTINGS))
    parser.add_argument("--held-out", action="store_true", help="only the settings no recipe was tuned on")
    parser.add_argument("--train-clips", type=int, default=2000)
    parser.add_argument("--test-clips", type=int, default=500)
    parser.add_argument("--labeled", type=float, default=0.1, help="labeled share for SemiPL and XPL (0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="model init_args to override")
    parser.add_argument("--epochs", type=int, default=None, help="train this many epochs instead of the recipe's")
    parser.add_argument(
        "--augment", default="recipe", choices=["recipe", *AUGMENTS], help="unlabeled clips' augmentation"
    )
    parser.add_argument("--name", default=None, help="the method's name in the table (for variants)")
    parser.add_argument("--out", default="runs/learning", help="folder of results.jsonl")
    parser.add_argument("--resume", action="store_true", help="skip (setting, method, seed) pairs already in --out")
    parser.add_argument("--table", default=None, help="print the table of a results.jsonl and exit")
    parser.add_argument(
        "--controls", action="store_true", help="print the audio-controls table (right / other / silence / noise)"
    )
    args = parser.parse_args(argv)
    show = controls_table if args.controls else table
    if args.table:
        rows = [json.loads(line) for line in Path(args.table).read_text().splitlines() if line.strip()]
        print(show(rows))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.settings or [n for n, s in SETTINGS.items() if s.held_out or not args.held_out]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = set()
    if args.resume and results.exists():
        for line in results.read_text().splitlines():
            r = json.loads(line)
            done.add((r["setting"], r["method"], r["seed"]))
    rows = []
    for name in names:
        for method in args.methods:
            if (name, args.name or method, args.seed) in done:
                continue
            start = time.time()
            row = run(method, SETTINGS[name], args)
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
            print(show([row]).splitlines()[-1], f"({time.time() - start:.0f} s in all)", flush=True)
    print(show(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
