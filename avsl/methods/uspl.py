"""USPL: unsupervised sounding pixel learning (Zhang, Ji, Yang, EMNLP 2023), an avsl reconstruction.

Only the paper's abstract is public (methods.md §5 and its Addendum §3): a three-stage pipeline of (1) mask-augmented
multiple-instance audio-visual contrastive learning giving coarse sounding maps, (2) unsupervised sounding map
refinement (SMR) by visual semantic affinity between adjacent pixels, and (3) sounding pixel segmentation (SPS)
trained on the refined maps. Every equation, network and hyperparameter below is our reconstruction (methods.md §5.2,
an AffinityNet-style reading of the abstract); docs/methods/uspl.md lists the choices.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from avsl.methods.base import LocalizationMethod, Signal
from avsl.methods.checkpoints import read_checkpoint
from avsl.methods.ezvsl import gathered_mil_infonce
from avsl.nn.affinity import AffinityNet, affinity_loss, pairwise_affinity, refine_map, seeds_from_map
from avsl.nn.heads import AudioEncoder, VisualEncoder, cosine_map
from avsl.nn.maps import minmax_normalize
from avsl.nn.masking import mask_augment, random_block_mask
from avsl.nn.segmentation import SoundingSegmenter, pseudo_mask_loss, pseudo_masks
from avsl.types import TrainBatch

__all__ = ["STAGES", "USPL", "Stage", "run_pipeline"]

Stage = Literal["coarse", "refine", "segment"]
STAGES: tuple[Stage, ...] = get_args(Stage)

# The networks each stage needs from the previous stages' checkpoint (see USPL.load_previous_stage).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "coarse": ("visual", "audio"),
    "refine": ("visual", "audio"),
    "segment": ("visual", "audio", "affinity"),
}


def _copy_matching(src: nn.Module, dst: nn.Module) -> None:
    """Copy every tensor of ``dst``'s state dict from ``src``'s entry of the same name (a shallower cut of the same
    registry backbone has a subset of its keys)."""
    source = src.state_dict()
    target = dst.state_dict()
    missing = [k for k, v in target.items() if k not in source or source[k].shape != v.shape]
    if missing:
        raise ValueError(f"cannot initialize {type(dst).__name__} from {type(src).__name__}: {missing[:3]} differ")
    dst.load_state_dict({k: source[k] for k in target})


class USPL(LocalizationMethod):
    """USPL-style three-stage unsupervised sounding pixel learning, one stage per training run.

    - ``stage="coarse"``: EZ-VSL-style encoders trained with the multiple-instance InfoNCE on the frame and on a
      mask-augmented copy with random blocks hidden; the map is the cosine map (B, h, w) in [-1, 1].
    - ``stage="refine"`` (SMR): the stage-1 encoders are frozen; an :class:`~avsl.nn.affinity.AffinityNet` learns
      inter-pixel affinities from confident foreground/background seeds of the coarse maps, and the map is the coarse
      map propagated by a random walk over those affinities, at the affinity resolution.
    - ``stage="segment"`` (SPS): stage-1 and stage-2 networks are frozen and produce refined maps on the fly; their
      thresholded maps supervise an audio-conditioned :class:`~avsl.nn.segmentation.SoundingSegmenter`.

    Hand-over between stages is by checkpoint: ``init_from`` names the checkpoint of the previous stage (any avsl
    checkpoint whose state dict holds the needed networks; an EZ-VSL checkpoint with the same encoders can seed the
    coarse stage). Its weights are loaded when the model is built; ``init_from`` is not a saved hyperparameter, so
    the checkpoints of a later stage load without the earlier file. See :func:`run_pipeline` for all three stages in
    one call.

    Raw scores of every stage lie in [-1, 1] (``score_range``): the cosine map, ``2 * refined - 1`` and
    ``tanh(logit / 2) = 2 * sigmoid(logit) - 1``, so fixed-range protocols threshold the refined map and the
    segmentation probability at 0.5.

    Args:
        stage: ``"coarse"``, ``"refine"`` or ``"segment"``.
        init_from: checkpoint of the previous stage (required in practice for ``refine`` and ``segment``).
        vision_backbone, vision_pretrained, vision_checkpoint, vision_out_index: the stage-1 visual encoder
            (``avsl.nn.create_backbone`` names; pretrained weights matter only for the coarse stage, later stages
            load the trained weights).
        audio_backbone, audio_frontend, sample_rate: the stage-1 audio encoder (``sample_rate`` must be the data's).
        frame_size: (height, width) of the training frames.
        duration: audio window in seconds.
        embed_dim: shared embedding dimension.
        tau: InfoNCE temperature.
        pool_temperature: pooling of the cosine maps in the InfoNCE: None for the maximum (EZ-VSL), T > 0 for the
            smooth maximum of :func:`avsl.losses.mil_similarity`.
        gather_negatives: under DDP, contrast against the batches of all processes (as in EZ-VSL).
        mask_grid: mask augmentation partitions each frame into ``mask_grid x mask_grid`` blocks...
        mask_ratio: ...and hides this fraction of them.
        lambda_full: weight of the InfoNCE of the full frames.
        lambda_masked: weight of the InfoNCE of the mask-augmented frames (0 disables mask augmentation).
        affinity_out_index: backbone stage of the affinity embeddings and of the segmenter's skip connection (their
            stride is the resolution of refined and segmentation maps).
        affinity_dim: dimension of the affinity embeddings.
        affinity_radius: neighbourhood radius (in affinity-map pixels) of affinities and the random walk.
        affinity_deep: feed the frozen stage-1 visual features to the affinity network besides its shallow stage.
        seed_fg, seed_bg: coarse-map thresholds (after min-max normalization) of the foreground and background seeds.
        rw_beta: affinity exponent of the random walk.
        rw_iterations: random-walk steps.
        pseudo_fg, pseudo_bg: refined-map thresholds of the segmentation pseudo-masks (pixels in between ignored).
        seg_hidden: width of the segmentation decoder.
        lambda_affinity: weight of the affinity loss (stage 2).
        lambda_seg: weight of the pseudo-mask BCE (stage 3).
        eval_protocol, lr, weight_decay: see :class:`LocalizationMethod`.
    """

    def __init__(
        self,
        stage: Stage = "coarse",
        init_from: str | None = None,
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
        gather_negatives: bool = False,
        mask_grid: int = 7,
        mask_ratio: float = 0.3,
        lambda_full: float = 1.0,
        lambda_masked: float = 1.0,
        affinity_out_index: int = -3,
        affinity_dim: int = 64,
        affinity_radius: int = 5,
        affinity_deep: bool = False,
        seed_fg: float = 0.6,
        seed_bg: float = 0.2,
        rw_beta: float = 8.0,
        rw_iterations: int = 8,
        pseudo_fg: float = 0.5,
        pseudo_bg: float = 0.5,
        seg_hidden: int = 64,
        lambda_affinity: float = 1.0,
        lambda_seg: float = 1.0,
        eval_protocol: str = "ezvsl",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
    ) -> None:
        # Every stage's raw scores lie in [-1, 1] (see above); maps are upsampled bilinearly with half-pixel centres.
        signal = Signal(sample_rate, frame_size, duration, (-1.0, 1.0), "bilinear", False)
        super().__init__(signal, eval_protocol=eval_protocol, lr=lr, weight_decay=weight_decay)
        # init_from is provenance, not architecture: a later stage's checkpoint must load without the earlier file.
        self.save_hyperparameters(ignore=["init_from"])
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if lambda_full <= 0 and (lambda_masked <= 0 or mask_ratio == 0):
            raise ValueError("stage 1 needs lambda_full > 0, or lambda_masked > 0 with mask_ratio > 0")
        if not 0.0 <= seed_bg < seed_fg <= 1.0:
            raise ValueError(f"need 0 <= seed_bg < seed_fg <= 1, got seed_bg={seed_bg}, seed_fg={seed_fg}")
        if not 0.0 <= pseudo_bg <= pseudo_fg <= 1.0:
            raise ValueError(f"need 0 <= pseudo_bg <= pseudo_fg <= 1, got pseudo_bg={pseudo_bg}, pseudo_fg={pseudo_fg}")
        if affinity_radius < 1 or rw_iterations < 0:
            raise ValueError("affinity_radius must be >= 1 and rw_iterations >= 0")
        self.stage: Stage = stage
        self.init_from = init_from
        if pool_temperature is not None and pool_temperature <= 0:
            raise ValueError(f"pool_temperature must be positive or None, got {pool_temperature}")
        self.tau = tau
        self.pool_temperature = pool_temperature
        self.gather_negatives = gather_negatives
        self.mask_grid, self.mask_ratio = mask_grid, mask_ratio
        self.lambda_full, self.lambda_masked = lambda_full, lambda_masked
        self.affinity_radius, self.rw_beta, self.rw_iterations = affinity_radius, rw_beta, rw_iterations
        self.seed_fg, self.seed_bg = seed_fg, seed_bg
        self.pseudo_fg, self.pseudo_bg = pseudo_fg, pseudo_bg
        self.lambda_affinity, self.lambda_seg = lambda_affinity, lambda_seg

        # Stage 1: the contrastive encoders (present in every stage: later stages use them frozen).
        self.visual = VisualEncoder(vision_backbone, vision_pretrained, vision_checkpoint, vision_out_index, embed_dim)
        self.audio = AudioEncoder(audio_backbone, audio_frontend, sample_rate, embed_dim=embed_dim)
        # Stage 2: the affinity network (from stage "refine" on).
        self.affinity: AffinityNet | None = None
        if stage in ("refine", "segment"):
            deep = self.visual.backbone.out_channels if affinity_deep else 0
            self.affinity = AffinityNet(vision_backbone, affinity_out_index, affinity_dim, deep)
            # Start from the stage-1 trunk (the shallow cut of the same registry backbone has a subset of its keys).
            _copy_matching(self.visual.backbone, self.affinity.backbone)
        # Stage 3: the segmentation network (stage "segment" only).
        self.segmenter: SoundingSegmenter | None = None
        if stage == "segment":
            self.segmenter = SoundingSegmenter(
                vision_backbone,
                vision_out_index,
                affinity_out_index,
                audio_backbone,
                audio_frontend,
                sample_rate,
                embed_dim,
                seg_hidden,
            )
        for module in self._frozen_modules():
            module.requires_grad_(False)
        if init_from is not None:
            self.load_previous_stage(init_from)

    # ------------------------------------------------------------------------------------------------ stages
    def _frozen_modules(self) -> list[nn.Module]:
        """The networks of earlier stages: frozen, and run in eval mode (fixed BatchNorm statistics)."""
        if self.stage == "refine":
            return [self.visual, self.audio]
        if self.stage == "segment":
            assert self.affinity is not None
            return [self.visual, self.audio, self.affinity]
        return []

    @contextmanager
    def _frozen_in_eval(self) -> Iterator[None]:
        """Run the frozen networks in eval mode (fixed BatchNorm statistics) and restore their mode afterwards.

        Switching only around their use, rather than keeping them in eval mode, leaves every module in train mode
        when training starts, as Lightning expects (it warns about modules in eval mode at the start of training).
        """
        modes = [(module, module.training) for module in self._frozen_modules()]
        for module, _ in modes:
            module.eval()
        try:
            yield
        finally:
            for module, mode in modes:
                module.train(mode)

    def load_previous_stage(self, checkpoint_path: str | Path) -> None:
        """Load the networks of the previous stages from an avsl checkpoint (done by ``init_from``).

        The checkpoint must hold every tensor of the networks this stage needs (``visual``/``audio`` for ``coarse``
        and ``refine``; also ``affinity`` for ``segment``) with matching shapes. Networks of this stage that the
        checkpoint lacks are initialized from the earlier ones: the affinity trunk from the stage-1 visual trunk,
        the segmenter's encoders from the stage-1 encoders and its skip stage from the affinity trunk.
        """
        path = Path(checkpoint_path)
        checkpoint = read_checkpoint(path, "init_from checkpoint")
        saved = checkpoint.get("avsl_signal")  # absent from a bare state dict, which is also accepted
        if isinstance(saved, dict) and Signal.from_dict(saved) != self.signal:
            raise ValueError(
                f"{path} was trained with {Signal.from_dict(saved)}, but stage {self.stage!r} declares {self.signal}: "
                "build every stage with the same sample_rate, frame_size and duration"
            )
        state: dict[str, Tensor] = checkpoint.get("state_dict", checkpoint)
        own = self.state_dict()
        needed = [k for k in own if k.split(".")[0] in _REQUIRED[self.stage]]
        absent = [k for k in needed if k not in state]
        if absent:
            previous = checkpoint.get("hyper_parameters", {}).get("stage", "?")
            raise ValueError(
                f"{path} (stage {previous!r}) lacks {len(absent)} tensors that stage {self.stage!r} needs, e.g. "
                f"{absent[:3]}: give the checkpoint of the previous stage, trained with the same backbones"
            )
        networks = ("visual", "audio", "affinity", "segmenter")
        loadable = {k: v for k, v in state.items() if k in own and k.split(".")[0] in networks}
        wrong = [k for k, v in loadable.items() if v.shape != own[k].shape]
        if wrong:
            raise ValueError(f"{path}: shapes differ for {wrong[:3]} (other embed_dim or backbones?)")
        self.load_state_dict(loadable, strict=False)
        if self.affinity is not None and not any(k.startswith("affinity.") for k in state):
            _copy_matching(self.visual.backbone, self.affinity.backbone)
        if self.segmenter is not None and not any(k.startswith("segmenter.") for k in state):
            assert self.affinity is not None
            self.segmenter.visual.load_state_dict(self.visual.state_dict())
            self.segmenter.audio.load_state_dict(self.audio.state_dict())
            _copy_matching(self.affinity.backbone, self.segmenter.shallow)
        self.init_from = str(path)

    # ------------------------------------------------------------------------------------------------ maps
    def _stage1(self, image: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Stage-1 backbone features (B, C, h, w) and cosine maps (B, h, w)."""
        with self._frozen_in_eval():
            feats = self.visual.features(image)
            visual = F.normalize(self.visual.proj(feats), dim=1)
            return feats, cosine_map(visual, self.audio(audio))

    def coarse_map(self, image: Tensor, audio: Tensor) -> Tensor:
        """Stage-1 cosine maps (B, h, w) in [-1, 1]."""
        return self._stage1(image, audio)[1]

    def refined_map(self, image: Tensor, audio: Tensor) -> Tensor:
        """Stage-2 refined maps (B, H', W') in [0, 1] at the affinity resolution (needs stage refine or segment)."""
        if self.affinity is None:
            raise RuntimeError("refined_map needs the affinity network: build USPL with stage 'refine' or 'segment'")
        feats, coarse = self._stage1(image, audio)
        with self._frozen_in_eval():
            embed = self.affinity(self._normalize(image), feats if self.affinity.deep_channels else None)
        coarse = F.interpolate(coarse[:, None], size=embed.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        aff = pairwise_affinity(embed, self.affinity_radius)
        return refine_map(coarse, aff, self.affinity_radius, self.rw_beta, self.rw_iterations)

    def segment_logits(self, image: Tensor, audio: Tensor) -> Tensor:
        """Stage-3 segmentation logits (B, H', W') (needs stage segment)."""
        if self.segmenter is None:
            raise RuntimeError("segment_logits needs the segmenter: build USPL with stage 'segment'")
        out: Tensor = self.segmenter(image, audio)
        return out

    def _normalize(self, image: Tensor) -> Tensor:
        return (image - self.visual.mean) / self.visual.std

    def forward(self, image: Tensor, audio: Tensor) -> Tensor:
        """The current stage's map in [-1, 1]: cosine (B, h, w), or ``2 * refined - 1`` / ``tanh(logit / 2)`` at
        the affinity resolution."""
        if self.stage == "coarse":
            return self.coarse_map(image, audio)
        if self.stage == "refine":
            return 2.0 * self.refined_map(image, audio) - 1.0
        return torch.tanh(0.5 * self.segment_logits(image, audio))

    # ------------------------------------------------------------------------------------------------ losses
    def training_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        data = batch["unlabeled"]
        image, audio = data["image"], data["audio"]
        if self.stage == "coarse":
            return self._coarse_losses(image, audio)
        if self.stage == "refine":
            return self._refine_losses(image, audio)
        return self._segment_losses(image, audio)

    def _coarse_losses(self, image: Tensor, audio: Tensor) -> dict[str, Tensor]:
        embedding = self.audio(audio)
        losses: dict[str, Tensor] = {}
        if self.lambda_full > 0:
            losses["infonce"] = self.lambda_full * self.contrastive_loss(self.visual(image), embedding)
        if self.lambda_masked > 0 and self.mask_ratio > 0:
            b, _, h, w = image.shape
            hidden = random_block_mask(b, h, w, self.mask_grid, self.mask_ratio, device=image.device)
            masked = mask_augment(image, hidden, fill=self.visual.mean)
            losses["infonce_masked"] = self.lambda_masked * self.contrastive_loss(self.visual(masked), embedding)
        return losses

    def contrastive_loss(self, visual: Tensor, audio: Tensor) -> Tensor:
        """The MIL InfoNCE of a batch, with negatives from every process when ``gather_negatives`` is set."""
        return gathered_mil_infonce(self, visual, audio, self.tau, self.pool_temperature, self.gather_negatives)

    def _refine_losses(self, image: Tensor, audio: Tensor) -> dict[str, Tensor]:
        assert self.affinity is not None
        with torch.no_grad():
            feats, coarse = self._stage1(image, audio)
        embed = self.affinity(self._normalize(image), feats if self.affinity.deep_channels else None)
        coarse = F.interpolate(coarse[:, None], size=embed.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        seeds = seeds_from_map(minmax_normalize(coarse), self.seed_fg, self.seed_bg)
        aff = pairwise_affinity(embed, self.affinity_radius)
        return {"affinity": self.lambda_affinity * affinity_loss(aff, seeds, self.affinity_radius)}

    def _segment_losses(self, image: Tensor, audio: Tensor) -> dict[str, Tensor]:
        # Pseudo-masks are recomputed on the fly by the frozen stage-1/2 networks rather than cached: they follow the
        # random crops and flips of the training frames, and need no files shared between processes.
        with torch.no_grad():
            target, weight = pseudo_masks(self.refined_map(image, audio), self.pseudo_fg, self.pseudo_bg)
        logits = self.segment_logits(image, audio)
        return {"segmentation": self.lambda_seg * pseudo_mask_loss(logits, target, weight)}

    # ------------------------------------------------------------------------------------------------ hooks
    def on_fit_start(self) -> None:
        if self.stage != "coarse" and self.init_from is None and self.trainer.ckpt_path is None:
            rank_zero_warn(
                f"USPL stage {self.stage!r} starts without init_from: the earlier stages' networks are untrained. "
                "Pass init_from=<checkpoint of the previous stage> (see avsl.methods.uspl.run_pipeline)."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["uspl_init_from"] = self.init_from  # provenance only: never read back to load weights

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.init_from = checkpoint.get("uspl_init_from", self.init_from)


def run_pipeline(
    model: USPL,
    datamodule: pl.LightningDataModule,
    make_trainer: Callable[[Stage], pl.Trainer],
    workdir: str | Path,
    stages: Sequence[Stage] | None = None,
) -> dict[Stage, Path]:
    """Train USPL's stages one after the other, handing over by checkpoint; returns each stage's checkpoint.

    ``model`` is the first stage to train (normally ``stage="coarse"``); its hyperparameters configure the later
    stages, which are built as ``USPL(**hyperparameters, stage=next, init_from=<previous checkpoint>)``.
    ``make_trainer(stage)`` returns a fresh Trainer per stage (e.g. with fewer epochs for the refinement). Checkpoints
    are written to ``workdir/uspl_<stage>.ckpt``; load any of them with :func:`avsl.methods.load_method`.

    Args:
        model: the model of the first stage to run.
        datamodule: the data of every stage.
        make_trainer: a Trainer for a stage.
        workdir: where the checkpoints go.
        stages: the stages to run (default: ``model.stage`` and every later stage).
    """
    if stages is None:
        stages = STAGES[STAGES.index(model.stage) :]
    if not stages or stages[0] != model.stage:
        raise ValueError(f"stages must start with the model's stage {model.stage!r}, got {list(stages)}")
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    accepted = set(inspect.signature(USPL.__init__).parameters) - {"self", "stage", "init_from"}
    hparams = {k: v for k, v in model.hparams.items() if k in accepted}
    checkpoints: dict[Stage, Path] = {}
    current = model
    for i, stage in enumerate(stages):
        if i > 0:
            current = USPL(**hparams, stage=stage, init_from=str(checkpoints[stages[i - 1]]))
        trainer = make_trainer(stage)
        trainer.fit(current, datamodule=datamodule)
        checkpoints[stage] = out / f"uspl_{stage}.ckpt"
        trainer.save_checkpoint(checkpoints[stage])
    return checkpoints
