"""Audio front-ends: waveform (B, T) -> spectrogram, computed on the model's device inside ``forward``.

- :class:`LogLinearSpectrogram`: the LVS / EZ-VSL input, a log power spectrogram with linear frequencies.
- :class:`LogMelSpectrogram`: a log-mel spectrogram (a cheaper input for small CNNs).
- :class:`VGGishLogMel`: SSPL's VGGish input (min-max scaled clip, VGGish's log-mel examples of 0.96 s), equal to
  the reference's.
"""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import Tensor, nn

__all__ = [
    "AUDIO_FRONTENDS",
    "LogLinearHop159",
    "LogLinearSpectrogram",
    "LogMelSpectrogram",
    "VGGishLogMel",
    "create_frontend",
    "minmax_scale_waveform",
    "vggish_mel_matrix",
]


def _tukey(n: int, alpha: float) -> Tensor:
    """scipy.signal.windows.tukey(n, alpha, sym=False): the window of scipy.signal.spectrogram."""
    if alpha <= 0:
        return torch.ones(n, dtype=torch.float64)
    m = n + 1  # periodic: a symmetric window of n + 1 points, last one dropped
    k = torch.arange(m, dtype=torch.float64)
    width = math.floor(alpha * (m - 1) / 2.0)
    w = torch.ones(m, dtype=torch.float64)
    left = k[: width + 1]
    w[: width + 1] = 0.5 * (1 + torch.cos(math.pi * (-1 + 2.0 * left / alpha / (m - 1))))
    right = k[m - width - 1 :]
    w[m - width - 1 :] = 0.5 * (1 + torch.cos(math.pi * (-2.0 / alpha + 1 + 2.0 * right / alpha / (m - 1))))
    return w[:n]


