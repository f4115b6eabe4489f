"""One check of avsl on the device present: every method, every precision, DDP, metrics, step hygiene and throughput.

Sections (each a list of rows in the JSON; one table printed at the end):

- ``methods``: every shipped method, built from its SynthAV recipe (``avsl/configs/methods/<key>_synthav.yaml``),
  fits a few steps with ``--trainer.precision`` 32-true, bf16-mixed (and 16-mixed on CUDA) and the
  :class:`avsl.callbacks.ChannelsLast` callback, then validates, tests, predicts, localizes on the device and goes
  through a checkpoint round trip (``load_method`` gives the same maps). Every training step after the first runs
  under a float64 detector (a ``TorchDispatchMode`` that records each op whose output is float64) and, on CUDA,
  ``torch.cuda.set_sync_debug_mode("warn")``, which reports every host synchronisation with the line that asked.
- ``ddp``: the same fit + validate under ``strategy="ddp"`` on every visible device (two gloo processes on a CPU).
- ``metrics``: every cIoU protocol, pointing and the AVSBench metrics on the device equal the CPU's for the same maps.
- ``throughput``: EZ-VSL at the reference setting (ResNet-18 x2, 224 px, 3-s audio at 16 kHz, batch 128) trained by
  ``Trainer.fit`` against a plain PyTorch loop of the same network and loss written here, on the same
  device-resident batch; the FLOP rate (``torch.utils.flop_counter``) against the device's measured matmul peak.
- ``loader``: samples/s of ``AVDataModule`` with N workers on a folder of 640x360 JPEG frames and 10-s 16-kHz WAVs
  (the layout ``avsl prepare`` writes) with the VGG-SS reader and its training augmentation, and on the same samples
  as litdata shards at training size (``avsl shard``), against the step rate.

    python benchmarks/gpu_check.py --out runs/gpu_check.json          # on the GPU if there is one
    python benchmarks/gpu_check.py --tiny --device cpu --out x.json   # tiny shapes: what tests/test_gpu_check.py runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from avsl.callbacks import ChannelsLast
from avsl.data import AVDataModule, JointRandomCropFlip, SynthAV, VGGSSDataset, split_labeled, write_synthav
from avsl.methods import EZVSL, METHODS, load_method
from avsl.methods.base import build_method
from avsl.metrics import PROTOCOLS, EvaluationMetrics
from avsl.testing import config_args, tiny_args
from avsl.types import TrainBatch

# Dense datasheet peaks (TFLOP/s) of devices we know, beside the matmul rate measured in the run.
DATASHEET = {"H200": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0}, "H100": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0}}


# ---------------------------------------------------------------------------------------------------- step hygiene
class _Float64Ops(TorchDispatchMode):
    """Counts the ops whose output is float64, with the avsl (or other) line that called them; the data loader's
    work (the reference-exact float64 GT boxes of avsl.metrics.functional, on the host) is not the step's."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, Tensor) and t.dtype == torch.float64 for t in tree_leaves(out)):
            frames = traceback.extract_stack()
            if not any("/torch/utils/data/" in f.filename for f in frames):
                self.ops[f"{func} at {_caller(frames)}"] += 1
        return out


def _caller(stack: traceback.StackSummary) -> str:
    """The innermost frame of a stack in the code of avsl or its user (else in a library), this file's left out."""
    frames = [f for f in stack if f.filename != __file__]
    for pick in (lambda f: "-packages/" not in f.filename and not f.filename.startswith("<"), lambda f: True):
        mine = [f for f in frames if pick(f)]
        if mine:
            return f"{Path(mine[-1].filename).name}:{mine[-1].lineno}"
    return "?"


