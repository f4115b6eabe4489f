"""Evaluate any heatmap function (a trained method or a trivial baseline) with the avsl metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from avsl.metrics import EvaluationMetrics
from avsl.types import AVBatch, AVSample

if TYPE_CHECKING:
    from avsl.methods.base import LocalizationMethod

__all__ = ["CONTROLS", "OtherSound", "centre_gaussian", "control_audio", "evaluate", "evaluate_controls", "uniform"]


def centre_gaussian(height: int, width: int, sigma: float = 0.25) -> Tensor:
    """The centre baseline: an isotropic Gaussian in the middle of the frame (``sigma`` relative to the side)."""
    ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height - 0.5
    xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width - 0.5
    return torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2)).float()


def uniform(height: int, width: int) -> Tensor:
    """The uniform baseline: a constant map (every protocol's constant-map rule applies)."""
    return torch.ones(height, width)


@torch.no_grad()
def evaluate(
    heatmap_fn: Callable[[AVBatch], Tensor],
    batches: Iterable[AVBatch],
    protocols: Sequence[str] = ("ezvsl", "sspl"),
) -> dict[str, float]:
    """Evaluate ``heatmap_fn`` (batch -> (B, H, W) scores at the ground truth's resolution) on ``batches``.

    Returns ``"<protocol>/ciou"``, ``"<protocol>/auc"`` and ``"<protocol>/mean_ciou"`` for every protocol with a
    ``gt_map`` in the batches, ``"pointing"`` (the pointing rate over samples with a non-empty GT, see
    :class:`~avsl.metrics.Pointing`) on the same maps, and ``"miou"`` / ``"fscore"`` (AVSBench rules, dataset-level)
    when they carry masks. Negatives (``num_sources == 0``) are kept out of all of these; a set with negatives also
    gets SLAVC's extended protocol (``"ap"``, ``"max_f1"``, ``"f1"``, ``"precision_at_50"``, ``"num_negative"``),
    which reads the maps as fixed-range scores in [0, 1], as the ``slavc`` protocol does: give maps in that range
    (``LocalizationMethod.unit_scores``, as :func:`evaluate_controls` does). Values just outside it (an upsampling's
    overshoot, up to 0.1) are clamped; maps further out are an error there, not a silently clamped score.
    """
    if isinstance(protocols, str) or not protocols:
        raise ValueError(f"evaluate needs at least one cIoU protocol, as a sequence of names; got {protocols!r}")
    metrics = EvaluationMetrics(protocols[0], also=protocols[1:])
    seen = 0
    for batch in batches:
        maps = heatmap_fn(batch).float().cpu()
        cpu: AVBatch = {k: v.cpu() if isinstance(v, Tensor) else v for k, v in batch.items()}  # type: ignore[assignment]
        negatives = "num_sources" in cpu and bool((torch.as_tensor(cpu["num_sources"]) == 0).any())
        if maps.numel() and ("slavc" in protocols or negatives):
            _check_unit_range(maps, "the 'slavc' protocol" if "slavc" in protocols else "the extended protocol")
        metrics.update(maps, maps.clamp(0.0, 1.0), cpu)
        seen += maps.shape[0]
    if not seen:
        raise ValueError("evaluate got no samples: the batches are empty")
    results: dict[str, float] = {}
    for key, value in metrics.compute_and_reset().items():
        first = key in ("ciou", "auc", "mean_ciou", "num_samples", "num_nan")  # the first protocol's keys
        results[f"{protocols[0]}/{key}" if first else key] = float(value)
    return results


def _check_unit_range(maps: Tensor, reader: str) -> None:
    lo, hi = float(maps.min()), float(maps.max())
    if lo < -0.1 or hi > 1.1:
        raise ValueError(
            f"{reader} reads the maps as scores in [0, 1], got values in [{lo:.3g}, {hi:.3g}]: give the method's "
            "unit_scores of its raw maps (LocalizationMethod.unit_scores), not raw scores"
        )


def control_audio(audio: Tensor, control: str, generator: torch.Generator | None = None) -> Tensor:
    """The sound a batch is heard with under an audio control: ``"right"`` (its own), ``"other"`` (clip ``i`` hears
    clip ``i + B // 2`` of the batch), ``"silence"`` (zeros) or ``"noise"`` (white noise at each clip's RMS level)."""
    if control == "right":
        return audio
    if control == "other":
        if audio.shape[0] < 2:
            raise ValueError("the 'other' sound control needs batches of at least 2 clips")
        return audio.roll(-(audio.shape[0] // 2), dims=0)
    if control == "silence":
        return torch.zeros_like(audio)
    if control == "noise":
        rms = audio.float().pow(2).mean(dim=-1, keepdim=True).sqrt()
        noise = torch.randn(audio.shape, generator=generator, device=audio.device if generator is None else "cpu")
        return (noise.to(audio.device) * rms).to(audio.dtype)
    raise ValueError(f"unknown audio control {control!r}; expected one of {CONTROLS}")


#: The audio controls, in report order.
CONTROLS = ("right", "other", "silence", "noise")


class OtherSound(Dataset[AVSample]):
    """The frames of ``dataset`` with the sound of another clip: clip ``i`` gets the audio of clip ``i + N // 2``.

    The audio control of :func:`evaluate_controls`: a map that follows the sound moves away from the source. The
    other clip's sound can be of the same class as the source by chance (1 in the number of classes on SynthAV), or
    of a class that another object in the frame shows.
    """

    def __init__(self, dataset: Dataset[AVSample]) -> None:
        self.dataset = dataset
        self.n = len(dataset)  # type: ignore[arg-type]
        if self.n < 2:
            raise ValueError("OtherSound needs a dataset of at least 2 clips")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> AVSample:
        sample: AVSample = dict(self.dataset[index])  # type: ignore[assignment]
        sample["audio"] = self.dataset[(index + self.n // 2) % self.n]["audio"]
        return sample


@torch.no_grad()
def evaluate_controls(
    model: LocalizationMethod,
    dataset: Dataset[AVSample],
    protocols: Sequence[str] = ("sspl",),
    batch_size: int = 100,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Does the map follow the sound? ``evaluate`` a method on ``dataset`` with four sounds and a prior, side by side.

    Returns ``{"right": ..., "other": ..., "silence": ..., "noise": ..., "centre": ...}``: the method with each clip's
    own sound, with another clip's sound (:class:`OtherSound`: clip ``i`` hears clip ``i + N // 2``), with silence,
    with white noise at the clip's level (:func:`control_audio`, drawn from ``seed``), and the centred Gaussian prior
    (:func:`centre_gaussian`), each a dict of :func:`evaluate` (cIoU, AUC and mean cIoU per protocol, ``"pointing"``,
    mIoU with masks, and the extended protocol when the set has negatives). A map that depends on the sound scores
    well with the right sound only. The model is put in eval mode; batches go to the model's device.
    """
    model.eval()
    device = model.device
    generator = torch.Generator().manual_seed(seed)

    def maps(control: str) -> Callable[[AVBatch], Tensor]:
        def run(batch: AVBatch) -> Tensor:
            audio = (
                batch["audio"] if control in ("right", "other") else control_audio(batch["audio"], control, generator)
            )
            raw = model.localize(batch["image"].to(device), audio.to(device), normalize=False)
            out: Tensor = model.unit_scores(raw).clamp(0.0, 1.0)
            return out

        return run

    right = list(DataLoader(dataset, batch_size=batch_size))
    if not right:
        raise ValueError("evaluate_controls needs a non-empty dataset")
    h, w = right[0]["image"].shape[-2:]
    prior = centre_gaussian(h, w)
    return {
        "right": evaluate(maps("right"), right, protocols),
        "other": evaluate(maps("other"), DataLoader(OtherSound(dataset), batch_size=batch_size), protocols),
        "silence": evaluate(maps("silence"), right, protocols),
        "noise": evaluate(maps("noise"), right, protocols),
        "centre": evaluate(lambda b: prior.expand(b["image"].shape[0], h, w), right, protocols),
    }
