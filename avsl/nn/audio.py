"""Audio front-ends: waveform (B, T) -> spectrogram, computed on the model's device inside ``forward``.

- :class:`LogLinearSpectrogram`: the LVS / EZ-VSL input, a log power spectrogram with linear frequencies.
- :class:`LogMelSpectrogram`: a log-mel spectrogram (a cheaper input for small CNNs).
- :class:`VGGishLogMel`: the VGGish framing of SSPL, log-mel examples of 0.96 s.
"""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import Tensor, nn

__all__ = ["AUDIO_FRONTENDS", "LogLinearSpectrogram", "LogMelSpectrogram", "VGGishLogMel", "create_frontend"]


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

    Output: (B, 1, n_mels, frames), mel bands on the height axis.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 125.0,
        f_max: float = 7500.0,
        log_offset: float = 0.01,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.log_offset = log_offset
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


class VGGishLogMel(nn.Module):
    """The VGGish input of SSPL: log-mel examples of 96 frames x 64 bands (0.96 s each).

    STFT with a 25 ms periodic Hann window, 10 ms hop, FFT size 512, magnitude; 64 HTK mel bands from 125 to
    7500 Hz; ``log(mel + 0.01)``; non-overlapping examples of 96 frames (zjsong/SSPL data pipeline, after
    torchvggish). A 3-s clip at 16 kHz gives 3 examples.

    Output: (B, N, 1, 96, 64) with time on the height axis, as VGGish expects.
    """

    def __init__(self, sample_rate: int = 16000, example_frames: int = 96) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.example_frames = example_frames
        win = round(0.025 * sample_rate)
        hop = round(0.010 * sample_rate)
        n_fft = 2 ** math.ceil(math.log2(win))
        self.logmel = LogMelSpectrogram(sample_rate, n_fft=n_fft, win_length=win, hop_length=hop)

    def forward(self, wave: Tensor) -> Tensor:
        spec = self.logmel(wave)[:, 0].transpose(1, 2)  # (B, frames, 64)
        n = spec.shape[1] // self.example_frames
        if n == 0:
            raise ValueError(
                f"waveform too short for one VGGish example ({self.example_frames} frames of 10 ms, about 0.97 s)"
            )
        spec = spec[:, : n * self.example_frames]
        out: Tensor = spec.reshape(spec.shape[0], n, 1, self.example_frames, spec.shape[-1])
        return out


AUDIO_FRONTENDS: dict[str, type[nn.Module]] = {
    "loglinear": LogLinearSpectrogram,
    "logmel": LogMelSpectrogram,
    "vggish": VGGishLogMel,
}


def create_frontend(name: str, sample_rate: int) -> nn.Module:
    """Create an audio front-end by name (``"loglinear"``, ``"logmel"`` or ``"vggish"``) with default parameters."""
    if name not in AUDIO_FRONTENDS:
        raise ValueError(f"unknown audio front-end {name!r}; expected one of {sorted(AUDIO_FRONTENDS)}")
    return AUDIO_FRONTENDS[name](sample_rate=sample_rate)
