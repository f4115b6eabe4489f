"""A custom method in about 40 lines: train it with `avsl fit --model examples.custom_method.MeanPoolVSL -c synthav`.

It subclasses LocalizationMethod directly (one inheritance level), reuses avsl's encoders, and implements only the
contract: `forward` (a raw map per sample) and `training_losses` (named loss terms). Evaluation, `localize`,
checkpoints, logging and the CLI come from the base class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from avsl.methods import LocalizationMethod, Signal
from avsl.nn.heads import AudioEncoder, VisualEncoder, cosine_map
from avsl.types import TrainBatch


class MeanPoolVSL(LocalizationMethod):
    """Audio-visual InfoNCE on the *mean*-pooled cosine map (EZ-VSL pools with the max)."""

    def __init__(
        self,
        vision_backbone: str = "tiny_cnn",
        audio_backbone: str = "tiny_cnn",
        audio_frontend: str = "logmel",
        sample_rate: int = 16000,
        frame_size: tuple[int, int] = (128, 128),  # the signal: that of `-c synthav`
        duration: float = 1.0,
        embed_dim: int = 64,
        tau: float = 0.07,
        eval_protocol: str = "ezvsl",
        lr: float = 1e-3,
    ) -> None:
        super().__init__(Signal(sample_rate, frame_size, duration), eval_protocol=eval_protocol, lr=lr)
        self.save_hyperparameters()
        self.visual = VisualEncoder(vision_backbone, embed_dim=embed_dim)
        self.audio = AudioEncoder(audio_backbone, audio_frontend, sample_rate, embed_dim=embed_dim)
        self.tau = tau

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        return cosine_map(self.visual(image), self.audio(audio))

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        data = batch["unlabeled"]
        visual, audio = self.visual(data["image"]), self.audio(data["audio"])
        logits = torch.einsum("ichw,jc->ij", visual, audio) / visual[0, 0].numel() / self.tau
        target = torch.arange(logits.shape[0], device=logits.device)
        return {"infonce": F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)}
