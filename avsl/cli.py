"""The ``avsl`` command: LightningCLI subcommands plus ``localize``, ``synth``, ``quickstart`` and ``configs``.

``avsl fit|validate|test|predict`` is a plain :class:`lightning.pytorch.cli.LightningCLI` in subclass mode, so
``--model avsl.methods.EZVSL`` and ``--model mypkg.MyMethod`` both work. ``-c NAME`` also accepts the name of a
config shipped in ``avsl/configs`` (``-c methods/ezvsl.yaml``, ``-c ezvsl``); list them with ``avsl configs``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from avsl import __version__

__all__ = ["AVSLCLI", "main", "resolve_config", "shipped_configs"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

_USAGE = f"""\
usage: avsl [--help] [--version] <command> [options]

avsl {__version__}: audio-visual sound source localization with PyTorch Lightning.

commands:
  fit          train a method (LightningCLI; e.g. avsl fit -c ezvsl -c synthav)
  validate     evaluate on the validation set
  test         evaluate on the test set
  predict      write heatmaps of the predict set
  localize     heatmap overlays for one image + audio file (or a video) from a checkpoint
  synth        write a SynthAV dataset to disk in the common benchmark layout
  quickstart   train and evaluate EZ-VSL on SynthAV on a CPU, with baselines and pictures
  configs      list the configs shipped with avsl

Run 'avsl <command> --help' for a command's options.
"""


# ------------------------------------------------------------------------------------------------------ configs
def _config_root() -> Path:
    return Path(str(resources.files("avsl") / "configs"))


def shipped_configs() -> list[str]:
    """Names of the YAML configs shipped in the package, relative to ``avsl/configs``."""
    root = _config_root()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


def resolve_config(value: str) -> str:
    """A path if it exists, else the shipped config it names (``ezvsl``, ``methods/ezvsl``, ``methods/ezvsl.yaml``)."""
    if Path(value).exists() or value.startswith(("{", "[")):
        return value
    root = _config_root()
    name = value if value.endswith((".yaml", ".yml")) else value + ".yaml"
    candidates = [root / name] + [root / sub / name for sub in ("methods", "data")]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return value  # let LightningCLI report the missing file


def _resolve_config_args(args: list[str]) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out):
        if arg in ("-c", "--config") and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + resolve_config(arg.split("=", 1)[1])
    return out


# ------------------------------------------------------------------------------------------------- LightningCLI
def _make_cli_class() -> Any:
    # Lightning is imported here, not at module level, so that `avsl --version` and `avsl --help` stay instant.
    from lightning.pytorch.cli import LightningCLI

    class AVSLCLI(LightningCLI):
        """LightningCLI with avsl's defaults: subclass mode, a checkpoint and a heatmap-logging callback."""

        def before_instantiate_classes(self) -> None:
            # Link the datasets' sample rate to every `sample_rate` argument of the model config (the method's, and
            # those of methods nested in it, such as XPL's peers or SemiPL's base), so the rate is set once, in the
            # data config.
            config = self.config[self.subcommand] if self.subcommand else self.config
            keys = [k for k in config.keys() if k.endswith("init_args.sample_rate")]  # noqa: SIM118 -- Namespace.keys() is flattened
            rates = {int(config[k]) for k in keys if k.startswith("data.") and config[k] is not None}
            if len(rates) > 1:
                raise ValueError(f"the datasets of the data config disagree on sample_rate: {sorted(rates)}")
            if rates:
                rate = rates.pop()
                for key in keys:
                    if key.startswith("model."):
                        config[key] = rate

    return AVSLCLI


def AVSLCLI(args: Sequence[str] | None = None, run: bool = True) -> Any:
    """Build avsl's LightningCLI (model and data in subclass mode) with ``args`` (default: ``sys.argv[1:]``)."""
    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.callbacks import ModelCheckpoint

    from avsl.methods import LocalizationMethod
    from avsl.viz import HeatmapLogger

    # LightningCLI 2.6 calls jsonargparse APIs deprecated in jsonargparse 4.49: noise for users, not theirs to fix.
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    # The CPU recipes train in bf16-mixed; Lightning's model summary then says it counts sizes in 32 bits. Noise too.
    warnings.filterwarnings("ignore", message="Precision bf16-mixed is not supported by the model summary")
    cls = _make_cli_class()
    resolved = _resolve_config_args(list(sys.argv[1:] if args is None else args))
    # LightningCLI parses sys.argv (and Lightning's DDP launcher re-runs it in the other processes), so the resolved
    # arguments go there rather than into `args`; explicit `args` from Python leave sys.argv as it was afterwards.
    saved = sys.argv
    sys.argv = [saved[0], *resolved]
    try:
        return cls(
            LocalizationMethod,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            run=run,
            trainer_defaults={"callbacks": [ModelCheckpoint(save_last=True), HeatmapLogger()]},
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,  # reproducible by default; --seed_everything overrides
        )
    finally:
        if args is not None:
            sys.argv = saved


