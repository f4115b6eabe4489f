"""``avsl.localize_video`` and ``avsl localize --video``: maps for every frame, the overlay video with the sound.

The videos are made here with PyAV, from SynthAV frames and tones: H.264 + AAC in MP4 and VP9 + Opus in WebM, an odd
frame size, 44.1-kHz stereo and 48-kHz 5.1 sound, irregular timestamps, no sound at all.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import avsl
from avsl.cli import main
from avsl.data import DataError, SynthAV
from avsl.data.datasets.base import window_at
from avsl.data.io import decode_container_audio, load_image
from avsl.localize import _output_frames, localize_video, video_outputs
from avsl.methods import EZVSL, LocalizationMethod, load_method
from avsl.testing import tiny_args, tiny_data
from avsl.testing import write_video as avsl_write_video
from tests.test_methods_contract import tiny_trainer


def synth_frames(count: int, size: tuple[int, int]) -> np.ndarray:
    """(count, H, W, 3) uint8: four SynthAV scenes in turn, each frame a little brighter than the last, so that
    neighbouring frames differ."""
    scenes = SynthAV(num_clips=4, seed=3, image_size=64, frame_size=size)
    images = [scenes.clip(i).image for i in range(4)]
    frames = [np.clip(images[(i // 6) % 4] * 0.8 + 0.15 * i / count, 0, 1) for i in range(count)]
    return (np.stack(frames) * 255).round().astype(np.uint8)


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: int = 25,
    sample_rate: int | None = 44100,
    channels: int = 2,
    codecs: tuple[str, str] = ("libx264", "aac"),
    times_ms: list[int] | None = None,
) -> Path:
    """Encode ``frames`` at ``fps`` (or at ``times_ms``: irregular timestamps) with a tone + noise of ``channels``
    channels at ``sample_rate`` (None: no audio stream) lasting as long as the frames."""
    seconds = (times_ms[-1] / 1000 + 1 / fps) if times_ms else len(frames) / fps
    wave = None
    if sample_rate is not None:
        t = np.arange(round(seconds * sample_rate)) / sample_rate
        noise = np.random.default_rng(0).standard_normal((channels, t.size))
        tone = np.stack([np.sin(2 * np.pi * (330 + 110 * c) * t) for c in range(channels)])
        wave = (0.3 * tone * (1 + np.sin(2 * np.pi * 1.5 * t)) + 0.05 * noise).astype(np.float32)
    times = None if times_ms is None else [ms / 1000 for ms in times_ms]
    avsl_write_video(path, frames, fps, wave, sample_rate or 16000, codecs[0], codecs[1], times=times)
    return path


def decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame of the video stream (RGB) and its time from the stream's start."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = float((stream.start_time or 0) * stream.time_base)
        pairs = [(f.to_ndarray(format="rgb24"), float(f.time) - start) for f in container.decode(stream)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def probe(path: Path) -> dict[str, object]:
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio
        count = sum(1 for _ in container.decode(video=0))
        info: dict[str, object] = {"frames": count, "size": (video.width, video.height), "rate": video.average_rate}
        if audio:
            info.update(audio=audio[0].codec_context.name, sample_rate=audio[0].rate, channels=audio[0].channels)
    return info


def independent_maps(
    model: LocalizationMethod, path: Path, times: list[float], tmp_path: Path, source_times: list[float] | None = None
) -> torch.Tensor:
    """What the model gives for the frame shown at each time and the window centred there, computed one frame at a
    time the way `avsl localize --image` prepares inputs: the decoded frame saved as PNG and read with load_image."""
    pictures, stamps = decoded(path)
    stamps = source_times if source_times is not None else stamps
    track = decode_container_audio(path, model.signal.sample_rate)
    maps = []
    for t in times:
        shown = max(i for i, s in enumerate(stamps) if s <= t + 1e-6) if t >= stamps[0] else 0
        png = tmp_path / "frame.png"
        Image.fromarray(pictures[shown]).save(png)
        image = load_image(png, model.signal.frame_size)
        wave = window_at(track, model.signal.num_samples, t * model.signal.sample_rate)
        with torch.no_grad():
            maps.append(model.localize(image[None], wave[None])[0])
    return torch.stack(maps)


@pytest.fixture(scope="module")
def model() -> LocalizationMethod:
    torch.manual_seed(0)
    return EZVSL(**tiny_args(EZVSL)).eval()


def test_mp4_gives_an_overlay_video_with_its_sound_and_the_maps(model: LocalizationMethod, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", synth_frames(30, (72, 128)), fps=25, sample_rate=44100, channels=2)
    maps = avsl.localize_video(model, video, tmp_path / "out", batch_size=8)
    assert maps.shape == (30, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    overlay, heatmaps = video_outputs(tmp_path / "out", video)
    assert overlay.name == "clip_overlay.mp4" and heatmaps.name == "clip_heatmaps.npy"
    np.testing.assert_array_equal(np.load(heatmaps), maps)
    info = probe(overlay)
    assert info == {
        "frames": 30,
        "size": (128, 72),
        "rate": 25,
        "audio": "aac",
        "sample_rate": 44100,
        "channels": 2,
    }
    assert not list((tmp_path / "out").glob("*.png")) and not list((tmp_path / "out").glob("*.part"))
    # the maps are model.localize of the frame and the window centred on it, frame by frame
    times = [0.0, 0.68, 1.16]  # the first frame (window shifted right), one inside, the last (shifted left)
    expected = independent_maps(model, video, times, tmp_path)
    torch.testing.assert_close(torch.from_numpy(maps[[0, 17, 29]]), expected, atol=1e-5, rtol=0)
    # the overlay shows the heat: its frames differ from the source's where the map is high
    frame = next(av.open(str(overlay)).decode(video=0)).to_ndarray(format="rgb24").astype(float)
    source = decoded(video)[0][0].astype(float)
    assert np.abs(frame - source).mean() > 10


def test_webm_odd_size_and_six_channels(model: LocalizationMethod, tmp_path: Path) -> None:
    frames = synth_frames(24, (91, 161))
    video = write_video(
        tmp_path / "odd.webm", frames, fps=24, sample_rate=48000, channels=6, codecs=("libvpx-vp9", "libopus")
    )
    maps = localize_video(model, video, tmp_path, batch_size=5)  # the last batch is short
    assert maps.shape == (24, 64, 64)
    # yuv420p needs even sides: the 161x91 video is padded by one column and one row
    assert probe(video_outputs(tmp_path, video)[0]) == {
        "frames": 24,
        "size": (162, 92),
        "rate": 24,
        "audio": "aac",
        "sample_rate": 48000,
        "channels": 6,
    }
    # WebM rounds timestamps to ms (frame 1 at 0.042 s, after its time 1/24): still every frame once, in order
    shown = [image for _, image in _output_frames(video, Fraction(24))]
    assert all(np.array_equal(a, b) for a, b in zip(shown, decoded(video)[0], strict=True))
    expected = independent_maps(model, video, [0.5, 23 / 24], tmp_path)
    torch.testing.assert_close(torch.from_numpy(maps[[12, 23]]), expected, atol=1e-5, rtol=0)


def test_other_frame_rates_show_the_last_frame_at_or_before_each_time(
    model: LocalizationMethod, tmp_path: Path
) -> None:
    video = write_video(tmp_path / "c.mp4", synth_frames(25, (48, 64)), fps=25, sample_rate=16000, channels=1)
    slow = localize_video(model, video, tmp_path / "slow", fps=10)
    assert slow.shape == (10, 64, 64)  # 1 s at 10 fps
    assert probe(video_outputs(tmp_path / "slow", video)[0])["frames"] == 10
    fast = localize_video(model, video, fps=60)  # no out: nothing written
    assert fast.shape == (60, 64, 64)
    times = [0.3, 0.7]
    torch.testing.assert_close(
        torch.from_numpy(slow[[3, 7]]), independent_maps(model, video, times, tmp_path), atol=1e-5, rtol=0
    )
    times = [7 / 60, 59 / 60]  # frames 2 (at 0.08 s) and 24 (at 0.96 s), each shown for two or three outputs
    torch.testing.assert_close(
        torch.from_numpy(fast[[7, 59]]), independent_maps(model, video, times, tmp_path), atol=1e-5, rtol=0
    )


def test_variable_frame_rate(model: LocalizationMethod, tmp_path: Path) -> None:
    stamps = [0, 40, 60, 150, 160, 170, 400, 420, 700, 960]  # ms: bursts and gaps
    frames = np.stack([np.full((48, 64, 3), 20 + 20 * i, np.uint8) for i in range(len(stamps))])
    video = write_video(tmp_path / "vfr.mp4", frames, fps=25, sample_rate=22050, channels=2, times_ms=stamps)
    # each output time shows the last frame at or before it (the frames are flat greys 20, 40, ...)
    shown = [(float(t), round(float(image.mean()))) for t, image in _output_frames(video, Fraction(20))]
    assert len(shown) == 20  # 1 s: the last frame at 0.96 s lasts 40 ms
    for t, level in shown:
        index = max(i for i, s in enumerate(stamps) if s <= t * 1000 + 1e-6)
        assert abs(level - (20 + 20 * index)) <= 2, (t, level, index)
    maps = localize_video(model, video, tmp_path, fps=20)
    assert maps.shape == (20, 64, 64) and probe(video_outputs(tmp_path, video)[0])["frames"] == 20
    source_times = [s / 1000 for s in stamps]
    expected = independent_maps(model, video, [0.15, 0.65], tmp_path, source_times)
    torch.testing.assert_close(torch.from_numpy(maps[[3, 13]]), expected, atol=1e-5, rtol=0)
    # by default the output runs at the stream's average rate
    assert localize_video(model, video).shape[0] > 0


def test_per_frame_pngs_on_request(model: LocalizationMethod, tmp_path: Path) -> None:
    video = write_video(tmp_path / "p.mp4", synth_frames(10, (48, 64)), fps=10)
    maps = localize_video(model, video, tmp_path, fps=5, frames=True, progress=True)
    assert maps.shape == (5, 64, 64)
    assert sorted(p.name for p in tmp_path.glob("p_*_overlay.png")) == [f"p_{i:04d}_overlay.png" for i in range(5)]
    assert len(list(tmp_path.glob("p_*_heatmap.png"))) == 5
    np.testing.assert_array_equal(np.load(tmp_path / "p_0003_heatmap.npy"), maps[3])
    with pytest.raises(ValueError, match="frames=True writes PNGs to out"):
        localize_video(model, video, frames=True)


def test_an_error_midway_leaves_no_partial_video_and_the_model_as_it_was(
    model: LocalizationMethod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = write_video(tmp_path / "m.mp4", synth_frames(12, (48, 64)), fps=12)
    calls = []

    def localize(image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled() and not model.training  # inference mode while it runs
        calls.append(image.shape[0])
        if len(calls) == 2:
            raise RuntimeError("out of memory, say")
        return torch.rand(image.shape[0], 64, 64)

    monkeypatch.setattr(model, "localize", localize)
    model.train()
    with pytest.raises(RuntimeError, match="out of memory, say"):
        localize_video(model, video, tmp_path / "o", batch_size=4, device="cpu")
    assert model.training  # its mode is given back
    model.eval()
    assert calls == [4, 4] and list((tmp_path / "o").iterdir()) == []  # no .part, no .mp4, no .npy


def test_a_video_without_sound_or_a_bad_file_is_a_clear_error(model: LocalizationMethod, tmp_path: Path) -> None:
    silent = write_video(tmp_path / "mute.mp4", synth_frames(5, (48, 64)), sample_rate=None)
    with pytest.raises(DataError, match=r"mute\.mp4: the file has no audio stream"):
        localize_video(model, silent, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    with pytest.raises(DataError, match=r"gone\.mp4: video file not found"):
        localize_video(model, tmp_path / "gone.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(DataError, match=r"junk\.mp4: unreadable video"):
        localize_video(model, junk)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        localize_video(model, silent, batch_size=0)


def test_cli_from_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trained = EZVSL(**tiny_args(EZVSL))
    trainer = tiny_trainer(tmp_path, max_steps=1)
    trainer.fit(trained, datamodule=tiny_data())
    ckpt = tmp_path / "tiny.ckpt"
    trainer.save_checkpoint(ckpt)
    video = write_video(tmp_path / "cli.mp4", synth_frames(20, (48, 64)), fps=20)
    args = ["localize", "--ckpt", str(ckpt), "--video", str(video), "--out", str(tmp_path / "o")]
    assert main([*args, "--fps", "10", "--batch-size", "3", "--quiet", "--frames"]) == 0
    printed = capsys.readouterr().out.splitlines()
    overlay, heatmaps = video_outputs(tmp_path / "o", video)
    assert printed[:2] == [str(overlay), str(heatmaps)] and "cli_0009_overlay.png" in printed[2]
    assert probe(overlay)["frames"] == 10 and len(list((tmp_path / "o").glob("cli_*_overlay.png"))) == 10
    np.testing.assert_allclose(np.load(heatmaps), localize_video(load_method(ckpt), video, fps=10), atol=1e-5, rtol=0)
    # the old --stride and the image-only options are refused with a pointer
    for extra, message in [(["--stride", "1"], "--fps 1"), (["--image-size", "96"], "checkpoint's signal")]:
        with pytest.raises(SystemExit):
            main([*args, *extra])
        assert message in capsys.readouterr().err
    # a missing video is an input error, printed alone
    assert main(["localize", "--ckpt", str(ckpt), "--video", str(tmp_path / "no.mp4"), "--out", str(tmp_path)]) == 1
    assert "no.mp4: video file not found" in capsys.readouterr().err
