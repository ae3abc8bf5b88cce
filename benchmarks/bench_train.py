"""Training-iteration benchmark: images/s and peak memory of one trainer step.

Measures ``Trainer.train_step`` (the real training path: forward(s), D step, G + style-heads
step) of ``idih256`` (single-domain, batch B) and ``charmnet_idih`` (B rendered + B real) at
256x256 on CPU and CUDA (when available), for eager fp32 and the faster paths (channels_last,
bf16 autocast, torch.compile). Each configuration runs in its own subprocess so the CPU peak RSS
is its own; ratios are against eager fp32 of the same model and device in the same run.

``--lockstep`` (with the configurations above) keeps every configuration's process alive and
lets them take turns, one iteration each, the order rotating each round (warm-up, i.e.
compilation, happens before the rounds): a slow phase of the shared machine then hits every
configuration alike. It prints each configuration's median and the paired per-round ratio of
``compile_cl`` / ``compile_bf16_cl`` against ``channels_last`` / ``bf16_cl``.

``--loop`` times the whole iteration of ``harmonykit train`` on the paper's recipe
(``charmnet_idih``: cv2 crop, 8 rendered + 8 real at 256², DataLoader workers) on small real
data (an iHarmony4 root, e.g. a ``harmonykit prepare`` copy of ``iharmony4_mini``; both domains
read it, the rendered one with a uniform style label), always in lockstep. Routes
(``--configs``): ``main_crop`` / ``worker_crop`` (fp32, ``data.crop_in_workers`` false / true;
the default pair), ``ours_fp32`` / ``ours_bf16`` (crop in the workers), ``official``. An
iteration is: take the next batch of each domain, the step, then the time until the DataLoader
workers have refilled their queue (their CPU use stops): on 2 cores the workers' decoding and
cropping competes with the step, so it is charged to the route that caused it. Reported: median
and min s/iteration, the ratio against the first route (``official`` when present) as ratio of
medians and as median of the per-round ratios, CPU seconds per iteration (main + workers), the
fractions of the time spent waiting for the next batch and on data in the main process (wait +
conversion / crop), and peak memory: max over iterations of the PSS of main + workers (pages
shared after fork count once) plus the main process's ``VmHWM - VmRSS`` (activations freed at
the end of a step).

``--loop --official-repo DIR`` adds the ``official`` route (default routes
``official,ours_fp32,ours_bf16``): the official CharmNet training iteration (bcmi
``Rendered-Image-Harmonization-Dataset-RdHarmony``, ``CharmNet/``), imported from ``DIR`` in its
own subprocess run by ``--official-python`` (e.g. a venv with its pinned albumentations 0.5.2):
the body of its ``train.py`` loop (``zip`` of the two DataLoaders, ``model.set_input``,
``model.optimize_parameters``) with the README's options, ``--gpu_ids -1``, ``--num_threads``
= ``--workers``, on the same images, batch and torch threads as ours. Its loaders need the
iHarmony4 root laid out their way: a temporary folder of symlinks (real list
``IHD_nonhuman_train.txt``; the rendered domain under RdHarmony-style names ``<id>-1_1.jpg`` /
``<id>-1.jpg`` / ``<id>.png`` with a uniform soft label, as ours gets). Nothing official is
copied into this repository.

Usage:
    python benchmarks/bench_train.py                       # CPU (+ CUDA if present), default set
    python benchmarks/bench_train.py --loop --data DIR --official-repo /path/to/RdHarmony --official-python venv/bin/python
    python benchmarks/bench_train.py --loop --data /path/to/iharmony4_mini_prepared --iters 8
    python benchmarks/bench_train.py --lockstep --models charmnet_idih --configs bf16_cl,compile_bf16_cl --iters 8 --warmup 3
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
    if args.lockstep:

        def step():
            tr.train_step(batches)
            sync()
            return 0.0, 0.0

        peak = (lambda: torch.cuda.max_memory_allocated() / 2**20) if cuda else None
        _serve(step, sys.stdout, peak)
        return
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


# Routes of --loop: name -> (precision, crop in workers); "official" runs the official code.
LOOP_ROUTES = {
    "main_crop": ("fp32", False),
    "worker_crop": ("fp32", True),
    "ours_fp32": ("fp32", True),
    "ours_bf16": ("bf16", True),
    "official": (None, None),
}
LOOP_DEFAULT = "main_crop,worker_crop"
OFFICIAL_DEFAULT = "official,ours_fp32,ours_bf16"


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


def _tree_pids() -> list:
    """This process and all its descendants (the DataLoader workers)."""
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
    return pids


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
    """PSS of this process and all its descendants (main + DataLoader workers), MiB."""
    return sum(_pss_mib(p) for p in _tree_pids())


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mem_mib() -> float:
    """Memory of main + workers now (sum of PSS: pages shared after fork count once) plus what the
    main process held at its high-water mark beyond its RSS now (``VmHWM - VmRSS``: activations
    freed at the end of the step, which a sample taken between steps misses)."""
    return _tree_pss_mib() + max(0.0, _status_mib("VmHWM") - _status_mib("VmRSS"))


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_s(pids) -> float:
    """User + system CPU seconds of ``pids`` (from /proc, clock-tick resolution)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / _TICK


