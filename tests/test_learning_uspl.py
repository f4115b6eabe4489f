"""USPL learns on SynthAV: coarse maps beat the centre prior, refinement raises mIoU, the SPS head keeps the gain.

Slow (about 8 CPU minutes): the shipped recipe (``uspl_synthav.yaml``: its model, its augmentation and the three stage
commands of its header, 6 / 2 / 3 epochs) trained by :func:`avsl.recipes.train_recipe` on 2,000 clips of the
``square`` setting (SynthAV's defaults), scored on 500 test clips stage by stage. The figures are in
docs/methods/uspl.md ("Results on SynthAV").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from avsl.data import SETTINGS
from avsl.evaluate import centre_gaussian, evaluate
from avsl.methods.uspl import USPL
from avsl.metrics import AVSBenchFScore, AVSBenchMIoU
from avsl.recipes import train_recipe
from avsl.types import AVBatch

SIZE = 128


def _up(maps: Tensor, size: int) -> Tensor:
    return F.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]


@pytest.mark.slow
def test_uspl_stages_improve_on_synthav(tmp_path: Path) -> None:
    setting = SETTINGS["square"]
    final, _ = train_recipe("uspl", setting, train_clips=2000, seed=0, workdir=tmp_path)
    assert isinstance(final, USPL) and final.stage == "segment"
    loader = torch.utils.data.DataLoader(setting.dataset("test", 500), batch_size=100)
    size = SIZE

    # The networks of stages 1-2 are kept (frozen) inside the final model, so one model gives all three stages' maps.
    cached: list[tuple[AVBatch, dict[str, Tensor]]] = []
    with torch.no_grad():
        for batch in loader:
            image, audio = batch["image"], batch["audio"]
            stages = {"coarse": final.coarse_map, "refined": final.refined_map, "sps": final.segment_logits}
            cached.append((batch, {name: _up(fn(image, audio), size) for name, fn in stages.items()}))

    def evaluated(name: str) -> dict[str, float]:
        return evaluate(lambda b: b["map"], [{**b, "map": stage_maps[name]} for b, stage_maps in cached])  # type: ignore[typeddict-unknown-key,typeddict-item]

    results: dict[str, dict[str, float]] = {name: evaluated(name) for name in ("coarse", "refined", "sps")}
    results["centre"] = evaluate(lambda b: centre_gaussian(size, size).expand(len(b["sample_id"]), -1, -1), loader)
    # The AVSBench reference rule for a segmentation network: sigmoid(logit) > 0.5 (evaluate() uses min-max).
    miou, fscore = AVSBenchMIoU(reduction="dataset"), AVSBenchFScore(reduction="dataset")
    for batch, maps in cached:
        miou.update(maps["sps"], batch["mask"], batch["sample_id"])
        fscore.update(maps["sps"], batch["mask"], batch["sample_id"])
    results["sps_sigmoid"] = {"miou": float(miou.compute()), "fscore": float(fscore.compute())}
    print(json.dumps(results, indent=1))
    (tmp_path / "results.json").write_text(json.dumps(results, indent=1))

    coarse, refined, sps, centre = results["coarse"], results["refined"], results["sps"], results["centre"]
    # Stage 1 localizes: above the centre prior (0.28 cIoU@0.5, 0.29 mIoU on the test seed) by the margins the first
    # EZ-VSL main job was held to (its stage-1 loss is EZ-VSL's).
    assert coarse["sspl/ciou"] >= centre["sspl/ciou"] + 0.15
    assert coarse["miou"] >= centre["miou"] + 0.05
    # Stage 2 follows object boundaries: higher mIoU and F-score than the coarse maps it refines.
    assert refined["miou"] >= coarse["miou"] + 0.02
    assert refined["fscore"] > coarse["fscore"]
    # Stage 3 is at least as good as its pseudo-labels under the min-max rule. Under AVSBench's sigmoid rule it lands
    # between the coarse and the refined maps (measured 0.665 against 0.593 and 0.687; docs/methods/uspl.md).
    assert sps["miou"] >= refined["miou"]
    assert results["sps_sigmoid"]["miou"] >= coarse["miou"] + 0.02
