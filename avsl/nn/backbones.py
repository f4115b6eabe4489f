"""The backbone registry: timm CNNs for images and spectrograms, plus a small literal dict of extras.

Every backbone maps a (B, in_chans, H, W) tensor to a spatial feature map (B, out_channels, H / stride, W / stride)
and exposes ``out_channels`` and ``stride``. Pretrained weights are optional: ``pretrained=True`` asks timm (which
downloads when online), ``checkpoint_path`` loads a local file instead. Tests never need weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

__all__ = [
    "EXTRA_BACKBONES",
    "Backbone",
    "LVSResNet18",
    "TimmBackbone",
    "TinyCNN",
    "VGG16Conv5",
    "VGGish",
    "create_backbone",
]


class Backbone(nn.Module):
    """A module that returns a spatial feature map, with its channel count and output stride."""

    out_channels: int
    stride: int

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def _load_state_dict(module: nn.Module, checkpoint_path: str | Path) -> None:
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing:
        more = "..." if len(missing) > 5 else ""
        raise ValueError(f"{path}: missing keys for {type(module).__name__}: {missing[:5]}{more}")
    del unexpected  # extra heads (e.g. a classifier) are ignored on purpose


class TimmBackbone(Backbone):
    """Any timm model with ``features_only=True``, cut at stage ``out_index`` (``-1`` = last stage)."""

    def __init__(
        self,
        name: str,
        in_chans: int = 3,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        out_index: int = -1,
    ) -> None:
        super().__init__()
        if checkpoint_path is not None and not Path(checkpoint_path).is_file():
            raise FileNotFoundError(f"backbone checkpoint not found: {checkpoint_path}")
        self.model = timm.create_model(
            name,
            pretrained=pretrained or checkpoint_path is not None,
            pretrained_cfg_overlay={"file": str(checkpoint_path)} if checkpoint_path else None,
            features_only=True,
            out_indices=(out_index,),  # timm resolves negative stage indices
            in_chans=in_chans,
        )
        info: Any = self.model.feature_info
        self.out_channels = int(info.channels()[-1])
        self.stride = int(info.reduction()[-1])
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.model(x)[-1]
        return out


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    # A stride-2 stage starts with a 4x4 kernel (padding 1): output k then reads inputs 2k-1 .. 2k+2, centred on the
    # middle of its 2x2 cell. A 3x3 kernel (taps 2k-1 .. 2k+1) centres output k on the cell's top-left input pixel, so
    # after four stages every feature looks 7.5 px up-left of the cell centre where upsampling draws it: maps come out
    # shifted down-right by half a cell (seen on SynthAV as heat beside small objects).
    kernel = 4 if stride == 2 else 3
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class TinyCNN(Backbone):
    """A small CNN for tests, CPU quick starts and SynthAV: four stride-2 stages (a 4x4 stride-2 conv, then a 3x3
    conv), each feature centred on its output cell.

    Not from any paper. ``out_index`` picks the stage (stride 2, 4, 8 or 16); ``width`` scales the channels.
    """

    def __init__(
        self,
        in_chans: int = 3,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        out_index: int = -1,
        width: int = 32,
    ) -> None:
        super().__init__()
        if pretrained and checkpoint_path is None:
            raise ValueError("tiny_cnn has no published weights: pass checkpoint_path or pretrained=False")
        chans = [width, width * 2, width * 4, width * 4]
        n = out_index % len(chans) + 1
        stages, cin = [], in_chans
        for cout in chans[:n]:
            stages.append(nn.Sequential(_conv_bn(cin, cout, 2), _conv_bn(cout, cout, 1)))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.out_channels = chans[n - 1]
        self.stride = 2**n
        if checkpoint_path is not None:
            _load_state_dict(self, checkpoint_path)
        # Channels-last weights and inputs: oneDNN's bf16 convolutions (AMX on recent Xeons) and cuDNN's tensor-core
        # kernels want NHWC. Under bf16 autocast on a 2-core Sapphire Rapids CPU a training step of the quickstart's
        # EZ-VSL took 0.29 s channels-last against 1.6 s NCHW (benchmarks/README.md, "CPU training step").
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.stages(x.contiguous(memory_format=torch.channels_last))
        return out


class VGG16Conv5(Backbone):
    """VGG16 up to conv5_3, before its ReLU and pool: the SSPL visual encoder (512 channels, stride 16).

    SSPL feeds ``torchvision.models.vgg16(...).features[0:29]`` into its attention module (zjsong/SSPL, models). The
    layers here are timm's ``vgg16`` features with the same cut, so ``pretrained=True`` loads the ImageNet weights
    through timm (online) and ``checkpoint_path`` a local timm/torchvision-style ``features.*`` state dict.
    """

    def __init__(
        self, in_chans: int = 3, pretrained: bool = False, checkpoint_path: str | None = None, out_index: int = -1
    ) -> None:
        super().__init__()
        if out_index not in (-1, 4):
            raise ValueError("vgg16_conv5 has a single output (conv5_3); leave out_index at -1")
        vgg = timm.create_model("vgg16", pretrained=pretrained and checkpoint_path is None, in_chans=in_chans)
        layers: Any = vgg.features
        self.features = nn.Sequential(*list(layers.children())[:29])
        if checkpoint_path is not None:
            _load_state_dict(self, checkpoint_path)
        self.out_channels = 512
        self.stride = 16

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.features(x)
        return out


class VGGish(Backbone):
    """The VGGish audio CNN (Hershey et al. 2017), as the SSPL audio encoder uses it.

    Input: log-mel examples (B, 1, 96, 64) from :class:`avsl.nn.audio.VGGishLogMel`. ``forward`` returns the conv5
    map (B, 512, 6, 4); :meth:`embed` returns the 128-d embedding of the FC layers (no PCA post-processing, as in
    SSPL). ``checkpoint_path`` takes a torchvggish-style state dict (``features.*`` and ``embeddings.*``).
    """

    def __init__(
        self, in_chans: int = 1, pretrained: bool = False, checkpoint_path: str | None = None, out_index: int = -1
    ) -> None:
        super().__init__()
        if pretrained and checkpoint_path is None:
            raise ValueError("VGGish weights are not on timm: download them once and pass checkpoint_path")
        if out_index != -1:
            raise ValueError("vggish has a single output; leave out_index at -1")
        layers: list[nn.Module] = []
        cin = in_chans
        for block in ((64,), (128,), (256, 256), (512, 512)):
            for cout in block:
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
            nn.ReLU(inplace=True),
        )
        if checkpoint_path is not None:
            _load_state_dict(self, checkpoint_path)
        self.out_channels = 512
        self.stride = 16

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.features(x)
        return out

    def embed(self, x: Tensor) -> Tensor:
        """(B, 1, 96, 64) log-mel examples -> (B, 128) embeddings."""
        fmap = self.features(x)
        # torchvggish flattens in TensorFlow's (H, W, C) order so the ported FC weights line up.
        flat = fmap.permute(0, 2, 3, 1).reshape(fmap.shape[0], -1)
        out: Tensor = self.embeddings(flat)
        return out


class LVSResNet18(TimmBackbone):
    """ResNet-18 whose last stage keeps the resolution: stride 16, a 14 x 14 map of 224-px frames (LVS and SSL-align).

    LVS builds its ResNet-18 with ``layer4`` at stride 1 and *no* dilation (hche11/Localizing-Visual-Sounds-the-Hard-
    Way ``models/base_models.py``), which is neither torchvision's nor timm's ``output_stride=16`` (that one dilates
    ``layer4``). Here timm's ``resnet18`` with the first ``layer4`` block's stride set to 1, so its weights (ImageNet
    through timm, or a checkpoint's) load by the same names.
    """

    def __init__(
        self, in_chans: int = 3, pretrained: bool = False, checkpoint_path: str | None = None, out_index: int = -1
    ) -> None:
        if out_index not in (-1, 3):
            raise ValueError("resnet18_lvs gives the last stage only; leave out_index at -1")
        super().__init__("resnet18", in_chans, pretrained, checkpoint_path, -1)
        layer4: Any = self.model.layer4
        block = layer4[0]
        block.conv1.stride = (1, 1)
        block.downsample[0].stride = (1, 1)
        self.stride = 16


# The literal dict of non-timm backbones (explicit over magic: no decorator registry).
EXTRA_BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet18_lvs": LVSResNet18,
    "tiny_cnn": TinyCNN,
    "vgg16_conv5": VGG16Conv5,
    "vggish": VGGish,
}


def create_backbone(
    name: str,
    in_chans: int = 3,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    out_index: int = -1,
) -> Backbone:
    """Create a feature-map backbone by name.

    Args:
        name: a key of :data:`EXTRA_BACKBONES` or any timm model name that supports ``features_only``
            (``timm.list_models()``), e.g. ``"resnet18"``.
        in_chans: input channels (3 for frames, 1 for spectrograms; timm adapts pretrained first convs).
        pretrained: load published weights through timm (needs the network the first time).
        checkpoint_path: load weights from a local file instead (no network).
        out_index: which stage's map to return (``-1`` the last, ``-2`` the one before: stride 16 on ResNets).
    """
    if name in EXTRA_BACKBONES:
        return EXTRA_BACKBONES[name](
            in_chans=in_chans, pretrained=pretrained, checkpoint_path=checkpoint_path, out_index=out_index
        )
    if name not in timm.list_models():
        raise ValueError(
            f"unknown backbone {name!r}: use one of {sorted(EXTRA_BACKBONES)} or a timm model name "
            "(see timm.list_models())"
        )
    return TimmBackbone(name, in_chans, pretrained, checkpoint_path, out_index)
