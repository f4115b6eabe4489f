"""SSPL's audio front-end and VGGish against numbers of the reference code (zjsong/SSPL + torchvggish).

The reference numbers live in ``tests/data/sspl_frontend_reference.npz`` (how they were made: ``tests/data/README.md``).
The test waveforms are not stored: :func:`make_waveform` rebuilds them from fixed seeds, and the file keeps a checksum
of each so that a changed recipe cannot pass silently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from avsl.nn.audio import VGGishLogMel, minmax_scale_waveform, vggish_mel_matrix
from avsl.nn.backbones import VGGish
from avsl.nn.sspl import SSPLAudioEncoder

DATA = Path(__file__).parent / "data" / "sspl_frontend_reference.npz"

# name -> (sample rate, number of samples); the signals are defined in make_waveform.
WAVEFORMS: dict[str, tuple[int, int]] = {
    "noise_1s": (16000, 16000),
    "tones_3s": (16000, 48000),
    "dc_asym_odd": (16000, 25537),  # a DC offset and a one-sided waveform: the min-max scaling matters
    "quiet_2s": (16000, 32000),  # a range near the scaling's eps (1e-3)
    "constant_1s": (16000, 16000),  # becomes all -1 after the scaling
    "chirp_8k": (8000, 12000),  # resampled to 16 kHz first
    "noise_44k": (44100, 44100),
}
EXACT = [name for name, (rate, _) in WAVEFORMS.items() if rate == 16000]
RESAMPLED = [name for name, (rate, _) in WAVEFORMS.items() if rate != 16000]


def make_waveform(name: str) -> np.ndarray:
    """The float32 test waveform ``name`` (legacy ``RandomState`` streams, stable across numpy versions)."""
    rate, n = WAVEFORMS[name]
    t = np.arange(n, dtype=np.float64) / rate
    if name == "noise_1s":
        x = 0.1 * np.random.RandomState(0).standard_normal(n)
    elif name == "tones_3s":
        noise = np.random.RandomState(1).standard_normal(n)
        x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t + 0.3) + 0.01 * noise
    elif name == "dc_asym_odd":
        noise = np.random.RandomState(2).standard_normal(n)
        x = 0.3 + np.maximum(0.4 * np.sin(2 * np.pi * 700 * t), -0.05) + 0.02 * noise
    elif name == "quiet_2s":
        x = 5e-4 + 1e-3 * np.random.RandomState(3).standard_normal(n)
    elif name == "constant_1s":
        x = np.full(n, 0.25)
    elif name == "chirp_8k":
        x = 0.6 * np.sin(2 * np.pi * (200 * t + 1100 * t**2)) + 0.1
    elif name == "noise_44k":
        x = 0.3 * np.random.RandomState(4).standard_normal(n) + 0.2 * np.sin(2 * np.pi * 5000 * t)
    else:
        raise KeyError(name)
    return x.astype(np.float32)


def fill_like_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The deterministic random weights of the reference run: every tensor in state-dict order from one generator.

    ``randn * sqrt(2 / fan_in)`` for weights (so activations neither vanish nor explode through the 8 layers),
    ``randn * 0.01`` for biases.
    """
    gen = torch.Generator().manual_seed(0)
    out = {}
    for key, value in state.items():
        t = torch.randn(tuple(value.shape), generator=gen)
        out[key] = t * math.sqrt(2.0 / (t[0].numel())) if t.dim() > 1 else t * 0.01
    return out


@pytest.fixture(scope="module")
def ref() -> Any:
    with np.load(DATA) as data:
        return {key: data[key] for key in data.files}


def _shapes(padded: np.ndarray) -> list[tuple[int, ...]]:
    """Tensor shapes stored as rows padded with -1."""
    return [tuple(int(d) for d in row if d >= 0) for row in padded]


def _ours(name: str) -> torch.Tensor:
    rate, _ = WAVEFORMS[name]
    with torch.no_grad():
        return VGGishLogMel(rate)(torch.from_numpy(make_waveform(name))[None])[0, :, 0]


# ------------------------------------------------------------------------------------------- waveform recipes
def test_the_waveforms_are_the_ones_the_reference_saw(ref: Any) -> None:
    for name in WAVEFORMS:
        wave = make_waveform(name).astype(np.float64)
        np.testing.assert_allclose(ref[f"{name}/checksum"], [wave.sum(), (wave**2).sum(), *wave[:4]], rtol=1e-9)


# ------------------------------------------------------------------------------------------- (a), (b), (c)
def test_minmax_scaling_equals_the_reference_loader(ref: Any) -> None:
    for name in EXACT:
        scaled = minmax_scale_waveform(torch.from_numpy(make_waveform(name)))
        np.testing.assert_array_equal(scaled.numpy()[::97], ref[f"{name}/scaled_every97"])  # bit-equal in float32


def test_mel_matrix_equals_vggish(ref: Any) -> None:
    ours = vggish_mel_matrix().numpy()
    expected = np.zeros((257, 64))
    expected[ref["mel/rows"], ref["mel/cols"]] = ref["mel/values"]
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    assert not ours[0].any()  # no weight on the DC bin


