"""Audio-conditioned sounding-pixel segmentation (USPL's third stage, "sounding pixel segmentation").

USPL trains a segmentation model on the refined sounding maps of its second stage; the abstract gives neither the
network nor the loss. This reconstruction (methods.md §5.2) is a small encoder-decoder in the spirit of AVSBench's
audio-visual fusion: the L2-normalized visual map is multiplied channel-wise by the audio embedding (whose channel
sum is the cosine map of the contrastive stage), decoded with a shallow skip connection, and trained with a
pixel-wise BCE against binary pseudo-masks, with an optional ignored band of uncertain pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsl.nn.backbones import create_backbone
from avsl.nn.heads import AudioEncoder, VisualEncoder

__all__ = ["AudioVisualDecoder", "SoundingSegmenter", "pseudo_mask_loss", "pseudo_masks"]


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class AudioVisualDecoder(nn.Module):
    """Logits (B, H', W') from an L2 visual map (B, D, h, w), an L2 audio embedding (B, D) and shallow features
    (B, C, H', W').

    Fusion: ``[v * a, <v, a>]`` (the channel-wise product and its sum, the cosine map) -> 1x1 conv; upsampled to the
    shallow resolution, concatenated with the projected shallow features, two 3x3 convs and a 1x1 classifier. Only the
    deep branch sees the audio; the shallow branch brings the boundaries.
    """

    def __init__(self, embed_dim: int, shallow_channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.fuse = _conv_bn_relu(embed_dim + 1, hidden, 1)
        self.skip = _conv_bn_relu(shallow_channels, hidden, 1)
        self.decode = nn.Sequential(
            _conv_bn_relu(2 * hidden, hidden, 3), _conv_bn_relu(hidden, hidden, 3), nn.Conv2d(hidden, 1, 1)
        )

    def forward(self, visual: Tensor, audio: Tensor, shallow: Tensor) -> Tensor:
        product = visual * audio[:, :, None, None]
        fused = self.fuse(torch.cat([product, product.sum(dim=1, keepdim=True)], dim=1))
        fused = F.interpolate(fused, size=shallow.shape[-2:], mode="bilinear", align_corners=False)
        out: Tensor = self.decode(torch.cat([fused, self.skip(shallow)], dim=1))
        return out[:, 0]


class SoundingSegmenter(nn.Module):
    """The segmentation network: its own visual and audio encoders (initialized from the contrastive stage by USPL),
    a shallow backbone stage for the skip connection, and an :class:`AudioVisualDecoder`.

    Args:
        vision_backbone, vision_out_index: the deep visual encoder (as :class:`~avsl.nn.heads.VisualEncoder`).
        shallow_out_index: the backbone stage of the skip connection (its stride is the output stride).
        audio_backbone, audio_frontend, sample_rate: the audio encoder (as :class:`~avsl.nn.heads.AudioEncoder`).
        embed_dim: shared embedding dimension.
        hidden: decoder width.
    """

    def __init__(
        self,
        vision_backbone: str,
        vision_out_index: int,
        shallow_out_index: int,
        audio_backbone: str,
        audio_frontend: str,
        sample_rate: int,
        embed_dim: int,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        self.visual = VisualEncoder(vision_backbone, out_index=vision_out_index, embed_dim=embed_dim)
        self.audio = AudioEncoder(audio_backbone, audio_frontend, sample_rate, embed_dim=embed_dim)
        self.shallow = create_backbone(vision_backbone, 3, out_index=shallow_out_index)
        self.decoder = AudioVisualDecoder(embed_dim, self.shallow.out_channels, hidden)
        self.stride = self.shallow.stride

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """Logits (B, H / stride, W / stride) for frames (B, 3, H, W) in [0, 1] and waveforms (B, T)."""
        normalized = (image - self.visual.mean) / self.visual.std
        shallow = self.shallow(normalized)
        out: Tensor = self.decoder(self.visual(image), self.audio(audio), shallow)
        return out


def pseudo_masks(refined: Tensor, fg_threshold: float = 0.5, bg_threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Binary targets and pixel weights from refined maps in [0, 1].

    Pixels ``>= fg_threshold`` are foreground, ``< bg_threshold`` background; those in between (when
    ``bg_threshold < fg_threshold``) get weight 0 and are ignored by :func:`pseudo_mask_loss`.
    """
    if not 0.0 <= bg_threshold <= fg_threshold <= 1.0:
        raise ValueError(f"need 0 <= bg_threshold <= fg_threshold <= 1, got {bg_threshold}, {fg_threshold}")
    target = (refined >= fg_threshold).to(refined.dtype)
    weight = ((refined >= fg_threshold) | (refined < bg_threshold)).to(refined.dtype)
    return target, weight


def pseudo_mask_loss(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Pixel-wise BCE with logits, averaged over the pixels of non-zero weight.

    Targets and weights at another resolution than ``logits`` are resized (nearest) to it.
    """
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.interpolate(target[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0]
        if weight is not None:
            weight = F.interpolate(weight[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0]
    loss = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    if weight is None:
        return loss.mean()
    weight = weight.to(logits.dtype)
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)
