"""SynthAV's knobs and named settings, the CPU recipes as Python, and the audio-control evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from avsl.cli import main
from avsl.data import SETTINGS, AudioJitter, Compose, JointRandomCropFlip, SynthAV, VGGSSDataset
from avsl.data.settings import SPLIT_SEEDS
from avsl.evaluate import OtherSound, evaluate_controls
from avsl.methods import LocalizationMethod, Signal
from avsl.recipes import RECIPES, load_recipe, train_recipe
from avsl.types import TrainBatch

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------ SynthAV knobs
def test_frames_drawn_at_another_aspect_are_resized_like_camera_frames() -> None:
    ds = SynthAV(num_clips=3, seed=0, image_size=64, frame_size=(48, 96), duration=0.25, sample_rate=8000)
    clip, sample = ds.clip(0), ds[0]
    assert clip.image.shape == (48, 96, 3) and clip.mask.shape == (48, 96)
    assert sample["image"].shape == (3, 64, 64) and sample["mask"].shape == (64, 64)
    # Normalized boxes stay aligned: the resized mask lies inside the box drawn at the sample's size, up to the pixel
    # that nearest-neighbour resizing and the references' truncation of box coordinates can disagree on.
    grown = torch.nn.functional.max_pool2d(sample["gt_map"][None, None], 3, 1, 1)[0, 0]
    assert float((sample["mask"] * (1 - grown)).sum()) == 0.0
    x0, y0, x1, y1 = clip.boxes[0]
    rows, cols = np.nonzero(clip.mask)
    assert (cols.min() / 96, rows.min() / 48, (cols.max() + 1) / 96, (rows.max() + 1) / 48) == (x0, y0, x1, y1)


@pytest.mark.parametrize("background", ["blobs", "plain", "gradient", "stripes", "clutter"])
def test_backgrounds_are_deterministic_and_in_range(background: str) -> None:
    a = SynthAV(num_clips=2, seed=1, image_size=48, background=background, duration=0.25)  # type: ignore[arg-type]
    b = SynthAV(num_clips=2, seed=1, image_size=48, background=background, duration=0.25, cache=False)  # type: ignore[arg-type]
    assert torch.equal(a[1]["image"], b[1]["image"])
    assert float(a[1]["image"].min()) >= 0.0 and float(a[1]["image"].max()) <= 1.0
    # Only the plain background is one flat colour: its most common pixel value covers much of the frame.
    _, counts = np.unique(a.clip(0).image.reshape(-1, 3), axis=0, return_counts=True)
    flat = counts.max() / counts.sum()
    assert flat > 0.3 if background == "plain" else flat < 0.05


def test_noise_colours_have_their_spectral_slopes() -> None:
    slopes = {}
    for noise in ("white", "pink", "brown"):
        ds = SynthAV(num_clips=6, seed=0, noise=noise, snr_db=(-40.0, -40.0), duration=2.0)  # type: ignore[arg-type]
        power = np.mean([np.abs(np.fft.rfft(ds.clip(i).audio)) ** 2 for i in range(6)], axis=0)
        f = np.arange(power.shape[0])
        band = (f > 20) & (f < 4000)  # 10 Hz - 2 kHz at 2 s and 16 kHz
        slopes[noise] = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
    assert slopes["white"] == pytest.approx(0.0, abs=0.3)
    assert slopes["pink"] == pytest.approx(-1.0, abs=0.3)
    assert slopes["brown"] == pytest.approx(-2.0, abs=0.3)


def test_default_clips_did_not_change_with_the_new_knobs() -> None:
    # The first clip of the default SynthAV, as generated before frame sizes, backgrounds and noise colours existed.
    clip = SynthAV(num_clips=1, seed=0).clip(0)
    assert clip.boxes == [[0.3671875, 0.359375, 0.90625, 0.921875]]
    assert float(clip.image.sum()) == 23805.54296875
    assert float(np.abs(clip.audio).sum()) == 1295.1025390625


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frame_size": (8, 64)}, "frame_size"),
        ({"noise": "blue"}, "noise"),
        ({"background": "sky"}, "background"),
        ({"background_contrast": 2.0}, "background_contrast"),
    ],
)
def test_bad_new_knobs_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SynthAV(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ settings
def test_settings_cover_every_knob_and_hold_some_out() -> None:
    assert {"square", "camera", "portrait_small", "crowd"} == {n for n, s in SETTINGS.items() if not s.held_out}
    held_out = [s for s in SETTINGS.values() if s.held_out]
    assert len(held_out) >= 3
    varied = set().union(*(s.knobs for s in held_out))
    assert varied >= {"frame_size", "object_scale", "num_classes", "background", "noise", "snr_db", "sample_rate"}
    assert {s.knobs.get("duration", 1.0) for s in held_out} != {1.0}
    assert any(s.knobs.get("num_distractors", 2) != 2 for s in held_out)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_setting_makes_128_px_samples_of_its_rate_and_length(name: str) -> None:
    setting = SETTINGS[name]
    ds = setting.dataset("test", 2)
    assert ds.seed == SPLIT_SEEDS["test"]
    sample = ds[0]
    rate, seconds = setting.knobs.get("sample_rate", 16000), setting.knobs.get("duration", 1.0)
    assert sample["image"].shape == (3, 128, 128)
    assert sample["audio"].shape == (round(rate * seconds),)
    assert 0.0 < float(sample["gt_map"].mean()) < 0.5
    with pytest.raises(ValueError, match="split"):
        setting.dataset("dev", 2)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ recipes
@pytest.mark.parametrize("key", RECIPES)
def test_every_recipe_loads_from_its_shipped_config(key: str) -> None:
    recipe = load_recipe(key)
    assert recipe.model["class_path"].startswith("avsl.methods.")
    assert recipe.max_epochs >= 1
    assert recipe.needs_labels == (key in ("semipl", "xpl"))
    if key == "uspl":  # the three stage commands of the header, in order
        assert list(recipe.stage_epochs) == ["coarse", "refine", "segment"]
        assert all(epochs >= 1 for epochs in recipe.stage_epochs.values())
    else:
        assert recipe.stage_epochs == {}
    with pytest.raises(ValueError, match="no CPU recipe"):
        load_recipe("nope")


def test_recipes_augment_as_their_header_command_does() -> None:
    # `avsl fit -c ezvsl_synthav -c synthav`: synthav.yaml crops and flips the frame and jitters the sound.
    ezvsl = load_recipe("ezvsl")
    assert isinstance(ezvsl.augment, Compose) and ezvsl.labeled_augment is None
    assert [type(t) for t in ezvsl.augment.transforms] == [JointRandomCropFlip, AudioJitter]
    # `avsl fit -c xpl_synthav -c synthav_semi`: XPL keeps pseudo-labels in the unlabeled frame, so only the sound of
    # unlabeled clips is jittered; labeled clips are cropped and flipped with their boxes.
    xpl = load_recipe("xpl")
    assert isinstance(xpl.augment, AudioJitter)
    assert isinstance(xpl.labeled_augment, Compose)
    # USPL's config is complete (no data config in its commands): its own data section.
    assert isinstance(load_recipe("uspl").augment, Compose)


def test_audio_jitter_shifts_and_scales_the_sound_only() -> None:
    torch.manual_seed(0)
    sample = SynthAV(num_clips=1, seed=0)[0]
    out = AudioJitter(gain_db=6.0)(sample)
    assert out["image"] is sample["image"] and out["gt_map"] is sample["gt_map"]
    wave, jittered = sample["audio"], out["audio"]
    assert jittered.shape == wave.shape and not torch.equal(jittered, wave)
    # A circular shift times a gain: some roll of the original matches up to one factor within +-6 dB.
    spectrum = torch.fft.ifft(torch.fft.fft(jittered) * torch.fft.fft(wave).conj()).real
    shift = int(spectrum.argmax())
    gain = float(jittered @ wave.roll(shift)) / float(wave @ wave)
    torch.testing.assert_close(jittered, gain * wave.roll(shift), atol=1e-5, rtol=1e-4)
    assert 10 ** (-6 / 20) - 1e-6 <= gain <= 10 ** (6 / 20) + 1e-6
    assert torch.equal(AudioJitter(shift=False, gain_db=0.0)(sample)["audio"], wave)
    with pytest.raises(ValueError, match="gain_db"):
        AudioJitter(gain_db=-1.0)


def test_compose_applies_in_order_and_rejects_non_transforms() -> None:
    sample = SynthAV(num_clips=1, seed=0)[0]
    flip_then_silence = Compose([JointRandomCropFlip(scale=1.0, flip_p=1.0), AudioJitter(shift=False, gain_db=0.0)])
    out = flip_then_silence(sample)
    assert torch.equal(out["image"], sample["image"].flip(-1))
    assert torch.equal(out["audio"], sample["audio"])
    assert "JointRandomCropFlip" in repr(flip_then_silence)
    with pytest.raises(TypeError, match="callable"):
        Compose([JointRandomCropFlip(), "flip"])  # type: ignore[list-item]


def test_train_recipe_links_the_settings_sample_rate_and_trains() -> None:
    setting = SETTINGS["portrait_small"]  # 8 kHz
    model, seconds = train_recipe("ezvsl", setting, train_clips=64, seed=0, max_epochs=1)  # one batch of 64
    assert seconds > 0 and not model.training
    assert model.hparams["sample_rate"] == 8000
    xpl, _ = train_recipe(
        "xpl", setting, train_clips=72, labeled_fraction=0.1, max_epochs=1, overrides={"lambda_con": 0.5}
    )
    assert xpl.model_a.hparams["sample_rate"] == 8000  # type: ignore[union-attr]
    assert xpl.hparams["lambda_con"] == 0.5


# ------------------------------------------------------------------------------------------------ audio controls
class LoudnessMap(LocalizationMethod):
    """A stub that lights the left half of the frame for a loud sound and the right half for a quiet one."""

    def __init__(self) -> None:
        super().__init__(Signal(16000, (8, 8), 0.5, upsample_mode="nearest"))

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        loud = (audio.abs().mean(dim=1) > 0.05).float()[:, None, None]
        left = torch.zeros(image.shape[0], 4, 4)
        left[:, :, :2] = 1.0
        return loud * left + (1 - loud) * (1 - left)

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        raise NotImplementedError


class LoudLeft(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Four clips: two loud ones whose source is on the left, then two quiet ones whose source is on the right."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict[str, object]:
        loud = i < 2
        gt = torch.zeros(8, 8)
        gt[2:6, 0:3] = 1.0 if loud else 0.0
        gt[2:6, 5:8] = 0.0 if loud else 1.0
        audio = torch.full((100,), 0.5 if loud else 0.01)
        return {"image": torch.zeros(3, 8, 8), "audio": audio, "sample_id": f"c{i}", "gt_map": gt}


def test_other_sound_pairs_each_frame_with_the_clip_half_a_set_away() -> None:
    data = LoudLeft()
    other = OtherSound(data)  # type: ignore[arg-type]
    assert len(other) == 4
    assert torch.equal(other[0]["audio"], data[2]["audio"]) and torch.equal(other[0]["image"], data[0]["image"])
    assert torch.equal(other[3]["audio"], data[1]["audio"])
    with pytest.raises(ValueError, match="at least 2"):
        OtherSound([data[0]])  # type: ignore[arg-type]


def test_evaluate_controls_reports_right_other_silence_noise_and_centre() -> None:
    # Right sound: the peak is the 32-px half holding the 12-px source, 12/32 each. Other sound (the opposite
    # loudness): the peak is the other half, 0. Silence is quiet: right for the two quiet clips only. Noise at each
    # clip's level keeps its loudness, which is all this stub hears. The centred Gaussian peaks on the 4 middle pixels,
    # between the sources.
    results = evaluate_controls(LoudnessMap(), LoudLeft(), protocols=("sspl",), batch_size=2)  # type: ignore[arg-type]
    assert set(results) == {"right", "other", "silence", "noise", "centre"}
    assert results["right"]["pointing"] == pytest.approx(12 / 32)
    assert results["other"]["pointing"] == 0.0
    assert results["silence"]["pointing"] == pytest.approx(12 / 32 / 2)
    assert results["noise"]["pointing"] == pytest.approx(12 / 32)
    assert results["centre"]["pointing"] == 0.0
    assert results["right"]["sspl/mean_ciou"] > results["other"]["sspl/mean_ciou"]


def test_avsl_synth_writes_a_named_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["synth", "--out", str(tmp_path), "--setting", "crowd", "--train", "1", "--val", "0", "--test", "2"]
    assert main([*args, "--quiet"]) == 0
    assert "setting 'crowd'" in capsys.readouterr().out
    test = VGGSSDataset(tmp_path, split="test", annotations="annotations.json", image_size=128, duration=0.5)
    assert [s["sample_id"] for s in test] == [SETTINGS["crowd"].dataset("test", 2).sample_id(i) for i in range(2)]
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--setting", "crowd", "--num-classes", "4"])
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--setting", "nowhere"])
