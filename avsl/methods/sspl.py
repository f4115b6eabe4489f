"""SSPL: self-supervised predictive learning for sound source localization (Song et al., CVPR 2022)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from avsl.losses import simsiam_loss
from avsl.methods.base import LocalizationMethod, Signal
from avsl.nn.augment import color_jitter, crop_flip, crop_flip_params
from avsl.nn.backbones import create_backbone
from avsl.nn.heads import IMAGENET_MEAN, IMAGENET_STD
from avsl.nn.pcm import PredictiveCodingModule
from avsl.nn.sspl import (
    SSPLAudioEncoder,
    attention_map,
    attention_pool,
    simsiam_predictor,
    simsiam_projector,
)
from avsl.types import TrainBatch

__all__ = ["SSPL"]


class SSPL(LocalizationMethod):
    """SSPL: negative-free (SimSiam-style) audio-visual learning through an attention module, with an optional PCM.

    Two augmented views of a frame go through the visual encoder (and, with ``use_pcm``, the predictive coding module,
    :class:`avsl.nn.pcm.PredictiveCodingModule`). The attention module takes the cosine between the transformed
    audio embedding and every location; the min-max-normalized map weights a sum of the visual features into one
    audio-visual vector per view, which SimSiam's projector and predictor turn into ``z`` and ``p``. The loss is
    ``D(p1, sg z2) / 2 + D(p2, sg z1) / 2`` (negative cosine, stop-gradient on the targets). The localization map is
    the raw cosine map of the (un-augmented) frame, which equals view 1 of the reference's test pipeline.

    Both views are made on the device from the batch's frame: an independent random crop (``view_scale``: resize by
    1.1, crop back) and horizontal flip (``view_flip_p``) per view and sample, as the reference's two independently
    augmented views (:func:`avsl.nn.augment.crop_flip` with crops of scale ``1 / view_scale``).

    Args:
        vision_backbone: registry name of the visual backbone (``vgg16_conv5`` in the reference).
        vision_pretrained: load published ImageNet weights through timm.
        vision_checkpoint: local weights for the visual backbone.
        vision_out_index: which backbone stage gives the map (see :func:`avsl.nn.create_backbone`).
        vision_trainable: train the visual backbone; None (default) trains it only when it starts from random weights
            (the reference freezes its ImageNet VGG16; frozen random weights cannot learn).
        audio_backbone: registry name of the audio backbone (``vggish`` in the reference).
        audio_frontend: ``"vggish"`` (0.96-s log-mel examples), ``"logmel"`` or ``"loglinear"`` (one per clip).
        audio_pretrained: load published weights for the audio backbone through timm (not for ``vggish``).
        audio_checkpoint: local weights for the audio backbone (e.g. torchvggish's ``vggish-10086976.pth``).
        audio_trainable: train the audio backbone; None (default) as for the visual backbone.
        sample_rate: audio sample rate in Hz (must be the data's).
        frame_size: (height, width) of the training frames (224 x 224 in the reference).
        duration: audio window in seconds (3 s in the reference).
        audio_hidden_dim: hidden width of the audio transform g (512).
        use_pcm: insert the predictive coding module between the visual encoder and the attention module.
        pcm_cycles: recurrent PCM cycles after the initial pass (``cycs_pcm = 4`` in the reference).
        proj_dim: width of the SimSiam projector and output of the predictor (2048).
        pred_hidden_dim: bottleneck of the SimSiam predictor (512).
        view_scale: upscaling factor before the random crop of each view (1.1 = 246 / 224 in the reference).
        view_flip_p: probability of a horizontal flip per view (0.5).
        view_color_jitter: strength of an optional random brightness/contrast/saturation jitter per view (applied
            with probability 0.8; 0 = off, as in the reference; 0.4 is the supplement's Table S4 ablation).
        eval_protocol: cIoU protocol of validation and test (``"sspl"``: min-max, fixed threshold 0.5).
        lr: learning rate of g, the PCM and any trainable backbone ("lr2" of the SSPL supplement, Table S1).
        lr_head: learning rate of the SimSiam projector and predictor ("lr1").
        weight_decay: AdamW weight decay (1e-4; the PCM gains have none).
    """

    # The reference's AdamW (decoupled weight decay), betas (0.9, 0.999).
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.AdamW

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        vision_backbone: str = "vgg16_conv5",
        vision_pretrained: bool = False,
        vision_checkpoint: str | None = None,
        vision_out_index: int = -1,
        vision_trainable: bool | None = None,
        audio_backbone: str = "vggish",
        audio_frontend: Literal["vggish", "logmel", "loglinear"] = "vggish",
        audio_pretrained: bool = False,
        audio_checkpoint: str | None = None,
        audio_trainable: bool | None = None,
        sample_rate: int = 16000,
        frame_size: tuple[int, int] = (224, 224),
        duration: float = 3.0,
        audio_hidden_dim: int = 512,
        use_pcm: bool = False,
        pcm_cycles: int = 4,
        proj_dim: int = 2048,
        pred_hidden_dim: int = 512,
        view_scale: float = 1.1,
        view_flip_p: float = 0.5,
        view_color_jitter: float = 0.0,
        eval_protocol: str = "sspl",
        lr: float = 5e-4,
        lr_head: float = 2e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        # Cosine maps in [-1, 1]; the reference resizes its 14x14 map with OpenCV's bilinear INTER_LINEAR (half-pixel
        # centres: align_corners=False).
        signal = Signal(sample_rate, frame_size, duration, (-1.0, 1.0), "bilinear", False)
        super().__init__(signal, eval_protocol=eval_protocol, lr=lr, weight_decay=weight_decay)
        self.save_hyperparameters()
        if view_scale < 1.0 or not 0.0 <= view_flip_p <= 1.0:
            raise ValueError(f"need view_scale >= 1 and view_flip_p in [0, 1], got {view_scale}, {view_flip_p}")
        self.lr_head = lr_head
        if audio_frontend == "vggish" and duration < 0.975:  # else an error at the first forward, naming samples
            raise ValueError(
                f"the 'vggish' front-end needs duration >= 0.975 s (one 0.96-s example of 25-ms windows), "
                f"got {duration}"
            )
        if not 0.0 <= view_color_jitter < 1.0:
            raise ValueError(f"view_color_jitter must be in [0, 1), got {view_color_jitter}")
        self.view_scale, self.view_flip_p, self.view_color_jitter = view_scale, view_flip_p, view_color_jitter
        self.visual = create_backbone(vision_backbone, 3, vision_pretrained, vision_checkpoint, vision_out_index)
        channels = self.visual.out_channels
        self.audio = SSPLAudioEncoder(
            audio_backbone,
            audio_frontend,
            sample_rate,
            audio_pretrained,
            audio_checkpoint,
            hidden_dim=audio_hidden_dim,
            out_dim=channels,
        )
        self.pcm = PredictiveCodingModule(channels, self.audio.embed_dim, pcm_cycles) if use_pcm else None
        self.projector = simsiam_projector(channels, proj_dim)
        self.predictor = simsiam_predictor(proj_dim, pred_hidden_dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        # The reference keeps its pretrained VGG16 and VGGish frozen (fine_tune=0: in no optimizer group). Random
        # backbones are trained by default, because frozen random features cannot localize anything.
        def has_weights(pretrained: bool, checkpoint: str | None) -> bool:
            return pretrained or checkpoint is not None

        self.frozen: list[nn.Module] = []
        for module, trainable, loaded in (
            (self.visual, vision_trainable, has_weights(vision_pretrained, vision_checkpoint)),
            (self.audio.backbone, audio_trainable, has_weights(audio_pretrained, audio_checkpoint)),
        ):
            if not (trainable if trainable is not None else not loaded):
                module.requires_grad_(False)
                self.frozen.append(module)
        self.train()

    def train(self, mode: bool = True) -> SSPL:
        # Frozen backbones stay in eval mode, so that their BatchNorm statistics (if any) do not drift either.
        super().train(mode)
        for module in getattr(self, "frozen", []):
            module.eval()
        return self

    # ------------------------------------------------------------------------------------------------ model
    def visual_map(self, image: Tensor, audio_raw: Tensor) -> Tensor:
        """The visual map that meets the audio in the attention module: backbone features, through the PCM if any."""
        fmap: Tensor = self.visual((image - self.mean) / self.std)
        return fmap if self.pcm is None else self.pcm(fmap, audio_raw)

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """Raw cosine maps (B, h, w) in [-1, 1] of the attention module for the given frames."""
        audio_raw, audio_query = self.audio(audio)
        return attention_map(self.visual_map(image, audio_raw), audio_query)

    def view_embeddings(self, image: Tensor, audio_raw: Tensor, audio_query: Tensor) -> tuple[Tensor, Tensor]:
        """Projector and predictor outputs ``(z, p)`` of one view: AM map -> weighted sum pooling -> MLPs."""
        fmap = self.visual_map(image, audio_raw)
        pooled = attention_pool(fmap, attention_map(fmap, audio_query))
        z: Tensor = self.projector(pooled)
        p: Tensor = self.predictor(z)
        return z, p

    def augment_view(self, image: Tensor) -> Tensor:
        """One random view of a batch of frames: crop + flip (and colour jitter when enabled), per sample."""
        scale = 1.0 / self.view_scale  # resize by view_scale, crop back to the frame size
        params = crop_flip_params(image.shape[0], scale, self.view_flip_p, image.device, max_scale=scale)
        return color_jitter(crop_flip(image, params), self.view_color_jitter, saturation=True, p=0.8)

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        data = batch["unlabeled"]
        image = data["image"]
        if image.shape[0] < 2:  # else BatchNorm1d's "Expected more than 1 value per channel", which names neither
            raise ValueError(
                f"SSPL needs 2 clips or more in a training batch (its SimSiam heads' batch norms), "
                f"got {image.shape[0]}: "
                "use batch_size >= 2, and drop_last=True (AVDataModule's default) so that no last batch has one clip"
            )
        audio_raw, audio_query = self.audio(data["audio"])
        # Two independently augmented views; each goes through the network alone, so that the BatchNorms of the PCM
        # and the heads see one view per forward pass, as in the reference.
        views = [self.augment_view(image) for _ in range(2)]
        (z1, p1), (z2, p2) = (self.view_embeddings(view, audio_raw, audio_query) for view in views)
        return {"simsiam": simsiam_loss(p1, p2, z1, z2)}

    # ------------------------------------------------------------------------------------------------ optim
    def param_groups(self) -> list[dict[str, Any]]:
        # The reference's parameter groups (methods.md §2.6, SSPL supplement Table S1): the SimSiam head at lr1, g, the
        # PCM and any trainable backbone at lr2, the PCM gains at lr2 without weight decay.
        head = {id(p) for m in (self.projector, self.predictor) for p in m.parameters()}
        gains = {id(self.pcm.ff_gain), id(self.pcm.fb_rate)} if self.pcm is not None else set()
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if id(p) not in head and id(p) not in gains], "lr": self.lr},
            {"params": [p for p in trainable if id(p) in head], "lr": self.lr_head},
            {"params": [p for p in trainable if id(p) in gains], "lr": self.lr, "weight_decay": 0.0},
        ]
        return [{"weight_decay": self.weight_decay, **g} for g in groups if g["params"]]
