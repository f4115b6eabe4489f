"""SSL-align: sound source localization by cross-modal alignment (Senocak, Ryu, Kim, Oh, Pfister and Chung, "Sound
Source Localization is All about Cross-Modal Alignment", ICCV 2023; code, inference only: kaistmm/SSLalignment)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from avsl.losses import mil_similarity, multi_positive_infonce
from avsl.methods.base import LocalizationMethod, Signal
from avsl.nn.augment import color_jitter, crop_flip, crop_flip_params
from avsl.nn.heads import AudioEncoder, VisualEncoder, cosine_map
from avsl.types import TrainBatch

__all__ = ["SSLAlign", "neighbour_mask"]


def neighbour_mask(visual: Tensor, audio: Tensor, audio_neighbours: int, image_neighbours: int) -> Tensor:
    """Which clips of a batch are semantically alike: (B, B) bool, symmetric, False on the diagonal.

    Clip ``j`` is a neighbour of clip ``i`` when it is among the ``audio_neighbours`` other clips whose audio
    embeddings are the most similar (cosine) to ``a_i``, or among the ``image_neighbours`` whose spatially averaged,
    L2-normalized visual maps are the most similar to ``v_i``; the relation is made symmetric, so that a pair is
    positive in both directions of the loss. No gradient flows through the choice.

    Args:
        visual: (B, C, h, w) L2-normalized visual maps.
        audio: (B, C) L2-normalized audio embeddings.
        audio_neighbours, image_neighbours: k of each modality (0: none; at most B - 1 are taken).
    """
    b = audio.shape[0]
    mask = torch.zeros(b, b, dtype=torch.bool, device=audio.device)
    with torch.no_grad():
        embeddings = (audio.float(), F.normalize(visual.float().mean(dim=(2, 3)), dim=1))
        for emb, k in zip(embeddings, (audio_neighbours, image_neighbours)):
            k = min(k, b - 1)
            if k <= 0:
                continue
            sim = (emb @ emb.t()).fill_diagonal_(float("-inf"))
            mask.scatter_(1, sim.topk(k, dim=1).indices, True)
    return mask | mask.t()


class SSLAlign(LocalizationMethod):
    """SSL-align: LVS's network trained to align each frame with several positive sounds, not one.

    At inference SSL-align is LVS's network (kaistmm/SSLalignment ``test.py`` loads its ``ours*`` checkpoints into
    ``model_lvs.AVENet``): ResNet-18 encoders for frames and spectrograms whose ``layer4`` keeps stride 16 without
    dilation (``resnet18_lvs``), no projections, an L2-normalized 512-channel 14 x 14 visual map and a globally
    max-pooled, L2-normalized audio embedding; the map is their cosine (the paired sound), resized bilinearly. The
    spectrogram is LVS's log-linear one with ``noverlap=353`` (``datasets_lvs.py``): the ``loglinear_hop159`` front-end.

    Training (the code is not released: a reconstruction of the paper's idea). The similarity of a frame and a sound
    is the max-pooled (or smooth-max) cosine map of EZ-VSL (:func:`avsl.losses.mil_similarity`), and a symmetric
    multi-positive InfoNCE (:func:`avsl.losses.multi_positive_infonce`) pulls together, for each clip, (a) its own
    frame and sound, (b) a second, differently augmented view of them (a crop, flip and brightness/contrast jitter of
    the frame, a circular shift and gain of the sound, drawn on the batch tensors), every frame with every sound of
    the clip's two views, and (c) its semantically similar clips: its nearest neighbours in the batch by audio-audio
    and image-image similarity of the model's own embeddings (:func:`neighbour_mask`), after
    ``neighbour_warmup_epochs`` epochs. The paper mines neighbours over the dataset with pretrained encoders; in-batch
    neighbours of the model's own embeddings need neither a second network nor a pass over the data, at the price of
    meaningless neighbours early in training, hence the warm-up. Every other pair of the batch is a negative.

    Args:
        vision_backbone: registry name of the visual backbone (``resnet18_lvs``: LVS's ResNet-18, stride 16).
        vision_pretrained: ImageNet weights through timm (SSL-align's ``ours_sup_previs`` checkpoint started from
            them; ``model_lvs.AVENet`` asks for them, but its ``base_models.resnet18`` ignores the flag).
        vision_checkpoint: local weights for the visual backbone instead.
        vision_out_index: which backbone stage gives the map (-1: the last).
        audio_backbone: registry name of the audio backbone (1-channel input, from scratch).
        audio_frontend: ``"loglinear_hop159"`` (SSL-align's spectrogram), ``"loglinear"`` (LVS's and EZ-VSL's
            ``noverlap=274``) or ``"logmel"``.
        sample_rate: audio sample rate in Hz (must be the data's; 16 kHz in the reference).
        frame_size: (height, width) of the training frames (224 x 224).
        duration: audio window in seconds (3 s: ``datasets_lvs.py`` takes seconds 3.5 to 6.5 of the 10-s clip).
        embed_dim: None (the reference: no projection, the backbones' 512 channels) or the width of a 1x1-conv /
            linear projection of each encoder.
        tau: temperature of the InfoNCE (reconstructed: 0.07, the logit scale of LVS's ``AVENet``).
        pool_temperature: how the cosine map is pooled into a pair's similarity: None, its maximum (EZ-VSL); T > 0,
            the smooth maximum ``T log mean exp(cos / T)``.
        augmented_view: add the second view of every clip (positives (b)); False trains on the given batch only.
        view_min_scale: the smallest side of the second view's square crop, a fraction of the frame side.
        view_flip_p: probability of a horizontal flip of the second view.
        view_jitter: strength of its brightness and contrast jitter (saturation and hue are kept: colour is part of
            what an object is).
        view_gain_db: its random gain, uniform in [-view_gain_db, view_gain_db] dB; its sound is also rolled by a
            uniformly drawn number of samples.
        audio_neighbours, image_neighbours: the k nearest neighbours by audio and by image similarity that are
            positives of each clip (0: none).
        neighbour_weight: the weight of a neighbour's pairs among a row's positives (1: as the clip's own).
        neighbour_warmup_epochs: epochs before the neighbours are used.
        align_corners: upsampling of the 14 x 14 map: False as ``validate_lvs`` on VGG-SS (``cv2.resize``,
            ``INTER_LINEAR``); its other test sets (Flickr, IS3, ...) use ``align_corners=True``.
        eval_protocol: the cIoU protocol (``"sslalign"``; ``"sslalign_adaptive"`` for the adaptive threshold).
        lr, weight_decay: see :class:`LocalizationMethod`.
    """

    def __init__(
        self,
        vision_backbone: str = "resnet18_lvs",
        vision_pretrained: bool = False,
        vision_checkpoint: str | None = None,
        vision_out_index: int = -1,
        audio_backbone: str = "resnet18_lvs",
        audio_frontend: Literal["loglinear_hop159", "loglinear", "logmel"] = "loglinear_hop159",
        sample_rate: int = 16000,
        frame_size: tuple[int, int] = (224, 224),
        duration: float = 3.0,
        embed_dim: int | None = None,
        tau: float = 0.07,
        pool_temperature: float | None = None,
        augmented_view: bool = True,
        view_min_scale: float = 0.7,
        view_flip_p: float = 0.5,
        view_jitter: float = 0.4,
        view_gain_db: float = 6.0,
        audio_neighbours: int = 1,
        image_neighbours: int = 1,
        neighbour_weight: float = 1.0,
        neighbour_warmup_epochs: int = 1,
        align_corners: bool = False,
        eval_protocol: str = "sslalign",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
    ) -> None:
        signal = Signal(sample_rate, frame_size, duration, (-1.0, 1.0), "bilinear", align_corners)
        super().__init__(signal, eval_protocol=eval_protocol, lr=lr, weight_decay=weight_decay)
        self.save_hyperparameters()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if pool_temperature is not None and pool_temperature <= 0:
            raise ValueError(f"pool_temperature must be positive or None, got {pool_temperature}")
        if not 0.0 < view_min_scale <= 1.0:
            raise ValueError(f"view_min_scale must be in (0, 1], got {view_min_scale}")
        if min(audio_neighbours, image_neighbours, neighbour_warmup_epochs) < 0 or neighbour_weight < 0:
            raise ValueError(
                "audio_neighbours, image_neighbours, neighbour_warmup_epochs and neighbour_weight must be >= 0"
            )
        if view_gain_db < 0:
            raise ValueError(f"view_gain_db must be >= 0, got {view_gain_db}")
        self.tau = tau
        self.pool_temperature = pool_temperature
        self.augmented_view = augmented_view
        self.view_min_scale = view_min_scale
        self.view_flip_p = view_flip_p
        self.view_jitter = view_jitter
        self.view_gain_db = view_gain_db
        self.neighbours = (audio_neighbours, image_neighbours)
        self.neighbour_weight = neighbour_weight
        self.neighbour_warmup_epochs = neighbour_warmup_epochs
        self.visual = VisualEncoder(vision_backbone, vision_pretrained, vision_checkpoint, vision_out_index, embed_dim)
        self.audio = AudioEncoder(audio_backbone, audio_frontend, sample_rate, embed_dim=embed_dim)

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """Cosine maps (B, h, w) in [-1, 1] of each frame with its own sound (``AVENet``'s ``A``)."""
        return cosine_map(self.visual(image), self.audio(audio))

    def second_view(self, image: Tensor, wave: Tensor) -> tuple[Tensor, Tensor]:
        """Another random view of every clip: frames cropped, flipped and jittered; sounds rolled and scaled."""
        b, t = wave.shape
        params = crop_flip_params(b, self.view_min_scale, self.view_flip_p, image.device)
        image = color_jitter(crop_flip(image, params), self.view_jitter, saturation=False)
        shift = torch.randint(0, t, (b, 1), device=wave.device)
        wave = wave.gather(1, (torch.arange(t, device=wave.device) - shift) % t)  # a circular shift per clip
        gain_db = (2 * torch.rand(b, 1, device=wave.device) - 1) * self.view_gain_db
        return image, wave * 10.0 ** (gain_db / 20.0)

    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        data = batch["unlabeled"]
        image, wave = data["image"], data["audio"]
        b = image.shape[0]
        clip = torch.arange(b, device=image.device)
        if self.augmented_view:
            view_image, view_wave = self.second_view(image, wave)
            image, wave, clip = torch.cat([image, view_image]), torch.cat([wave, view_wave]), clip.repeat(2)
        visual, audio = self.visual(image), self.audio(wave)
        # (a) and (b): every frame with every sound of its own clip; (c) its neighbours' pairs, at neighbour_weight
        weights = (clip[:, None] == clip[None, :]).float()
        if self.current_epoch >= self.neighbour_warmup_epochs and any(self.neighbours):
            similar = neighbour_mask(visual[:b], audio[:b], *self.neighbours)  # found on the first view
            weights = weights + self.neighbour_weight * similar[clip][:, clip].float()
        logits = mil_similarity(visual, audio, self.pool_temperature) / self.tau  # rows: frames, columns: sounds
        return {"infonce": multi_positive_infonce(logits, weights) + multi_positive_infonce(logits.t(), weights.t())}
