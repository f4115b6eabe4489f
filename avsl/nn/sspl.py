"""Building blocks of SSPL (Song et al., CVPR 2022; reference code zjsong/SSPL): the audio path with its nonlinear
transform g, the attention module (AM), SimSiam's projector and predictor.

All shapes follow methods.md §2.3; channel counts are derived from the chosen backbones (VGG16 conv5_3: 512, VGGish:
128 in the reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsl.nn.audio import create_frontend
from avsl.nn.backbones import VGGish, create_backbone
from avsl.nn.heads import cosine_map
from avsl.nn.maps import minmax_normalize

__all__ = [
    "SSPLAudioEncoder",
    "attention_map",
    "attention_pool",
    "simsiam_predictor",
    "simsiam_projector",
]


class SSPLAudioEncoder(nn.Module):
    """Waveform -> examples -> frozen-by-default audio CNN -> per-example embedding -> g -> averaged.

    With ``backbone="vggish"`` and ``frontend="vggish"`` this is SSPL's audio path: the clip min-max scaled and cut
    into 0.96-s log-mel examples exactly as the reference (:class:`avsl.nn.audio.VGGishLogMel`), the 128-d VGGish
    embedding of each (no PCA; torchvggish weights load unchanged), the nonlinear transform g (Linear -> ReLU ->
    Linear, ``net_sound.fc`` in the reference) applied per example and averaged over the examples. Any other
    registry backbone works too: its feature map is global-max-pooled into the per-example embedding (as avsl's
    ``AudioEncoder``); with the ``"logmel"`` or ``"loglinear"`` front-end the whole clip is one example.

    ``forward`` returns ``(f_a, f~_a)``: the raw embedding averaged over examples and L2-normalized (the PCM's audio
    observation, methods.md §2.3 "f_a") and the transformed embedding (the attention module's audio query).

    Args:
        backbone: registry name of the audio CNN (1-channel input).
        frontend: ``"vggish"`` (scaled clip, examples of 96 x 64), ``"logmel"`` or ``"loglinear"`` (one example per
            clip, no scaling).
        sample_rate: audio sample rate in Hz.
        pretrained: load published weights through timm (not available for ``vggish``).
        checkpoint_path: local weights for the backbone (e.g. a torchvggish state dict).
        hidden_dim: hidden width of g (512 in the reference).
        out_dim: output width of g; equals the visual channels, because the AM compares the two.
    """

    def __init__(
        self,
        backbone: str = "vggish",
        frontend: str = "vggish",
        sample_rate: int = 16000,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        hidden_dim: int = 512,
        out_dim: int = 512,
    ) -> None:
        super().__init__()
        if backbone == "vggish" and frontend != "vggish":
            raise ValueError("the vggish backbone takes 96x64 log-mel examples: use audio_frontend='vggish'")
        self.frontend = create_frontend(frontend, sample_rate)
        self.backbone = create_backbone(backbone, 1, pretrained, checkpoint_path)
        if isinstance(self.backbone, VGGish):
            linears = [m for m in self.backbone.embeddings.modules() if isinstance(m, nn.Linear)]
            self.embed_dim = linears[-1].out_features
        else:
            self.embed_dim = self.backbone.out_channels
        self.transform = nn.Sequential(
            nn.Linear(self.embed_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
        )

    def examples(self, wave: Tensor) -> Tensor:
        """(B, T) waveforms -> (B, N, 1, F, T') spectrogram examples (N = 1 for clip-level front-ends)."""
        spec: Tensor = self.frontend(wave)
        return spec if spec.dim() == 5 else spec[:, None]

    def embed(self, wave: Tensor) -> Tensor:
        """(B, T) waveforms -> (B, N, D) raw per-example embeddings."""
        examples = self.examples(wave)
        flat = examples.flatten(0, 1)
        # VGGish: its FC embedding; any other CNN: the global max of its feature map.
        emb = self.backbone.embed(flat) if isinstance(self.backbone, VGGish) else self.backbone(flat).amax(dim=(2, 3))
        return emb.view(examples.shape[0], examples.shape[1], -1)

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        emb = self.embed(wave)
        raw = F.normalize(emb.mean(dim=1), dim=1)
        transformed: Tensor = self.transform(emb).mean(dim=1)
        return raw, transformed


def attention_map(visual: Tensor, audio: Tensor) -> Tensor:
    """SSPL's attention-module map: the cosine between the audio query (B, C) and every location of (B, C, h, w).

    Returns (B, h, w) in [-1, 1] (the raw map S that SSPL evaluates, methods.md §2.7).
    """
    return cosine_map(F.normalize(visual, dim=1), F.normalize(audio, dim=1))


def attention_pool(visual: Tensor, sim: Tensor, eps: float = 1e-10) -> Tensor:
    """Pool a visual map (B, C, h, w) into (B, C) with the min-max-normalized similarity map (B, h, w) as weights.

    As the reference AM: a plain weighted *sum* of the un-normalized features (not divided by the weights' sum), and
    the weights keep their gradient (the audio path learns through them).
    """
    weights = minmax_normalize(sim, eps)
    return torch.einsum("bchw,bhw->bc", visual, weights)


def simsiam_projector(in_dim: int, dim: int = 2048) -> nn.Sequential:
    """SSPL's (SimSiam's) projection MLP: 3 bias-free linears with BN; ReLU after the first two, affine-free BN last."""
    return nn.Sequential(
        nn.Linear(in_dim, dim, bias=False),
        nn.BatchNorm1d(dim),
        nn.ReLU(inplace=True),
        nn.Linear(dim, dim, bias=False),
        nn.BatchNorm1d(dim),
        nn.ReLU(inplace=True),
        nn.Linear(dim, dim, bias=False),
        nn.BatchNorm1d(dim, affine=False),
    )


def simsiam_predictor(dim: int = 2048, hidden_dim: int = 512) -> nn.Sequential:
    """SSPL's (SimSiam's) prediction MLP: a bottleneck (bias-free linear, BN, ReLU) and a linear with bias."""
    return nn.Sequential(
        nn.Linear(dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, dim),
    )