def _drain(t_step: float, poll: float = 0.02, idle_polls: int = 3, limit: float = 10.0) -> float:
    """Wait until the DataLoader workers stop using CPU (they refill the prefetch queue after a
    batch was taken); returns the time their last CPU use was seen (``t_step`` if none)."""
    workers = _tree_pids()[1:]
    last, t_active, idle = _cpu_s(workers), t_step, 0
    while idle < idle_polls and time.perf_counter() - t_step < limit:
        time.sleep(poll)
        c = _cpu_s(workers)
        if c > last:
            last, t_active, idle = c, time.perf_counter(), 0
        else:
            idle += 1
    return t_active


def _ours_setup(args: argparse.Namespace):
    """``harmonykit train``'s iteration of ``charmnet_idih`` on ``args.data``; returns step()."""
    import torch

    from harmonykit.data import IHarmony4Dataset
    from harmonykit.train.data import TrainData, worker_augmentation
    from harmonykit.train.recipe import load_recipe
    from harmonykit.train.trainer import Trainer

    precision, in_workers = LOOP_ROUTES[args.config]
    ov = [f"train.batch_size={args.batch}", f"train.precision={precision}", f"train.device={args.device}",
          f"data.crop_in_workers={str(in_workers).lower()}", f"data.num_workers={args.workers}", "sched.name=none"]
    recipe = load_recipe("charmnet_idih", overrides=ov, check_data=False)
    tr = Trainer(recipe)
    doms = tr._step_domains(0)
    n = args.batch * (args.warmup + args.iters + 2)
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

    def step():
        to_dev[0] = 0.0
        t0 = time.perf_counter()
        batches = {dm: next(its[dm]) for dm in doms}
        t1 = time.perf_counter()
        tr.train_step(batches)
        if cuda:
            torch.cuda.synchronize()
        return t1 - t0, to_dev[0]

    return step