@pytest.mark.parametrize("name", EXACT)
def test_log_mel_examples_equal_the_reference(ref: Any, name: str) -> None:
    expected = torch.from_numpy(ref[f"{name}/examples"])
    ours = _ours(name)
    assert ours.shape == expected.shape  # (N, 96, 64)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)  # measured: 0 on CPU


@pytest.mark.parametrize("name", RESAMPLED)
def test_other_sample_rates_are_resampled_to_16k_as_the_reference(ref: Any, name: str) -> None:
    # torchaudio's Kaiser sinc with resampy's kaiser_best parameters vs resampy itself: close, not equal. resampy
    # attenuates the top of the band more (3 % at 7 kHz from 44.1 kHz) and treats the clip ends differently; measured:
    # mean |diff| 0.023 (8 kHz) and 0.033 (44.1 kHz), max 0.43 and 0.38, in low-energy bands and at the clip ends.
    expected = torch.from_numpy(ref[f"{name}/examples"])
    ours = _ours(name)
    assert ours.shape == expected.shape
    diff = (ours - expected).abs()
    assert float(diff.mean()) < 0.05 and float(diff.max()) < 0.5


def test_silent_and_constant_clips_are_finite(ref: Any) -> None:
    front = VGGishLogMel(16000)
    waves = torch.stack([torch.zeros(16000), torch.full((16000,), -3.0), torch.from_numpy(make_waveform("noise_1s"))])
    out = front(waves)
    assert torch.isfinite(out).all()
    # every constant clip becomes all -1 before the STFT, so they all equal the reference's constant clip
    expected = torch.from_numpy(ref["constant_1s/examples"])
    torch.testing.assert_close(out[0, :, 0], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(out[1, :, 0], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("samples", "examples"), [(16000, 1), (48000, 3), (25537, 1), (15600, 1), (47999, 3)])
def test_example_counts_and_batching(samples: int, examples: int) -> None:
    front = VGGishLogMel(16000)
    waves = torch.randn(2, samples, generator=torch.Generator().manual_seed(samples))
    out = front(waves)
    assert out.shape == (2, examples, 1, 96, 64) and out.dtype == torch.float32
    # each clip is scaled and framed on its own: batching changes nothing
    torch.testing.assert_close(out[1:], front(waves[1:]), rtol=0, atol=1e-6)
    assert front(waves.double()).dtype == torch.float64
    # a module cast to half precision still computes in float64 (its constants are rebuilt), the output is half
    torch.testing.assert_close(front.half()(waves.half()).float(), front(waves.half().float()), rtol=0, atol=2e-3)


def test_too_short_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"too short.*15600 samples"):
        VGGishLogMel(16000)(torch.randn(1, 15599))
    with pytest.raises(ValueError, match="too short"):
        VGGishLogMel(8000)(torch.randn(1, 7000))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        VGGishLogMel(16000)(torch.randn(16000))


def test_scaling_can_be_turned_off() -> None:
    wave = torch.randn(1, 16000) * 0.1
    scaled = VGGishLogMel(16000)(wave)
    torch.testing.assert_close(VGGishLogMel(16000, scale_waveform=False)(minmax_scale_waveform(wave)), scaled)
    assert not torch.allclose(VGGishLogMel(16000, scale_waveform=False)(wave), scaled)


# ------------------------------------------------------------------------------------------------- VGGish
def test_torchvggish_weights_load_unchanged_and_give_the_reference_outputs(ref: Any) -> None:
    with torch.device("meta"):  # no default initialization: every tensor is replaced below
        model = VGGish().eval()
    state = model.state_dict()
    # the same names and shapes as torchvggish's VGGish (features.*, embeddings.*), in the same order
    assert list(state) == [str(k) for k in ref["vggish/keys"]]
    assert [tuple(v.shape) for v in state.values()] == _shapes(ref["vggish/shapes"])
    model.load_state_dict(fill_like_reference(state), strict=True, assign=True)
    examples = torch.from_numpy(ref["tones_3s/examples"])[:, None]  # (3, 1, 96, 64), the reference's input
    with torch.no_grad():
        fmap = model(examples[:1])
        emb = model.embed(examples)
        from_wave = model.embed(VGGishLogMel(16000)(torch.from_numpy(make_waveform("tones_3s"))[None])[0])
    expected_emb = torch.from_numpy(ref["vggish/embeddings"])
    assert float(expected_emb.abs().max()) > 0.1  # the random weights keep the signal alive
    torch.testing.assert_close(fmap[0], torch.from_numpy(ref["vggish/conv5_example0"]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(emb, expected_emb, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(from_wave, expected_emb, rtol=1e-3, atol=1e-4)  # waveform -> embedding end to end


def test_sspl_audio_encoder_names_map_onto_the_reference_net_sound(ref: Any) -> None:
    """SSPL's ``net_sound`` is torchvggish's VGGish plus ``fc`` (g); avsl keeps g as ``transform``."""
    with torch.device("meta"):
        enc = SSPLAudioEncoder("vggish", "vggish", hidden_dim=512, out_dim=512)
    ours = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    renamed = {
        (k.removeprefix("backbone.") if k.startswith("backbone.") else k.replace("transform.", "fc.", 1)): s
        for k, s in ours.items()
    }
    expected = dict(zip([str(k) for k in ref["net_sound/keys"]], _shapes(ref["net_sound/shapes"])))
    assert renamed == expected
