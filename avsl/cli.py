"""The ``avsl`` command: LightningCLI subcommands plus ``localize``, ``synth``, ``quickstart`` and ``configs``.

``avsl fit|validate|test|predict`` runs :class:`avsl.lightning_cli.AVSLCLI` (imported only then, so that ``avsl
--version`` and ``avsl --help`` stay instant). ``-c NAME`` also accepts the name of a config shipped in
``avsl/configs`` (``-c methods/ezvsl.yaml``, ``-c ezvsl``); list them with ``avsl configs``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avsl import __version__

__all__ = ["main"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
_PACKAGE = Path(__file__).resolve().parent

_USAGE = f"""\
usage: avsl [--help] [--version] <command> [options]

avsl {__version__}: audio-visual sound source localization with PyTorch Lightning.

commands:
  fit          train a method (LightningCLI; e.g. avsl fit -c ezvsl -c synthav)
  validate     evaluate on the validation set
  test         evaluate on the test set (--controls: also with another clip's sound, silence, noise, and the
               centre prior, side by side)
  predict      write heatmaps of the predict set
  localize     heatmaps from a checkpoint: overlays for an image + audio file, or an overlay video
  export       write a checkpoint's model as safetensors weights + a YAML config (no pickles)
  convert      turn a published checkpoint (EZ-VSL, SLAVC, FNAC, LVS, SSL-align) into an avsl checkpoint
  prepare      turn a folder of downloaded videos into a dataset (vggsound, flickr, avsbench, folder)
  shard        write a prepared dataset as litdata streaming shards (training on many machines)
  synth        write a SynthAV dataset to disk in the common benchmark layout
  quickstart   train and evaluate EZ-VSL on SynthAV on a CPU, with baselines and pictures
  configs      list the configs shipped with avsl