def _official_root(data: str, n: int, k: int, dest: str) -> None:
    """Lay out the iHarmony4 root ``data`` for the official CharmNet loaders under ``dest``.

    Real domain: ``dest/<Subset>`` symlinks and ``IHD_nonhuman_train.txt`` listing each test
    composite (``<Subset>/composite_images/<name>``), cycled to ``n`` lines. Rendered domain:
    ``dest/Rnd/{composite_images,real_images,masks}`` symlinks named as RdHarmony
    (``s<j>-1_1.jpg``, ``s<j>-1.jpg``, ``s<j>.png``) and ``Rnd/list.txt`` (path, uniform soft
    label over ``k`` styles, hard label ``j % k + 1``): the same pairs ours reads.
    """
    pairs = []
    for sub in sorted(os.listdir(data)):
        folder = os.path.join(data, sub)
        lists = [f for f in os.listdir(folder) if f.endswith("_test.txt")] if os.path.isdir(folder) else []
        if not lists:
            continue
        os.symlink(os.path.abspath(folder), os.path.join(dest, sub))
        with open(os.path.join(folder, lists[0])) as f:
            for line in f:
                name = line.strip()
                if name:
                    stem = name.rsplit(".", 1)[0]
                    realid, maskid = stem.split("_")[0], stem.rsplit("_", 1)[0]
                    pairs.append((sub, name, maskid + ".png", realid + ".jpg"))
    if not pairs:
        raise SystemExit(f"--official-repo: no <Subset>/*_test.txt list under {data}")
    with open(os.path.join(dest, "IHD_nonhuman_train.txt"), "w") as f:
        f.writelines(f"{pairs[i % len(pairs)][0]}/composite_images/{pairs[i % len(pairs)][1]}\n" for i in range(n))
    rnd = os.path.join(dest, "Rnd")
    for d in ("composite_images", "real_images", "masks"):
        os.makedirs(os.path.join(rnd, d))
    soft = "_".join([repr(1.0 / k)] * k)
    with open(os.path.join(rnd, "list.txt"), "w") as f:
        for j in range(n):
            sub, comp, mask, real = pairs[j % len(pairs)]
            src = os.path.abspath(os.path.join(data, sub))
            os.symlink(os.path.join(src, "composite_images", comp), os.path.join(rnd, "composite_images", f"s{j}-1_1.jpg"))
            os.symlink(os.path.join(src, "real_images", real), os.path.join(rnd, "real_images", f"s{j}-1.jpg"))
            os.symlink(os.path.join(src, "masks", mask), os.path.join(rnd, "masks", f"s{j}.png"))
            f.write(f"Rnd/composite_images/s{j}-1_1.jpg\t{soft}\t{j % k + 1}\n")


def _official_setup(args: argparse.Namespace):
    """The official CharmNet ``train.py`` iteration, imported from ``--official-repo``; returns step()."""
    import tempfile

    import torch

    code = args.official_repo
    if os.path.isfile(os.path.join(code, "CharmNet", "train.py")):
        code = os.path.join(code, "CharmNet")
    tmp = tempfile.mkdtemp(prefix="hk_official")
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    _official_root(args.data, args.batch * (args.warmup + args.iters + 2), 10, root)
    sys.path.insert(0, code)
    from data import create_dataset  # the official packages
    from models import create_model
    from options.train_options import TrainOptions

    # the README's training command; CPU (-1) or the first GPU; no visdom, checkpoints to tmp
    sys.argv = ["train.py", "--dataset_root", root + "/", "--name", "bench", "--model", "dastyle", "--is_train", "1",
                "--norm", "batch", "--preprocess", "resize_and_crop", "--batch_size", str(args.batch),
                "--lr_policy", "step", "--lr_decay_iters", "4702400", "--num_threads", str(args.workers),
                "--gpu_ids", "0" if args.device == "cuda" else "-1", "--checkpoints_dir", tmp, "--display_id", "0",
                "--render_novel_list", "Rnd/list.txt"]
    opt = TrainOptions().parse()
    render, real = create_dataset(opt, "rendered"), create_dataset(opt, "real")
    model = create_model(opt)
    model.setup(opt)
    cuda = args.device == "cuda"
    it = iter(zip(render, real))  # train.py: for i, (render_data, real_data) in enumerate(zip(...))

    def step():
        t0 = time.perf_counter()
        render_data, real_data = next(it)
        t1 = time.perf_counter()
        model.set_input(real_data, render_data)  # train.py's order: (target, source)
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        model.optimize_parameters()
        if cuda:
            torch.cuda.synchronize()
        assert render_data["comp"].shape == (args.batch, 3, 256, 256) and real_data["comp"].shape == (args.batch, 3, 256, 256)
        return t1 - t0, t2 - t1

    return step


