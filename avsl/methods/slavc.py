"""SLAVC: Mo & Morgado, "A Closer Look at Weakly-Supervised Audio-Visual Source Localization", NeurIPS 2022
(code: stoneMo/SLAVC)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsl.losses import slavc_loss
from avsl.methods.base import LocalizationMethod, Signal
from avsl.nn.heads import AudioEncoder, VisualEncoder, cosine_map, ezvsl_init_, objectness, objectness_network
from avsl.types import TrainBatch

__all__ = ["SLAVC", "SLAVCEncoders", "ema_update_"]

# SLAVC test.py maps the objectness (the channel mean of |ResNet-18 layer4|) from a fixed range (0, 2.5) to [0, 1].
OBJECTNESS_MAX = 2.5


@torch.no_grad()
def ema_update_(target: Iterable[Tensor], source: Iterable[Tensor], momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * source``, tensor by tensor, in place (MoCo's momentum
    encoder; SLAVC ``model.py``, ``_update_momentum_encoder``)."""
    for t, s in zip(target, source, strict=True):
        t.lerp_(s, 1.0 - momentum)


class SLAVCEncoders(nn.Module):
    """SLAVC's encoders: EZ-VSL's backbones with **two** projection heads per modality after a shared dropout.

    ``visual`` is a :class:`~avsl.nn.heads.VisualEncoder` and ``audio`` an :class:`~avsl.nn.heads.AudioEncoder`, both
    without their own projection: the heads are ``visual_heads`` (two 1x1 convs) and ``audio_heads`` (two linears),
    and both heads of a modality see the same dropped-out features (SLAVC ``model.py``, ``forward_img_features``).
    """

    def __init__(
        self,
        vision_backbone: str,
        vision_pretrained: bool,
        vision_checkpoint: str | None,
        vision_out_index: int,
        audio_backbone: str,
        audio_frontend: str,
        sample_rate: int,
        embed_dim: int,
        visual_dropout: float,
        audio_dropout: float,
    ) -> None:
        super().__init__()
        self.visual = VisualEncoder(vision_backbone, vision_pretrained, vision_checkpoint, vision_out_index, None)
        self.audio = AudioEncoder(audio_backbone, audio_frontend, sample_rate, embed_dim=None)
        self.visual_dropout = nn.Dropout(visual_dropout)
        self.audio_dropout = nn.Dropout(audio_dropout)
        channels_v, channels_a = self.visual.backbone.out_channels, self.audio.backbone.out_channels
        self.visual_heads = nn.ModuleList([nn.Conv2d(channels_v, embed_dim, kernel_size=1) for _ in range(2)])
        self.audio_heads = nn.ModuleList([nn.Linear(channels_a, embed_dim) for _ in range(2)])
        ezvsl_init_(self.visual_heads)
        ezvsl_init_(self.audio_heads)

    def visual_parameters(self) -> list[nn.Parameter]:
        return [*self.visual.parameters(), *self.visual_heads.parameters()]

    def audio_parameters(self) -> list[nn.Parameter]:
        return [*self.audio.parameters(), *self.audio_heads.parameters()]

    def encode_visual(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """The two heads' L2-normalized maps (B, D, h, w) of frames in [0, 1]."""
        features = self.visual_dropout(self.visual.features(image))
        first, second = (F.normalize(head(features), dim=1) for head in self.visual_heads)
        return first, second

    def encode_audio(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """The two heads' L2-normalized embeddings (B, D) of waveforms (global max pool, as EZ-VSL)."""
        features = self.audio_dropout(self.audio.features(audio))
        first, second = (F.normalize(head(features), dim=1) for head in self.audio_heads)
        return first, second


class SLAVC(LocalizationMethod):
    """SLAVC: two-head multiple-instance contrastive learning against momentum encoders, with heavy visual dropout.

    Each modality has EZ-VSL's encoder (ResNet-18 for frames, ResNet-18 with global max pooling for spectrograms) with
    two projection heads (:class:`SLAVCEncoders`). For every (image, audio) pair, the first heads' cosine map is a
    softmax over the batch's audios at each location and the second heads', a softmax over locations; their product
    summed over locations scores the pair (:func:`avsl.losses.slavc_loss`). The targets come from momentum
    encoders: exponential moving averages of every encoder part (``momentum_encoders``; not trained, updated at the
    start of each training step, saved in checkpoints). The loss is that of the online images against momentum audios
    plus that of momentum images against online audios. The map is the mean of the two heads' cosine maps, from the
    momentum encoders by default (``use_momentum_eval``, SLAVC's training script), upsampled bicubically.

    The reference's map is the cosine over ``tau``, in ``[-1 / tau, 1 / tau]``; avsl's is the cosine, in [-1, 1]: the
    fixed-range ``slavc`` protocol maps either range to the same scores in [0, 1] (``unit_scores``), and the other
    protocols normalize per map, so the scale changes no metric.

    Args:
        vision_backbone, vision_pretrained, vision_checkpoint, vision_out_index, audio_backbone, audio_frontend,
            sample_rate, frame_size, duration, embed_dim: as :class:`~avsl.methods.EZVSL`.
        tau: the temperature of both softmaxes (0.03).
        visual_dropout: dropout on the visual backbone's features before the heads, online and momentum (0.9).
        audio_dropout: dropout on the pooled audio features before the heads (0).
        visual_momentum, audio_momentum: the EMA rate of the momentum visual and audio encoders (0.999; the
            reference's ``--m_img`` / ``--m_aud``). 1 keeps them at their initialization; 0 makes them copies.
        use_momentum_eval: the map from the momentum encoders (True, SLAVC's ``--use_mom_eval`` of its training script)
            or from the online ones.
        align_corners: of the bicubic upsampling (True, SLAVC ``test.py``).
        ogl_backbone: registry name of the object network for object-guided localization (OGL; None: off).
        ogl_pretrained, ogl_checkpoint: its weights (ImageNet through timm, or a local file).
        ogl_alpha: OGL's weight of the audio-visual score (0.9 in SLAVC's test scripts). SLAVC mixes fixed-range
            scores, not min-max normalized maps as EZ-VSL: ``alpha * (cos + 1) / 2 + (1 - alpha) * obj / 2.5``.
        eval_protocol, lr, weight_decay: see :class:`LocalizationMethod` (SLAVC: Adam, 1e-4, no weight decay).
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
        visual_dropout: float = 0.9,
        audio_dropout: float = 0.0,
        visual_momentum: float = 0.999,
        audio_momentum: float = 0.999,
        use_momentum_eval: bool = True,
        align_corners: bool = True,
        ogl_backbone: str | None = None,
        ogl_pretrained: bool = False,
        ogl_checkpoint: str | None = None,
        ogl_alpha: float = 0.9,
        eval_protocol: str = "slavc",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
    ) -> None:
        # Cosine maps in [-1, 1]; SLAVC test.py upsamples them bicubically with align_corners=True.
        signal = Signal(sample_rate, frame_size, duration, (-1.0, 1.0), "bicubic", align_corners)
        super().__init__(signal, eval_protocol=eval_protocol, lr=lr, weight_decay=weight_decay)
        self.save_hyperparameters()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        for name, p in (("visual_dropout", visual_dropout), ("audio_dropout", audio_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        for name, m in (("visual_momentum", visual_momentum), ("audio_momentum", audio_momentum)):
            if not 0.0 <= m <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {m}")
        if not 0.0 <= ogl_alpha <= 1.0:
            raise ValueError(f"ogl_alpha must be in [0, 1], got {ogl_alpha}")
        self.tau = tau
        self.visual_momentum = visual_momentum
        self.audio_momentum = audio_momentum
        self.use_momentum_eval = use_momentum_eval
        self.ogl_alpha = ogl_alpha
        self.encoders = SLAVCEncoders(
            vision_backbone,
            vision_pretrained,
            vision_checkpoint,
            vision_out_index,
            audio_backbone,
            audio_frontend,
            sample_rate,
            embed_dim,
            visual_dropout,
            audio_dropout,
        )
        # Starts as a copy of the online encoders (SLAVC initialize_momentum_encoder); no gradient, so the base's
        # param_groups leaves it out of the optimizer. Its batch norms run in the module's mode, as the reference's.
        self.momentum_encoders = copy.deepcopy(self.encoders).requires_grad_(False)
        self.ogl = objectness_network(ogl_backbone, ogl_pretrained, ogl_checkpoint)

    @torch.no_grad()
    def update_momentum_encoders(self) -> None:
        """One EMA step of the momentum encoders towards the online ones (the reference's, per training forward)."""
        online, momentum = self.encoders, self.momentum_encoders
        ema_update_(momentum.visual_parameters(), online.visual_parameters(), self.visual_momentum)
        ema_update_(momentum.audio_parameters(), online.audio_parameters(), self.audio_momentum)

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """The mean of the two heads' cosine maps (B, h, w) in [-1, 1]; with OGL in eval mode, the fixed-range mix in
        the same units (its ``unit_scores`` are SLAVC's mixed scores)."""
        encoders = self.momentum_encoders if self.use_momentum_eval else self.encoders
        (v1, v2), (a1, a2) = encoders.encode_visual(image), encoders.encode_audio(audio)
        sim = (cosine_map(v1, a1) + cosine_map(v2, a2)) / 2
        if self.ogl is None or self.training:
            return sim
        obj = objectness(self.ogl, self.encoders.visual.normalize(image)).float()
        obj = self.upsample(obj, (sim.shape[-2], sim.shape[-1]))
        # alpha * cos + (1 - alpha) * (2 obj / 2.5 - 1) is 2 * [alpha * (cos + 1) / 2 + (1 - alpha) * obj / 2.5] - 1:
        # the reference's mix (test.py), in cosine units. Bicubic upsampling is linear, so mixing before it is the same.
        return self.ogl_alpha * sim + (1 - self.ogl_alpha) * (2 * obj / OBJECTNESS_MAX - 1)

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        data = batch["unlabeled"]
        self.update_momentum_encoders()  # first, as the reference's forward in mode 'train'
        image, audio = data["image"], data["audio"]
        visual, audio_ = self.encoders.encode_visual(image), self.encoders.encode_audio(audio)
        with torch.no_grad():
            visual_m = self.momentum_encoders.encode_visual(image)
            audio_m = self.momentum_encoders.encode_audio(audio)
        return {
            "online_image": slavc_loss(*visual, *audio_m, self.tau),
            "online_audio": slavc_loss(*visual_m, *audio_, self.tau),
        }
