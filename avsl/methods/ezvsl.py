"""EZ-VSL: localizing visual sounds the easy way (Mo & Morgado, ECCV 2022)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from avsl.losses import mil_infonce
from avsl.methods.base import LocalizationMethod, Signal
from avsl.nn.heads import AudioEncoder, VisualEncoder, cosine_map, object_guided, objectness_network
from avsl.types import TrainBatch

__all__ = ["EZVSL", "gathered_mil_infonce"]


def gathered_mil_infonce(
    module: LocalizationMethod,
    visual: Tensor,
    audio: Tensor,
    tau: float,
    pool_temperature: float | None,
    gather_negatives: bool,
) -> Tensor:
    """EZ-VSL's MIL InfoNCE of ``module``'s batch; with ``gather_negatives`` under DDP, against every process's pairs.

    Every process computes the loss of its own rows against all columns. ``all_gather`` with ``sync_grads`` keeps the
    gradient path to the other processes' features (Lightning docs, ``LightningModule.all_gather``). EZ-VSL and USPL's
    coarse stage share it.
    """
    world = module.trainer.world_size if module._trainer is not None else 1
    if not (gather_negatives and world > 1):
        return mil_infonce(visual, audio, tau, pool_temperature=pool_temperature)
    v_all = torch.as_tensor(module.all_gather(visual, sync_grads=True)).flatten(0, 1)
    a_all = torch.as_tensor(module.all_gather(audio, sync_grads=True)).flatten(0, 1)
    offset = module.global_rank * visual.shape[0]
    return mil_infonce(
        visual, audio, tau, visual_all=v_all, audio_all=a_all, offset=offset, pool_temperature=pool_temperature
    )


class EZVSL(LocalizationMethod):
    """EZ-VSL: multiple-instance InfoNCE with max-pooled audio-visual similarity.

    A visual map ``v`` (backbone -> 1x1 conv -> L2) and an audio embedding ``a`` (spectrogram -> CNN -> global max
    pool -> linear -> L2) are aligned with a symmetric InfoNCE whose similarity is the *maximum* over locations of the
    cosine map, so only the best-matching region of each frame has to agree with the sound. The localization map is
    the cosine map of the paired sound. Optional object-guided localization (OGL) mixes in the activation map of a
    frozen ImageNet backbone at evaluation time.

    Args:
        vision_backbone: registry name of the visual backbone (``avsl.nn.create_backbone``).
        vision_pretrained: load published ImageNet weights through timm (needs the network once).
        vision_checkpoint: load visual backbone weights from a local file instead.
        vision_out_index: which backbone stage gives the map (-1 last; -2 for stride 16 on ResNets).
        audio_backbone: registry name of the audio backbone (1-channel input, trained from scratch by default).
        audio_frontend: ``"loglinear"`` (the reference 257-bin spectrogram) or ``"logmel"`` (64 mel bands, cheaper).
        sample_rate: audio sample rate in Hz (must be the data's).
        frame_size: (height, width) of the training frames (224 x 224 in the reference).
        duration: audio window in seconds (3 s in the reference).
        embed_dim: dimension of the shared embedding space.
        tau: InfoNCE temperature (0.03 in the reference).
        pool_temperature: how the cosine map is pooled into the pair's similarity: None takes its maximum (the
            reference); a temperature T > 0 takes the smooth maximum ``T log mean exp(cos / T)``
            (:func:`avsl.losses.mil_similarity`), which asks several cells of the source to match, not one.
        align_corners: the upsampling of maps: True as EZ-VSL's ``test.py``; False draws each cell's value at the
            cell's centre, the right geometry for backbones whose features are centred on their cells (``tiny_cnn``).
        gather_negatives: under DDP, contrast each sample against the batches of all processes (an all-gather that
            keeps gradients), so the number of negatives grows with the world size.
        ogl_backbone: registry name of the OGL object backbone, or None to disable OGL.
        ogl_pretrained: load ImageNet weights for the OGL backbone through timm.
        ogl_checkpoint: local weights for the OGL backbone.
        ogl_alpha: OGL mixing weight of the audio-visual map (0.4 in EZ-VSL's ``test.py``).
        eval_protocol, lr, weight_decay: see :class:`LocalizationMethod`.
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
        align_corners: bool = True,
        gather_negatives: bool = False,
        ogl_backbone: str | None = None,
        ogl_pretrained: bool = False,
        ogl_checkpoint: str | None = None,
        ogl_alpha: float = 0.4,
        eval_protocol: str = "ezvsl",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
    ) -> None:
        # Cosine maps in [-1, 1]; EZ-VSL's test.py upsamples the 7x7 map bilinearly with align_corners=True.
        signal = Signal(sample_rate, frame_size, duration, (-1.0, 1.0), "bilinear", align_corners)
        super().__init__(signal, eval_protocol=eval_protocol, lr=lr, weight_decay=weight_decay)
        self.save_hyperparameters()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if not 0.0 <= ogl_alpha <= 1.0:
            raise ValueError(f"ogl_alpha must be in [0, 1], got {ogl_alpha}")
        if pool_temperature is not None and pool_temperature <= 0:
            raise ValueError(f"pool_temperature must be positive or None, got {pool_temperature}")
        self.tau = tau
        self.pool_temperature = pool_temperature
        self.gather_negatives = gather_negatives
        self.ogl_alpha = ogl_alpha
        self.visual = VisualEncoder(vision_backbone, vision_pretrained, vision_checkpoint, vision_out_index, embed_dim)
        self.audio = AudioEncoder(audio_backbone, audio_frontend, sample_rate, embed_dim=embed_dim)
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
        return {"infonce": self.contrastive_loss(visual, audio)}

    def contrastive_loss(self, visual: Tensor, audio: Tensor) -> Tensor:
        """The MIL InfoNCE of a batch, with negatives from every process when ``gather_negatives`` is set."""
        return gathered_mil_infonce(self, visual, audio, self.tau, self.pool_temperature, self.gather_negatives)