def _loop_child(args: argparse.Namespace) -> None:
    """One ``--loop`` route, driven by the parent through :func:`_serve`."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = sys.stdout
    sys.stdout = sys.stderr  # official code prints; the protocol lines go to the real stdout
    step = _official_setup(args) if args.config == "official" else _ours_setup(args)
    _serve(step, out)


def _serve(step, out, peak_fn=None) -> None:
    """Lockstep child: a line ``go`` on stdin runs ``step()`` once (then waits for the DataLoader
    workers, if any, to refill their queue) and answers ``@@{json}`` on ``out``; ``stop`` (or
    EOF) answers the peak memory and returns."""
    out.write("@@ready\n")
    out.flush()
    peak = 0.0
    for line in sys.stdin:
        if line.strip() != "go":
            break
        pids = _tree_pids()
        c0, t0 = _cpu_s(pids), time.perf_counter()
        wait, conv = step()
        t_step = time.perf_counter()
        t_end = _drain(t_step) if len(pids) > 1 else t_step
        cpu = _cpu_s(pids) - c0
        peak = max(peak, peak_fn() if peak_fn else _peak_mem_mib())
        out.write("@@" + json.dumps({"s": t_end - t0, "step_s": t_step - t0, "wait_s": wait, "conv_s": conv,
                                     "cpu_s": cpu}) + "\n")
        out.flush()
    out.write("@@" + json.dumps({"pss_mib": peak, "rss_main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}) + "\n")
    out.flush()


def _read_msg(p, name: str, log: str) -> dict:
    for line in p.stdout:
        if line.startswith("@@"):
            return {} if line.strip() == "@@ready" else json.loads(line[2:])
    with open(log) as f:
        tail = f.read()[-3000:]
    raise SystemExit(f"{name}: the child ended without an answer (exit {p.wait()}):\n{tail}")


def _lockstep(cmds: dict, n: int, warmup: int, env: dict) -> tuple:
    """Start every route's child (``cmds``: name -> argv), then let them take turns, one
    iteration each, the order rotating each round, so a slow phase of the shared machine hits
    every route alike. Returns ({route: [per-iteration dicts]}, {route: peaks}, load averages)."""
    import tempfile

    routes = list(cmds)
    logdir = tempfile.mkdtemp(prefix="hk_bench_lockstep")
    procs, logs = {}, {}
    try:
        for r, cmd in cmds.items():
            logs[r] = os.path.join(logdir, r + ".log")
            procs[r] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(logs[r], "w"),
                                        text=True, env=env, bufsize=1)
            _read_msg(procs[r], r, logs[r])  # ready (set up one at a time)
            print(f"{r}: ready (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
        rows = {r: [] for r in routes}
        loads = [os.getloadavg()[0]]
        for i in range(warmup + n):
            order = routes[i % len(routes):] + routes[:i % len(routes)]
            for r in order:
                procs[r].stdin.write("go\n")
                procs[r].stdin.flush()
                res = _read_msg(procs[r], r, logs[r])
                if i >= warmup:
                    rows[r].append(res)
            if i >= warmup:
                loads.append(os.getloadavg()[0])
                print(f"round {i - warmup + 1}: " + ", ".join(f"{r} {rows[r][-1]['s']:.2f} s" for r in routes)
                      + f" (load {loads[-1]:.2f})", file=sys.stderr)
        peaks = {}
        for r in routes:
            procs[r].stdin.write("stop\n")
            procs[r].stdin.flush()
            peaks[r] = _read_msg(procs[r], r, logs[r])
    finally:
        for p in procs.values():
            if p.poll() is None:
                if not p.stdin.closed:
                    p.stdin.close()
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
    return rows, peaks, loads


def _loop_main(args: argparse.Namespace) -> int:
    """``--loop``: the routes' whole training iterations in lockstep (:func:`_lockstep`)."""
    env = dict(os.environ, HARMONYKIT_DISABLE_PROGRESS="1")
    routes = args.configs.split(",")
    for r in routes:
        if r not in LOOP_ROUTES:
            raise SystemExit(f"--configs: unknown --loop route {r!r}; expected some of {', '.join(LOOP_ROUTES)}")
        if r == "official" and not args.official_repo:
            raise SystemExit("--configs official needs --official-repo DIR")
    common = ["--device", args.devices or "cpu", "--data", args.data, "--batch", str(args.batch), "--iters",
              str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads), "--workers", str(args.workers)]
    cmds = {}
    for r in routes:
        py = (args.official_python or sys.executable) if r == "official" else sys.executable
        cmds[r] = [py, __file__, "--_child", "--loop", "--config", r] + common
        if r == "official":
            cmds[r] += ["--official-repo", args.official_repo]
    rows, peaks, loads = _lockstep(cmds, args.iters, args.warmup, env)
    ref = "official" if "official" in routes else routes[0]
    med = {r: statistics.median(x["s"] for x in rows[r]) for r in routes}
    cpu = {r: statistics.median(x["cpu_s"] for x in rows[r]) for r in routes}
    print(f"harmonykit train iteration of charmnet_idih, {args.batch} rendered + {args.batch} real at 256², "
          f"{args.workers} DataLoader workers per domain, torch threads {args.threads or 'default'}, data {args.data}"
          + (f", official code {args.official_repo}" if "official" in routes else "")
          + f"; routes in lockstep (one iteration each in turn, order rotating), {args.iters} timed iterations "
          f"after {args.warmup} warm-up; an iteration = next batch + step + the workers' refill of their queue; "
          f"peak mem = max over iterations of PSS(main + workers) + main VmHWM - VmRSS; "
          f"load average (1 min) during the run: min {min(loads):.2f} / median {statistics.median(loads):.2f} / max {max(loads):.2f}")
    hdr = (f"{'route':12} {'median s/iter':>13} {'min s':>6} {f'{ref}/route':>15} {'paired ratio':>13} "
           f"{'CPU s/iter':>10} {'wait data':>10} {'main data':>10} {'peak mem MiB':>13}")
    print(hdr)
    print("-" * len(hdr))
    summary = {}
    for r in routes:
        xs = rows[r]
        total = sum(x["s"] for x in xs)
        paired = statistics.median(a["s"] / b["s"] for a, b in zip(rows[ref], xs))
        wait = sum(x["wait_s"] for x in xs) / total
        main = sum(x["wait_s"] + x["conv_s"] for x in xs) / total
        summary[r] = dict(median_s=med[r], min_s=min(x["s"] for x in xs), ratio=med[ref] / med[r], paired_ratio=paired,
                          cpu_s=cpu[r], wait_frac=wait, main_data_frac=main, **peaks[r])
        print(f"{r:12} {med[r]:13.3f} {summary[r]['min_s']:6.2f} {med[ref] / med[r]:14.2f}x {paired:12.2f}x "
              f"{cpu[r]:10.2f} {100 * wait:9.1f}% {100 * main:9.1f}% {peaks[r]['pss_mib']:13.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "iterations": rows, "load": loads, "args": vars(args)}, f, indent=1)
    return 0


def _lockstep_main(args: argparse.Namespace, devices: list) -> int:
    """``--lockstep``: per device and model, the configurations' iterations in turn
    (:func:`_lockstep`); paired ratios of each ``compile_*`` against the same path uncompiled."""
    env = dict(os.environ, HARMONYKIT_DISABLE_PROGRESS="1")
    base_of = {"compile_cl": "channels_last", "compile_bf16_cl": "bf16_cl"}
    out = []
    for dev in devices:
        for model in args.models.split(","):
            cfgs = args.configs.split(",")
            cmds = {c: [sys.executable, __file__, "--_child", "--lockstep", "--model", model, "--config", c, "--device", dev,
                        "--batch", str(args.batch), "--size", str(args.size), "--warmup", str(args.warmup),
                        "--threads", str(args.threads)] for c in cfgs}
            rows, peaks, loads = _lockstep(cmds, args.iters, 0, env)
            n_img = args.batch * (2 if model == "charmnet_idih" else 1)
            print(f"{dev} {model}: one training iteration at {args.size}², batch {args.batch} per domain, {n_img} images; "
                  f"configurations in lockstep (one iteration each in turn, order rotating), {args.iters} rounds after "
                  f"{args.warmup} warm-up iterations (compilation) in each process; load average (1 min) during the "
                  f"rounds: min {min(loads):.2f} / median {statistics.median(loads):.2f} / max {max(loads):.2f}")
            hdr = f"{'config':16} {'median s/iter':>13} {'min s':>6} {'img/s':>7} {'CPU s/iter':>10} {'peak MiB':>9}"
            print(hdr)
            print("-" * len(hdr))
            res = {}
            for c in cfgs:
                med = statistics.median(x["s"] for x in rows[c])
                res[c] = dict(device=dev, model=model, config=c, s_per_iter=med, img_per_s=n_img / med,
                              min_s=min(x["s"] for x in rows[c]), cpu_s=statistics.median(x["cpu_s"] for x in rows[c]),
                              peak_mib=peaks[c]["pss_mib"], times=[x["s"] for x in rows[c]], load=loads)
                print(f"{c:16} {med:13.3f} {res[c]['min_s']:6.2f} {n_img / med:7.2f} {res[c]['cpu_s']:10.2f} {res[c]['peak_mib']:9.0f}")
            for c, b in base_of.items():
                if c in rows and b in rows:
                    pr = [x["s"] / y["s"] for x, y in zip(rows[b], rows[c])]
                    print(f"{c} vs {b}: {res[b]['s_per_iter'] / res[c]['s_per_iter']:.2f}x faster (ratio of medians); "
                          f"paired per-round ratios median {statistics.median(pr):.2f}x, range {min(pr):.2f}-{max(pr):.2f}")
                    res[c]["speedup_vs_" + b] = res[b]["s_per_iter"] / res[c]["s_per_iter"]
                    res[c]["paired_speedup_vs_" + b] = statistics.median(pr)
            out += list(res.values())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
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
                         "median (not used by --loop / --lockstep, which interleave per iteration)")
    ap.add_argument("--lockstep", action="store_true",
                    help="all configurations' processes alive at once, taking turns one iteration each (order "
                         "rotating): robust ratios on a shared machine; --iters rounds after --warmup iterations each")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--loop", action="store_true",
                    help="time the whole training iteration with real data (crop in the main process vs in the workers)")
    ap.add_argument("--data", default=os.path.join(os.environ.get("HARMONYKIT_REAL_DATA", "data"), "iharmony4_mini"),
                    help="--loop: an iHarmony4 root (default $HARMONYKIT_REAL_DATA/iharmony4_mini; a prepared copy is faster)")
    ap.add_argument("--workers", type=int, default=2, help="--loop: DataLoader workers per domain")
    ap.add_argument("--official-repo", default=None,
                    help="--loop: time the official CharmNet train.py iteration from this checkout (the repository "
                         "bcmi/Rendered-Image-Harmonization-Dataset-RdHarmony or its CharmNet folder) against ours")
    ap.add_argument("--official-python", default=None,
                    help="--official-repo: interpreter for the official side (default: this one), e.g. a venv with "
                         "its pinned albumentations 0.5.2")
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
            args.configs = OFFICIAL_DEFAULT if args.official_repo else LOOP_DEFAULT
        return _loop_main(args)

    import torch

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.lockstep:
        return _lockstep_main(args, devices)
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
