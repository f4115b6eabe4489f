"""One training step of the CPU recipes' EZ-VSL: float32 against bf16 autocast, NCHW against channels-last.

The model is ``ezvsl_synthav.yaml``'s (``tiny_cnn`` encoders, stride-8 maps, 64-band log-mel), a batch of 64 frames of
128 px and 1-s clips at 16 kHz; a step is forward, backward and an Adam update. The alternative a user would pick is
Lightning's default (float32) with PyTorch's default memory format (NCHW); avsl's recipes train with
``precision: bf16-mixed``, and ``tiny_cnn`` keeps its weights and activations channels-last. All four combinations run
side by side in one process.

    python benchmarks/bench_step.py                 # torch's default threads
    python benchmarks/bench_step.py --threads 1 --steps 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from avsl.lightning_cli import resolve_config
from avsl.methods.base import build_method
from avsl.nn.backbones import TinyCNN


def _nchw_forward(self: TinyCNN, x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = self.stages(x)
    return out


def step_time(bf16: bool, channels_last: bool, batch: int, steps: int) -> float:
    """Mean seconds of a training step (after two warm-up steps)."""
    spec = yaml.safe_load(Path(resolve_config("methods/ezvsl_synthav.yaml")).read_text())["model"]
    torch.manual_seed(0)
    model = build_method(spec["class_path"], spec["init_args"]).train()
    forward = TinyCNN.forward
    if not channels_last:  # the NCHW alternative: weights back to the default format, inputs left as they come
        model.to(memory_format=torch.contiguous_format)
        TinyCNN.forward = _nchw_forward  # type: ignore[method-assign]
    try:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        data = {"image": torch.rand(batch, 3, 128, 128), "audio": torch.randn(batch, 16000), "sample_id": []}
        times = []
        for i in range(steps + 2):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = sum(model.training_losses({"unlabeled": data}).values())  # type: ignore[typeddict-item]
            optimizer.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            optimizer.step()
            if i >= 2:
                times.append(time.perf_counter() - start)
        return sum(times) / len(times)
    finally:
        TinyCNN.forward = forward  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for bf16 in (False, True):
        for channels_last in (False, True):
            seconds = step_time(bf16, channels_last, args.batch, args.steps)
            rows.append(
                {"precision": "bf16-mixed" if bf16 else "32-true", "channels_last": channels_last, "s": seconds}
            )
    base = rows[0]["s"]
    print(f"EZ-VSL (ezvsl_synthav.yaml) training step, batch {args.batch}, {torch.get_num_threads()} threads")
    print("| precision | memory format | s / step | samples / s | vs float32 NCHW |")
    print("|---|---|---|---|---|")
    for r in rows:
        fmt = "channels-last" if r["channels_last"] else "NCHW"
        print(f"| {r['precision']} | {fmt} | {r['s']:.3f} | {args.batch / r['s']:.0f} | {base / r['s']:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
