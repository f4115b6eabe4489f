"""FNAC: false-negative-aware contrastive learning (Sun et al., "Learning Audio-Visual Source Localization via
False Negative Aware Contrastive Learning", CVPR 2023; code: OpenNLPLab/FNAC_AVL)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from avsl.losses import fnac_regularizers
from avsl.methods.base import LocalizationMethod, Signal
from avsl.methods.ezvsl import gathered_mil_infonce
from avsl.nn.heads import AudioEncoder, VisualEncoder, cosine_map, object_guided, objectness_network
from avsl.types import TrainBatch

__all__ = ["FNAC"]


class FNAC(LocalizationMethod):
    """FNAC: EZ-VSL's network and MIL InfoNCE, plus three terms that keep false negatives from being pushed apart.

    In a batch, another clip can sound (or look) like the anchor: InfoNCE still treats it as a negative. FNAC compares
    the row-softmax of the cross-modal MIL logits with those of intra-modal similarities (audio-audio, mean
    image-image, and image-image over the anchor's sounding region), and penalizes their L1 distances
    (:func:`avsl.losses.fnac_regularizers`), each with weight 100 after ``warmup_epochs`` epochs of InfoNCE alone.
    The visual features go through dropout (0.9) before the projection during training. The map, its upsampling and
    the optional object-guided mixing are EZ-VSL's, so an FNAC checkpoint has EZ-VSL's weights and names.

    Args:
        vision_backbone, vision_pretrained, vision_checkpoint, vision_out_index, audio_backbone, audio_frontend,
            sample_rate, frame_size, duration, embed_dim, align_corners, gather_negatives, ogl_backbone,
            ogl_pretrained, ogl_checkpoint, ogl_alpha: as :class:`~avsl.methods.EZVSL`.
        tau: the temperature of the InfoNCE and of every similarity of the regularizers (0.03).
        pool_temperature: how the InfoNCE pools the cosine map (None: its maximum, FNAC's; see
            :class:`~avsl.methods.EZVSL`); the regularizers always take the maximum, as FNAC.
        visual_dropout: dropout on the visual backbone's features before the projection (0.9 in FNAC).
        audio_dropout: dropout on the pooled audio features before the projection (0 in FNAC).
        lambda_fns1, lambda_tns, lambda_fns2: weights of the audio-vs-cross-modal, audio-vs-foreground and
            image-vs-cross-modal terms (100 each).
        foreground_threshold: the self map's min-max level above which a location is foreground (0.6).
        warmup_epochs: epochs of InfoNCE alone before the regularizers start (5 in FNAC's scripts).
        eval_protocol, lr, weight_decay: see :class:`LocalizationMethod` (FNAC: Adam, 1e-4, weight decay 1e-4).
    """

    def __init__(
        self,
        vision_backbone: str = "resnet18",
        vision_pretrained: bool = False,
        vision_checkpoint: str | None = None,
        vision_out_index: int = -1,
        audio_backbone: str = "resnet18",
        audio_frontend: Literal["loglinear", "logmel"] = "loglinear",
        sample_rate: int = 16000,
        frame_size: tuple[int, int] = (224, 224),
        duration: float = 3.0,
        embed_dim: int = 512,
        tau: float = 0.03,
        pool_temperature: float | None = None,
        visual_dropout: float = 0.9,
        audio_dropout: float = 0.0,
        lambda_fns1: float = 100.0,
        lambda_tns: float = 100.0,
        lambda_fns2: float = 100.0,
        foreground_threshold: float = 0.6,
        warmup_epochs: int = 5,
        align_corners: bool = True,
        gather_negatives: bool = False,
        ogl_backbone: str | None = None,
        ogl_pretrained: bool = False,
        ogl_checkpoint: str | None = None,
        ogl_alpha: float = 0.4,
        eval_protocol: str = "ezvsl",
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
    ) -> None:
        # Cosine maps in [-1, 1] (FNAC's map is the cosine over tau; the scale leaves every protocol unchanged).
        signal = Signal(sample_rate, frame_size, duration, (-1.0, 1.0), "bilinear", align_corners)
        super().__init__(signal, eval_protocol=eval_protocol, lr=lr, weight_decay=weight_decay)
        self.save_hyperparameters()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        for name, p in (("visual_dropout", visual_dropout), ("audio_dropout", audio_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if pool_temperature is not None and pool_temperature <= 0:
            raise ValueError(f"pool_temperature must be positive or None, got {pool_temperature}")
        self.tau = tau
        self.pool_temperature = pool_temperature
        self.lambdas = (lambda_fns1, lambda_tns, lambda_fns2)
        self.foreground_threshold = foreground_threshold
        self.warmup_epochs = warmup_epochs
        self.gather_negatives = gather_negatives
        self.ogl_alpha = ogl_alpha
        self.visual = VisualEncoder(
            vision_backbone, vision_pretrained, vision_checkpoint, vision_out_index, embed_dim, visual_dropout
        )
        self.audio = AudioEncoder(
            audio_backbone, audio_frontend, sample_rate, embed_dim=embed_dim, dropout=audio_dropout
        )
        self.ogl = objectness_network(ogl_backbone, ogl_pretrained, ogl_checkpoint)

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """Cosine maps (B, h, w) in [-1, 1]; with OGL in eval mode, the fused map ``m`` in [0, 1] as ``2 m - 1``."""
        sim = cosine_map(self.visual(image), self.audio(audio))
        if self.ogl is None or self.training:
            return sim
        # In cosine units, so that the signal's score_range (-1, 1) holds in both modes: unit_scores gives back m for
        # fixed-threshold protocols (slavc, the extended one) and for XPL's peers; normalizing protocols see m.
        return 2 * object_guided(sim, self.ogl, self.visual.normalize(image), self.ogl_alpha) - 1

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        data = batch["unlabeled"]
        visual, audio = self.visual(data["image"]), self.audio(data["audio"])
        losses = {
            "infonce": gathered_mil_infonce(
                self, visual, audio, self.tau, self.pool_temperature, self.gather_negatives
            ),
        }
        if self.current_epoch >= self.warmup_epochs:
            terms = fnac_regularizers(visual, audio, self.tau, self.foreground_threshold)
            for name, weight, value in zip(("fns1", "tns", "fns2"), self.lambdas, terms):
                losses[name] = weight * value
        return losses
