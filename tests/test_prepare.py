"""avsl prepare on videos made here with PyAV: every benchmark's layout, bad inputs counted by reason, resuming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avsl.cli import main
from avsl.data import AVSBenchDataset, FlickrSoundNetDataset, FolderDataset, VGGSSDataset
from avsl.data.prepare import prepare, vggsound_id
from avsl.testing import write_video

FPS = 25
DATA = Path(__file__).parent / "data"
SIZE = (48, 64)  # (height, width) of the test videos


def frames(count: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Frames whose index can be read back after lossy coding: a white bar at column ``index % width``... and a
    grey level that grows with the index."""
    h, w = size
    out = np.zeros((count, h, w, 3), dtype=np.uint8)
    for i in range(count):
        out[i, :, :, :] = (i * 7) % 200
        out[i, :, (i * 3) % (w - 4) : (i * 3) % (w - 4) + 4, :] = 255
    return out


def frame_index(picture: np.ndarray, count: int, size: tuple[int, int] = SIZE) -> int:
    """The index of the test frame closest to ``picture``."""
    reference = frames(count, size).astype(np.float32)
    return int(np.argmin(np.abs(reference - picture.astype(np.float32)).mean(axis=(1, 2, 3))))


def picture(path: Path, resize: tuple[int, int] | None = None) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im if resize is None else im.resize(resize))


def tone(seconds: float, rate: int, channels: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * hz * t + c) for c in range(channels)]).astype(np.float32)


def peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.argmax(spectrum) * rate / len(wave))


