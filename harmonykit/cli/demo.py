"""Run what the paper does in one command, with no download.

Renders a small rendered domain and makes RdHarmony-format composites from it, uses the bundled
photos as the real domain (synthetic composites for training, held-back real triplets for
evaluation), trains CharmNet (reduced width) and the dataset-fusion baseline on the same budget,
evaluates both and the input composite (MSE / fMSE / PSNR, protocol harmonykit, with bootstrap
intervals), and writes results.json, table.md and comparison.png under --out.
The default run takes about 5-7 minutes on 2 CPU cores; --quick takes under a minute.
"""
from __future__ import annotations

import argparse

COMMAND = "demo"
HELP = "train CharmNet and the fusion baseline on rendered + bundled real photos, compare (no download)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="harmonykit-demo", help="output folder (default: ./harmonykit-demo)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None,
                        help="CharmNet trains for this many minutes (default 2.5); the fusion baseline then "
                             "trains for the same number of iterations")
    budget.add_argument("--iterations", type=int, default=None,
                        help="training iterations per model instead of --minutes (exactly reproducible)")
    p.add_argument("--scenes", type=int, default=None, help="rendered scenes, 10 styles each (default 30; --quick 4)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=0, help="seed of data, training and bootstrap (default 0)")
    p.add_argument("--quick", action="store_true", help="a ~30-60 s end-to-end version (tiny data, 3 iterations)")


def run(args: argparse.Namespace) -> int:
    from harmonykit.demo import run_demo

    result = run_demo(
        args.out, minutes=args.minutes, iterations=args.iterations, scenes=args.scenes,
        device=args.device, seed=args.seed, quick=args.quick,
    )
    print(result.summary)
    return 0
