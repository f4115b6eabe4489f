"""Published checkpoints into avsl (`avsl convert`): each reference repository's layout, checked against the
reference network's own forward pass with the same weights (tests/data/README.md says how the numbers were made)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from avsl.cli import main
from avsl.convert import LAYOUTS, convert_checkpoint, convert_state_dict, matching_layouts
from avsl.losses import mil_infonce
from avsl.methods import EZVSL, load_method
from avsl.nn.heads import cosine_map
from avsl.testing import fill_deterministic

DATA = Path(__file__).parent / "data"
#: Each reference network's state-dict names and shapes, as its code builds it (reference_layouts.json).
REFERENCE_SHAPES: dict[str, dict[str, list[int]]] = json.loads((DATA / "reference_layouts.json").read_text())["layouts"]
#: Each reference network's maps for the weights of `reference_fill` and the inputs of `inputs()`.
REFERENCE_MAPS: dict[str, dict[str, Any]] = json.loads((DATA / "convert_reference.json").read_text())

# How each published checkpoint is saved (read from the repositories' save and load code).
SAVED = {
    "ezvsl": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}, "epoch": 19},
    "fnac": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}, "epoch": 29},
    "slavc": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}, "epoch": 19},
    "lvs": lambda sd: {"model_state_dict": {f"module.{k}": v for k, v in sd.items()}},
    "sslalign": lambda sd: {"model_state_dict": dict(sd)},
}
# The reference map is the cosine map over tau for these; avsl's forward gives the cosine map.
MAP_SCALE = {"ezvsl": 1 / 0.03, "fnac": 1 / 0.03, "slavc": 1 / 0.03, "lvs": 1.0, "sslalign": 1.0}
# Reference keys of layers built and never run (LVS's AVENet: each ResNet's two other first convs and classifier).
UNUSED = {"ezvsl": 0, "fnac": 0, "slavc": 0, "lvs": 8, "sslalign": 8}


def reference_fill(layout: str) -> dict[str, Tensor]:
    """Deterministic weights in the reference's own names (sorted), as the reference was run with."""
    shapes = REFERENCE_SHAPES[layout]
    return fill_deterministic(
        {k: torch.tensor(0) if k.endswith("num_batches_tracked") else torch.zeros(v) for k, v in shapes.items()}
    )


def inputs() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 224, 224, generator=g), 0.1 * torch.randn(2, 48000, generator=g)


def published(tmp_path: Path, layout: str, state: dict[str, Tensor] | None = None) -> Path:
    path = tmp_path / f"{layout}_published.pth"
    torch.save(SAVED[layout](reference_fill(layout) if state is None else state), path)
    return path


@pytest.mark.parametrize("layout", sorted(SAVED))
def test_a_converted_checkpoint_gives_the_reference_networks_maps(tmp_path: Path, layout: str) -> None:
    out = tmp_path / "converted.ckpt"
    model, record = convert_checkpoint(published(tmp_path, layout), layout, out)
    assert record["layout"] == layout and record["tensors"] == len(model.state_dict())
    assert len(record["dropped_unused"]) == UNUSED[layout] and not record["dropped_extra"]
    expected = torch.tensor(REFERENCE_MAPS[layout]["map"]).view(REFERENCE_MAPS[layout]["shape"])
    image, wave = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(image, wave) * MAP_SCALE[layout], expected, atol=1e-4, rtol=1e-4)
        # the written checkpoint is a complete avsl checkpoint: the same maps from load_method
        loaded = load_method(out)
        assert type(loaded) is type(model) and loaded.signal == model.signal
        torch.testing.assert_close(loaded(image, wave), model(image, wave))
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert saved["avsl_converted_from"]["file"] == f"{layout}_published.pth"
    assert saved["hyper_parameters"]["frame_size"] in ([224, 224], (224, 224))


def test_slavc_maps_with_the_online_encoders_as_its_test_scripts_and_with_the_momentum_ones_on_request(
    tmp_path: Path,
) -> None:
    """stoneMo/SLAVC's test scripts score the online encoders' map; --use_mom_eval (its training script) the momentum
    encoders'. Both equal the reference's, so the momentum copies are mapped onto avsl's momentum encoders."""
    model, _ = convert_checkpoint(published(tmp_path, "slavc"), "slavc")
    assert model.hparams["use_momentum_eval"] is False
    image, wave = inputs()
    for key, momentum in (("slavc", False), ("slavc_momentum", True)):
        model.use_momentum_eval = momentum
        expected = torch.tensor(REFERENCE_MAPS[key]["map"]).view(REFERENCE_MAPS[key]["shape"])
        with torch.no_grad():
            torch.testing.assert_close(model(image, wave) / 0.03, expected, atol=1e-4, rtol=1e-4)


def test_a_file_of_another_layout_is_refused_with_the_layout_it_fits(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"unexpected keys module\.aud_proj1\.bias.*It fits the layout of slavc: try --from slavc"
    ):
        convert_checkpoint(published(tmp_path, "slavc"), "ezvsl")


def test_ezvsl_and_fnac_share_one_layout_and_a_file_names_what_fits() -> None:
    assert matching_layouts(reference_fill("ezvsl")) == matching_layouts(reference_fill("fnac"))
    assert {"ezvsl", "fnac"} <= set(matching_layouts(reference_fill("ezvsl")))


