"""Benchmark the procedural renderer on CPU: scenes/min and style-images/min.

Usage::

    python benchmarks/bench_render.py [--size 256] [--scenes 20] [--threads 1] [--write]

``--write`` also times PNG encoding and writing (``render_dataset`` into a temporary folder);
without it only the tensors are rendered (``render_scene``). Prints one line per phase.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from harmonykit.data.render import render_dataset, render_scene, scene_seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--write", action="store_true", help="also time render_dataset (PNG files)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cpu cores: {os.cpu_count()}  torch threads: {torch.get_num_threads()}  load avg (1 min): {load:.2f}")

    render_scene(seed=0, size=args.size)  # warm-up
    t0 = time.perf_counter()
    for i in range(args.scenes):
        r = render_scene(seed=scene_seed(0, i), size=args.size)
    dt = time.perf_counter() - t0
    n_img = args.scenes * r.images.shape[0]
    print(f"render_scene  {args.size}x{args.size}: {args.scenes} scenes in {dt:.2f}s -> "
          f"{60 * args.scenes / dt:.0f} scenes/min, {60 * n_img / dt:.0f} style-images/min")

    if args.write:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            render_dataset(d, args.scenes, size=args.size, progress=False, threads=args.threads)
            dt = time.perf_counter() - t0
        print(f"render_dataset {args.size}x{args.size} (+PNG): {args.scenes} scenes in {dt:.2f}s -> "
              f"{60 * args.scenes / dt:.0f} scenes/min, {60 * n_img / dt:.0f} style-images/min")


if __name__ == "__main__":
    main()
