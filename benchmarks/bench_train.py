"""Training-iteration benchmark: images/s and peak memory of one trainer step.

Measures ``Trainer.train_step`` (the real training path: forward(s), D step, G + style-heads
step) of ``idih256`` (single-domain, batch B) and ``charmnet_idih`` (B rendered + B real) at
256x256 on CPU and CUDA (when available), for eager fp32 and the faster paths (channels_last,
bf16 autocast, torch.compile). Each configuration runs in its own subprocess so the CPU peak RSS
is its own; ratios are against eager fp32 of the same model and device in the same run.

Usage:
    python benchmarks/bench_train.py                       # CPU (+ CUDA if present), default set
    python benchmarks/bench_train.py --devices cuda --configs eager,bf16_cl,compile_bf16_cl
    python benchmarks/bench_train.py --iters 10 --warmup 3 --batch 8
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

CONFIGS = {
    "eager": dict(precision="fp32", channels_last=False, compile=False),
    "channels_last": dict(precision="fp32", channels_last=True, compile=False),  # the recipe default path
    "bf16": dict(precision="bf16", channels_last=False, compile=False),
    "bf16_cl": dict(precision="bf16", channels_last=True, compile=False),
    "compile_cl": dict(precision="fp32", channels_last=True, compile=True),
    "compile_bf16_cl": dict(precision="bf16", channels_last=True, compile=True),
}
MODELS = {"idih256": "idih_real_only", "charmnet_idih": "charmnet_idih"}


def _child(args: argparse.Namespace) -> None:
    import torch

    from harmonykit.train.recipe import load_recipe
    from harmonykit.train.synthetic import synthetic_batch
    from harmonykit.train.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = CONFIGS[args.config]
    ov = [
        f"train.batch_size={args.batch}",
        f"train.precision={cfg['precision']}",
        f"train.channels_last={str(cfg['channels_last']).lower()}",
        f"train.compile={str(cfg['compile']).lower()}",
        f"train.device={args.device}",
        "sched.name=none",
    ]
    recipe = load_recipe(MODELS[args.model], overrides=ov, check_data=False)
    tr = Trainer(recipe)
    doms = tr._step_domains(0)
    batches = {d: synthetic_batch(args.batch, args.size, d, seed=0) for d in doms}
    n_img = args.batch * len(doms)
    cuda = tr.device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        tr.train_step(batches)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        tr.train_step(batches)
        sync()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    med = statistics.median(times)
    print(json.dumps({"s_per_iter": med, "img_per_s": n_img / med, "peak_mib": peak, "images": n_img,
                      "min_s": min(times), "max_s": max(times)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", default=None, help="comma list (default: cpu, plus cuda when available)")
    ap.add_argument("--models", default="idih256,charmnet_idih")
    ap.add_argument("--configs", default="eager,channels_last,bf16,bf16_cl", help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--batch", type=int, default=8, help="per domain")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the whole sweep R times, interleaved, and keep each configuration's fastest "
                         "median (robust to a noisy, shared machine)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--device", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        _child(args)
        return 0

    import torch

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    env = dict(os.environ, HARMONYKIT_DISABLE_PROGRESS="1")
    sweep = [(d, m, c) for _ in range(args.repeat) for d in devices for m in args.models.split(",") for c in args.configs.split(",")]
    if sweep:
        best = {}
        for dev, model, cfg in sweep:
            cmd = [sys.executable, __file__, "--_child", "--model", model, "--config", cfg, "--device", dev,
                   "--batch", str(args.batch), "--size", str(args.size), "--iters", str(args.iters),
                   "--warmup", str(args.warmup), "--threads", str(args.threads)]
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            key = (dev, model, cfg)
            if r.returncode != 0:
                err = (r.stderr.strip().splitlines() or ["?"])[-1]
                best.setdefault(key, dict(device=dev, model=model, config=cfg, error=err))
                print(f"{dev} {model} {cfg}: FAILED ({err})", file=sys.stderr)
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{dev} {model} {cfg}: {res['img_per_s']:.2f} img/s", file=sys.stderr)
            old = best.get(key)
            if old is None or "error" in old or res["img_per_s"] > old["img_per_s"]:
                best[key] = dict(device=dev, model=model, config=cfg, **res)
        rows = list(best.values())
    base = {(r["device"], r["model"]): r for r in rows if r["config"] == "eager" and "error" not in r}
    hdr = f"{'device':6} {'model':14} {'config':16} {'s/iter':>8} {'img/s':>8} {'x eager':>8} {'peak MiB':>9}"
    print(f"one training iteration, {args.size}x{args.size}, batch {args.batch} per domain "
          f"(charmnet_idih: {args.batch} rendered + {args.batch} real), median of {args.iters}, best of {args.repeat} sweeps; "
          f"peak = CUDA max allocated / CPU process max RSS")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "error" in r:
            print(f"{r['device']:6} {r['model']:14} {r['config']:16} {'failed: ' + r['error'][:60]}")
            continue
        b = base.get((r["device"], r["model"]))
        ratio = f"{r['img_per_s'] / b['img_per_s']:.2f}" if b else "-"
        print(f"{r['device']:6} {r['model']:14} {r['config']:16} {r['s_per_iter']:8.3f} {r['img_per_s']:8.2f} {ratio:>8} {r['peak_mib']:9.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