# ----------------------------------------------------------------------------------------------- extra commands
def _localize(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avsl localize",
        description="Write heatmap overlays of a trained method for one image and audio file, or for a video.",
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint written by avsl (any method or subclass)")
    parser.add_argument("--image", help="frame (jpg/png)")
    parser.add_argument("--audio", help="audio file (wav, flac, ...; resampled to the model's rate)")
    parser.add_argument("--video", help="a video file instead of --image/--audio: one overlay per --stride seconds")
    parser.add_argument("--stride", type=float, default=1.0, help="seconds between video frames (default 1.0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--image-size", type=int, default=None, help="frame size (default: the training size)")
    parser.add_argument("--duration", type=float, default=None, help="audio window in s (default: training window)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ns = parser.parse_args(argv)
    if (ns.video is None) == (ns.image is None or ns.audio is None):
        parser.error("give either --image and --audio, or --video")
    from avsl.localize import localize_files

    written = localize_files(
        ckpt=ns.ckpt,
        out=ns.out,
        image=ns.image,
        audio=ns.audio,
        video=ns.video,
        stride=ns.stride,
        image_size=ns.image_size,
        duration=ns.duration,
        device=ns.device,
    )
    for path in written:
        print(path)
    return 0


def _synth(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avsl synth", description="Write SynthAV splits to disk (frames/, audio/, masks/, annotations.json)."
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=2000, help="clips in the train split (default 2000)")
    parser.add_argument("--val", type=int, default=200, help="clips in the val split (default 200)")
    parser.add_argument("--test", type=int, default=500, help="clips in the test split (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; splits use seed, seed+1, seed+2")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--duration", type=float, default=1.0, help="clip length in seconds")
    parser.add_argument("--num-classes", type=int, default=8)
    parser.add_argument("--num-distractors", type=int, default=2)
    parser.add_argument("--num-sources", type=int, default=1, help="sounding objects per clip (mixtures above 1)")
    parser.add_argument("--negative-fraction", type=float, default=0.0, help="fraction of silent/off-screen clips")
    parser.add_argument("--snr-db", type=float, nargs=2, default=(0.0, 20.0), metavar=("LOW", "HIGH"))
    parser.add_argument("--object-scale", type=float, nargs=2, default=(0.3, 0.7), metavar=("LOW", "HIGH"))
    parser.add_argument(
        "--setting", default=None, help="the knobs of a named setting of avsl.data.SETTINGS (instead of knob options)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    knobs = ["image_size", "sample_rate", "duration", "num_classes", "num_distractors", "num_sources"]
    knobs += ["negative_fraction", "snr_db", "object_scale", "seed"]
    ns = parser.parse_args(argv)
    from avsl.data.settings import SETTINGS
    from avsl.data.synthetic import SynthAV, write_synthav

    if ns.setting is not None:
        if ns.setting not in SETTINGS:
            parser.error(f"unknown setting {ns.setting!r}; choose one of {', '.join(SETTINGS)}")
        given = [k for k in knobs if getattr(ns, k) != parser.get_default(k)]
        if given:
            parser.error(f"--setting fixes the knobs (and the seeds): leave out {', '.join('--' + k for k in given)}")
        setting = SETTINGS[ns.setting]
        sizes = {"train": ns.train, "val": ns.val, "test": ns.test}
        splits = {name: setting.dataset(name, n, cache=False) for name, n in sizes.items() if n > 0}  # type: ignore[arg-type]
        root = write_synthav(ns.out, splits, progress=not ns.quiet)
        print(f"wrote {sum(sizes.values())} SynthAV clips of setting {ns.setting!r} to {root}")
        return 0

    def split(n: int, offset: int) -> SynthAV:
        return SynthAV(
            num_clips=n,
            seed=ns.seed + offset,
            image_size=ns.image_size,
            sample_rate=ns.sample_rate,
            duration=ns.duration,
            num_classes=ns.num_classes,
            num_distractors=ns.num_distractors,
            num_sources=ns.num_sources,
            negative_fraction=ns.negative_fraction,
            snr_db=tuple(ns.snr_db),
            object_scale=tuple(ns.object_scale),
            cache=False,
        )

    sizes = {"train": ns.train, "val": ns.val, "test": ns.test}
    splits = {name: split(n, i) for i, (name, n) in enumerate(sizes.items()) if n > 0}
    root = write_synthav(ns.out, splits, progress=not ns.quiet)
    total = sum(sizes.values())
    print(f"wrote {total} SynthAV clips to {root} ({', '.join(f'{k}: {v}' for k, v in sizes.items())})")
    return 0


def _quickstart(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avsl quickstart",
        description="Train EZ-VSL on SynthAV on a CPU, evaluate it next to trivial baselines, and draw heatmaps.",
    )
    parser.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the config's epoch count")
    parser.add_argument("--train-clips", type=int, default=None, help="override the number of training clips")
    parser.add_argument("--test-clips", type=int, default=None, help="override the number of test clips")
    ns = parser.parse_args(argv)
    from avsl.quickstart import run_quickstart

    run_quickstart(ns.out, max_epochs=ns.max_epochs, train_clips=ns.train_clips, test_clips=ns.test_clips)
    return 0


def _configs(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print("usage: avsl configs\n\nList the YAML configs shipped with avsl (use them with -c NAME).")
        return 0
    root = _config_root()
    for name in shipped_configs():
        print(f"{name:32s} {root / name}")
    return 0


_EXTRA = {"localize": _localize, "synth": _synth, "quickstart": _quickstart, "configs": _configs}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``avsl`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, end="")
        return 0
    if args[0] == "--version":
        print(f"avsl {__version__}")
        return 0
    if args[0] in _EXTRA:
        return _EXTRA[args[0]](args[1:])
    if args[0] in LIGHTNING_COMMANDS:
        AVSLCLI(args)
        return 0
    print(f"avsl: unknown command {args[0]!r}\n", file=sys.stderr)
    print(_USAGE, end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