@pytest.fixture(scope="module")
def vggsound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Downloaded VGGSound files in every naming, container and audio layout, and the bad ones."""
    videos = tmp_path_factory.mktemp("vggsound_videos")
    write_video(videos / "zpWuikVorYg_000032.mp4", frames(250), FPS, tone(10, 44100, 2), 44100)  # stereo 44.1 kHz
    write_video(  # seconds_seconds naming, VP9 + Opus, 6 channels at 48 kHz, odd size
        videos / "gEvCUcZ6w88_30000_40000.webm",
        frames(100, (47, 63)),
        10,
        tone(10, 48000, 6),
        48000,
        "libvpx-vp9",
        "libopus",
    )
    vfr = np.cumsum(np.r_[0.0, np.tile([0.03, 0.05], 99)])[:199]  # a variable frame rate, about 25 fps
    write_video(videos / "JIemsK_0lXc.mkv", frames(199), FPS, tone(8, 16000, 1), 16000, times=list(vfr))
    write_video(videos / "aaaaaaaaaaa_000000.mp4", frames(50), FPS)  # no audio stream
    write_video(videos / "bbbbbbbbbbb_000000.mp4", frames(50), FPS, tone(2, 16000, 1), 16000)  # 2 s of sound
    write_video(videos / "ccccccccccc_000000.mp4", frames(75), FPS, np.zeros((1, 48000), np.float32), 16000)
    whole = (videos / "zpWuikVorYg_000032.mp4").read_bytes()
    (videos / "ddddddddddd_000000.mp4").write_bytes(whole[: len(whole) // 2])  # truncated
    (videos / "eeeeeeeeeee_000000.mp4").write_text("not a video")
    (videos / "holiday.mov").write_bytes(whole)  # a name that is no VGGSound id
    return videos


def test_vggsound_ids_from_every_naming() -> None:
    assert vggsound_id("zpWuikVorYg_32") == "zpWuikVorYg_000032"
    assert vggsound_id("-0a8YsKj2t0_000010_000020") == "-0a8YsKj2t0_000010"  # seconds, and a leading hyphen
    assert vggsound_id("gEvCUcZ6w88_30000_40000") == "gEvCUcZ6w88_000030"  # milliseconds
    assert vggsound_id("JIemsK_0lXc", {"JIemsK_0lXc": ["JIemsK_0lXc_000364"]}) == "JIemsK_0lXc_000364"
    assert vggsound_id("JIemsK_0lXc", {"JIemsK_0lXc": ["JIemsK_0lXc_000001", "JIemsK_0lXc_000364"]}) is None
    assert vggsound_id("zpWuikVorYg_000032_000050") is None  # not a 10-s clip
    assert vggsound_id("holiday") is None


def test_vggsound_prepared_and_read_by_the_vggss_reader(vggsound: Path, tmp_path: Path) -> None:
    root = tmp_path / "vggsound"
    report = prepare("vggsound", vggsound, root, workers=2, progress=False)
    ids = ["JIemsK_0lXc_000364", "gEvCUcZ6w88_000030", "zpWuikVorYg_000032"]
    assert sorted(p.stem for p in (root / "frames").glob("*.jpg")) == ids
    assert sorted(p.stem for p in (root / "audio").glob("*.wav")) == ids
    assert report.clips == 9 and report.written == 3 and report.already_done == 0
    assert report.skipped == {
        "no audio stream": 1,
        "shorter than the audio window": 1,
        "digitally silent": 1,
        "corrupt container": 2,
        "name not understood": 1,
    }
    saved = json.loads((root / "prepare_report.json").read_text())
    assert saved["skipped"] == report.skipped and len(saved["failures"]) == 6
    assert saved["coverage"]["vggss_test"] == {"listed": 5158, "prepared": 3}
    missing = (root / "missing" / "vggss_test.txt").read_text().split()
    assert len(missing) == 5155 and not set(ids) & set(missing)

    # the frame shown at 5.0 s: index 125 at 25 fps, 50 at 10 fps; 16-kHz mono PCM16 of the first 10 s
    assert frame_index(picture(root / "frames/zpWuikVorYg_000032.jpg"), 250) == 125
    odd = picture(root / "frames/gEvCUcZ6w88_000030.jpg")
    assert odd.shape == (47, 63, 3) and frame_index(odd, 100, (47, 63)) == 50
    # variable frame rate: the last frame at or before 5.0 s
    vfr_index = int(np.searchsorted(np.cumsum(np.r_[0.0, np.tile([0.03, 0.05], 99)])[:199], 5.0, side="right") - 1)
    assert frame_index(picture(root / "frames/JIemsK_0lXc_000364.jpg"), 199) == vfr_index
    for sid, seconds in (("zpWuikVorYg_000032", 10.0), ("gEvCUcZ6w88_000030", 10.0), ("JIemsK_0lXc_000364", 8.0)):
        info = sf.info(root / "audio" / f"{sid}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.duration - seconds) < 0.1
        wave, _ = sf.read(root / "audio" / f"{sid}.wav")
        assert abs(peak_hz(wave, 16000) - 440.0) < 2.0

    data = VGGSSDataset(root, split="vggss_test", annotations="vggss", on_error="skip")
    assert sorted(e.sample_id for e in data.entries) == ids  # the listed ids that are on disk
    sample = data[0]
    assert sample["image"].shape == (3, 224, 224) and sample["audio"].shape == (48000,)
    assert float(sample["gt_map"].sum()) > 0


def test_cli_and_a_second_run_skips_what_is_done(
    vggsound: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "vggsound"
    argv = ["prepare", "vggsound", "--videos", str(vggsound), "--out", str(root), "--workers", "1", "--quiet"]
    assert main([*argv, "--split", "vggss_test"]) == 0
    first = json.loads((root / "prepare_report.json").read_text())
    # --split keeps the listed ids (and reports the file whose name gives no id)
    assert first["written"] == 3 and first["clips"] == 4 and first["skipped"] == {"name not understood": 1}
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "vggss_test: 3 of 5,158 clips" in out and "3 already done" in out
    assert json.loads((root / "prepare_report.json").read_text())["written"] == 0
    assert main(["prepare", "vggsound", "--videos", str(tmp_path / "nothing"), "--out", str(root)]) == 1
    assert "nothing: no such folder of videos" in capsys.readouterr().err


def test_a_killed_run_resumes(vggsound: Path, tmp_path: Path) -> None:
    """SIGKILL while the first clips are written; the next run finishes, redoing any half-written clip."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(8):
        os.link(vggsound / "zpWuikVorYg_000032.mp4", videos / f"k{i:010d}_000000.mp4")
    root = tmp_path / "out"
    command = [sys.executable, "-m", "avsl.cli", "prepare", "vggsound", "--videos", str(videos), "--out", str(root)]
    proc = subprocess.Popen([*command, "--workers", "1", "--quiet"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((root / "frames").glob("*.jpg"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((root / "frames").glob("*.jpg")))
    assert 2 <= done_before < 8
    report = prepare("vggsound", videos, root, workers=2, progress=False)
    assert report.written + report.already_done == 8 and report.already_done >= done_before - 1
    assert not list(root.rglob("*.part"))
    for wav in (root / "audio").glob("*.wav"):
        assert abs(sf.info(wav).duration - 10.0) < 0.1


def test_flickr_videos_and_released_pairs(tmp_path: Path) -> None:
    videos = tmp_path / "flickr"
    videos.mkdir()
    write_video(videos / "10000130166.mp4", frames(200), FPS, tone(8, 22050, 1), 22050)
    Image.fromarray(frames(1, (256, 256))[0]).save(videos / "10007936344.jpg")
    write_video(tmp_path / "tmp.mp4", frames(2), FPS, tone(20, 22050, 1), 22050)  # an mp3 sound track:
    import av

    with av.open(str(tmp_path / "tmp.mp4")) as src, av.open(str(videos / "10007936344.mp3"), "w") as dst:
        stream = dst.add_stream("libmp3lame", rate=22050)
        for frame in src.decode(audio=0):
            frame.pts = None
            dst.mux(stream.encode(frame))
        dst.mux(stream.encode(None))
    root = tmp_path / "root"
    report = prepare("flickr", videos, root, workers=1, progress=False)
    assert report.written == 2 and report.coverage["flickr_test_249"]["prepared"] == 2
    assert frame_index(picture(root / "frames/10000130166.jpg"), 200) == 100  # the middle: 4.0 s
    assert picture(root / "frames/10007936344.jpg").shape == (256, 256, 3)
    assert abs(sf.info(root / "audio/10007936344.wav").duration - 20.0) < 0.1  # the whole track
    data = FlickrSoundNetDataset(root, split="flickr_test_249", on_error="skip")
    assert len(data) == 2 and data[0]["audio"].shape == (48000,)


def test_avsbench_frames_at_the_benchmarks_timestamps(tmp_path: Path) -> None:
    videos = tmp_path / "avsbench"
    videos.mkdir()
    for name in ("clip_one", "clip_two"):
        write_video(videos / f"{name}.mp4", frames(125), FPS, tone(5, 16000, 2), 16000)
    meta = tmp_path / "s4_meta_data.csv"
    meta.write_text("name,start_time,category,split\nclip_one,0,dog,test\nclip_two,0,cat,train\n")
    root = tmp_path / "root"
    report = prepare("avsbench", videos, root, subset="s4", meta_csv=meta, workers=1, progress=False)
    assert report.written == 2
    folder = root / "s4_data/visual_frames/test/dog/clip_one"
    assert sorted(p.name for p in folder.iterdir()) == [f"clip_one_{k}.png" for k in range(1, 6)]
    for k in range(5):  # frame index l * 25 + 23 (0.92 s into each second)
        shrunk = picture(folder / f"clip_one_{k + 1}.png", (SIZE[1], SIZE[0]))
        assert picture(folder / f"clip_one_{k + 1}.png").shape == (224, 224, 3)
        assert frame_index(shrunk, 125) == k * 25 + 23
    assert sf.info(root / "s4_data/audio_wav/train/cat/clip_two.wav").samplerate == 16000
    assert (root / "s4_meta_data.csv").read_text() == meta.read_text()  # beside the data, where the reader looks
    data = AVSBenchDataset(root, subset="s4", split="test", with_masks=False)
    assert len(data) == 5 and data[0]["image"].shape == (3, 224, 224)


def test_folder_with_several_frames_per_clip(tmp_path: Path) -> None:
    videos = tmp_path / "mine"
    videos.mkdir()
    write_video(videos / "walk.mov", frames(150), FPS, tone(6, 48000, 2), 48000)
    root = tmp_path / "root"
    assert prepare("folder", videos, root, frames_per_clip=3, workers=1, progress=False).written == 1
    assert [frame_index(picture(root / f"frames/walk_{k}.jpg"), 150) for k in range(3)] == [25, 75, 125]
    assert [round(sf.info(root / f"audio/walk_{k}.wav").duration, 2) for k in range(3)] == [3.0, 3.0, 3.0]
    assert len(FolderDataset(root)) == 3


def test_frames_count_from_the_video_start_and_stay_within_the_video(tmp_path: Path) -> None:
    """Remuxed (Matroska) and broadcast (MPEG-TS) files start their timestamps after 0: every frame was the first
    one. A video shorter than its sound had its later frames frozen on its last one."""
    videos = tmp_path / "mine"
    videos.mkdir()
    write_video(videos / "remuxed.mkv", frames(150), FPS, tone(6, 48000, 2), 48000, start=10.0)
    write_video(videos / "broadcast.ts", frames(150), FPS, tone(6, 48000, 2), 48000, start=1.4)
    write_video(videos / "short.mp4", frames(50), FPS, tone(8, 48000, 1), 48000)  # 2 s of picture, 8 s of sound
    root = tmp_path / "root"
    report = prepare("folder", videos, root, frames_per_clip=3, seconds=0.5, min_seconds=0.5, workers=1, progress=False)
    assert report.written == 3
    for name in ("remuxed", "broadcast"):
        # Frames 25, 75 and 125 start at 1, 3 and 5 s exactly; MPEG-TS's 90-kHz ticks may put one a tick later.
        found = [frame_index(picture(root / f"frames/{name}_{k}.jpg"), 150) for k in range(3)]
        assert all(abs(a - b) <= 1 for a, b in zip(found, [25, 75, 125])), (name, found)  # before: [0, 0, 0]
    # the middles of three thirds of the 2 s with a picture (0.33, 1.0, 1.67 s), and sound from those 2 s
    assert [frame_index(picture(root / f"frames/short_{k}.jpg"), 50) for k in range(3)] == [8, 25, 41]
    assert abs(sf.info(root / "audio/short_2.wav").duration - 0.5) < 1e-3


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_videos_tagged_with_a_rotation_come_out_upright(degrees: int, tmp_path: Path) -> None:
    """Phone videos store portrait frames sideways and a display matrix; FFmpeg's own picture is the reference."""
    from avsl.data.datasets import VideoDataset
    from avsl.data.io import upright_rgb

    source = DATA / "rotated" / f"rotate{degrees}.mp4"
    expected = picture(DATA / "rotated" / f"ffmpeg{degrees}.png").astype(np.float32)
    import av

    with av.open(str(source)) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation % 360 in (degrees, degrees - 360, 360 - degrees)
        upright = upright_rgb(frame).astype(np.float32)
    assert upright.shape == expected.shape and np.abs(upright - expected).mean() < 3  # a wrong turn: about 50
    videos = tmp_path / "mine"
    videos.mkdir()
    (videos / source.name).symlink_to(source)
    root = tmp_path / "root"
    assert prepare("folder", videos, root, seconds=0.2, min_seconds=0.2, workers=1, progress=False).written == 1
    assert picture(root / f"frames/rotate{degrees}_0.jpg").shape == expected.shape
    image = VideoDataset(source, stride=0.2, duration=0.2, image_size=32)[0]["image"]
    shown = np.asarray(Image.fromarray(expected.astype(np.uint8)).resize((32, 32), Image.BILINEAR), np.float32) / 255
    assert float(np.abs(image.permute(1, 2, 0).numpy() - shown).mean()) < 0.05


def test_a_prepared_vggsound_folder_trains_with_the_shipped_configs(
    vggsound: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`avsl fit -c ezvsl -c vggss` reads the prepared folder with the roots changed (and a small batch here)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("zpWuikVorYg_000032.mp4", "gEvCUcZ6w88_30000_40000.webm"):  # two VGG-SS test clips
        os.link(vggsound / name, videos / name)
    for sid in ("---g-f_I2yQ_000001", "--0PQM4-hqg_000030"):  # two training clips of vggss_144k
        os.link(vggsound / "zpWuikVorYg_000032.mp4", videos / f"{sid}.mp4")
    root = tmp_path / "vggsound"
    assert prepare("vggsound", videos, root, workers=1, progress=False).written == 4
    roots = [f"--data.init_args.{role}.init_args.root={root}" for role in ("unlabeled", "val", "test")]
    tiny = ["--model.init_args.vision_backbone=tiny_cnn", "--model.init_args.audio_backbone=tiny_cnn"]
    tiny += ["--model.init_args.embed_dim=16", "--model.init_args.audio_frontend=logmel"]
    small = ["--data.init_args.batch_size=2", "--data.init_args.num_workers=0", "--trainer.max_steps=1"]
    small += ["--trainer.accelerator=cpu", "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"]
    small += ["--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0"]
    assert main(["fit", "-c", "ezvsl", "-c", "vggss", *roots, *tiny, *small]) == 0
    assert "vggss_test'): 5156 skipped (5156 missing file)" in caplog.text  # the clips not downloaded, counted
