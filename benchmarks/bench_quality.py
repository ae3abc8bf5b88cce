"""Quality benchmark: every shipped model and the classical baselines against the input composite.

On the real triplets of an iHarmony4-layout root (default ``$HARMONYKIT_REAL_DATA/iharmony4_mini``)
this reports, per model:

- mean fMSE / MSE / PSNR at 256 x 256 under each official metric protocol (``charmnet``: bcmi
  CharmNet ``test.py``; ``idih``: SamsungLabs ``evaluate_model.py``; see docs/evaluation.md),
  with the paired bootstrap 95 % interval of the per-image difference to the composite
  (model - composite; below zero = lower fMSE / MSE, above zero = higher PSNR);
- seconds per image at full resolution (median over ``--repeats`` after one warm-up):
  ``harmonize(..., policy="full")`` for networks, a direct forward at the original size for
  weight-free models (they work at full resolution), and the fMSE of that full-resolution result
  (``idih`` protocol at the original size).

Models: ``harmonykit.list_models(pretrained=True)`` (shipped weights, loaded offline) plus every
weight-free registered model except ``identity`` (identical to the composite row); or ``--models``.

    python benchmarks/bench_quality.py --threads 2 --json bench_quality.json --markdown bench_quality.md
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("HARMONYKIT_REAL_DATA") or REPO.parent / "shared" / "data")
METRICS = ("fmse", "mse", "psnr")
LOWER_IS_BETTER = {"fmse": True, "mse": True, "psnr": False}


def default_data() -> Path:
    mini = DATA / "iharmony4_mini"
    return mini if mini.is_dir() else DATA


def default_models() -> List[str]:
    import harmonykit
    from harmonykit.models.classical import list_weight_free_models

    return list(harmonykit.list_models(pretrained=True)) + [n for n in list_weight_free_models() if n != "identity"]


def build(name: str, checkpoint: str = None):
    """The model ``name`` ready for evaluation: weight-free models as built, ``arch.tag`` names
    with their registered weights, ``local-dir:`` / ``hf-hub:`` names as such, or a registry
    name with ``checkpoint``."""
    import harmonykit
    from harmonykit.factory import parse_model_name
    from harmonykit.models.classical import is_weight_free

    if checkpoint:
        return harmonykit.create_model(name, checkpoint_path=checkpoint).eval()
    if parse_model_name(name)[0] != "registry" or is_weight_free(name):
        return harmonykit.create_model(name).eval()
    return harmonykit.create_model(name, pretrained=True).eval()


def paired_bootstrap(d: np.ndarray, rng: np.random.Generator, n: int) -> List[float]:
    """95 % percentile bootstrap interval of the mean of the paired differences ``d``."""
    if len(d) < 2:
        return [float(d.mean()), float(d.mean())]
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def compare(records: Sequence[Dict[str, Any]], models: Sequence[str], boot: int, seed: int) -> Dict[str, Any]:
    """Per model: mean of each metric and the paired difference to the composite with its CI."""
    from harmonykit.eval import COMPOSITE

    by: Dict[str, Dict[str, Dict[str, float]]] = {}
    for r in records:
        by.setdefault(r["model"], {})[f"{r['subset']}/{r['name']}"] = r
    names = sorted(by[COMPOSITE])
    rng = np.random.default_rng(seed)
    out: Dict[str, Any] = {}
    for model in [COMPOSITE, *models]:
        res: Dict[str, Any] = {"n": len(names)}
        for m in METRICS:
            x = np.array([by[model][n][m] for n in names], np.float64)
            c = np.array([by[COMPOSITE][n][m] for n in names], np.float64)
            ok = np.isfinite(x) & np.isfinite(c)
            d = x[ok] - c[ok]
            lo, hi = paired_bootstrap(d, rng, boot)
            sig = (hi < 0) if LOWER_IS_BETTER[m] else (lo > 0)
            worse = (lo > 0) if LOWER_IS_BETTER[m] else (hi < 0)
            res[m] = {
                "mean": float(x[ok].mean()),
                "diff_to_composite": float(d.mean()),
                "ci95": [lo, hi],
                "relative_change": float(d.mean() / c[ok].mean()) if c[ok].mean() else math.nan,
                "better_on": int(((d < 0) if LOWER_IS_BETTER[m] else (d > 0)).sum()),
                "verdict": "better" if sig else ("worse" if worse else "no clear difference"),
            }
        out[model] = res
    return out


def full_resolution(nets: Dict[str, Any], triplets, repeats: int) -> Dict[str, Any]:
    """Seconds per image and fMSE (idih protocol) at the original size."""
    import torch

    from harmonykit.eval import get_protocol
    from harmonykit.eval.evaluate import _load_triplet
    from harmonykit.inference import harmonize
    from harmonykit.models.classical import is_weight_free

    proto = get_protocol("idih")
    loaded = [_load_triplet(t) for t in triplets]
    out: Dict[str, Any] = {}
    for name, net in nets.items():
        direct = net is None or is_weight_free(getattr(net, "architecture", name))
        times, fmse, megapixels = [], [], []
        for comp, mask_u8, real in loaded:
            if net is None:  # the input composite
                def run():
                    return comp.astype(np.float32) / 255
            elif direct:
                c = torch.tensor(comp).permute(2, 0, 1)[None].float() / 255
                m = torch.tensor(mask_u8)[None, None].float() / 255

                def run():
                    with torch.inference_mode():
                        return net(c, m).image[0].permute(1, 2, 0).clamp(0, 1).numpy()
            else:
                def run():
                    return harmonize(comp, mask_u8, net, "full").astype(np.float32) / 255

            pred = run()  # warm-up
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                pred = run()
                ts.append(time.perf_counter() - t0)
            times.append(statistics.median(ts))
            megapixels.append(comp.shape[0] * comp.shape[1] / 1e6)
            fmse.append(proto(pred[None], real[None], mask_u8[None], ssim=False)[0]["fmse"])
        out[name] = {
            "mode": "-" if net is None else ("forward at full resolution" if direct else "harmonize(policy='full')"),
            "s_per_image": float(np.mean(times)) if net is not None else None,
            "s_per_megapixel": float(np.sum(times) / np.sum(megapixels)) if net is not None else None,
            "s_per_image_each": times,
            "megapixels_each": megapixels,
            "fmse_full_resolution": float(np.mean(fmse)),
        }
    return out


def _num(x: float, digits: int) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(result: Dict[str, Any]) -> str:
    from harmonykit.eval import COMPOSITE

    s = result["settings"]
    lines = [
        f"Real iHarmony4 triplets: `{s['data_name']}` ({s['n_images']} composites: "
        + ", ".join(f"{k} {v}" for k, v in s["subsets"].items())
        + f"), metrics at {s['size'][0]}x{s['size'][1]}; paired bootstrap 95 % interval of the mean per-image "
        f"difference to the composite ({s['bootstrap']} resamples, seed {s['seed']}); "
        f"{s['threads']} CPU thread(s), {s['machine']}, torch {s['torch']}.",
        "",
    ]
    for proto, table in result["protocols"].items():
        lines += [
            f"**{proto} protocol**",
            "",
            "| model | fMSE | fMSE - composite [95% CI] | MSE | MSE - composite [95% CI] | PSNR | PSNR - composite [95% CI] |",
            "| --- | ---: | --- | ---: | --- | ---: | --- |",
        ]
        for model, r in table.items():
            cells = [f"`{model}`" if model != COMPOSITE else "composite (input)"]
            for m in METRICS:
                v = r[m]
                digits = 2 if m == "psnr" else 1
                cells.append(f"{v['mean']:.{digits}f}")
                if model == COMPOSITE:
                    cells.append("")
                else:
                    rel = f" ({100 * v['relative_change']:+.0f}%)" if m != "psnr" else ""
                    cells.append(
                        f"{v['diff_to_composite']:+.{digits}f}{rel} [{v['ci95'][0]:+.{digits}f}, {v['ci95'][1]:+.{digits}f}]"
                    )
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    load = s.get("load_avg_1min")
    busy = f"; 1-minute load average {load[0]:.1f} / {load[1]:.1f} before / after the timing" if load else ""
    lines += [
        f"**Full resolution** (original sizes; fMSE under the idih protocol at the original size; "
        f"median of {s['repeats']} runs after a warm-up{busy})",
        "",
        "| model | how | seconds / image | seconds / megapixel | fMSE at full resolution |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for model, r in result["full_resolution"].items():
        shown = model if model.startswith("composite") else f"`{model}`"
        lines.append(f"| {shown} | {r['mode']} | {_num(r['s_per_image'], 2)} | {_num(r['s_per_megapixel'], 3)} | {r['fmse_full_resolution']:.1f} |")
    if s.get("skipped"):
        lines += ["", "Not evaluated (weights not available offline): " + ", ".join(f"`{n}`" for n in s["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="iHarmony4-layout root (default $HARMONYKIT_REAL_DATA/iharmony4_mini)")
    p.add_argument("--models", nargs="*", default=None, help="models (default: shipped tags + weight-free models)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=FILE",
                   help="also evaluate registry model MODEL with the weights in FILE (repeatable)")
    p.add_argument("--protocols", nargs="*", default=["idih", "charmnet"])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--split", default="test")
    p.add_argument("--bootstrap", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per image at full resolution")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HARMONYKIT_DISABLE_PROGRESS", "1")
    from harmonykit.eval import evaluate, find_triplets

    data = Path(args.data) if args.data else default_data()
    if not data.is_dir():
        raise SystemExit(f"bench_quality: no data at {data} (set HARMONYKIT_REAL_DATA or --data)")
    triplets = find_triplets(data, split=args.split)
    if not triplets:
        raise SystemExit(f"bench_quality: no triplets with ground truth under {data} (split {args.split!r})")
    from harmonykit.factory import WeightsUnavailableError

    checkpoints = dict(c.split("=", 1) for c in args.checkpoint)
    names = args.models if args.models is not None else default_models()
    names += [n for n in checkpoints if n not in names]
    nets, skipped = {}, {}
    for n in names:
        try:
            nets[n] = build(n, checkpoints.get(n))
        except WeightsUnavailableError as e:  # a registered tag whose weights are not on this machine
            skipped[n] = str(e)
            print(f"bench_quality: skipping {n}: {e}", file=sys.stderr)
    names = list(nets)

    subsets: Dict[str, int] = {}
    for t in triplets:
        subsets[t.subset] = subsets.get(t.subset, 0) + 1
    result: Dict[str, Any] = {
        "settings": {
            "data": str(data), "data_name": data.name, "n_images": len(triplets), "subsets": subsets,
            "size": [args.size, args.size], "bootstrap": args.bootstrap, "seed": args.seed,
            "threads": args.threads, "repeats": args.repeats, "models": names, "skipped": skipped,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "torch": torch.__version__,
        },
        "protocols": {},
    }
    per_image: Dict[str, Any] = {}
    for proto in args.protocols:
        ev = evaluate({"composite": "composite", **nets}, triplets, proto, size=(args.size, args.size), ssim=False, progress=False)
        result["protocols"][proto] = compare(ev.records, names, args.bootstrap, args.seed)
        per_image[proto] = [{k: r[k] for k in ("model", "subset", "name", *METRICS)} for r in ev.records]
    load_before = os.getloadavg()[0]
    result["full_resolution"] = full_resolution({"composite (input)": None, **nets}, triplets, args.repeats)
    result["settings"]["load_avg_1min"] = [load_before, os.getloadavg()[0]]
    result["per_image"] = per_image

    md = markdown(result)
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
