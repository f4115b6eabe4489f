"""The ``avsl`` command."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from avsl import __version__

_USAGE = """\
usage: avsl [--help] [--version] <command> [options]

Audio-visual sound source localization with PyTorch Lightning.

commands:
  quickstart   train and evaluate the main job on SynthAV (in development)

Run 'avsl <command> --help' for a command's options.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``avsl`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, end="")
        return 0
    if args[0] == "--version":
        print(f"avsl {__version__}")
        return 0
    if args[0] == "quickstart":
        print("avsl quickstart: the main job (EZ-VSL on SynthAV) is not implemented yet.")
        return 0
    print(f"avsl: unknown command {args[0]!r}\n", file=sys.stderr)
    print(_USAGE, end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
