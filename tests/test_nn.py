from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import signal

from avsl.nn import EXTRA_BACKBONES, LogLinearSpectrogram, LogMelSpectrogram, VGGishLogMel, create_backbone
from avsl.nn.backbones import VGGish
from avsl.nn.heads import AudioEncoder, VisualEncoder, cosine_map


@pytest.mark.parametrize(
    ("name", "in_chans", "out_index", "channels", "stride"),
    [
        ("tiny_cnn", 3, -1, 128, 16),
        ("tiny_cnn", 1, -2, 128, 8),
        ("resnet18", 3, -1, 512, 32),
        ("resnet18", 1, -2, 256, 16),
        ("vgg16_conv5", 3, -1, 512, 16),
    ],
)
def test_backbone_contract(name: str, in_chans: int, out_index: int, channels: int, stride: int) -> None:
    net = create_backbone(name, in_chans=in_chans, out_index=out_index)
    assert (net.out_channels, net.stride) == (channels, stride)
    out = net(torch.randn(2, in_chans, 64, 64))
    assert out.shape == (2, channels, 64 // stride, 64 // stride)


def test_unknown_backbone_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone .nope.*tiny_cnn"):
        create_backbone("nope")


def test_pretrained_weights_from_a_local_file(tmp_path: Path) -> None:
    src = create_backbone("tiny_cnn")
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = create_backbone("tiny_cnn", checkpoint_path=str(tmp_path / "w.pt"))
    x = torch.randn(1, 3, 32, 32)
    src.eval(), dst.eval()
    assert torch.equal(src(x), dst(x))
    timm_src = create_backbone("resnet18")
    torch.save(timm_src.model.state_dict(), tmp_path / "r.pt")
    timm_dst = create_backbone("resnet18", checkpoint_path=str(tmp_path / "r.pt"))
    timm_src.eval(), timm_dst.eval()
    assert torch.allclose(timm_src(torch.ones(1, 3, 64, 64)), timm_dst(torch.ones(1, 3, 64, 64)))
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        create_backbone("resnet18", checkpoint_path=str(tmp_path / "missing.pt"))


def test_extras_without_published_weights_refuse_pretrained() -> None:
    assert set(EXTRA_BACKBONES) >= {"tiny_cnn", "vggish", "vgg16_conv5"}
    with pytest.raises(ValueError, match="checkpoint_path"):
        create_backbone("vggish", in_chans=1, pretrained=True)


def test_loglinear_matches_scipy_reference() -> None:
    # LVS / EZ-VSL: scipy.signal.spectrogram(nperseg=512, noverlap=274), log(S + 1e-7), / 12
    wave = np.random.default_rng(0).normal(size=48000).astype(np.float32)
    _, _, ref = signal.spectrogram(wave, 16000, nperseg=512, noverlap=274)
    expected = np.log(ref + 1e-7) / 12.0
    ours = LogLinearSpectrogram(16000)(torch.from_numpy(wave)[None])[0, 0].numpy()
    assert ours.shape == (257, 200) == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_logmel_and_vggish_shapes() -> None:
    wave = torch.randn(2, 48000)
    assert LogMelSpectrogram(16000)(wave).shape == (2, 1, 64, 297)  # 1 + (48000 - 400) // 160 frames, no centre padding
    examples = VGGishLogMel(16000)(wave)
    assert examples.shape == (2, 3, 1, 96, 64)  # three 0.96-s examples per 3-s clip, as in SSPL
    vggish = VGGish()
    assert vggish(examples[:, 0]).shape == (2, 512, 6, 4)
    assert vggish.embed(examples[:, 0]).shape == (2, 128)
    with pytest.raises(ValueError, match="too short"):
        VGGishLogMel(16000)(torch.randn(1, 8000))


def test_encoders_give_unit_norm_features_and_cosine_maps() -> None:
    vis = VisualEncoder("tiny_cnn", embed_dim=16)
    aud = AudioEncoder("tiny_cnn", "logmel", 16000, embed_dim=16)
    v, a = vis(torch.rand(2, 3, 64, 64)), aud(torch.randn(2, 16000))
    assert v.shape == (2, 16, 4, 4) and a.shape == (2, 16)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(2, 4, 4))
    torch.testing.assert_close(a.norm(dim=1), torch.ones(2))
    sim = cosine_map(v, a)
    assert sim.shape == (2, 4, 4) and float(sim.detach().abs().max()) <= 1.0 + 1e-5


def test_tiny_cnn_features_are_centred_on_their_cells() -> None:
    # The receptive field of feature (i, j) of a stride-16 map, probed through its gradient, is centred on the middle
    # of its 16 x 16 cell (4x4 stride-2 kernels), where bilinear upsampling with align_corners=False draws it.
    from avsl.nn.backbones import TinyCNN

    net = TinyCNN().eval()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.constant_(module.weight, 0.01)
    image = torch.ones(1, 3, 128, 128, requires_grad=True)
    (grad,) = torch.autograd.grad(net(image)[0, :, 3, 4].sum(), image)  # receptive field inside the frame
    weight = grad[0].abs().sum(0)
    ys, xs = torch.meshgrid(torch.arange(128.0) + 0.5, torch.arange(128.0) + 0.5, indexing="ij")
    centre = (float((weight * ys).sum() / weight.sum()), float((weight * xs).sum() / weight.sum()))
    assert centre == pytest.approx((3 * 16 + 8, 4 * 16 + 8), abs=1e-3)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100])
def test_logmel_frames_are_durations_at_any_rate(rate: int) -> None:
    from avsl.nn.audio import LogMelSpectrogram

    out = LogMelSpectrogram(rate)(torch.randn(2, rate))  # 1 s: 25-ms windows every 10 ms
    assert out.shape[:3] == (2, 1, 64) and 94 <= out.shape[-1] <= 98
    assert torch.isfinite(out).all()


def test_the_lvs_resnet18_keeps_stride_16_without_dilation_and_resnet18_names() -> None:
    """LVS's ResNet-18 (layer4 at stride 1, no dilation): a 14 x 14 map of a 224-px frame, timm resnet18's weights."""
    lvs, plain = create_backbone("resnet18_lvs"), create_backbone("resnet18")
    assert lvs.stride == 16 and lvs.out_channels == 512
    assert lvs(torch.rand(1, 3, 224, 224)).shape == (1, 512, 14, 14)
    assert {k: v.shape for k, v in lvs.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    block = lvs.model.layer4[0]
    assert block.conv1.dilation == (1, 1) and block.conv2.dilation == (1, 1)


def test_audio_too_short_for_the_backbone_names_what_to_change() -> None:
    """0.5 s at 8 kHz is a 257 x 15 log-linear spectrogram, which tiny_cnn's strides cannot take: the error came from
    inside a convolution and named none of the arguments."""
    encoder = AudioEncoder("tiny_cnn", "loglinear", 8000, embed_dim=16)
    with pytest.raises(ValueError, match=r"4000 audio samples give a \(257, 15\) .* too small for the tiny_cnn .*"):
        encoder(torch.randn(2, 4000))
    assert encoder(torch.randn(2, 16000)).shape == (2, 16)
    from avsl.methods import SSPL
    from avsl.testing import tiny_args

    with pytest.raises(ValueError, match=r"'vggish' front-end needs duration >= 0\.975 s"):
        SSPL(**{**tiny_args(SSPL), "audio_frontend": "vggish", "duration": 0.9})
