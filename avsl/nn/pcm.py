"""SSPL's predictive coding module (PCM): recurrent top-down prediction / bottom-up error correction.

Song et al., "Self-Supervised Predictive Learning: A Negative-Free Method for Sound Source Localization in Visual
Scenes", CVPR 2022 (reference code zjsong/SSPL, ``sspl_w_pcm/models``; formal view in the supplement of the authors'
TPAMI 2024 follow-up, Sec. A/B.1). The visual map ``f_v`` is the top-level prior and the audio embedding ``f_a`` the
bottom-level observation: each step predicts downwards (3x3 conv + max-pool, then a 1x1 conv to the audio channels)
and feeds the prediction errors back upwards (transposed convolutions and bilinear upsampling), with learnable
per-channel gains. The result ``f~_v`` replaces ``f_v`` in the attention module.

Level layout (as in the reference for a 14x14 VGG16 map): level 3 = the input map (C channels, H x W), level 2 =
C channels at H/2, level 1 = C channels at H/4 (floor), level 0 = the audio vector (A channels). The channel counts are
taken from the backbones (512 and 128 in the reference) instead of being fixed.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PredictiveCodingModule"]


def _bns(channels: int, n: int) -> nn.ModuleList:
    return nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(n))


class PredictiveCodingModule(nn.Module):
    """The PCM: ``(f_v (B, C, H, W), f_a (B, A)) -> f~_v (B, C, H, W)``, shared by both SSPL views.

    One initial pass plus ``cycles`` recurrent feedback/feedforward cycles (reference ``cycs_pcm = 4``: 5 steps, the
    supplement's T = 5). Every step has its own 5 BatchNorms (5 + 5 * cycles in all: 25 for the default), the convs
    and the gains are shared by all steps.

    Args:
        visual_channels: channels C of the visual map (512 for VGG16 conv5_3).
        audio_channels: dimension A of the audio observation (128 for VGGish).
        cycles: recurrent cycles after the initial pass (``cycs_pcm``; 0 gives the initial pass only).
    """

    def __init__(self, visual_channels: int = 512, audio_channels: int = 128, cycles: int = 4) -> None:
        super().__init__()
        if cycles < 0:
            raise ValueError(f"cycles must be >= 0, got {cycles}")
        c, a = visual_channels, audio_channels
        self.visual_channels, self.audio_channels, self.cycles = c, a, cycles
        # Top-down (feedback) predictors: level 3 -> 2 -> 1 (3x3 conv, no bias, then 2x2 max-pool) and 1 -> 0
        # (1x1 conv with bias, GELU, global average pool) (reference: the PCM's feedback convs).
        self.pred_32 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.pred_21 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.pred_10 = nn.Conv2d(c, a, 1)
        # Bottom-up (feedforward) error propagators: 1x1 transposed conv from the audio error broadcast to level 1,
        # a stride-2 3x3 transposed conv (3 -> 7), and bilinear x2 (align_corners=True) + 3x3 transposed conv (7 -> 14).
        self.err_01 = nn.ConvTranspose2d(a, c, 1, bias=False)
        self.err_12 = nn.ConvTranspose2d(c, c, 3, stride=2, padding=0, bias=False)
        self.err_23 = nn.ConvTranspose2d(c, c, 3, stride=1, padding=1, bias=False)
        self.out = nn.ConvTranspose2d(c, c, 1)
        # Per-channel gains, rectified before use: a_l (feedforward error gains, init 1.0) and b_l (feedback mixing
        # rates, init 0.5), for levels 1, 2, 3 (index 0, 1, 2).
        self.ff_gain = nn.Parameter(torch.ones(3, 1, c, 1, 1))
        self.fb_rate = nn.Parameter(torch.full((3, 1, c, 1, 1), 0.5))
        # Initial pass: BNs of the level-2 and level-1 predictions, then of the three corrected levels 1, 2, 3.
        self.bn_init = _bns(c, 5)
        # Each cycle: BNs of the feedback updates of levels 2 and 1, then of the feedforward updates of levels 1, 2, 3.
        self.bn_cycles = nn.ModuleList(_bns(c, 5) for _ in range(cycles))

    # -------------------------------------------------------------------------------------------- operators
    def _down(self, conv: nn.Module, x: Tensor) -> Tensor:
        out: Tensor = F.max_pool2d(conv(x), 2)
        return out

    def _predict_audio(self, r1: Tensor) -> Tensor:
        return F.gelu(self.pred_10(r1)).mean(dim=(2, 3))

    def _up_12(self, err: Tensor, size: tuple[int, int]) -> Tensor:
        out: Tensor = self.err_12(err)
        # The stride-2 transposed conv maps 3 -> 7 exactly for the reference's 14x14 maps; other sizes (e.g. 2 -> 5
        # for an 8x8 map whose level 2 is 4x4) are resized to the level above (an avsl generalization).
        if tuple(out.shape[-2:]) != size:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
        return out

    def _up_23(self, err: Tensor, size: tuple[int, int]) -> Tensor:
        # Bilinear to the level above (x2 for even maps, as the reference's scale_factor=2), then a 3x3 transposed conv.
        up = F.interpolate(err, size=size, mode="bilinear", align_corners=True)
        out: Tensor = self.err_23(up)
        return out

    # -------------------------------------------------------------------------------------------- forward
    def forward(self, visual: Tensor, audio: Tensor) -> Tensor:
        """Transform a visual map (B, C, H, W) given the audio observation (B, A); H and W must be at least 4."""
        if visual.dim() != 4 or visual.shape[1] != self.visual_channels:
            raise ValueError(f"visual must be (B, {self.visual_channels}, H, W), got {tuple(visual.shape)}")
        if audio.dim() != 2 or audio.shape != (visual.shape[0], self.audio_channels):
            raise ValueError(f"audio must be ({visual.shape[0]}, {self.audio_channels}), got {tuple(audio.shape)}")
        h, w = visual.shape[-2:]
        if h < 4 or w < 4:
            raise ValueError(f"the PCM needs visual maps of at least 4x4 (two 2x2 poolings), got {h}x{w}")
        s3 = (h, w)
        s2 = (h // 2, w // 2)
        a1, a2, a3 = F.relu(self.ff_gain)
        b1, b2, b3 = F.relu(self.fb_rate)
        bn = self.bn_init

        # Initial pass: predictions from the visual prior down to the audio, then errors back up.
        rh2 = F.gelu(bn[0](self._down(self.pred_32, visual)))
        rh1 = F.gelu(bn[1](self._down(self.pred_21, rh2)))
        err0 = audio - self._predict_audio(rh1)
        r1 = F.gelu(bn[2](rh1 + a1 * self.err_01(err0[:, :, None, None].expand(-1, -1, *rh1.shape[-2:]))))
        r2 = F.gelu(bn[3](rh2 + a2 * self._up_12(r1 - rh1, s2)))
        r3 = F.gelu(bn[4](visual + a3 * self._up_23(r2 - rh2, s3)))

        for bn in cast(list[nn.ModuleList], list(self.bn_cycles)):
            # Feedback sweep: mix each level with the prediction from above (the top level with the visual prior; no BN
            # there, as in the reference).
            r3 = F.gelu((1 - b3) * r3 + b3 * visual)
            rh2 = self._down(self.pred_32, r3)
            r2 = F.gelu(bn[0]((1 - b2) * r2 + b2 * rh2))
            rh1 = self._down(self.pred_21, r2)
            r1 = F.gelu(bn[1]((1 - b1) * r1 + b1 * rh1))
            err0 = audio - self._predict_audio(r1)
            # Feedforward sweep: correct each level with the prediction error of the level below.
            r1 = F.gelu(bn[2](r1 + a1 * self.err_01(err0[:, :, None, None].expand(-1, -1, *r1.shape[-2:]))))
            r2 = F.gelu(bn[3](r2 + a2 * self._up_12(r1 - rh1, s2)))
            r3 = F.gelu(bn[4](r3 + a3 * self._up_23(r2 - rh2, s3)))

        out: Tensor = self.out(r3)
        return out