Run 'avsl <command> --help' for a command's options. Errors in the input (a missing or corrupt file, a bad
annotation, an unsafe checkpoint) are printed alone; --verbose prints the full traceback as well.
Checkpoints are read with restricted unpickling (no code can run); --trust-checkpoint (localize, export) lifts it, for
files you trust.
"""


_TRUST_HELP = "read the checkpoint with full unpickling, which can run code: only for files you trust"


# ----------------------------------------------------------------------------------------------- extra commands
def _export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avsl export",
        description="Write a checkpoint's model as DIR/model.safetensors (weights; class and signal as metadata) and "
        "DIR/config.yaml (model: class_path, init_args). avsl.methods.load_method(DIR) reads it without unpickling.",
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint written by avsl (any method or subclass)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--trust-checkpoint", action="store_true", help=_TRUST_HELP)
    ns = parser.parse_args(argv)
    from avsl.methods import export_method

    out = export_method(ns.ckpt, ns.out, trust=ns.trust_checkpoint)
    print(f"wrote {out / 'model.safetensors'} and {out / 'config.yaml'}")
    return 0


def _convert(argv: list[str]) -> int:
    from avsl.convert import LAYOUTS, convert_checkpoint

    layouts = "; ".join(f"{k}: {v.source}" for k, v in LAYOUTS.items())
    parser = argparse.ArgumentParser(
        prog="avsl convert",
        description="Convert a checkpoint released by a method's reference repository into an avsl checkpoint of "
        f"that method (built from its shipped config). Layouts: {layouts}. Then: avsl test -c METHOD -c vggss "
        "--ckpt_path OUT.",
    )
    parser.add_argument("--from", dest="layout", required=True, choices=sorted(LAYOUTS), help="the repository")
    parser.add_argument("source", help="the published checkpoint file")
    parser.add_argument("--out", required=True, help="the avsl checkpoint to write (.ckpt)")
    parser.add_argument("--trust-checkpoint", action="store_true", help=_TRUST_HELP)
    ns = parser.parse_args(argv)
    model, record = convert_checkpoint(ns.source, ns.layout, ns.out, trust=ns.trust_checkpoint)
    s = model.signal
    print(
        f"{ns.source} ({record['layout']} layout, {record['repository']}) -> {ns.out}: {type(model).__name__}, "
        f"{record['tensors']} tensors; {s.frame_size[0]}x{s.frame_size[1]} frames, {s.duration:g} s of "
        f"{s.sample_rate} Hz audio"
    )
    for what, names in (
        ("unused by the reference's forward pass", record["dropped_unused"]),
        ("not in the reference network (it loads with strict=False)", record["dropped_extra"]),
    ):
        if names:
            print(f"dropped {len(names)} keys {what}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}")
    key = type(model).__module__.rpartition(".")[2]
    print(f"score it: avsl test -c {key} -c vggss --ckpt_path {ns.out}")
    return 0


def _localize(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avsl localize",
        usage="avsl localize --ckpt CKPT --out DIR (--image IMG --audio WAV | --video FILE) [options]",
        description="Heatmaps of a trained method. For an image and an audio file: DIR/<stem>_overlay.png (frame | "
        "overlay), <stem>_heatmap.png and <stem>_heatmap.npy. For a video: every frame, with the audio window of the "
        "model's training centred on it; DIR/<stem>_overlay.mp4 (the video at its own resolution with the heatmap "
        "blended in, and its sound) and DIR/<stem>_heatmaps.npy (the maps, frames x height x width, in [0, 1]). "
        "Frames and audio are prepared as the model was trained (its frame size, sample rate and window, saved in "
        "the checkpoint).",
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint written by avsl, or an `avsl export` folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    parser.add_argument("--trust-checkpoint", action="store_true", help=_TRUST_HELP)
    pair = parser.add_argument_group("one image and audio file")
    pair.add_argument("--image", metavar="IMG", help="frame (jpg/png)")
    pair.add_argument("--audio", metavar="WAV", help="audio file (wav, flac, ...; resampled to the model's rate)")
    pair.add_argument("--image-size", type=int, metavar="PX", help="frame size (default: the training size)")
    pair.add_argument("--duration", type=float, metavar="S", help="audio window in s (default: the training window)")
    clip = parser.add_argument_group("a video")
    clip.add_argument("--video", metavar="FILE", help="a video with sound (mp4, mkv, webm, ...)")
    clip.add_argument("--fps", type=float, metavar="F", help="output frames per second (default: the video's)")
    clip.add_argument("--batch-size", type=int, default=16, metavar="N", help="frames per forward pass (default 16)")
    clip.add_argument("--frames", action="store_true", help="also write each frame's files as --image does (PNGs)")
    clip.add_argument("--quiet", action="store_true", help="no progress bar")
    clip.add_argument("--stride", type=float, default=None, help=argparse.SUPPRESS)  # replaced by --fps
    ns = parser.parse_args(argv)
    some_pair = ns.image is not None or ns.audio is not None
    if (ns.video is not None and some_pair) or (ns.video is None and (ns.image is None or ns.audio is None)):
        parser.error("give either --image and --audio, or --video")  # (--video beside either was ignored)
    if ns.video is None:
        from avsl.localize import localize_files

        written = localize_files(
            ckpt=ns.ckpt,
            out=ns.out,
            image=ns.image,
            audio=ns.audio,
            image_size=ns.image_size,
            duration=ns.duration,
            device=ns.device,
            trust=ns.trust_checkpoint,
        )
        for path in written:
            print(path)
        return 0
    if ns.stride is not None:
        parser.error("--stride is gone: --video now localizes every frame; --fps 1 gives one frame per second")
    if ns.image_size is not None or ns.duration is not None:
        parser.error("--image-size and --duration apply to --image/--audio; a video uses the checkpoint's signal")
    if ns.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {ns.batch_size}")
    from avsl.localize import localize_video, video_outputs
    from avsl.methods import load_method

    model = load_method(ns.ckpt, map_location=ns.device, trust=ns.trust_checkpoint)
    maps = localize_video(
        model,
        ns.video,
        ns.out,
        fps=ns.fps,
        batch_size=ns.batch_size,
        device=ns.device,
        progress=not ns.quiet,
        frames=ns.frames,
    )
    for path in video_outputs(ns.out, ns.video):
        print(path)
    if ns.frames:
        stem = Path(ns.out) / Path(ns.video).stem
        print(f"{stem}_0000_overlay.png ... {stem}_{len(maps) - 1:04d}_overlay.png (and _heatmap.png, _heatmap.npy)")
    return 0


def _prepare(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avsl prepare",
        description="Turn a folder of downloaded videos into the layout of avsl's readers: frames, 16-kHz mono WAVs, "
        "a report (ROOT/prepare_report.json) and the ids of each shipped split list still missing (ROOT/missing/). "
        "Resumable: a second run skips finished clips and redoes half-written ones. See docs/getting_data.md.",
    )
    parser.add_argument("benchmark", choices=["vggsound", "flickr", "avsbench", "folder"])
    parser.add_argument("--videos", required=True, help="folder of downloaded videos (searched recursively)")
    parser.add_argument("--out", required=True, help="dataset root to write")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: every core)")
    parser.add_argument("--split", default=None, help="only the ids of this shipped split list (or id file)")
    parser.add_argument("--frame-time", type=float, default=5.0, help="vggsound: second of the frame (default 5.0)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="sound to keep (vggsound: 10; flickr: all; folder: 3 per frame)"
    )
    parser.add_argument("--min-seconds", type=float, default=3.0, help="skip clips with less sound (default 3)")
    parser.add_argument("--subset", choices=["s4", "ms3"], default="s4", help="avsbench: S4 or MS3")
    parser.add_argument("--meta", default=None, help="avsbench: the benchmark's metadata csv (name, category, split)")
    parser.add_argument("--frames-per-clip", type=int, default=1, help="folder: evenly spaced frames per video")
    parser.add_argument("--overwrite", action="store_true", help="redo clips that are already done")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    ns = parser.parse_args(argv)
    from avsl.data.prepare import prepare

    report = prepare(
        ns.benchmark,
        ns.videos,
        ns.out,
        workers=ns.workers,
        split=ns.split,
        frame_time=ns.frame_time,
        seconds=ns.seconds,
        min_seconds=ns.min_seconds,
        subset=ns.subset,
        meta_csv=ns.meta,
        frames_per_clip=ns.frames_per_clip,
        overwrite=ns.overwrite,
        progress=not ns.quiet,
    )
    print(report.summary())
    print(f"report: {Path(ns.out) / 'prepare_report.json'}")
    if report.clips == 0:
        print(f"avsl prepare: error: no videos found in {ns.videos}", file=sys.stderr)
        return 1
    return 0


def _shard(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="avsl shard",
        description="Write a prepared dataset as litdata chunks that avsl.data.streaming.StreamingAVDataset streams "
        "from a folder or object storage: each sample as the reader decodes it (frame at --image-size, the audio "
        "window of --duration s, GT maps), before augmentation. Needs litdata (pip install 'avsl[stream]').",
    )
    parser.add_argument("root", help="the prepared dataset (avsl prepare's output, or any folder the reader takes)")
    parser.add_argument("--out", required=True, help="output folder of the shards")
    parser.add_argument("--reader", choices=["vggss", "flickr", "folder", "avsbench"], default="vggss")
    parser.add_argument("--split", default=None, help="ids: a shipped list, a file, or a name under ROOT/splits")
    parser.add_argument("--annotations", default=None, help="boxes: 'vggss', 'flickr' or a JSON/XML folder")
    parser.add_argument("--subset", choices=["s4", "ms3"], default="s4", help="avsbench: S4 or MS3")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of audio per sample")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: every core)")
    ns = parser.parse_args(argv)
    from avsl.data import AVSBenchDataset, FlickrSoundNetDataset, FolderDataset, VGGSSDataset
    from avsl.data.streaming import SHARDS_META, write_shards

    # samples a list names but the folder lacks are left out and counted (avsl prepare's report lists them)
    common: dict[str, Any] = {"image_size": ns.image_size, "sample_rate": ns.sample_rate, "duration": ns.duration}
    common["on_error"] = "skip"
    if ns.reader == "avsbench":
        dataset: Any = AVSBenchDataset(ns.root, subset=ns.subset, split=ns.split or "train", **common)
    else:
        reader = {"vggss": VGGSSDataset, "flickr": FlickrSoundNetDataset, "folder": FolderDataset}[ns.reader]
        dataset = reader(ns.root, split=ns.split, annotations=ns.annotations, **common)
    out = write_shards(dataset, ns.out, workers=ns.workers, progress=True)
    meta = json.loads((out / SHARDS_META).read_text())
    print(f"wrote {meta['samples']:,} samples of {dataset!r} as shards to {out}")
    if len(dataset.skipped):
        print(f"left out from the index: {dataset.skipped.summary()}")
    if meta["skipped"]:
        first = "; ".join(f"{s['sample_id']}: {s['problem']}" for s in meta["skipped"][:3])
        print(f"left out, failed to decode: {len(meta['skipped'])} (listed in {out / SHARDS_META}), e.g. {first}")
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
    if min(sizes.values()) < 0 or not any(sizes.values()):
        raise ValueError(f"--train, --val and --test are clip counts >= 0, not all 0; got {sizes}")
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
    from avsl.lightning_cli import resolve_config, shipped_configs

    for name in shipped_configs():
        print(f"{name:32s} {resolve_config(name)}")
    return 0


_EXTRA = {
    "localize": _localize,
    "export": _export,
    "convert": _convert,
    "prepare": _prepare,
    "shard": _shard,
    "synth": _synth,
    "quickstart": _quickstart,
    "configs": _configs,
}


def _lightning(args: list[str]) -> int:
    from avsl.lightning_cli import AVSLCLI

    # --ckpt_path is read with restricted unpickling: LightningCLI reads its hyperparameters so, whatever the flags, and
    # the Trainer is told to as well (avsl's checkpoints need nothing else).
    if "--trust-checkpoint" in args or any(a.startswith("--weights_only") for a in args):
        raise ValueError(
            f"avsl {args[0]} reads --ckpt_path with restricted unpickling only (LightningCLI does). For a checkpoint "
            "you trust that needs more, load it in Python (avsl.methods.load_method(path, trust=True)), or convert "
            "it once with `avsl export --trust-checkpoint --ckpt PATH --out DIR` and load DIR"
        )
    if "--controls" in args:
        # `avsl test --controls`: the audio controls beside the method's own scores (avsl.callbacks.AudioControls)
        if args[0] != "test":
            raise ValueError("--controls is an option of avsl test")
        args = [a for a in args if a != "--controls"] + ["--trainer.callbacks+=avsl.callbacks.AudioControls"]
    AVSLCLI([*args, "--weights_only=true"])
    return 0


def _input_error(err: BaseException, args: list[str]) -> str | None:
    """The message of an error in the user's input, found anywhere in ``err``'s chain (LightningCLI and jsonargparse
    wrap the errors of the datasets they build): a ``DataError``, an unsafe checkpoint, or a ``ValueError`` /
    ``FileNotFoundError`` raised by avsl's own checks. None for anything else (a bug: show the traceback)."""
    from avsl.data.io import DataError  # here: `avsl --version` and `--help` import no torch

    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    for e in chain:
        if isinstance(e, DataError):
            return str(e)
    ckpt = next((a.split("=", 1)[1] for a in args if a.startswith("--ckpt_path=")), None)
    if ckpt is None and "--ckpt_path" in args[:-1]:
        ckpt = args[args.index("--ckpt_path") + 1]
    for e in chain:
        frames = traceback.extract_tb(e.__traceback__)
        raised_by_avsl = bool(frames) and Path(frames[-1].filename).is_relative_to(_PACKAGE)
        if isinstance(e, (ValueError, FileNotFoundError)) and raised_by_avsl:
            return str(e)
        # A path that is missing, or a file where a folder goes (or the reverse): the user's, whoever raised it.
        if isinstance(e, (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)):
            return f"{e.strerror or type(e).__name__}: {e.filename}" if e.filename else str(e)
        # Lightning reading --ckpt_path: a truncated file, or a state dict of another program.
        unreadable = isinstance(e, RuntimeError) and "PytorchStreamReader" in str(e)
        if ckpt is not None and (unreadable or (isinstance(e, KeyError) and "pytorch-lightning_version" in str(e))):
            what = "is not a complete checkpoint (truncated?)" if unreadable else "is not a Lightning checkpoint"
            return f"--ckpt_path {ckpt} {what}: give a checkpoint that avsl fit wrote"
        if isinstance(e, pickle.UnpicklingError):  # Lightning's torch.load(weights_only=True) of --ckpt_path
            return (
                f"{ckpt or 'the checkpoint'} holds objects other than tensors, numbers, strings and containers, "
                "whose unpickling can run code; avsl reads checkpoints safely. If you trust the file, convert it once "
                "with `avsl export --trust-checkpoint --ckpt PATH --out DIR` and use DIR"
            )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``avsl`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, end="")
        return 0
    if args[0] == "--version":
        print(f"avsl {__version__}")
        return 0
    verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]
    if args[0] not in _EXTRA and args[0] not in LIGHTNING_COMMANDS:
        print(f"avsl: unknown command {args[0]!r}\n", file=sys.stderr)
        print(_USAGE, end="", file=sys.stderr)
        return 2
    try:
        return _EXTRA[args[0]](args[1:]) if args[0] in _EXTRA else _lightning(args)
    except Exception as err:
        message = _input_error(err, args)
        if message is None or verbose:
            raise
        print(f"avsl {args[0]}: error: {message}", file=sys.stderr)
        print("(--verbose shows the full traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
