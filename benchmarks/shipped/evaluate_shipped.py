"""Quality of the shipped weights on real triplets, with paired bootstrap 95 % intervals.

Rows: the input composite, the classical floor (the foreground's Lab mean / std moved half-way
towards the background's, implemented here in a few lines, independent of the library's
models) and each model given. Data: ``$HARMONYKIT_REAL_DATA/iharmony4_mini`` (real iHarmony4
test triplets) and ``$HARMONYKIT_REAL_DATA/rendered`` (RdHarmony rendered triplets); both are
test data, never used for training. Metrics through :func:`harmonykit.eval.evaluate` at
256 x 256 under the ``idih`` (Samsung) and ``charmnet`` protocols, and at the original
resolution through :func:`harmonykit.harmonize` (``harmonykit`` protocol).

For every model the mean fMSE, the mean of the paired differences against the composite and
against the half-way transfer, and their 95 % percentile bootstrap intervals (10,000 resamples
of the images, seed 0) are reported. Usage::

    HARMONYKIT_REAL_DATA=../shared/data PYTHONPATH=. python benchmarks/shipped/evaluate_shipped.py \
        --model lab_statnet.hk_synth_v1 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from kornia.color import lab_to_rgb, rgb_to_lab

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harmonykit.eval.evaluate import evaluate  # noqa: E402
from harmonykit.eval.triplets import Triplet, find_triplets  # noqa: E402
from harmonykit.factory import create_model  # noqa: E402
from harmonykit.models.outputs import HarmonizationOutput  # noqa: E402


class HalfwayLab(torch.nn.Module):
    """The classical floor: foreground Lab mean and std moved ``strength`` of the way to the
    background's (soft-mask weighted moments), pasted through the mask. Runs at the input's
    resolution in :func:`harmonykit.harmonize` (``native_resolution``), like the network."""

    native_resolution = True

    def __init__(self, strength: float = 0.5) -> None:
        super().__init__()
        self.strength = strength

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, **_: object) -> HarmonizationOutput:
        lab = rgb_to_lab(composite.clamp(0, 1))

        def mom(w):
            n = w.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
            mu = (lab * w).sum(dim=(2, 3), keepdim=True) / n
            sd = (((lab - mu) ** 2) * w).sum(dim=(2, 3), keepdim=True).div(n).sqrt().clamp_min(1e-6)
            return mu, sd

        mf, sf = mom(mask)
        mb, sb = mom(1 - mask)
        s = self.strength
        out = (lab - mf) * ((sf + s * (sb - sf)) / sf) + mf + s * (mb - mf)
        out = torch.cat([out[:, :1].clamp(0, 100), out[:, 1:]], 1)
        img = composite + mask * (lab_to_rgb(out, clip=True) - composite)
        return HarmonizationOutput(image=img, image_normalized=img)


def rendered_triplets(root: Path) -> List[Triplet]:
    out = []
    for c in sorted(root.glob("*_composite.png")):
        stem = c.name[: -len("_composite.png")]
        out.append(Triplet(c, root / f"{stem}_mask.png", root / f"{stem}_real.png", "rendered", c.name))
    return out


def bootstrap(d: np.ndarray, n: int = 10000, seed: int = 0) -> List[float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n, len(d)))
    means = d[idx].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summarize(res, names: List[str]) -> Dict[str, Dict[str, object]]:
    per = {m: {r["name"]: r["fmse"] for r in res.records if r["model"] == m} for m in names}
    keys = sorted(per["composite"])
    comp = np.array([per["composite"][k] for k in keys])
    half = np.array([per["halfway_lab"][k] for k in keys])
    out = {}
    for m in names:
        v = np.array([per[m][k] for k in keys])
        row = dict(n=len(keys), fmse=float(v.mean()), mse=float(np.mean([r["mse"] for r in res.records if r["model"] == m])),
                   psnr=float(np.mean([r["psnr"] for r in res.records if r["model"] == m])))
        if m != "composite":
            d = v - comp
            row.update(vs_composite=float(d.mean()), vs_composite_ci95=bootstrap(d), vs_composite_rel=float(v.mean() / comp.mean() - 1))
        if m not in ("composite", "halfway_lab"):
            d = v - half
            row.update(vs_halfway=float(d.mean()), vs_halfway_ci95=bootstrap(d), vs_halfway_rel=float(v.mean() / half.mean() - 1))
        out[m] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=[], help="model names (arch.tag loads its weights)")
    ap.add_argument("--checkpoint", action="append", default=[], help="NAME=ARCH:FILE extra models")
    ap.add_argument("--json")
    ap.add_argument("--original", action="store_true", help="also evaluate at the original resolution")
    a = ap.parse_args()
    root = Path(os.environ.get("HARMONYKIT_REAL_DATA", "../shared/data"))
    models: Dict[str, object] = {"composite": "composite", "halfway_lab": HalfwayLab(0.5)}
    for m in a.model:
        models[m] = create_model(m, pretrained="." in m).eval()
    for spec in a.checkpoint:
        name, _, rest = spec.partition("=")
        arch, _, file = rest.partition(":")
        models[name] = create_model(arch, checkpoint_path=file).eval()
    names = list(models)
    sets = {"iharmony4_mini": find_triplets(root / "iharmony4_mini", split="test"), "rendered": rendered_triplets(root / "rendered")}
    report: Dict[str, object] = {}
    for set_name, trips in sets.items():
        for proto, size in (("idih", (256, 256)), ("charmnet", (256, 256))) + ((("harmonykit", None),) if a.original else ()):
            res = evaluate(models, trips, protocol=proto, size=size, ssim=False, progress=False)
            key = f"{set_name}/{proto}@{'original' if size is None else f'{size[0]}x{size[1]}'}"
            report[key] = summarize(res, names)
            print(f"== {key} (n={len(trips)})")
            for m, r in report[key].items():
                extra = ""
                if "vs_composite" in r:
                    extra += f"  vs composite {r['vs_composite']:+.1f} [{r['vs_composite_ci95'][0]:+.1f}, {r['vs_composite_ci95'][1]:+.1f}] ({100 * r['vs_composite_rel']:+.0f}%)"
                if "vs_halfway" in r:
                    extra += f"  vs half-way {r['vs_halfway']:+.1f} [{r['vs_halfway_ci95'][0]:+.1f}, {r['vs_halfway_ci95'][1]:+.1f}] ({100 * r['vs_halfway_rel']:+.0f}%)"
                print(f"  {m:28s} fMSE {r['fmse']:8.1f}{extra}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
