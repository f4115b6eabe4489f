"""Decoding of images, masks and audio (avsl.data.io): conversions, and a clear error for each bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from _data_fixtures import RATE, pattern, tone, write_image, write_video, write_wav
from PIL import Image

from avsl.data.io import DataError, SkipLog, load_audio, load_image, load_mask

# ---------------------------------------------------------------------------------------------------- images


def test_rgb_png_is_exact(tmp_path: Path) -> None:
    arr = pattern(20, 10, seed=3)
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.shape == (3, 10, 20)
    assert img.dtype == torch.float32
    assert torch.equal(img, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = np.arange(0, 240, 2, dtype=np.uint8).reshape(10, 12)
    Image.fromarray(grey).save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.shape == (3, 10, 12)
    for c in range(3):
        assert torch.equal(img[c], torch.from_numpy(grey).float() / 255)


def test_rgba_is_composited_over_black(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red everywhere
    rgba[0, 0, 3] = 255  # opaque
    rgba[0, 1, 3] = 0  # fully transparent: black whatever colour it stores
    rgba[1, :, 3] = 51  # 20 % alpha
    Image.fromarray(rgba).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img[:, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert img[:, 0, 1].tolist() == [0.0, 0.0, 0.0]
    assert img[0, 1, 0].item() == pytest.approx(0.2)


def test_cmyk_jpeg_converts_to_rgb(tmp_path: Path) -> None:
    # Pure cyan in CMYK is (0, 255, 255) in RGB; JPEG is lossy, hence the tolerance.
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(tmp_path / "c.jpg")
    with Image.open(tmp_path / "c.jpg") as im:
        assert im.mode == "CMYK"
    img = load_image(tmp_path / "c.jpg")
    assert img.shape == (3, 16, 16)
    assert torch.allclose(img.mean(dim=(1, 2)), torch.tensor([0.0, 1.0, 1.0]), atol=0.03)


def test_palette_and_transparent_palette(tmp_path: Path) -> None:
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 0, 128, 255] + [0] * 762)
    im.save(tmp_path / "p.png")
    assert torch.allclose(load_image(tmp_path / "p.png")[:, 0, 0], torch.tensor([0.0, 128 / 255, 1.0]))
    im.info["transparency"] = 1
    im.save(tmp_path / "pt.png", transparency=1)
    assert torch.equal(load_image(tmp_path / "pt.png"), torch.zeros(3, 4, 4))


def test_16bit_grayscale_is_scaled_by_65535(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as im:
        assert im.mode in ("I;16", "I")  # how Pillow opens a 16-bit PNG
    img = load_image(tmp_path / "d.png")
    expected = torch.tensor([0.0, 32768 / 65535, 1.0, 1000 / 65535])
    assert torch.allclose(img[0, 0], expected)
    assert torch.equal(img[0], img[2])


def test_bilevel_image(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1").save(tmp_path / "b.png")
    assert load_image(tmp_path / "b.png")[:, 0].tolist() == [[0.0, 1.0]] * 3


def test_truncated_jpeg_names_the_file(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(pattern(64, 64)).save(buf, format="JPEG")
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg: corrupt or unreadable image .*truncated") as info:
        load_image(bad)
    assert info.value.kind == "corrupt image"
    assert info.value.path == str(bad)


def test_garbage_image_and_empty_and_missing(tmp_path: Path) -> None:
    (tmp_path / "junk.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(DataError, match=r"junk\.jpg: corrupt or unreadable image"):
        load_image(tmp_path / "junk.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.jpg: empty image file \(0 bytes\)"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(DataError, match=r"nope\.jpg: image file not found") as info:
        load_image(tmp_path / "nope.jpg")
    assert info.value.kind == "missing file"


def test_masks_binary_from_l_1_and_palette(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = np.zeros((4, 5), dtype=np.uint8)
    m[1:3, 2:4] = 1
    Image.fromarray(m * 255).save(tmp_path / "l.png")
    Image.fromarray(m * 255).convert("1").save(tmp_path / "one.png")
    pal = Image.frombytes("P", (5, 4), m.tobytes())
    pal.putpalette([0, 0, 0, 0, 0, 1] + [0] * 762)  # a very dark foreground colour: the index decides
    pal.save(tmp_path / "p.png")
    for name in ("l.png", "one.png", "p.png"):
        out = load_mask(tmp_path / name)
        assert out.dtype == torch.float32, name
        assert torch.equal(out, torch.from_numpy(m).float()), name
    Image.fromarray(np.full((4, 5), np.nan, dtype=np.float32)).save(tmp_path / "nan.tif")  # NaN != 0: all foreground
    with pytest.raises(DataError, match=r"nan\.tif: the mask holds NaN or infinite values"):
        load_mask(tmp_path / "nan.tif")
    Image.new("L", (1, 1)).save(tmp_path / "huge.png")
    with monkeypatch.context() as patch:  # Pillow's guard against decompression bombs, named like load_image's
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 0)
        with pytest.raises(DataError, match=r"huge\.png: mask too large to decode safely"):
            load_mask(tmp_path / "huge.png")


# ----------------------------------------------------------------------------------------------------- audio


def test_stereo_is_averaged(tmp_path: Path) -> None:
    stereo = tone(0.5, channels=2)
    write_wav(tmp_path / "s.wav", data=stereo, subtype="FLOAT")
    out = load_audio(tmp_path / "s.wav", RATE)
    assert out.shape == (RATE // 2,)
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.from_numpy(stereo.mean(axis=1)), atol=1e-6)


def test_channels_whose_mix_overflows_are_refused(tmp_path: Path) -> None:
    huge = np.full((800, 2), 3e38, dtype=np.float32)  # finite, but their mean's sum is not
    write_wav(tmp_path / "huge.wav", data=huge, subtype="FLOAT")
    with pytest.raises(DataError, match=r"huge\.wav: samples too large to mix to mono"):
        load_audio(tmp_path / "huge.wav", RATE)


def test_other_rate_is_resampled_or_refused(tmp_path: Path) -> None:
    write_wav(tmp_path / "r.wav", seconds=1.0, rate=8000)
    out = load_audio(tmp_path / "r.wav", RATE)
    assert out.shape == (RATE,)
    # A resampled 440 Hz tone is still a 440 Hz tone.
    spectrum = torch.fft.rfft(out).abs()
    assert int(spectrum.argmax()) == 440
    with pytest.raises(DataError, match=r"r\.wav: sample rate 8000 Hz, expected 16000 Hz") as info:
        load_audio(tmp_path / "r.wav", RATE, allow_resample=False)
    assert info.value.kind == "sample rate"


def test_digital_silence_is_an_error_unless_allowed(tmp_path: Path) -> None:
    write_wav(tmp_path / "z.wav", data=np.zeros(RATE, dtype=np.float32))
    with pytest.raises(DataError, match=r"z\.wav: digitally silent") as info:
        load_audio(tmp_path / "z.wav", RATE)
    assert info.value.kind == "silent audio"
    out = load_audio(tmp_path / "z.wav", RATE, allow_silence=True)
    assert out.shape == (RATE,)
    assert not out.any()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_samples_are_an_error(tmp_path: Path, bad: float) -> None:
    data = tone(0.25)
    data[100] = bad
    write_wav(tmp_path / "n.wav", data=data, subtype="FLOAT")
    with pytest.raises(DataError, match=r"n\.wav: 1 non-finite samples \(NaN or inf\)"):
        load_audio(tmp_path / "n.wav", RATE)


def test_truncated_wav_is_an_error(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", seconds=1.0).read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match=r"cut\.wav: truncated WAV: the header declares 32000 bytes") as info:
        load_audio(tmp_path / "cut.wav", RATE)
    assert info.value.kind == "truncated audio"


def test_empty_header_only_garbage_and_missing_wav(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", seconds=0.1).read_bytes()
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "header.wav").write_bytes(full[:44])
    (tmp_path / "junk.wav").write_bytes(b"RIFF....WAVEjunk" + b"\x01" * 64)
    cases = {
        "empty.wav": r"empty\.wav: empty audio file \(0 bytes\)",
        "header.wav": r"header\.wav: .*(no audio samples|truncated)",
        "junk.wav": r"junk\.wav: corrupt or unreadable audio",
        "missing.wav": r"missing\.wav: audio file not found",
    }
    for name, pattern_ in cases.items():
        with pytest.raises(DataError, match=pattern_):
            load_audio(tmp_path / name, RATE)


def test_header_only_wav_with_zero_data_size(tmp_path: Path) -> None:
    import soundfile as sf

    with sf.SoundFile(tmp_path / "h.wav", "w", RATE, 1, "PCM_16"):
        pass  # a valid header declaring 0 frames
    with pytest.raises(DataError, match=r"h\.wav: no audio samples") as info:
        load_audio(tmp_path / "h.wav", RATE)
    assert info.value.kind == "empty audio"


def test_audio_in_a_container_goes_through_pyav(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", seconds=1.0, audio_rate=22050)
    out = load_audio(video, RATE)
    # AAC adds encoder priming, so the length is about, not exactly, 1 s.
    assert abs(out.shape[0] - RATE) < 0.1 * RATE
    assert torch.isfinite(out).all()
    assert out.abs().max() > 0.1
    silent_video = write_video(tmp_path / "mute.mp4", seconds=0.5, audio=False)
    with pytest.raises(DataError, match=r"mute\.mp4: the file has no audio stream"):
        load_audio(silent_video, RATE)


def test_skip_log_counts_and_summary() -> None:
    log = SkipLog()
    assert log.summary() == "nothing skipped"
    assert len(log) == 0
    log.add("a", "missing file", "a: no frame")
    log.add("b", "corrupt image", "b.jpg: corrupt")
    log.add("c", "missing file", "c: no audio")
    assert log.counts() == {"missing file": 2, "corrupt image": 1}
    assert log.summary() == "3 skipped (2 missing file, 1 corrupt image)"
    assert [r.sample_id for r in log] == ["a", "b", "c"]


def test_write_image_helper_roundtrip(tmp_path: Path) -> None:
    # The fixture writer used by the reader tests produces what load_image reads back (PNG is lossless).
    path = write_image(tmp_path / "x.png", 8, 6, seed=1)
    assert torch.equal(load_image(path), torch.from_numpy(pattern(8, 6, seed=1)).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("rate", [44100, 16000, 8000])
def test_windowed_read_equals_the_whole_clip_path(tmp_path: Path, rate: int) -> None:
    from avsl.data.io import load_audio_window
    from avsl.data.transforms import audio_window

    rng = np.random.default_rng(rate)
    path = write_wav(
        tmp_path / "w.wav",
        data=(0.2 * rng.normal(size=(round(4.3 * rate), 2))).astype(np.float32),
        rate=rate,
        subtype="FLOAT",
    )
    full = load_audio(path, RATE)
    for num, position in ((48_000, 0.5), (48_000, 0.0), (48_000, 1.0), (12_345, 0.3), (100_000, 0.5)):
        window = load_audio_window(path, RATE, num, position=position)
        assert torch.allclose(window, audio_window(full, num, position), atol=1e-6), (num, position)
    for centre in (0.0, 2.0, 4.2):
        start = min(max(round(centre * RATE - 8_000), 0), full.shape[0] - 16_000)
        assert torch.allclose(
            load_audio_window(path, RATE, 16_000, centre=centre), full[start : start + 16_000], atol=1e-6
        )