class LogLinearSpectrogram(nn.Module):
    """The log-linear spectrogram of LVS and EZ-VSL.

    The references call ``scipy.signal.spectrogram(wave, fs, nperseg=512, noverlap=274)`` (a periodic Tukey(0.25)
    window, per-segment mean removal, one-sided PSD "density" scaling, no padding), then ``log(S + 1e-7)`` and
    normalize with mean 0 and std 12 (hche11/Localizing-Visual-Sounds-the-Hard-Way ``datasets/dataloader.py``,
    stoneMo/EZ-VSL ``datasets.py``). This module computes the same in torch. At 16 kHz, 3 s give 257 x 200.

    Output: (B, 1, n_fft // 2 + 1, frames), frequency on the height axis.
    """

    window: Tensor
    scale: Tensor

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        noverlap: int = 274,
        log_offset: float = 1e-7,
        mean: float = 0.0,
        std: float = 12.0,
    ) -> None:
        super().__init__()
        if not 0 <= noverlap < n_fft:
            raise ValueError(f"need 0 <= noverlap < n_fft, got noverlap={noverlap}, n_fft={n_fft}")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop = n_fft - noverlap
        self.log_offset = log_offset
        self.mean = mean
        self.std = std
        window = _tukey(n_fft, 0.25)
        self.register_buffer("window", window.float(), persistent=False)
        # 'density' scaling of a one-sided PSD: 1 / (fs * sum(w^2)), doubled except at DC (and Nyquist for even n).
        scale = torch.full((n_fft // 2 + 1,), 2.0 / (sample_rate * float((window**2).sum())))
        scale[0] /= 2
        if n_fft % 2 == 0:
            scale[-1] /= 2
        self.register_buffer("scale", scale.float(), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        if wave.shape[-1] < self.n_fft:
            raise ValueError(f"waveform of {wave.shape[-1]} samples is shorter than n_fft={self.n_fft}")
        frames = wave.unfold(-1, self.n_fft, self.hop)  # (B, frames, n_fft)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        spec = torch.fft.rfft(frames * self.window, dim=-1).abs().pow(2) * self.scale
        spec = torch.log(spec + self.log_offset)
        return ((spec - self.mean) / self.std).transpose(-1, -2).unsqueeze(1)


class LogMelSpectrogram(nn.Module):
    """A log-mel spectrogram: STFT magnitude, ``n_mels`` HTK mel bands, ``log(mel + log_offset)``.

    A generic input for small CNNs (torchaudio's STFT and filterbank). It is *not* VGGish's front-end, whose frames,
    triangles and waveform scaling differ: SSPL's VGGish takes :class:`VGGishLogMel`.

    Windows and hops are durations: 25 ms windows every 10 ms at any sample rate (400 and 160 samples at 16 kHz, with
    a 512-point FFT), so that a clip gives the same frames, and a network the same input, whatever the data's rate.
    Explicit ``win_length`` / ``hop_length`` / ``n_fft`` (in samples) override them.

    Output: (B, 1, n_mels, frames), mel bands on the height axis.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int | None = None,
        win_length: int | None = None,
        hop_length: int | None = None,
        n_mels: int = 64,
        f_min: float = 125.0,
        f_max: float = 7500.0,
        log_offset: float = 0.01,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.log_offset = log_offset
        win_length = win_length or round(0.025 * sample_rate)
        hop_length = hop_length or round(0.010 * sample_rate)
        # At least 512 points, so that low rates keep a fine frequency grid for the 125-Hz lower band edge.
        n_fft = n_fft or max(512, 2 ** math.ceil(math.log2(win_length)))
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=f_min,
            f_max=min(f_max, sample_rate / 2),
            n_mels=n_mels,
            power=1.0,
            center=False,
            mel_scale="htk",
        )

    def forward(self, wave: Tensor) -> Tensor:
        mel: Tensor = self.mel(wave)
        return torch.log(mel + self.log_offset).unsqueeze(1)


# VGGish's fixed signal parameters (torchvggish ``vggish_params``): the network was trained on these features only.
VGGISH_SAMPLE_RATE = 16000
VGGISH_WINDOW = 400  # 25 ms at 16 kHz
VGGISH_HOP = 160  # 10 ms
VGGISH_FFT = 512  # the next power of two above the window
VGGISH_BANDS = 64
VGGISH_F_MIN = 125.0
VGGISH_F_MAX = 7500.0
VGGISH_LOG_OFFSET = 0.01
# resampy's ``kaiser_best`` filter, which torchvggish (and librosa before 0.10) resample with.
_KAISER_BEST = {"lowpass_filter_width": 64, "rolloff": 0.9475937167399596, "beta": 14.769656459379492}


def vggish_mel_matrix(
    num_bins: int = VGGISH_FFT // 2 + 1,
    num_bands: int = VGGISH_BANDS,
    sample_rate: int = VGGISH_SAMPLE_RATE,
    f_min: float = VGGISH_F_MIN,
    f_max: float = VGGISH_F_MAX,
) -> Tensor:
    """VGGish's mel filterbank, (num_bins, num_bands) in float64: STFT magnitudes (rows) -> mel bands (columns).

    The bands are triangles that are linear in *mel* (HTK mel, ``1127 ln(1 + f / 700)``), with ``num_bands + 2``
    edges spaced evenly in mel from ``f_min`` to ``f_max``; each band rises from its lower edge to its centre and falls
    to its upper edge, with peak 1 and no area normalization. The DC bin gets no weight. (torchaudio's HTK
    filterbank instead draws its triangles linearly in Hz between the same edges.)
    """
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}, {sample_rate}")

    bins = 1127.0 * torch.log(1.0 + torch.linspace(0.0, sample_rate / 2, num_bins, dtype=torch.float64) / 700.0)
    lowest, highest = (1127.0 * math.log(1.0 + hz / 700.0) for hz in (f_min, f_max))
    edges = torch.linspace(lowest, highest, num_bands + 2, dtype=torch.float64)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    weights = torch.minimum(rising, falling).clamp_min(0.0)
    weights[0] = 0.0
    return weights


def minmax_scale_waveform(wave: Tensor, eps: float = 1e-3) -> Tensor:
    """SSPL's per-clip waveform scaling along the last axis: ``2 * ((x - min) / (max - min + eps) - 0.5)``.

    A clip with a range well above ``eps`` spans [-1, 1]; a quiet clip stays below 1 at the top
    (``1 - 2 eps / (range + eps)``) and a constant or silent clip becomes all -1 (finite: ``eps`` keeps the division
    defined). Computed in the input's dtype, as the reference does on its float32 clips.
    """
    shifted = wave - wave.amin(dim=-1, keepdim=True)
    return (shifted / (shifted.amax(dim=-1, keepdim=True) + eps) - 0.5) * 2.0


class VGGishLogMel(nn.Module):
    """SSPL's audio front-end: per-clip min-max scaling, then VGGish's log-mel examples of 96 frames x 64 bands.

    Equal (to float precision, measured in ``tests/test_sspl_frontend.py``) to what zjsong/SSPL feeds its VGGish:
    ``utils.normalize_audio`` on the 16-kHz clip, then torchvggish's ``vggish_input.waveform_to_examples``:

    1. waveforms at another ``sample_rate`` are first resampled to 16 kHz (windowed sinc with resampy's
       ``kaiser_best`` filter, as torchvggish and the librosa of the reference resample);
    2. per-clip min-max scaling, :func:`minmax_scale_waveform` (``scale_waveform=False`` skips it, for input that is
       already in [-1, 1]);
    3. frames of 400 samples (25 ms) every 160 samples (10 ms), no padding, a periodic Hann window, each frame
       zero-padded *at its end* to 512 samples for the FFT, magnitude spectrum;
    4. VGGish's mel matrix (:func:`vggish_mel_matrix`: 64 bands, 125-7500 Hz, linear in mel, no DC);
       ``log(mel + 0.01)``;
    5. non-overlapping examples of ``example_frames`` frames (0.96 s); frames past the last whole example are
       dropped. A 3-s clip gives 3 examples, a 1-s clip 1; a clip shorter than 0.975 s is an error.

    Steps 3-4 run in float64 on the input's device (float32 on MPS), and the result is cast back to the input's dtype.
    The window and the mel matrix are non-persistent float64 buffers (not in checkpoints); if the module is cast to a
    lower precision (``.half()``), they are rebuilt in float64 on the fly.

    Output: (B, N, 1, 96, 64) with time on the height axis, as VGGish expects.
    """

    window: Tensor
    mel_matrix: Tensor

    def __init__(self, sample_rate: int = 16000, example_frames: int = 96, scale_waveform: bool = True) -> None:
        super().__init__()
        if sample_rate <= 0 or example_frames <= 0:
            raise ValueError(f"sample_rate and example_frames must be positive, got {sample_rate}, {example_frames}")
        self.sample_rate = sample_rate
        self.example_frames = example_frames
        self.scale_waveform = scale_waveform
        self.register_buffer("window", self._hann(), persistent=False)
        self.register_buffer("mel_matrix", vggish_mel_matrix(), persistent=False)

    @property
    def min_samples(self) -> int:
        """The shortest input (at ``sample_rate``) that gives one example."""
        needed = VGGISH_WINDOW + (self.example_frames - 1) * VGGISH_HOP
        return math.ceil(needed * self.sample_rate / VGGISH_SAMPLE_RATE)

    @staticmethod
    def _hann() -> Tensor:
        n = torch.arange(VGGISH_WINDOW, dtype=torch.float64)
        return 0.5 - 0.5 * torch.cos(2 * math.pi / VGGISH_WINDOW * n)

    def _constants(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The window and mel matrix in ``dtype``; rebuilt in full precision if the module was cast to a lower one."""
        if self.window.dtype in (torch.float64, dtype) and self.mel_matrix.dtype in (torch.float64, dtype):
            return self.window.to(device, dtype), self.mel_matrix.to(device, dtype)
        return self._hann().to(device, dtype), vggish_mel_matrix().to(device, dtype)

    def forward(self, wave: Tensor) -> Tensor:
        if wave.dim() != 2:
            raise ValueError(f"expected (B, T) waveforms, got shape {tuple(wave.shape)}")
        out_dtype, length = (wave.dtype if wave.is_floating_point() else torch.float32), wave.shape[-1]
        if wave.dtype not in (torch.float32, torch.float64):
            wave = wave.float()  # the reference scales float32 clips
        if self.sample_rate != VGGISH_SAMPLE_RATE:
            wave = torchaudio.functional.resample(
                wave, self.sample_rate, VGGISH_SAMPLE_RATE, resampling_method="sinc_interp_kaiser", **_KAISER_BEST
            )
        frames_total = 1 + (wave.shape[-1] - VGGISH_WINDOW) // VGGISH_HOP if wave.shape[-1] >= VGGISH_WINDOW else 0
        num = frames_total // self.example_frames
        if num == 0:
            raise ValueError(
                f"waveform too short for one VGGish example: {self.example_frames} frames of 10 ms need "
                f"{self.min_samples} samples at {self.sample_rate} Hz, got {length}"
            )
        if self.scale_waveform:
            wave = minmax_scale_waveform(wave)
        dtype = torch.float32 if wave.device.type == "mps" else torch.float64
        window, mel_matrix = self._constants(wave.device, dtype)
        frames = wave.to(dtype).unfold(-1, VGGISH_WINDOW, VGGISH_HOP)[:, : num * self.example_frames]
        spec = torch.fft.rfft(frames * window, n=VGGISH_FFT).abs()
        logmel = torch.log(spec @ mel_matrix + VGGISH_LOG_OFFSET)  # (B, frames, 64)
        out = logmel.to(out_dtype)
        return out.reshape(wave.shape[0], num, 1, self.example_frames, VGGISH_BANDS)


class LogLinearHop159(LogLinearSpectrogram):
    """:class:`LogLinearSpectrogram` with ``noverlap=353`` (a hop of 159 samples): the spectrogram of SSL-align's
    LVS-style loader (kaistmm/SSLalignment ``datasets_lvs.py``), 257 x 299 for 3 s at 16 kHz."""

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__(sample_rate, noverlap=353)


AUDIO_FRONTENDS: dict[str, type[nn.Module]] = {
    "loglinear": LogLinearSpectrogram,
    "loglinear_hop159": LogLinearHop159,
    "logmel": LogMelSpectrogram,
    "vggish": VGGishLogMel,
}


def create_frontend(name: str, sample_rate: int) -> nn.Module:
    """Create an audio front-end by name (``"loglinear"``, ``"logmel"`` or ``"vggish"``) with default parameters."""
    if name not in AUDIO_FRONTENDS:
        raise ValueError(f"unknown audio front-end {name!r}; expected one of {sorted(AUDIO_FRONTENDS)}")
    return AUDIO_FRONTENDS[name](sample_rate=sample_rate)
