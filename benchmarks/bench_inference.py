"""Benchmark ``harmonykit.harmonize``: CPU time per megapixel and peak memory of the two
resolution policies, and (``--quality``) their accuracy at full resolution on real triplets.

Each (image, policy) timing runs in a fresh subprocess so that its peak RSS is its own.

    python benchmarks/bench_inference.py --threads 2                       # timing + memory
    python benchmarks/bench_inference.py --threads 2 --quality --json out.json

Images come from ``$HARMONYKIT_REAL_DATA`` (default ``../shared/data`` beside the checkout); a
synthetic 4256x2832 composite is used when it is missing. Run under ``taskset -c 0,1`` to pin
two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HARMONYKIT_REAL_DATA") or REPO.parent / "shared" / "data")
DEFAULT_IMAGES = [
    "iharmony4_mini/HAdobe5k/composite_images/a0002_1_4.jpg:iharmony4_mini/HAdobe5k/masks/a0002_1.png",
    "triplets/inr_demo_2k/composite.jpg:triplets/inr_demo_2k/mask.png",
    "composites/inr_demo_1_composite.jpg:composites/inr_demo_1_mask.png",
]


def _model(args):
    import harmonykit
    from harmonykit.inference import parse_model_args

    return harmonykit.create_model(args.model, **parse_model_args(args.model_arg)).eval()


def _load_pair(spec: str):
    import numpy as np
    from PIL import Image

    from harmonykit.data.io import load_image_u8, load_mask_u8

    def load_image(p):
        return Image.fromarray(load_image_u8(p))

    def load_mask(p):
        return Image.fromarray(load_mask_u8(p))

    if spec == "synthetic":
        rng = np.random.default_rng(0)
        comp = Image.fromarray(rng.integers(0, 256, (2832, 4256, 3), dtype=np.uint8))
        m = np.zeros((2832, 4256), np.uint8)
        m[700:2400, 1000:3000] = 255
        return comp, Image.fromarray(m)
    c, m = spec.split(":")
    return load_image(DATA / c), load_mask(DATA / m)


def child(args) -> None:
    """Time one (image, policy) in this process; print a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from harmonykit.inference import harmonize

    net = _model(args)
    comp, mask = _load_pair(args.image)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    harmonize(comp, mask, net, args.policy)  # warm-up
    times, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = harmonize(comp, mask, net, args.policy)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert out.size == comp.size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mp = comp.size[0] * comp.size[1] / 1e6
    print(json.dumps({
        "image": args.image, "size": list(comp.size), "megapixels": mp, "policy": args.policy,
        "median_s": statistics.median(times), "min_s": min(times), "s_per_mp": statistics.median(times) / mp,
        "cpu_s": statistics.median(cpu), "cpu_s_per_mp": statistics.median(cpu) / mp, "load_avg_1min": os.getloadavg()[0],
        "peak_rss_mb": peak / 1024, "rss_before_mb": base / 1024, "threads": args.threads,
    }))


def quality(args) -> dict:
    """Full-resolution metrics of both policies on the real triplets with ground truth, for the
    model and for an oracle low-resolution prediction (the ground truth resized to the model
    size: what a perfect 256 x 256 network would output)."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from harmonykit.eval import compute_metrics, find_pairs, mean_metrics
    from PIL import Image

    from harmonykit.data.io import load_image_u8, load_mask_u8
    from harmonykit.inference import _downsample, harmonize, model_input_size

    def load_image(p):
        return Image.fromarray(load_image_u8(p))

    def load_mask(p):
        return Image.fromarray(load_mask_u8(p))

    net = _model(args)
    size = model_input_size(net)
    pairs = [t for t in find_pairs(DATA / "iharmony4_mini") + find_pairs(DATA / "triplets") if t.real is not None]
    res = {}
    for pred_name in ("model", "oracle"):
        for policy in ("resize", "full"):
            recs = []
            for t in pairs:
                comp, mask, real = load_image(t.composite), load_mask(t.mask), load_image(t.real)
                if pred_name == "oracle":
                    gt_lr = _downsample(torch.from_numpy(np.array(real)), size)
                    predictor = lambda c, m, _g=gt_lr: _g  # noqa: E731
                else:
                    predictor = net
                out = harmonize(comp, mask, predictor, policy, size=size)
                r = compute_metrics(np.asarray(out)[None], np.asarray(real)[None], np.asarray(mask)[None], "harmonykit", ssim=args.ssim)[0]
                r["name"] = t.name
                recs.append(r)
            res[f"{pred_name}/{policy}"] = {"mean": mean_metrics(recs, skip_nan=True), "per_image": recs}
    recs = []
    for t in pairs:  # the composite itself
        comp, mask, real = load_image(t.composite), load_mask(t.mask), load_image(t.real)
        recs.append(compute_metrics(np.asarray(comp)[None], np.asarray(real)[None], np.asarray(mask)[None], "harmonykit", ssim=args.ssim)[0])
    res["composite"] = {"mean": mean_metrics(recs, skip_nan=True)}
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="idih256", help="registry name (default idih256, full width)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--images", nargs="*", default=None, help="COMPOSITE:MASK paths relative to the data folder, or 'synthetic'")
    p.add_argument("--policies", nargs="*", default=["resize", "full"])
    p.add_argument("--quality", action="store_true", help="also compare the policies on the real triplets")
    p.add_argument("--ssim", action="store_true", help="include SSIM in --quality (slow at 12 MP)")
    p.add_argument("--json", default=None, help="write all results here")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--image", default=None, help=argparse.SUPPRESS)
    p.add_argument("--policy", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        return child(args)
    images = args.images or [s for s in DEFAULT_IMAGES if (DATA / s.split(":")[0]).is_file()] or ["synthetic"]
    rows = []
    for img in images:
        for pol in args.policies:
            cmd = [sys.executable, __file__, "--_child", "--image", img, "--policy", pol, "--model", args.model,
                   "--threads", str(args.threads), "--repeats", str(args.repeats)]
            for a in args.model_arg:
                cmd += ["--model-arg", a]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
            r = rows[-1]
            print(f"{Path(r['image'].split(':')[0]).name:24s} {r['size'][0]}x{r['size'][1]:<5d} {r['policy']:6s} "
                  f"wall {r['median_s']:.3f} s ({r['s_per_mp']:.3f} s/MP)  CPU {r['cpu_s']:.3f} s ({r['cpu_s_per_mp']:.3f} s/MP)  "
                  f"load {r['load_avg_1min']:.1f}  peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(+{r['peak_rss_mb'] - r['rss_before_mb']:.0f} MB over the loaded images)", flush=True)
    result = {"model": args.model, "model_args": args.model_arg, "threads": args.threads, "timing": rows}
    if args.quality:
        q = quality(args)
        result["quality"] = q
        print("\nfull-resolution metrics (harmonykit protocol) on the real triplets with ground truth:")
        for k, v in q.items():
            m = v["mean"]
            print(f"  {k:14s} n={m['n']}  MSE {m['mse']:.2f}  fMSE {m['fmse']:.2f}  PSNR {m['psnr']:.2f}  fPSNR {m['fpsnr']:.2f}"
                  + (f"  SSIM {m['ssim']:.4f}  fSSIM {m['fssim']:.4f}" if "ssim" in m else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
