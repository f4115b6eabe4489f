"""Named SynthAV settings: families of knobs on which avsl's CPU recipes are tuned, and others on which they are judged.

A recipe (``avsl/configs/methods/<key>_synthav.yaml``) that works on the data it was tuned on proves little. The
settings below vary every knob of :class:`~avsl.data.synthetic.SynthAV` (frame size and aspect ratio, object scale,
distractors, number of classes, background, noise colour and level, sample rate and clip length). Four of them are
for **tuning**: recipes were chosen by looking at results there. ``crowd`` and ``portrait_small`` were first held out;
EZ-VSL's recipe failed on them, the cause was found there (the encoders learned to recognise each training clip, see
:class:`~avsl.data.AudioJitter`), so they became tuning settings. The others are **held out**: no recipe was tuned on
them, they were run only for the final figures, and the figures in ``benchmarks/README.md`` and the slow tests' margins
come from them. ``benchmarks/learning.py`` trains every method on every setting.

Every setting produces 128-px square samples (frames drawn at ``frame_size`` are resized as the readers resize camera
frames), so that the recipes' time budget (2,000 clips at 128 px) holds for each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from avsl.data.synthetic import SynthAV
from avsl.data.transforms import SampleTransform

__all__ = ["SETTINGS", "SPLIT_SEEDS", "Split", "SynthAVSetting"]

Split = Literal["train", "val", "test", "labeled"]
#: The seed of each split; a labeled pool gets a seed of its own, so its clips are none of the training clips.
SPLIT_SEEDS: dict[str, int] = {"train": 0, "val": 1, "test": 2, "labeled": 3}


@dataclass(frozen=True)
class SynthAVSetting:
    """A named family of SynthAV knobs.

    Attributes:
        name: the key in :data:`SETTINGS`.
        held_out: True for settings that no recipe was tuned on.
        description: what varies, in words.
        knobs: :class:`SynthAV` arguments (besides ``num_clips``, ``seed`` and ``augment``).
    """

    name: str
    held_out: bool
    description: str
    knobs: dict[str, Any] = field(default_factory=dict)

    def dataset(
        self, split: Split, num_clips: int, augment: SampleTransform | None = None, cache: bool = True
    ) -> SynthAV:
        """The ``split`` of this setting (seeds in :data:`SPLIT_SEEDS`) with ``num_clips`` clips."""
        if split not in SPLIT_SEEDS:
            raise ValueError(f"split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
        return SynthAV(num_clips=num_clips, seed=SPLIT_SEEDS[split], augment=augment, cache=cache, **self.knobs)


SETTINGS: dict[str, SynthAVSetting] = {
    s.name: s
    for s in (
        # ---- tuning
        SynthAVSetting(
            "square",
            held_out=False,
            description="SynthAV's defaults: 128-px square frames, objects of 30-70 % of the side, two distractors, "
            "8 classes, textured blobs, white noise at 0-20 dB, 16 kHz, 1 s",
            knobs={},
        ),
        SynthAVSetting(
            "camera",
            held_out=False,
            description="4:3 frames (240 x 320) squeezed to 128 px, objects of 23-58 % of the height (sounding "
            "object 3-25 % of the frame), two distractors, 6 classes, noisy colour gradients, brown noise at "
            "6-14 dB, 22.05 kHz, 3 s",
            knobs={
                "frame_size": (240, 320),
                "object_scale": (0.23, 0.58),
                "num_classes": 6,
                "background": "gradient",
                "background_contrast": 0.8,
                "noise": "brown",
                "snr_db": (6.0, 14.0),
                "sample_rate": 22050,
                "duration": 3.0,
            },
        ),
        SynthAVSetting(
            "portrait_small",
            held_out=False,
            description="portrait frames (320 x 240), small objects of 15-35 % of the width (1-7 % of the frame), "
            "three distractors, 10 classes, stripes, pink noise at 0-15 dB, 8 kHz, 2 s",
            knobs={
                "frame_size": (320, 240),
                "object_scale": (0.15, 0.35),
                "num_distractors": 3,
                "num_classes": 10,
                "background": "stripes",
                "background_contrast": 0.7,
                "noise": "pink",
                "snr_db": (0.0, 15.0),
                "sample_rate": 8000,
                "duration": 2.0,
            },
        ),
        SynthAVSetting(
            "crowd",
            held_out=False,
            description="128-px square frames on a plain background, four distractors, objects of 15-40 % of the "
            "side, 8 classes, brown noise at 5-20 dB, 16 kHz, 0.5 s",
            knobs={
                "object_scale": (0.15, 0.4),
                "num_distractors": 4,
                "background": "plain",
                "noise": "brown",
                "snr_db": (5.0, 20.0),
                "duration": 0.5,
            },
        ),
        # ---- held out
        SynthAVSetting(
            "clutter",
            held_out=True,
            description="192 x 256 frames strewn with small silent shapes of random colours, objects of 20-45 % of "
            "the height, two distractors, 12 classes, white noise at -5-10 dB, 32 kHz, 1.5 s",
            knobs={
                "frame_size": (192, 256),
                "object_scale": (0.2, 0.45),
                "num_classes": 12,
                "background": "clutter",
                "background_contrast": 0.6,
                "snr_db": (-5.0, 10.0),
                "sample_rate": 32000,
                "duration": 1.5,
            },
        ),
        SynthAVSetting(
            "widescreen",
            held_out=True,
            description="16:9 frames (180 x 320) squeezed to 128 px, objects of 20-50 % of the height, two "
            "distractors, 16 classes, strong blobs, pink noise at 0-10 dB, 44.1 kHz, 1 s",
            knobs={
                "frame_size": (180, 320),
                "object_scale": (0.2, 0.5),
                "num_classes": 16,
                "background_contrast": 1.0,
                "noise": "pink",
                "snr_db": (0.0, 10.0),
                "sample_rate": 44100,
                "duration": 1.0,
            },
        ),
        SynthAVSetting(
            "distant",
            held_out=True,
            description="256-px square frames (drawn at twice the training size), small objects of 12-28 % of the "
            "side (1.5-8 % of the frame), three distractors, 8 classes, noisy colour gradients, brown noise at "
            "0-10 dB, 24 kHz, 2.5 s",
            knobs={
                "frame_size": (256, 256),
                "object_scale": (0.12, 0.28),
                "num_distractors": 3,
                "background": "gradient",
                "background_contrast": 0.8,
                "noise": "brown",
                "snr_db": (0.0, 10.0),
                "sample_rate": 24000,
                "duration": 2.5,
            },
        ),
    )
}
