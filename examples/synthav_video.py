"""A SynthAV video through ``avsl.localize_video``: how ``docs/images/overlay_frame.png`` was made.

The video is a few SynthAV test clips (seed 2, the quickstart's test split) drawn at 640x360, each shown for its one
second with its own sound (16 kHz mono AAC), so the sounding object changes every second. It is localized with a
checkpoint trained on SynthAV (``avsl quickstart`` writes one), and one frame of the overlay video is saved as PNG.

    avsl quickstart --out runs/quickstart
    python examples/synthav_video.py --ckpt runs/quickstart/ezvsl_synthav/version_0/checkpoints/last.ckpt \\
        --out runs/synthav_video --png docs/images/overlay_frame.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np

from avsl.data import SynthAV
from avsl.testing import write_video


def write_synthav_video(
    path: Path, clips: int = 4, seed: int = 2, size: tuple[int, int] = (360, 640), fps: int = 25
) -> Path:
    """SynthAV clips ``0 .. clips-1`` of ``seed`` drawn at ``size`` (height, width), one second each, with their
    sound."""
    data = SynthAV(num_clips=clips, seed=seed, image_size=128, frame_size=size, duration=1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    scenes = [data.clip(i) for i in range(clips)]
    frames = [(clip.image * 255).round().astype(np.uint8) for clip in scenes for _ in range(fps)]
    wave = np.concatenate([clip.audio for clip in scenes]).astype(np.float32)
    wave /= max(1.0, float(np.abs(wave).max()))
    write_video(path, frames, fps, wave[None], data.sample_rate)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="a checkpoint trained on SynthAV")
    parser.add_argument("--out", default="runs/synthav_video", help="output folder")
    parser.add_argument("--clips", type=int, default=4, help="SynthAV clips, one second each")
    parser.add_argument("--frame", type=int, default=37, help="the overlay frame to save as PNG")
    parser.add_argument("--png", default=None, help="where to save it (default: OUT/overlay_frame.png)")
    args = parser.parse_args()
    from avsl import localize_video
    from avsl.methods import load_method

    out = Path(args.out)
    video = write_synthav_video(out / "synthav.mp4", clips=args.clips)
    maps = localize_video(load_method(args.ckpt), video, out, progress=True)
    with av.open(str(out / "synthav_overlay.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == args.frame:
                png = Path(args.png) if args.png else out / "overlay_frame.png"
                frame.to_image().save(png)
                break
    print(f"{len(maps)} maps; wrote {out / 'synthav_overlay.mp4'} and {png}")


if __name__ == "__main__":
    main()