class StepHygiene(pl.Callback):
    """Watches the training loop from the second step to the end of fit (forward, backward, optimizer step and
    Lightning's work between steps; validation excluded) for float64 ops and, on CUDA, host synchronisations;
    ``report()`` says what it saw, with the line that asked."""

    def __init__(self) -> None:
        self.float64: Counter[str] = Counter()
        self.syncs: Counter[str] = Counter()
        self.steps = 0
        self._mode: _Float64Ops | None = None
        self._warnings: Any = None
        self._caught: list[warnings.WarningMessage] = []

    def _start(self, pl_module: pl.LightningModule) -> None:
        self._mode = _Float64Ops()
        self._mode.__enter__()
        if pl_module.device.type == "cuda":
            self._warnings = warnings.catch_warnings(record=True)
            self._caught = self._warnings.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def _stop(self) -> None:
        if self._mode is None:
            return
        self._mode.__exit__(None, None, None)
        self.float64.update(self._mode.ops)
        self._mode = None
        if self._warnings is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._warnings.__exit__(None, None, None)
            for w in self._caught:
                if "synchroniz" in str(w.message):
                    self.syncs[f"{Path(w.filename).name}:{w.lineno}"] += 1
            self._warnings = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        # from the second step: the first builds the optimizer state and checks the batch once
        if trainer.global_step >= 1 and self._mode is None:
            self._start(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self._mode is not None:
            self.steps += 1

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    def report(self) -> dict[str, Any]:
        return {"steps_watched": self.steps, "float64_ops": dict(self.float64), "host_syncs": dict(self.syncs)}


# ---------------------------------------------------------------------------------------------------- methods
def recipe_args(name: str, tiny: bool) -> dict[str, Any]:
    """The method's SynthAV recipe arguments (its reference config if it has none), shrunk with ``tiny``."""
    try:
        args = config_args(f"methods/{name}_synthav.yaml")
    except (FileNotFoundError, ValueError):
        args = config_args(name)
    return {**args, **tiny_args(METHODS[name], args)} if tiny else args


def synth_data(model: pl.LightningModule, clips: int, batch_size: int, workers: int = 0) -> AVDataModule:
    """SynthAV at the method's signal (square frames, as every recipe's): ``clips`` training clips (a third
    labeled) and half as many to evaluate."""
    s = model.signal
    geometry = {"image_size": s.frame_size[0], "sample_rate": s.sample_rate, "duration": s.duration}
    labeled, unlabeled = split_labeled(SynthAV(num_clips=clips, seed=0, **geometry), 0.34, seed=0)
    evaluation = SynthAV(num_clips=max(clips // 2, batch_size), seed=1, **geometry)
    return AVDataModule(
        unlabeled, labeled, val=evaluation, test=evaluation, batch_size=batch_size, num_workers=workers, seed=0
    )


def _trainer(device: str, precision: str, steps: int, root: Path, **extra: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator=device,
        precision=precision,  # type: ignore[arg-type]
        max_steps=steps,
        limit_val_batches=2,
        limit_test_batches=2,
        limit_predict_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
        **extra,
    )


def check_method(name: str, precision: str, device: str, tiny: bool, steps: int, root: Path) -> dict[str, Any]:
    """Fit, validate, test, predict, localize and a checkpoint round trip of one method at one precision."""
    row: dict[str, Any] = {"method": name, "precision": precision}
    start = time.perf_counter()
    try:
        pl.seed_everything(0, verbose=False)
        model = build_method(name, recipe_args(name, tiny))
        data = synth_data(model, 24 if tiny else 64, 4 if tiny else 16)
        hygiene = StepHygiene()
        trainer = _trainer(device, precision, steps, root, devices=1, callbacks=[ChannelsLast(), hygiene])
        trainer.fit(model, datamodule=data)
        loss = float(trainer.callback_metrics["train/loss"])
        if not math.isfinite(loss):
            raise RuntimeError(f"training loss is {loss}")
        val = trainer.validate(model, datamodule=data, verbose=False)[0]
        test = trainer.test(model, datamodule=data, verbose=False)[0]
        predictions: Any = trainer.predict(model, datamodule=data)
        heat = predictions[0]["heatmap"]
        if heat.shape[-2:] != model.signal.frame_size or not bool(torch.isfinite(heat).all()):
            raise RuntimeError(f"predict gave maps of shape {tuple(heat.shape)} (or non-finite values)")
        # localize on the device, and the same maps from the checkpoint
        batch = next(iter(data.test_dataloader()))
        target = torch.device("cuda" if device == "cuda" else "cpu")
        image, audio = batch["image"].to(target), batch["audio"].to(target)
        model.to(target).eval()
        maps = model.localize(image, audio)
        if maps.device.type != target.type:
            raise RuntimeError(f"localize returned maps on {maps.device}")
        ckpt = root / f"{name}-{precision}.ckpt"
        trainer.save_checkpoint(ckpt)
        restored = load_method(ckpt, map_location=target).eval()
        torch.testing.assert_close(restored.localize(image, audio), maps, atol=1e-5, rtol=1e-5)
        row.update(ok=True, loss=loss, val_ciou=val["val/ciou"], test_ciou=test["test/ciou"], **hygiene.report())
    except Exception as err:  # a failing method is a row of the table, not the end of the check
        row.update(ok=False, error=f"{type(err).__name__}: {err}"[:400])
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def ddp_worker(args: argparse.Namespace) -> None:
    """Runs under Lightning's DDP launcher (which starts this script once per device): fit + validate each method."""
    rows = []
    devices = torch.cuda.device_count() if args.device == "cuda" else 2
    precision = "bf16-mixed" if args.device == "cuda" else "32-true"
    root = Path(args.ddp_worker)
    for name in args.methods:
        row: dict[str, Any] = {"method": name, "precision": precision, "devices": devices}
        try:
            pl.seed_everything(0, verbose=False)
            model = build_method(name, recipe_args(name, args.tiny))
            data = synth_data(model, 24 if args.tiny else 64, 4 if args.tiny else 16)
            trainer = _trainer(args.device, precision, 3, root, devices=devices, strategy="ddp")
            trainer.fit(model, datamodule=data)
            val = trainer.validate(model, datamodule=data, verbose=False)[0]
            row.update(ok=True, world_size=trainer.world_size, steps=trainer.global_step, val_ciou=val["val/ciou"])
        except Exception as err:
            row.update(ok=False, error=f"{type(err).__name__}: {err}"[:400])
        rows.append(row)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0:
        (root / "ddp.json").write_text(json.dumps(rows))


def check_ddp(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    """Every method under DDP, in a fresh process (Lightning's launcher re-runs the command once per device)."""
    command = [sys.executable, __file__, "--ddp-worker", str(root), "--device", args.device, "--methods", *args.methods]
    command += ["--tiny"] if args.tiny else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    result = root / "ddp.json"
    if proc.returncode != 0 or not result.exists():
        return [{"method": "all", "ok": False, "error": f"exit {proc.returncode}: {proc.stderr[-400:]}"}]
    rows: list[dict[str, Any]] = json.loads(result.read_text())
    return rows


# ---------------------------------------------------------------------------------------------------- metrics
def check_metrics(device: str, n: int = 48, size: int = 96) -> list[dict[str, Any]]:
    """Each protocol's metrics computed on the device equal the CPU's for the same maps (bit for bit)."""
    gen = torch.Generator().manual_seed(0)
    raw = torch.rand(n, size, size, generator=gen)
    raw[: n // 4] = (raw[: n // 4] * 8).round() / 8  # ties, as a coarse upsampled map has
    gt = torch.zeros(n, size, size)
    for i in range(n):
        x0, y0 = torch.randint(0, size // 2, (2,), generator=gen).tolist()
        w, h = torch.randint(4, size // 2, (2,), generator=gen).tolist()
        gt[i, y0 : y0 + h, x0 : x0 + w] = 1.0
    batch = {"sample_id": [f"s{i}" for i in range(n)], "gt_map": gt, "mask": gt.long()}
    target = "cuda" if device == "cuda" else "cpu"
    rows = []
    for protocol in PROTOCOLS:
        results = []
        for where in ("cpu", target):
            metrics = EvaluationMetrics(protocol).to(where)
            moved = {k: v.to(where) if isinstance(v, Tensor) else v for k, v in batch.items()}
            for chunk in range(0, n, 16):  # several updates, as an evaluation loop makes
                part = {k: v[chunk : chunk + 16] for k, v in moved.items()}
                metrics.update(raw[chunk : chunk + 16].to(where), raw[chunk : chunk + 16].to(where), part)  # type: ignore[arg-type]
            results.append({k: float(v) for k, v in metrics.compute_and_reset().items()})
        differ = {k: (results[0][k], results[1][k]) for k in results[0] if results[0][k] != results[1][k]}
        rows.append({"protocol": protocol, "ok": not differ, "device": target, "differ": differ, **results[1]})
    return rows


# ---------------------------------------------------------------------------------------------------- throughput
class PlainEZVSL(nn.Module):
    """EZ-VSL's network written plainly: torchvision ResNet-18 trunks for frames and spectrograms, a 1x1 projection
    of the visual map, max-pooled audio features through a linear layer, both L2-normalized."""

    def __init__(self, embed_dim: int = 512) -> None:
        super().__init__()
        self.image_net = nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])
        self.image_proj = nn.Conv2d(512, embed_dim, 1)
        audio = torchvision.models.resnet18()
        audio.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        self.audio_net = nn.Sequential(*list(audio.children())[:-2])
        self.audio_proj = nn.Linear(512, embed_dim)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.register_buffer("window", torch.hann_window(512))

    def forward(self, image: Tensor, wave: Tensor) -> tuple[Tensor, Tensor]:
        visual = F.normalize(self.image_proj(self.image_net((image - self.mean) / self.std)), dim=1)
        # EZ-VSL's spectrogram: 512-sample windows every 238 samples, log power
        frames = wave.float().unfold(-1, 512, 238) * self.window
        spec = torch.log(torch.fft.rfft(frames, dim=-1).abs().pow(2) + 1e-7).transpose(1, 2)[:, None]
        audio = F.normalize(self.audio_proj(self.audio_net(spec).amax(dim=(2, 3))), dim=1)
        return visual, audio


def plain_loss(visual: Tensor, audio: Tensor, tau: float = 0.03) -> Tensor:
    """EZ-VSL's symmetric MIL InfoNCE: the maximum of each cosine map is the pair's logit."""
    logits = torch.einsum("nchw,mc->nmhw", visual, audio).flatten(2).amax(dim=2) / tau
    target = torch.arange(visual.shape[0], device=visual.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain_loop(
    batch: dict[str, Tensor], device: str, steps: int, warmup: int, fast: bool, each_step: Callable[[], Any] = int
) -> float:
    """Samples/s of the plain loop; ``fast``: bf16 autocast and channels-last, else float32 NCHW. ``each_step`` is
    called after every step (the profiler's ``step``)."""
    torch.manual_seed(0)
    model = PlainEZVSL().to(device)
    if fast:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=fast):
            loss = plain_loss(*model(batch["image"], batch["audio"]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        each_step()
    _sync(device)
    return steps * batch["image"].shape[0] / (time.perf_counter() - start)


def avsl_model_loop(batch: dict[str, Any], device: str, steps: int, warmup: int) -> float:
    """Samples/s of avsl's EZ-VSL (bf16 autocast, channels-last) in the plain loop: Trainer.fit's overhead apart."""
    torch.manual_seed(0)
    size, seconds = tuple(batch["image"].shape[-2:]), batch["audio"].shape[-1] / 16000
    model = EZVSL(frame_size=size, duration=seconds).to(device).to(memory_format=torch.channels_last)  # type: ignore[arg-type]
    optimizer = model.configure_optimizers()
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = torch.stack(list(model.training_losses({"unlabeled": batch}).values())).sum()  # type: ignore[typeddict-item]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return steps * batch["image"].shape[0] / (time.perf_counter() - start)


class _SameBatch(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    def __init__(self, batch: dict[str, Any], count: int) -> None:
        self.batch, self.count = batch, count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter([{"unlabeled": self.batch}] * self.count)


class _StepClock(pl.Callback):
    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device, self.start, self.seconds = warmup, device, 0.0, 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        if idx == self.warmup:
            _sync(self.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(self.device)
        self.seconds = time.perf_counter() - self.start


class QuietEZVSL(EZVSL):
    """EZ-VSL whose training step logs nothing: ``Trainer.fit``'s cost without ``self.log`` (a diagnostic row)."""

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        return torch.stack(list(self.training_losses(batch).values())).sum()


class _EachStep(pl.Callback):
    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.call()


def avsl_fit(
    batch: dict[str, Any],
    device: str,
    steps: int,
    warmup: int,
    precision: str,
    fast: bool,
    compile: str | None,
    quiet: bool = False,
    each_step: Callable[[], Any] = int,
) -> float:
    """Samples/s of ``Trainer.fit`` on avsl's EZ-VSL at the reference setting, on the same device-resident batch.
    ``compile``: a ``torch.compile`` mode for both encoders (``"reduce-overhead"`` captures CUDA graphs); ``quiet``:
    :class:`QuietEZVSL`; ``each_step`` is called after every step."""
    torch.manual_seed(0)
    size, seconds = tuple(batch["image"].shape[-2:]), batch["audio"].shape[-1] / 16000
    model = (QuietEZVSL if quiet else EZVSL)(frame_size=size, duration=seconds)  # type: ignore[arg-type]
    if compile:
        model.visual.compile(mode=compile)
        model.audio.compile(mode=compile)
    clock = _StepClock(warmup, device)
    callbacks: list[pl.Callback] = [clock, _EachStep(each_step), *([ChannelsLast()] if fast else [])]
    loader = torch.utils.data.DataLoader(_SameBatch(batch, warmup + steps), batch_size=None)
    warnings.filterwarnings("ignore", "You defined a `validation_step` but have no `val_dataloader`")
    root = Path(tempfile.mkdtemp())
    trainer = _trainer(device, precision, warmup + steps, root, devices=1, callbacks=callbacks, benchmark=True)
    trainer.fit(model, train_dataloaders=loader)
    return steps * batch["image"].shape[0] / clock.seconds


def matmul_peak(device: str, dtype: torch.dtype, n: int) -> float:
    """TFLOP/s of an n x n x n matrix product (the mean of 10 after 3 warm-ups)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    _sync(device)
    return 2 * n**3 * 10 / (time.perf_counter() - start) / 1e12


def profile_steps(batch: dict[str, Any], device: str, out: Path) -> None:
    """torch.profiler tables and Chrome traces (``chrome://tracing``, Perfetto) of 5 steady steps (after 3) of avsl's
    EZ-VSL in Trainer.fit and of the plain network in the plain loop, both bf16 and channels-last: where the time of
    each goes, op by op, and in the trace whether the device waits for the host between kernels."""
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    for name, run in (
        ("avsl_fit", partial(avsl_fit, batch, device, 5, 3, "bf16-mixed", True, None)),
        ("plain_loop", partial(plain_loop, batch, device, 5, 3, True)),
    ):

        def write(prof: profile, name: str = name) -> None:  # called once, when the 5 active steps are recorded
            text = prof.key_averages().table(sort_by=sort, row_limit=30)
            text += "\n\nby CPU time:\n" + prof.key_averages().table(sort_by="cpu_time_total", row_limit=30)
            (out / f"profile_{name}.txt").write_text(text)
            prof.export_chrome_trace(str(out / f"trace_{name}.json"))

        plan = schedule(wait=0, warmup=3, active=5, repeat=1)
        with profile(activities=activities, schedule=plan, on_trace_ready=write) as prof:
            run(each_step=prof.step)


def check_throughput(device: str, tiny: bool, compile: bool, profile_dir: Path | None = None) -> dict[str, Any]:
    batch_size, size, seconds = (4, 64, 1.0) if tiny else (128, 224, 3.0)
    torch.backends.cudnn.benchmark = (
        True  # every row: the plain loop as a tuned script would run it, Trainer(benchmark)
    )
    steps, warmup = (2, 1) if tiny else (50, 10)
    gen = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.rand(batch_size, 3, size, size, generator=gen).to(device),
        "audio": (0.1 * torch.randn(batch_size, int(seconds * 16000), generator=gen)).to(device),
        "sample_id": [str(i) for i in range(batch_size)],
    }
    # FLOPs of one training step of the network (forward and backward), counted once in float32
    counter = FlopCounterMode(display=False)
    net = PlainEZVSL().to(device)
    with counter:
        plain_loss(*net(batch["image"], batch["audio"])).backward()
    flops_per_sample = counter.get_total_flops() / batch_size
    del net
    n = 1024 if tiny or device != "cuda" else 8192
    peaks = {"bf16": matmul_peak(device, torch.bfloat16, n), "fp32": matmul_peak(device, torch.float32, n)}
    # cuDNN runs float32 convolutions in TF32 by default (torch.backends.cudnn.allow_tf32): their ceiling is TF32's
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    peaks["tf32"] = matmul_peak(device, torch.float32, n)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    common = (batch, device, steps, warmup)
    fit = partial(avsl_fit, *common)
    runs: list[tuple[str, str, bool, str, Callable[[], float]]] = [
        ("plain loop", "32-true", False, "no", partial(plain_loop, *common, False)),
        ("plain loop", "bf16 autocast", True, "no", partial(plain_loop, *common, True)),
        ("avsl model, plain loop", "bf16 autocast", True, "no", partial(avsl_model_loop, *common)),
        ("avsl Trainer.fit", "32-true", False, "no", partial(fit, "32-true", False, None)),
        ("avsl Trainer.fit", "bf16-mixed", True, "no", partial(fit, "bf16-mixed", True, None)),
        # diagnostic: the same without self.log in the step (what logging costs per step)
        ("avsl Trainer.fit, no self.log", "bf16-mixed", True, "no", partial(fit, "bf16-mixed", True, None, True)),
    ]
    if compile:  # the encoders compiled; "reduce-overhead" replays them as CUDA graphs (no launch cost per kernel)
        runs += [
            ("avsl Trainer.fit", "bf16-mixed", True, mode, partial(fit, "bf16-mixed", True, mode))
            for mode in ("default", "reduce-overhead")
        ]
    # Every row runs `repeats` times, the rows in turn (a drift of the clock or the temperature spreads over all of
    # them); the best run is the row's rate, the others are kept.
    rates: list[list[float]] = [[] for _ in runs]
    errors: dict[int, str] = {}
    for _ in range(1 if tiny else 2):
        for i, (_loop, _precision, _channels_last, compiled, run) in enumerate(runs):
            if i in errors:
                continue
            try:
                rates[i].append(run())
            except Exception as err:
                errors[i] = f"{type(err).__name__}: {err}"[:400]
            if compiled != "no":
                torch._dynamo.reset()  # each compiled row starts from its own graphs
    rows = []
    for i, (loop, precision, channels_last, compiled, _run) in enumerate(runs):
        row: dict[str, Any] = {"loop": loop, "precision": precision, "channels_last": channels_last}
        row["compile"] = compiled
        if i in errors:
            row.update(ok=False, error=errors[i], runs=rates[i])
        else:
            rate = max(rates[i])
            row.update(ok=True, samples_per_s=rate, runs=rates[i], tflops=rate * flops_per_sample / 1e12)
            row["of_peak"] = row["tflops"] / peaks["bf16" if "bf16" in precision else "tf32"]
        rows.append(row)
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        profile_steps(batch, device, profile_dir)
    base = rows[0].get("samples_per_s")
    for row in rows:
        if base and row.get("ok"):
            row["vs_plain_fp32"] = row["samples_per_s"] / base
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    sheet = next((v for k, v in DATASHEET.items() if k in name), None)
    setting = f"batch {batch_size}, {size} px, {seconds:g} s"
    return {
        "device_name": name,
        "setting": setting,
        "flops_per_sample": flops_per_sample,
        "matmul_peak_tflops": peaks,
        "datasheet_tflops": sheet,
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------------- loader
def _replicated_ids(folder: Path, ids: list[str], times: int) -> list[str]:
    """``ids`` and ``times - 1`` copies of them under new names (hard links of the frame and the audio file): an epoch
    long enough for every worker to load several batches, without generating more clips."""
    out = list(ids)
    for k in range(1, times):
        for sid in ids:
            new = f"r{k}_{sid}"
            for sub, suffix in (("frames", ".jpg"), ("audio", ".wav")):
                link = folder / sub / f"{new}{suffix}"
                if not link.exists():
                    try:
                        os.link(folder / sub / f"{sid}{suffix}", link)
                    except OSError:  # a file system without hard links
                        shutil.copyfile(folder / sub / f"{sid}{suffix}", link)
            out.append(new)
    return out


def _epoch_rate(data: AVDataModule) -> tuple[float, float, int]:
    """Samples/s of one training epoch from its first batch to its last, the wait for the first batch, and the
    samples; counting from the first batch leaves the workers' start-up out, as in a long epoch."""
    start = time.perf_counter()
    first, last, samples = 0.0, 0.0, 0
    for batch, _, _ in data.train_dataloader():
        now = time.perf_counter()
        if not first:
            first = now
        else:
            samples += batch["unlabeled"]["image"].shape[0]
        last = now
    return samples / max(last - first, 1e-9), first - start, samples


def check_loader(root: Path, tiny: bool, workers: list[int], step_rate: float | None) -> list[dict[str, Any]]:
    """Samples/s of AVDataModule's training loader, per reader and number of workers, against the training step.

    ``folder``: the VGG-SS reader on a prepared folder (640x360 JPEGs, 10-s 16-kHz WAVs, as ``avsl prepare`` writes
    them), at 224 px and 3 s with ``JointRandomCropFlip``: each sample decodes a JPEG, resizes it and reads a window.
    ``shards``: the same samples as litdata shards at training size (``avsl shard``: 8-bit frames at 224 px, the
    16-bit window), read by ``StreamingAVDataset`` with the same augmentation (skipped without litdata). One epoch of
    8x the clips (their files linked under new ids), so that every worker loads several batches; the rate counts from
    the first batch to the last (the first batch's wait is its own column)."""
    clips, batch_size, frame, seconds = (8, 4, (72, 128), 2.0) if tiny else (1024, 128, (360, 640), 10.0)
    folder = root / "prepared"
    if not (folder / "splits" / "train.txt").exists():
        clip_set = SynthAV(clips, seed=0, frame_size=frame, duration=seconds, cache=False)
        write_synthav(folder, {"train": clip_set}, progress=False)
    image_size, window = (64, 1.0) if tiny else (224, 3.0)
    ids = _replicated_ids(folder, (folder / "splits" / "train.txt").read_text().split(), 8)
    readers: dict[str, Callable[[], Any]] = {
        "folder": lambda: VGGSSDataset(
            folder, split=ids, image_size=image_size, duration=window, augment=JointRandomCropFlip()
        )
    }
    try:
        from avsl.data.streaming import StreamingAVDataset, write_shards
    except ImportError:
        pass
    else:
        shards = root / "shards"
        if not (shards / "index.json").exists():
            write_shards(VGGSSDataset(folder, split=ids, image_size=image_size, duration=window), shards)
        readers["shards"] = lambda: StreamingAVDataset(str(shards), augment=JointRandomCropFlip(), shuffle=True)
    rows = []
    for reader, make in readers.items():
        for n in workers:
            data = AVDataModule(
                make(), batch_size=batch_size, num_workers=n, pin_memory=torch.cuda.is_available(), seed=0
            )
            rate, first, samples = _epoch_rate(data)
            row = {"reader": reader, "workers": n, "samples_per_s": rate, "first_batch_s": first, "samples": samples}
            if step_rate:
                row["vs_step"] = rate / step_rate
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------- report
def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _head(*names: str) -> list[str]:
    return ["", _row(*names), _row(*["---"] * len(names))]


def table(result: dict[str, Any]) -> str:
    """The results as markdown tables."""
    lines = [f"# gpu_check on {result['device']} ({result['device_name']}), torch {result['torch']}, {result['date']}"]
    lines += _head("method", "precision", "ok", "loss", "val cIoU", "float64 ops", "host syncs", "s")
    for r in result.get("methods", []):
        if r["ok"]:
            watched = (sum(r["float64_ops"].values()), sum(r["host_syncs"].values()))
            lines.append(
                _row(
                    r["method"],
                    r["precision"],
                    "yes",
                    f"{r['loss']:.3f}",
                    f"{r['val_ciou']:.3f}",
                    *watched,
                    r["seconds"],
                )
            )
        else:
            lines.append(_row(r["method"], r["precision"], f"**no**: {r['error'][:160]}", "", "", "", "", r["seconds"]))
    if result.get("ddp"):
        lines += _head("DDP: method", "devices", "ok", "steps", "val cIoU")
        for r in result["ddp"]:
            ok = "yes" if r["ok"] else f"**no**: {r['error'][:160]}"
            lines.append(_row(r["method"], r.get("devices", ""), ok, r.get("steps", ""), r.get("val_ciou", "")))
    if result.get("metrics"):
        lines += _head("metrics on the device = CPU: protocol", "equal")
        lines += [_row(r["protocol"], "yes" if r["ok"] else f"no: {r['differ']}") for r in result["metrics"]]
    t = result.get("throughput")
    if t:
        peak = t["matmul_peak_tflops"]
        lines += [
            "",
            f"EZ-VSL training throughput ({t['setting']}; {t['flops_per_sample'] / 1e9:.1f} GFLOP per sample; "
            f"measured matmul peak: bf16 {peak['bf16']:.1f}, tf32 {peak['tf32']:.1f}, fp32 {peak['fp32']:.1f} "
            "TFLOP/s; float32 rows are rated against tf32)",
        ]
        lines += _head(
            "loop", "precision", "channels-last", "compile", "samples/s", "TFLOP/s", "of peak", "vs plain fp32", "runs"
        )
        for r in t["rows"]:
            setting = (r["loop"], r["precision"], r["channels_last"], r["compile"])
            if r["ok"]:
                rates = (f"{r['samples_per_s']:.1f}", f"{r['tflops']:.2f}", f"{r['of_peak']:.1%}")
                runs = ", ".join(f"{v:.0f}" for v in r["runs"])
                lines.append(_row(*setting, *rates, f"{r.get('vs_plain_fp32', 0):.2f}x", runs))
            else:
                lines.append(_row(*setting, f"**failed**: {r['error'][:120]}", "", "", "", ""))
    if result.get("loader"):
        lines += _head("loader", "workers", "samples/s", "first batch s", "vs avsl bf16 step")
        for r in result["loader"]:
            ratio = f"{r['vs_step']:.2f}x" if "vs_step" in r else ""
            cells = (r["workers"], f"{r['samples_per_s']:.1f}", f"{r['first_batch_s']:.2f}", ratio)
            lines.append(_row(r.get("reader", "folder"), *cells))
    for name, error in result.get("errors", {}).items():
        lines += ["", f"section {name} failed:", error]
    return "\n".join(lines)


def _step_rate(result: dict[str, Any]) -> float | None:
    """Samples/s of avsl's fastest bf16 ``Trainer.fit`` in the throughput section (compiled or not; not the diagnostic
    rows), if it ran."""
    rows = result.get("throughput", {}).get("rows", [])
    fits = [r for r in rows if r["ok"] and r["loop"] == "avsl Trainer.fit" and "bf16" in r["precision"]]
    rates = [r["samples_per_s"] for r in fits]
    return max(rates, default=None)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (the CPU test)")
    parser.add_argument("--methods", nargs="+", default=sorted(METHODS))
    parser.add_argument("--steps", type=int, default=4, help="training steps per method and precision")
    parser.add_argument("--skip", nargs="*", default=[], choices=["methods", "ddp", "metrics", "throughput", "loader"])
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time torch.compile'd encoders (default: on CUDA)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=None,
        help="loader workers to time (default: 0 2 4 8 16, up to the cores)",
    )
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--profile", type=Path, default=None, help="write torch.profiler tables of the step here")
    parser.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.ddp_worker:
        ddp_worker(args)
        return {}
    precisions = ["32-true", "bf16-mixed"] + (["16-mixed"] if args.device == "cuda" else [])
    result: dict[str, Any] = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "tiny": args.tiny,
    }
    sections = {
        "methods": lambda: [
            check_method(name, p, args.device, args.tiny, args.steps, root) for name in args.methods for p in precisions
        ],
        "ddp": lambda: check_ddp(args, root),
        "metrics": lambda: check_metrics(args.device),
        "throughput": lambda: check_throughput(args.device, args.tiny, compile, args.profile),
        "loader": lambda: check_loader(root, args.tiny, workers, _step_rate(result)),
    }
    compile = args.device == "cuda" if args.compile is None else args.compile
    workers = args.workers or [w for w in (0, 2, 4, 8, 16) if w <= (os.cpu_count() or 1)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, run in sections.items():
            if name in args.skip:
                continue
            try:
                result[name] = run()
            except Exception as err:  # a section that breaks is reported; the others still run
                result.setdefault("errors", {})[name] = traceback.format_exc()[-2000:]
                print(f"section {name} failed: {type(err).__name__}: {err}", file=sys.stderr)
            if args.out:  # after every section: a run cut short still leaves what it measured
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(result, indent=1))
    text = table(result)
    print(text)
    if args.out:
        Path(args.out).with_suffix(".md").write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
