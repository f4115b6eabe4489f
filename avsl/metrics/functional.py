"""Pure tensor functions behind the avsl metrics (GT maps, binarization rules, cIoU, AUC).

The protocols are specified in ``docs/metrics.md``; every rule reproduces its reference repository exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["gt_map_from_boxes"]

GTStyle = Literal["flickr", "vggss"]


def gt_map_from_boxes(boxes: Sequence[Sequence[float]] | Tensor, style: GTStyle, size: int = 224) -> Tensor:
    """Build the ground-truth weight map of one sample from its boxes, exactly as the reference evaluators do.

    Args:
        boxes: xyxy boxes, shape (N, 4). ``style="flickr"``: pixel coordinates in the 256-px annotation frame, all
            annotators' boxes together. ``style="vggss"``: coordinates normalized to [0, 1].
        style: ``"flickr"`` gives the consensus map ``min(sum_j box_j / 2, 1)`` with values in {0, 0.5, 1}
            (Senocak et al. 2018; LVS ``testset_gt``, EZ-VSL ``bbox2gtmap``). ``"vggss"`` gives the binary union of
            the boxes after clipping them to [0, 1] (LVS, EZ-VSL, SLAVC).
        size: side of the square map; the references hard-code 224.

    Coordinates are scaled with ``int(size * v / 256)`` (Flickr) or ``int(size * clip(v, 0, 1))`` (VGG-SS), i.e.
    truncation, and boxes are filled with Python slice semantics (end exclusive). Degenerate or garbage boxes add
    nothing, as in the references; they are not repaired.

    Returns:
        A float64 (size, size) tensor.
    """
    rows = [list(map(float, b)) for b in (boxes.tolist() if isinstance(boxes, Tensor) else boxes)]
    acc = torch.zeros(size, size, dtype=torch.float64)
    for row in rows:
        if len(row) != 4:
            raise ValueError(f"a box needs 4 coordinates (x1, y1, x2, y2), got {row}")
        if any(v != v for v in row):
            raise ValueError(f"box {row} contains NaN")
        if style == "flickr":
            x0, y0, x1, y1 = (int(size * v / 256) for v in row)
        elif style == "vggss":
            x0, y0, x1, y1 = (int(size * min(max(v, 0.0), 1.0)) for v in row)
        else:
            raise ValueError(f"unknown GT style {style!r}; expected 'flickr' or 'vggss'")
        acc[y0:y1, x0:x1] += 1.0
    if style == "flickr":
        return (acc / 2).clamp_(max=1.0)
    return (acc > 0).to(torch.float64)
