"""Benchmark ``harmonykit.harmonize``: CPU time per megapixel and peak memory of the resolution
policies, (``--quality``) their accuracy at full resolution on real triplets, and
(``--official-pctnet`` / ``--official-harmonizer``) the speed of the full-resolution models
against their official inference code on the same 4K composite.

Each timing runs in a fresh subprocess so that its peak RSS is its own.

    python benchmarks/bench_inference.py --threads 2                       # timing + memory
    python benchmarks/bench_inference.py --threads 2 --quality --json out.json
    python benchmarks/bench_inference.py --model pctnet_cnn --policies native --precisions fp32 bf16

Against the official code (you fetch the official repositories; their code is imported and run
from DIR, never copied into harmonykit):

    git clone https://github.com/rakutentech/PCT-Net-Image-Harmonization  PCT      # commit 1572176
    git clone https://github.com/ZHKKKe/Harmonizer HARM                             # commit 48ecd70
    python benchmarks/bench_inference.py --official-pctnet PCT --official-harmonizer HARM \
        --compare pctnet_cnn pctnet_vit harmonizer issam --rounds 2 --repeats 3 --json cmp.json

Routes, each in its own subprocess, interleaved per round (ours fp32, official, ours bf16):

- ours: ``harmonize(PIL composite, PIL mask, model, policy, precision=...)`` -> PIL image
  (policy ``native``; ``full`` for fixed-size networks such as ``issam``, which has no official
  full-resolution route);
- official PCT-Net (``CNN_pct`` / ``ViT_pct``): the official ``scripts/evaluate_folder.py``
  route: ``cv2.resize`` of the uint8 RGB composite and of the float mask to 256x256,
  ``iharm.inference.predictor.Predictor(net, cpu, use_attn=..., mean=..., std=...).predict(
  comp_lr, comp, mask_lr, mask)``, its full-resolution output rounded to uint8;
- official Harmonizer: its ``demo/image_harmonization/run.py`` route: ``tf.to_tensor`` of the
  PIL composite and of the mask (mode ``1``), ``predict_arguments`` + ``restore_image(...)[-1]``
  under ``torch.no_grad()``, ``* 255`` to uint8.

All networks hold random weights (speed does not depend on them); nothing is downloaded: the
official ``Harmonizer()`` builds its EfficientNet-B0 with ``EfficientBackbone.from_name`` (no
pretrained weights) and needs no patch; PCT-Net's official model is built from
``BMCONFIGS[...]["params"]``, unpatched. Timings: median over ``--repeats`` runs after one
warm-up, then the median over ``--rounds``; peak RSS is the child's ``ru_maxrss`` (model, images
and the runs). Images come from ``$HARMONYKIT_REAL_DATA`` (default ``../shared/data`` beside
the checkout); a synthetic 4256x2832 composite is used when it is missing. Run on a quiet
machine (the 1-minute load average is recorded), under ``taskset -c 0,1`` to pin two cores.
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


OFFICIAL_PCTNET = {"pctnet_cnn": ("CNN_pct", True, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                   "pctnet_vit": ("ViT_pct", False, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))}


def _official_route(args, comp, mask):
    """``run() -> uint8 (H, W, 3)``: the official full-resolution inference route (module doc)."""
    import numpy as np
    import torch

    root = str(Path(args.official_dir).resolve())
    sys.path.insert(0, root)
    comp_u8 = np.asarray(comp)
    if args.model in OFFICIAL_PCTNET:
        import cv2

        from iharm.inference.predictor import Predictor
        from iharm.mconfigs import BMCONFIGS
        from iharm.model.base.pct_net import PCTNet

        config, use_attn, mean, std = OFFICIAL_PCTNET[args.model]
        predictor = Predictor(PCTNet(**BMCONFIGS[config]["params"]), torch.device("cpu"), use_attn=use_attn, mean=mean, std=std)
        mask_f = np.asarray(mask).astype(np.float64) / 255  # cv2.imread(..., GRAYSCALE) / 255

        def raw():
            comp_lr, mask_lr = cv2.resize(comp_u8, (256, 256)), cv2.resize(mask_f, (256, 256))
            _, pred = predictor.predict(comp_lr, comp_u8, mask_lr, mask_f)
            return pred

        def run():
            return np.rint(raw()).astype(np.uint8)  # what cv2.imwrite stores
        run.raw = lambda: np.asarray(raw(), dtype=np.float32)  # 0..255, before quantisation
        run.state_dict = lambda: predictor.net.state_dict()
        return run
    if args.model == "harmonizer":
        import torchvision.transforms.functional as tf

        from src import model as official

        net = official.Harmonizer().eval()
        mask_1 = mask.convert("1")

        def raw():
            c, m = tf.to_tensor(comp)[None], tf.to_tensor(mask_1)[None]
            with torch.no_grad():
                arguments = net.predict_arguments(c, m)
                out = net.restore_image(c, m, arguments)[-1]
            return np.transpose(out[0].numpy(), (1, 2, 0)) * 255

        def run():
            return raw().astype(np.uint8)
        run.raw = lambda: np.asarray(raw(), dtype=np.float32)  # 0..255, before quantisation
        run.state_dict = lambda: net.state_dict()
        return run
    raise SystemExit(f"no official route for model {args.model!r}")


def child(args) -> None:
    """Time one (image, policy, precision) route in this process; print a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    try:
        import cv2

        cv2.setNumThreads(args.threads)
    except ImportError:  # pragma: no cover
        pass
    comp, mask = _load_pair(args.image)
    verify = Path(args.verify) / f"{args.model}_official" if args.verify else None
    if args.route == "official":
        run = _official_route(args, comp, mask)
    else:
        from harmonykit.inference import harmonize

        if verify is not None and verify.with_suffix(".pth").is_file():  # the official route's weights
            import harmonykit

            net = harmonykit.create_model(args.model, checkpoint_path=verify.with_suffix(".pth")).eval()
        else:
            net = _model(args)
        net.random_weights_ok = True

        def run():
            return harmonize(comp, mask, net, args.policy, precision=args.precision)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run()  # warm-up
    times, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    import numpy as np

    assert np.asarray(out).shape[:2] == (comp.size[1], comp.size[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mp = comp.size[0] * comp.size[1] / 1e6
    check = {}
    if verify is not None:
        check = _verify(args, verify, run, out, comp, mask)
    print(json.dumps({**check,
        "image": args.image, "size": list(comp.size), "megapixels": mp, "policy": args.policy, "model": args.model,
        "route": args.route, "precision": args.precision if args.route == "ours" else "fp32",
        "median_s": statistics.median(times), "min_s": min(times), "s_per_mp": statistics.median(times) / mp,
        "cpu_s": statistics.median(cpu), "cpu_s_per_mp": statistics.median(cpu) / mp, "load_avg_1min": os.getloadavg()[0],
        "peak_rss_mb": peak / 1024, "rss_before_mb": base / 1024, "threads": args.threads,
    }))


def _verify(args, stem: Path, run, out, comp, mask) -> dict:
    """``--verify``: the official route saves its weights and its float output (0..255, before
    quantisation); ours, built from those weights, is compared with it at full resolution:
    max |ours - official| in levels (ours is rounded to uint8, so <= 0.5 + the parity tolerance
    of 1e-4 x 255 means equal) on the foreground, and whether every pixel where the mask is 0 is
    the input's (ours always; the official PCT-Net CNN route returns the attention-blended
    network output there, the ViT and Harmonizer routes paste through the mask)."""
    import numpy as np
    import torch

    if args.route == "official":
        stem.parent.mkdir(parents=True, exist_ok=True)
        torch.save(run.state_dict(), stem.with_suffix(".pth"))
        np.save(stem.with_suffix(".npy"), run.raw())
        return {}
    if not stem.with_suffix(".npy").is_file():
        return {}
    ref = np.load(stem.with_suffix(".npy"))
    ours = np.asarray(out).astype(np.float32)
    m = np.asarray(mask) > 0
    bg = ~m
    diff = np.abs(ours - ref)[m]  # the foreground: where harmonize() returns the model's output
    return {
        "verify_fg_max_abs_levels": float(diff.max()) if m.any() else 0.0,
        "verify_fg_values_over_0.5": int((diff > 0.5 + 255e-4).sum()), "verify_fg_values": int(diff.size),
        "verify_background_equal_input": bool((np.asarray(out)[bg] == np.asarray(comp)[bg]).all()),
        "verify_official_background_equal_input": bool((np.rint(ref[bg]) == np.asarray(comp)[bg]).all()),
    }


def _run_child(args, image, policy, model=None, route="ours", precision="fp32", official_dir=None) -> dict:
    cmd = [sys.executable, __file__, "--_child", "--image", image, "--policy", policy, "--model", model or args.model,
           "--threads", str(args.threads), "--repeats", str(args.repeats), "--route", route, "--precision", precision]
    if official_dir:
        cmd += ["--official-dir", official_dir]
    if args.verify:
        cmd += ["--verify", args.verify]
    if model is None:
        for a in args.model_arg:
            cmd += ["--model-arg", a]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"child failed ({' '.join(cmd)}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def compare(args, image: str) -> list:
    """Ours (fp32, bf16) against the official full-resolution routes, interleaved per round."""
    official = {"pctnet_cnn": args.official_pctnet, "pctnet_vit": args.official_pctnet, "harmonizer": args.official_harmonizer}
    table = []
    for model in args.compare:
        policy = "native" if model in official else "full"
        routes = [("ours", "fp32", None)]
        if official.get(model):  # with --verify the official route runs first: ours compares with its output
            routes.insert(0 if args.verify else 1, ("official", "fp32", official[model]))
        routes.append(("ours", "bf16", None))
        runs = {r: [] for r in routes}
        for _ in range(args.rounds):
            for r in routes:
                runs[r].append(_run_child(args, image, policy, model=model, route=r[0], precision=r[1], official_dir=r[2]))
                x = runs[r][-1]
                print(f"  {model:11s} {r[0]:8s} {x['precision']:4s} wall {x['median_s']:.3f} s  CPU {x['cpu_s']:.3f} s  "
                      f"peak RSS {x['peak_rss_mb']:.0f} MB  load {x['load_avg_1min']:.2f}"
                      + (f"  vs official (foreground): max |diff| {x['verify_fg_max_abs_levels']:.3f} levels, "
                         f"{x['verify_fg_values_over_0.5']} of {x['verify_fg_values']} values > 0.5 + 1e-4 x 255; "
                         f"background = input: ours {x['verify_background_equal_input']}, official "
                         f"{x['verify_official_background_equal_input']}" if "verify_fg_max_abs_levels" in x else ""), flush=True)

        def med(r, key="median_s"):
            return statistics.median(x[key] for x in runs[r]) if r in runs else None

        def peak(r):
            return max(x["peak_rss_mb"] for x in runs[r]) if r in runs else None
        ours32, ours16 = ("ours", "fp32", None), ("ours", "bf16", None)
        off = ("official", "fp32", official.get(model))
        row = {"model": model, "policy": policy, "ours_fp32_s": med(ours32), "ours_bf16_s": med(ours16),
               "official_s": med(off) if off in runs else None, "ours_fp32_peak_mb": peak(ours32),
               "ours_bf16_peak_mb": peak(ours16), "official_peak_mb": peak(off) if off in runs else None,
               "load_avg_1min": [x["load_avg_1min"] for r in routes for x in runs[r]], "runs": {"/".join(k[:2]): v for k, v in runs.items()}}
        if row["official_s"]:
            row["ratio_fp32"] = row["official_s"] / row["ours_fp32_s"]
            row["ratio_bf16"] = row["official_s"] / row["ours_bf16_s"]
        table.append(row)
    size = table[0]["runs"]["ours/fp32"][0]["size"] if table else None
    print(f"\n{image} ({size[0]}x{size[1]}), {args.threads} threads, median of {args.rounds} rounds x {args.repeats} runs")
    print("| model | policy | ours fp32 (s) | ours bf16 (s) | official (s) | official / ours fp32 | official / ours bf16 "
          "| peak RSS ours fp32 / bf16 / official (MB) |")
    print("|---|---|---|---|---|---|---|---|")

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    for r in table:
        print(f"| {r['model']} | {r['policy']} | {f(r['ours_fp32_s'], '.3f')} | {f(r['ours_bf16_s'], '.3f')} | "
              f"{f(r['official_s'], '.3f')} | {f(r.get('ratio_fp32'), '.2f')} | {f(r.get('ratio_bf16'), '.2f')} | "
              f"{f(r['ours_fp32_peak_mb'], '.0f')} / {f(r['ours_bf16_peak_mb'], '.0f')} / {f(r['official_peak_mb'], '.0f')} |")
    loads = [v for r in table for v in r["load_avg_1min"]]
    print(f"1-minute load average during the runs: {min(loads):.2f} .. {max(loads):.2f}")
    return table


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
    p.add_argument("--precisions", nargs="*", default=["fp32"], choices=["fp32", "bf16"],
                   help="harmonize(precision=...) values to time (default fp32)")
    p.add_argument("--official-pctnet", metavar="DIR", default=None,
                   help="checkout of rakutentech/PCT-Net-Image-Harmonization: time its official route for pctnet_cnn / pctnet_vit")
    p.add_argument("--official-harmonizer", metavar="DIR", default=None,
                   help="checkout of ZHKKKe/Harmonizer: time its official route for harmonizer")
    p.add_argument("--compare", nargs="*", default=None, metavar="MODEL",
                   help="models for the comparison with the official routes (default: pctnet_cnn pctnet_vit harmonizer "
                        "issam, those with an official DIR given plus issam); uses the first --images entry")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the comparison (default 2)")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--image", default=None, help=argparse.SUPPRESS)
    p.add_argument("--policy", default=None, help=argparse.SUPPRESS)
    p.add_argument("--route", default="ours", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--official-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--verify", metavar="DIR", default=None,
                   help="with --official-*: the official route saves its (random) weights and float output in DIR, and "
                        "ours, built from those weights, is compared with it at full resolution (max |diff| in levels, "
                        "background kept); the official route runs first in every round")
    args = p.parse_args()
    if args._child:
        return child(args)
    images = args.images or [s for s in DEFAULT_IMAGES if (DATA / s.split(":")[0]).is_file()] or ["synthetic"]
    if args.official_pctnet or args.official_harmonizer or args.compare:
        if args.compare is None:
            args.compare = [m for m, d in (("pctnet_cnn", args.official_pctnet), ("pctnet_vit", args.official_pctnet),
                                           ("harmonizer", args.official_harmonizer)) if d] + ["issam"]
        table = compare(args, images[0])
        if args.json:
            Path(args.json).write_text(json.dumps({"threads": args.threads, "image": images[0], "compare": table}, indent=2, default=float))
        return
    rows = []
    for img in images:
        for pol in args.policies:
            for prec in args.precisions:
                rows.append(_run_child(args, img, pol, precision=prec))
                r = rows[-1]
                print(f"{Path(r['image'].split(':')[0]).name:24s} {r['size'][0]}x{r['size'][1]:<5d} {r['policy']:6s} {prec:4s} "
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