def test_a_file_that_does_not_fit_is_refused_with_the_keys(tmp_path: Path) -> None:
    state = reference_fill("ezvsl")
    del state["aud_proj.weight"]
    with pytest.raises(ValueError, match=r"missing keys .*audio\.proj\.weight"):
        convert_checkpoint(published(tmp_path, "ezvsl", state), "ezvsl")
    state = reference_fill("ezvsl") | {"classifier.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"unexpected keys module\.classifier\.weight"):
        convert_checkpoint(published(tmp_path, "ezvsl", state), "ezvsl")
    state = reference_fill("ezvsl") | {"img_proj.weight": torch.zeros(128, 512, 1, 1)}
    with pytest.raises(ValueError, match=r"shapes that differ visual\.proj\.weight \(128, 512, 1, 1\)"):
        convert_checkpoint(published(tmp_path, "ezvsl", state), "ezvsl")
    other = tmp_path / "other.pth"
    torch.save({"weights": reference_fill("ezvsl"), "step": 3}, other)
    with pytest.raises(ValueError, match=r"no state dict under 'model'.*'weights', 'step'"):
        convert_checkpoint(other, "ezvsl")
    with pytest.raises(ValueError, match="unknown layout 'nope'"):
        convert_checkpoint(other, "nope")


def test_sslalign_files_may_hold_keys_the_network_lacks_and_they_are_reported(tmp_path: Path) -> None:
    """kaistmm/SSLalignment's test.py loads with strict=False: extra keys are dropped and listed, missing ones are
    still refused (strict=False would leave them at their random initialization)."""
    state = reference_fill("sslalign") | {"aud_head.weight": torch.zeros(128, 512)}
    _, record = convert_checkpoint(published(tmp_path, "sslalign", state), "sslalign")
    assert record["dropped_extra"] == ["aud_head.weight"]
    del state["imgnet.layer4.1.bn2.running_mean"]
    with pytest.raises(ValueError, match=r"missing keys .*visual\.backbone\.model\.layer4\.1\.bn2\.running_mean"):
        convert_checkpoint(published(tmp_path, "sslalign", state), "sslalign")


def test_a_bare_state_dict_without_prefixes_converts_too() -> None:
    conversion = convert_state_dict(reference_fill("ezvsl"), "ezvsl")
    assert set(conversion.state_dict) >= {"visual.proj.weight", "audio.backbone.model.conv1.weight"}
    assert not conversion.dropped_unused and not conversion.dropped_extra
    with pytest.raises(ValueError, match="unknown layout 'nope'"):
        convert_state_dict(reference_fill("ezvsl"), "nope")


def test_the_convert_command_writes_a_checkpoint_and_says_how_to_score_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ezvsl.ckpt"
    assert main(["convert", "--from", "ezvsl", str(published(tmp_path, "ezvsl")), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "EZVSL, 244 tensors; 224x224 frames, 3 s of 16000 Hz audio" in printed
    assert f"avsl test -c ezvsl -c vggss --ckpt_path {out}" in printed
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"module.imgnet.conv1.weight": torch.zeros(64, 3, 7, 7)}}, bad)
    assert main(["convert", "--from", "ezvsl", str(bad), "--out", str(tmp_path / "b.ckpt")]) == 1
    assert "missing keys (avsl names)" in capsys.readouterr().err


@pytest.mark.parametrize("layout", sorted(SAVED))
def test_avsl_test_scores_a_converted_checkpoint_with_the_methods_config(
    tmp_path: Path, layout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`avsl test -c <method> -c <data> --ckpt_path DST.ckpt`, here on 4 SynthAV clips of the method's geometry."""
    out = tmp_path / f"{layout}.ckpt"
    model, _ = convert_checkpoint(published(tmp_path, layout), layout, out)
    signal = model.signal
    data = [
        "--data.init_args.test.init_args.num_clips=4",
        f"--data.init_args.test.init_args.image_size={signal.frame_size[0]}",
        f"--data.init_args.test.init_args.duration={signal.duration}",
        "--data.init_args.batch_size=4",
    ]
    args = ["test", "-c", LAYOUTS[layout].method, "-c", "synthav", *data]
    args += [f"--ckpt_path={out}", "--trainer.logger=false", "--trainer.enable_progress_bar=false"]
    assert main([*args, f"--trainer.default_root_dir={tmp_path}"]) == 0
    assert "test/ciou" in capsys.readouterr().out


def test_avsl_ezvsl_gives_the_reference_loss_and_map_with_the_same_weights() -> None:
    """avsl's EZVSL against stoneMo/EZ-VSL's model.EZVSL (tests/data/ezvsl_reference.json), as tests/test_fnac.py."""
    reference = json.loads((DATA / "ezvsl_reference.json").read_text())
    model = EZVSL()
    model.load_state_dict(fill_deterministic(model.state_dict()))
    model.eval()
    g = torch.Generator().manual_seed(1)
    image, wave = torch.rand(4, 3, 224, 224, generator=g), 0.1 * torch.randn(4, 48000, generator=g)
    with torch.no_grad():
        visual, audio = model.visual(image), model.audio(wave)
        loss = mil_infonce(visual, audio, 0.03)
        savl = cosine_map(visual, audio) / 0.03
    torch.testing.assert_close(loss, torch.tensor(reference["loss"]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(savl, torch.tensor(reference["savl"]).view(reference["savl_shape"]), atol=1e-4, rtol=0)


def test_every_layout_is_tested() -> None:
    assert set(SAVED) == set(LAYOUTS)
