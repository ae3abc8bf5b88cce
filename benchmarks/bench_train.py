"""Training-iteration benchmark: images/s and peak memory of one trainer step.

Measures ``Trainer.train_step`` (the real training path: forward(s), D step, G + style-heads
step) of ``idih256`` (single-domain, batch B) and ``charmnet_idih`` (B rendered + B real) at
256x256 on CPU and CUDA (when available), for eager fp32 and the faster paths (channels_last,
bf16 autocast, torch.compile). Each configuration runs in its own subprocess so the CPU peak RSS
is its own; ratios are against eager fp32 of the same model and device in the same run.

``--loop`` times the whole iteration of ``harmonykit train`` on the paper's recipe
(``charmnet_idih``: cv2 crop, 8 rendered + 8 real at 256², DataLoader workers) on small real
data (an iHarmony4 root, e.g. a ``harmonykit prepare`` copy of ``iharmony4_mini``; both domains
read it, the rendered one with a uniform style label), with the crop in the main process
(``data.crop_in_workers=false``) and in the workers (``true``): the fraction of an iteration
spent waiting for the next batch and converting / cropping it in the main process, and the
peak memory of the main process + workers (sum of PSS, so pages shared after fork count once).

Usage:
    python benchmarks/bench_train.py                       # CPU (+ CUDA if present), default set
    python benchmarks/bench_train.py --loop --data /path/to/iharmony4_mini_prepared --iters 8
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


LOOP_CONFIGS = {"main_crop": False, "worker_crop": True}


class _Repeat:
    """``n`` samples cycling over a dataset (small data, many iterations)."""

    def __init__(self, ds, n: int, style_classes: int = 0) -> None:
        self.ds, self.n, self.k = ds, n, style_classes
        for attr in ("domain",):
            setattr(self, attr, getattr(ds, attr, None))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        import torch

        s = self.ds[i % len(self.ds)]
        if self.k:  # a uniform soft style label (the rendered domain of charmnet needs one)
            s["style_soft"] = torch.full((self.k,), 1.0 / self.k, dtype=torch.float64)
            s["style"] = torch.tensor(i % self.k)
        return s


def _pss_mib(pid: int) -> float:
    """Proportional set size of ``pid`` in MiB (shared pages split between their users)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _tree_pss_mib() -> float:
    """PSS of this process and all its descendants (the DataLoader workers)."""
    pids, todo = [], [os.getpid()]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return sum(_pss_mib(p) for p in pids)


def _loop_child(args: argparse.Namespace) -> None:
    import torch

    from harmonykit.data import IHarmony4Dataset
    from harmonykit.train.data import TrainData, worker_augmentation
    from harmonykit.train.recipe import load_recipe
    from harmonykit.train.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    in_workers = LOOP_CONFIGS[args.config]
    ov = [f"train.batch_size={args.batch}", f"train.precision={args.precision}", f"train.device={args.device}",
          f"data.crop_in_workers={str(in_workers).lower()}", f"data.num_workers={args.workers}", "sched.name=none"]
    recipe = load_recipe("charmnet_idih", overrides=ov, check_data=False)
    tr = Trainer(recipe)
    doms = tr._step_domains(0)
    n = args.batch * (args.warmup + args.iters + 1)
    k = recipe["style_heads"]["num_styles"] if recipe["style_heads"] else 0
    sets = {}
    for d in doms:
        base = IHarmony4Dataset(args.data, split="test", mask_rule="truncate", domain=d)
        sets[d] = _Repeat(base, n, k if d == doms[0] else 0)
    d = recipe["data"]
    crop = worker_augmentation(recipe)[0] if in_workers else None
    data = TrainData(sets, args.batch, 0, args.workers, crop=crop, persistent_workers=d["persistent_workers"],
                     prefetch_factor=d["prefetch_factor"], pin_memory=tr.device.type == "cuda")
    cuda = tr.device.type == "cuda"
    to_dev = [0.0]
    inner = tr._to_device

    def timed_to_device(batch):
        t0 = time.perf_counter()
        out = inner(batch)
        if cuda:
            torch.cuda.synchronize()
        to_dev[0] += time.perf_counter() - t0
        return out

    tr._to_device = timed_to_device
    its = {dm: data.batches(dm, 0) for dm in doms}
    rows, peak = [], 0.0
    for i in range(args.warmup + args.iters):
        to_dev[0] = 0.0
        t0 = time.perf_counter()
        batches = {dm: next(its[dm]) for dm in doms}
        t1 = time.perf_counter()
        tr.train_step(batches)
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        peak = max(peak, _tree_pss_mib())
        if i >= args.warmup:
            rows.append((t1 - t0, to_dev[0], t2 - t0))
    wait, conv, total = (sum(r[j] for r in rows) for j in range(3))
    print(json.dumps({"s_per_iter": statistics.median(r[2] for r in rows), "wait_frac": wait / total,
                      "to_device_frac": conv / total, "main_data_frac": (wait + conv) / total,
                      "pss_mib": peak, "rss_main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _loop_main(args: argparse.Namespace) -> int:
    env = dict(os.environ, HARMONYKIT_DISABLE_PROGRESS="1")
    best = {}
    for _ in range(args.repeat):
        for cfg in args.configs.split(","):
            cmd = [sys.executable, __file__, "--_child", "--loop", "--config", cfg, "--device", args.devices or "cpu",
                   "--data", args.data, "--batch", str(args.batch), "--iters", str(args.iters), "--warmup",
                   str(args.warmup), "--threads", str(args.threads), "--workers", str(args.workers),
                   "--precision", args.precision]
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode != 0:
                print(f"{cfg}: FAILED\n{r.stderr[-2000:]}", file=sys.stderr)
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{cfg}: {json.dumps(res)}", file=sys.stderr)
            if cfg not in best or res["s_per_iter"] < best[cfg]["s_per_iter"]:
                best[cfg] = res
    print(f"harmonykit train iteration, recipe charmnet_idih ({args.precision}), {args.batch} rendered + {args.batch} real "
          f"at 256², {args.workers} workers, data {args.data}; median of {args.iters} iterations, best of {args.repeat}")
    hdr = (f"{'crop':12} {'s/iter':>7} {'wait data':>10} {'to device+crop':>15} {'main-process data':>18} "
           f"{'PSS main+workers MiB':>21} {'main max RSS MiB':>17}")
    print(hdr)
    print("-" * len(hdr))
    for cfg, r in best.items():
        print(f"{cfg:12} {r['s_per_iter']:7.3f} {100 * r['wait_frac']:9.1f}% {100 * r['to_device_frac']:14.1f}% "
              f"{100 * r['main_data_frac']:17.1f}% {r['pss_mib']:21.0f} {r['rss_main_mib']:17.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(best, f, indent=1)
    return 0


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
    ap.add_argument("--loop", action="store_true",
                    help="time the whole training iteration with real data (crop in the main process vs in the workers)")
    ap.add_argument("--data", default=os.path.join(os.environ.get("HARMONYKIT_REAL_DATA", "data"), "iharmony4_mini"),
                    help="--loop: an iHarmony4 root (default $HARMONYKIT_REAL_DATA/iharmony4_mini; a prepared copy is faster)")
    ap.add_argument("--workers", type=int, default=2, help="--loop: DataLoader workers per domain")
    ap.add_argument("--precision", default="fp32", help="--loop: fp32 / bf16")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--device", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        (_loop_child if args.loop else _child)(args)
        return 0
    if args.loop:
        if args.configs == ap.get_default("configs"):
            args.configs = ",".join(LOOP_CONFIGS)
        return _loop_main(args)

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
