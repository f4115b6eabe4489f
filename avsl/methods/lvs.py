"""LVS: localizing visual sounds the hard way (Chen, Xie, Afouras, Nagrani, Vedaldi and Zisserman, CVPR 2021; code:
hche11/Localizing-Visual-Sounds-the-Hard-Way)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from avsl.losses import lvs_trimap_logits
from avsl.methods.base import LocalizationMethod, Signal
from avsl.nn.heads import AudioEncoder, VisualEncoder, cosine_map
from avsl.types import TrainBatch

__all__ = ["LVS"]


class LVS(LocalizationMethod):
    """LVS: contrast a sound with the image region it matches, against other sounds and the image's own background.

    The cosine map of a frame with its sound is cut by two soft thresholds into a positive region (above ``epsilon``),
    a hard-negative region (below ``epsilon2``) and an uncertain band that counts for neither (the "tri-map"). The
    positive logit is the map's mean over the positive region; the negatives are the other sounds' means over their
    own positive regions of the same frame, and the map's mean over the hard-negative region
    (:func:`avsl.losses.lvs_trimap_logits`). The loss is the cross-entropy of the positive among them. Both encoders
    are ResNet-18s with ``layer4`` at stride 1 (``resnet18_lvs``: 14 x 14 maps of 224-px frames) without a projection:
    the 512 channels of the backbone, L2-normalized; the sound is their global maximum. The map is the cosine map,
    upsampled bilinearly (``align_corners=False``, as the reference's ``cv2.resize``).

    Only LVS's test code is published: the network, the logits and the map are checked against it
    (``tests/test_lvs.py``); the cross-entropy with target 0 is the paper's loss, reconstructed (docs/methods/lvs.md).

    Args:
        vision_backbone: registry name of the visual backbone (``resnet18_lvs`` in LVS).
        vision_pretrained: load ImageNet weights through timm (the paper starts the visual network from ImageNet).
        vision_checkpoint: load visual backbone weights from a local file instead.
        vision_out_index: which backbone stage gives the map (-1: the last).
        audio_backbone: registry name of the audio backbone (1-channel input, from scratch).
        audio_frontend: ``"loglinear"`` (LVS's 257-bin spectrogram) or ``"logmel"`` (cheaper).
        sample_rate: audio sample rate in Hz (must be the data's).
        frame_size: (height, width) of the training frames (224 x 224).
        duration: audio window in seconds (10 s in LVS's data loader).
        embed_dim: a projection of both encoders to this dimension, or None for none (LVS).
        epsilon: the cosine above which a location is positive (0.65).
        epsilon2: the cosine below which a location is a hard negative, with ``trimap`` (0.4).
        trimap: hard negatives below ``epsilon2`` (True), or below ``epsilon`` (no uncertain band).
        hard_negatives: contrast with the frame's own hard-negative region (True; LVS's ``Neg``).
        tau: the sharpness of the soft thresholds (0.03).
        temperature: the temperature of the logits (0.07).
        eval_protocol, lr, weight_decay: see :class:`LocalizationMethod` (``lvs``: LVS's ``test.py``).
    """

    def __init__(
        self,
        vision_backbone: str = "resnet18_lvs",
        vision_pretrained: bool = False,
        vision_checkpoint: str | None = None,
        vision_out_index: int = -1,
        audio_backbone: str = "resnet18_lvs",
        audio_frontend: Literal["loglinear", "logmel"] = "loglinear",
        sample_rate: int = 16000,
        frame_size: tuple[int, int] = (224, 224),
        duration: float = 10.0,
        embed_dim: int | None = None,
        epsilon: float = 0.65,
        epsilon2: float = 0.4,
        trimap: bool = True,
        hard_negatives: bool = True,
        tau: float = 0.03,
        temperature: float = 0.07,
        eval_protocol: str = "lvs",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
    ) -> None:
        # Cosine maps in [-1, 1]; LVS's test.py resizes the 14 x 14 map with cv2.INTER_LINEAR (half-pixel centres).
        signal = Signal(sample_rate, frame_size, duration, (-1.0, 1.0), "bilinear", False)
        super().__init__(signal, eval_protocol=eval_protocol, lr=lr, weight_decay=weight_decay)
        self.save_hyperparameters()
        for name, value in (("tau", tau), ("temperature", temperature)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if trimap and epsilon2 > epsilon:
            raise ValueError(f"epsilon2 ({epsilon2}) must not exceed epsilon ({epsilon})")
        self.epsilon = epsilon
        self.epsilon2 = epsilon2
        self.trimap = trimap
        self.hard_negatives = hard_negatives
        self.tau = tau
        self.temperature = temperature
        self.visual = VisualEncoder(vision_backbone, vision_pretrained, vision_checkpoint, vision_out_index, embed_dim)
        self.audio = AudioEncoder(audio_backbone, audio_frontend, sample_rate, embed_dim=embed_dim)

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """Cosine maps (B, h, w) in [-1, 1]: LVS's ``A``."""
        return cosine_map(self.visual(image), self.audio(audio))

    def logits(self, visual: Tensor, audio: Tensor) -> Tensor:
        """LVS's (B, B + 2) logits of encoded frames and sounds (B + 1 without ``hard_negatives``), target 0."""
        return lvs_trimap_logits(
            visual, audio, self.epsilon, self.epsilon2, self.tau, self.temperature, self.trimap, self.hard_negatives
        )

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        data = batch["unlabeled"]
        logits = self.logits(self.visual(data["image"]), self.audio(data["audio"]))
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return {"trimap": F.cross_entropy(logits, target)}
