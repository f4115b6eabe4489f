"""Encoders and heads shared by the methods: visual maps, audio embeddings and cosine similarity maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsl.nn.audio import create_frontend
from avsl.nn.backbones import create_backbone
from avsl.nn.maps import minmax_normalize

__all__ = [
    "AudioEncoder",
    "VisualEncoder",
    "cosine_map",
    "ezvsl_init_",
    "object_guided",
    "objectness",
    "objectness_network",
]

# ImageNet statistics: every timm CNN in the registry expects inputs normalized with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def ezvsl_init_(module: nn.Module) -> None:
    """EZ-VSL's initialization of non-pretrained parts (stoneMo/EZ-VSL ``model.py``): Kaiming-normal (fan_out)
    convs, truncated-normal (std 0.01) linears, BatchNorm weights from N(1, 0.02) and zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.normal_(m.weight, mean=1.0, std=0.02)
            nn.init.zeros_(m.bias)


class VisualEncoder(nn.Module):
    """Frames in [0, 1] -> ImageNet normalization -> backbone -> 1x1 conv (none if ``embed_dim`` is None) ->
    L2-normalized map (B, D, h, w)."""

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        out_index: int = -1,
        embed_dim: int | None = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, 3, pretrained, checkpoint_path, out_index)
        # FNAC (OpenNLPLab/FNAC_AVL) drops backbone features before the projection; 0 (EZ-VSL) adds nothing
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # embed_dim None: no projection, the backbone's channels are the embedding (LVS, hche11/...-the-Hard-Way)
        self.proj: nn.Module = nn.Identity()
        if embed_dim is not None:
            self.proj = nn.Conv2d(self.backbone.out_channels, embed_dim, kernel_size=1)
        self.embed_dim = self.backbone.out_channels if embed_dim is None else embed_dim
        ezvsl_init_(self.proj)
        if not (pretrained or checkpoint_path):
            ezvsl_init_(self.backbone)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stride = self.backbone.stride

    def normalize(self, image: Tensor) -> Tensor:
        """Frames in [0, 1] with ImageNet's mean and std, as the backbone (and an OGL network) takes them."""
        return (image - self.mean) / self.std

    def features(self, image: Tensor) -> Tensor:
        """Backbone features (B, C, h, w) of raw frames, before the projection."""
        out: Tensor = self.backbone(self.normalize(image))
        return out

    def forward(self, image: Tensor) -> Tensor:
        return F.normalize(self.proj(self.dropout(self.features(image))), dim=1)


class AudioEncoder(nn.Module):
    """Waveforms -> spectrogram front-end -> 1-channel backbone -> global max pool -> linear -> L2-normalized (B, D).

    EZ-VSL uses a ResNet-18 trained from scratch on the log-linear spectrogram, with global *max* pooling.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        frontend: str = "loglinear",
        sample_rate: int = 16000,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        embed_dim: int | None = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.frontend = create_frontend(frontend, sample_rate)
        if frontend == "vggish":
            raise ValueError("the 'vggish' front-end yields example stacks; AudioEncoder takes 'loglinear' or 'logmel'")
        self.names = (backbone, frontend)
        self.backbone = create_backbone(backbone, 1, pretrained, checkpoint_path)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # on the pooled features (FNAC)
        self.proj: nn.Module = nn.Identity()  # embed_dim None: no projection (LVS)
        if embed_dim is not None:
            self.proj = nn.Linear(self.backbone.out_channels, embed_dim)
        self.embed_dim = self.backbone.out_channels if embed_dim is None else embed_dim
        ezvsl_init_(self.proj)
        if not (pretrained or checkpoint_path):
            ezvsl_init_(self.backbone)

    def features(self, audio: Tensor) -> Tensor:
        """Globally max-pooled backbone features (B, C) of waveforms, before dropout and the projection."""
        spectrogram = self.frontend(audio)
        try:
            features: Tensor = self.backbone(spectrogram)
        except RuntimeError as err:
            # A window too short for the backbone's strides fails inside a convolution or pooling ("Kernel size
            # can't be greater than actual input size"), naming none of the arguments that set the size.
            if "size" not in str(err):
                raise
            backbone, frontend = self.names
            raise ValueError(
                f"{audio.shape[-1]} audio samples give a {tuple(spectrogram.shape[-2:])} (frequency x time) {frontend} "
                f"spectrogram, too small for the {backbone} audio backbone: use a longer duration (or another "
                f"front-end or backbone) ({err})"
            ) from err
        return features.amax(dim=(2, 3))

    def forward(self, audio: Tensor) -> Tensor:
        return F.normalize(self.proj(self.dropout(self.features(audio))), dim=1)


def cosine_map(visual: Tensor, audio: Tensor) -> Tensor:
    """Per-location similarity (B, h, w) of L2-normalized maps (B, D, h, w) with their paired embeddings (B, D)."""
    with torch.autocast(visual.device.type, enabled=False):  # float32 maps also under autocast (see mil_similarity)
        return torch.einsum("bchw,bc->bhw", visual.float(), audio.float())


def objectness_network(backbone: str | None, pretrained: bool, checkpoint: str | None) -> nn.Module | None:
    """The frozen ImageNet network of object-guided localization (OGL), or None when ``backbone`` is None."""
    if backbone is None:
        return None
    return create_backbone(backbone, 3, pretrained, checkpoint).requires_grad_(False).eval()


def objectness(ogl: nn.Module, normalized: Tensor) -> Tensor:
    """OGL's objectness (B, h, w) of ImageNet-normalized frames: the channel mean of the absolute last-stage
    activations of the frozen network ``ogl`` (EZ-VSL's and SLAVC's ``test.py``), in eval mode."""
    ogl.eval()
    out: Tensor = ogl(normalized).abs().mean(dim=1)
    return out


def object_guided(sim: Tensor, ogl: nn.Module, normalized: Tensor, alpha: float) -> Tensor:
    """Object-guided localization (OGL; EZ-VSL ``test.py``, also FNAC's): ``minmax(alpha * minmax(AV) + (1 - alpha) *
    minmax(OBJ))`` in [0, 1], where OBJ is the channel mean of the absolute last-stage activations of the frozen
    ImageNet network ``ogl`` on the ImageNet-normalized frames, resized to the AV map's (B, h, w) resolution (bilinear,
    align_corners=True). Mixing at the AV map's resolution equals mixing after the references' align_corners=True
    upsampling, which keeps each map's min and max."""
    obj = F.interpolate(objectness(ogl, normalized)[:, None], size=sim.shape[-2:], mode="bilinear", align_corners=True)
    obj = obj[:, 0]
    return minmax_normalize(alpha * minmax_normalize(sim) + (1 - alpha) * minmax_normalize(obj))
