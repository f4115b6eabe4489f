"""Each method's CPU recipe learns on SynthAV settings it was not tuned on (slow: 3-15 CPU minutes per case).

Every case trains a shipped recipe (``avsl/configs/methods/<key>_synthav.yaml``, through
:func:`avsl.recipes.train_recipe`, as ``benchmarks/learning.py`` does) on 2,000 clips of a held-out setting of
:data:`avsl.data.SETTINGS` (10 % of them labeled for SemiPL and XPL) and scores it on 500 test clips with the right
sound, another clip's sound and beside the centred Gaussian (:func:`avsl.evaluate.evaluate_controls`). The figures of
every method on every setting are in ``benchmarks/README.md``.

Run one method: ``pytest -m slow tests/test_learning.py -k ezvsl -s`` (prints the scores).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from avsl.data import SETTINGS
from avsl.evaluate import evaluate_controls
from avsl.recipes import train_recipe

HELD_OUT = [name for name, setting in SETTINGS.items() if setting.held_out]
# Pointing with the right sound that each recipe must reach on every held-out setting (issue 12; FNAC, LVS and
# SSL-align from issue 16, below their measured minima 0.89 / 0.73 / 0.97). SLAVC's recipe points at the source
# (0.81-0.83) but misses the box-overlap margin on widescreen (mean cIoU 0.23, 0.18 with another clip's sound).
TARGETS = {"ezvsl": 0.7, "uspl": 0.7, "semipl": 0.8, "xpl": 0.8, "fnac": 0.8, "lvs": 0.7, "sslalign": 0.8}
TEST_CLIPS = 500  # as benchmarks/learning.py, whose table these margins check


def _train_and_score(method: str, setting: str) -> dict[str, Any]:
    model, seconds = train_recipe(method, SETTINGS[setting], train_clips=2000, labeled_fraction=0.1, seed=0)
    scores = evaluate_controls(model, SETTINGS[setting].dataset("test", TEST_CLIPS))
    print(json.dumps({"method": method, "setting": setting, "minutes": seconds / 60, **scores}))
    return scores


@pytest.mark.slow
@pytest.mark.parametrize("setting", HELD_OUT)
@pytest.mark.parametrize("method", list(TARGETS))
def test_recipe_points_at_the_sounding_object(method: str, setting: str) -> None:
    scores = _train_and_score(method, setting)
    right, other, centre = scores["right"], scores["other"], scores["centre"]
    assert right["pointing"] >= TARGETS[method]
    # A wide margin over the centre prior, in pointing and in the map's overlap with the box.
    assert right["pointing"] >= centre["pointing"] + 0.3
    assert right["sspl/auc"] > centre["sspl/auc"]
    # The map follows the sound: another clip's sound moves the peak off the source (to its class's object, if the
    # frame has one) and the maps' overlap with the box drops.
    assert other["pointing"] <= right["pointing"] - 0.3
    assert other["sspl/mean_ciou"] <= right["sspl/mean_ciou"] - 0.1


@pytest.mark.slow
def test_sspl_maps_do_not_depend_on_the_sound() -> None:
    """SSPL trained from scratch ignores the sound on SynthAV (docs/methods/sspl.md, "Why SSPL ignores the sound
    here"): its maps score the same with another clip's sound. A change of this finding should be noticed."""
    setting = "square"
    model, _ = train_recipe("sspl", SETTINGS[setting], train_clips=2000, seed=0)
    test = SETTINGS[setting].dataset("test", TEST_CLIPS)
    scores = evaluate_controls(model, test)
    right, other = scores["right"], scores["other"]
    assert abs(right["pointing"] - other["pointing"]) <= 0.05
    assert abs(right["sspl/ciou"] - other["sspl/ciou"]) <= 0.05
    assert abs(right["sspl/mean_ciou"] - other["sspl/mean_ciou"]) <= 0.03
    # The attention module's audio queries of different clips are nearly one vector.
    with torch.no_grad():
        audio = torch.stack([test[i]["audio"] for i in range(100)])
        query = torch.nn.functional.normalize(model.audio(audio)[1], dim=1)
    similarity = float(((query @ query.T).sum() - len(query)) / (len(query) * (len(query) - 1)))
    print({"sspl": scores, "query_similarity": similarity})
    assert similarity >= 0.9
