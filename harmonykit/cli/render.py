"""Render procedural scenes under the 10 CharmNet / RdHarmony lighting styles.

Writes ``OUT/<scene>/<k>.png`` (k = 1..10: 1 Night, 2-4 Sunrise&Sunset, 5-7 Noon, 8-10 Other
times, each Clear / Partly Cloudy / Cloudy), ``OUT/<scene>/mask.png`` (the foreground, 0/255),
``OUT/<scene>/meta.json``, ``OUT/styles.json`` and ``OUT/render.json``: the input layout of
``harmonykit make-composites``. ``--grid PATH`` also saves a picture with a few scenes as rows
and the 10 styles as columns.
"""
from __future__ import annotations

import argparse
import sys
from typing import Tuple

COMMAND = "render"
HELP = "procedurally render scenes under the 10 CharmNet lighting styles (+ masks)"


def _size(text: str) -> Tuple[int, int]:
    """``"256"`` or ``"256x384"`` (height x width)."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW (e.g. 256 or 256x384), got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}")
    return parts[0], parts[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder (created)")
    parser.add_argument("--num-scenes", "-n", type=int, default=100, help="number of scenes (default 100)")
    parser.add_argument("--size", type=_size, default=(256, 256), help="N or HxW pixels, at least 64 (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--start", type=int, default=0, help="index of the first scene, to extend a dataset (default 0)")
    parser.add_argument("--grid", metavar="PATH", default=None, help="also write a style grid picture (PNG) here")
    parser.add_argument("--grid-scenes", type=int, default=4, help="rows of the style grid (default 4)")
    parser.add_argument("--grid-size", type=int, default=128, help="tile size of the style grid (default 128)")
    parser.add_argument("--grid-colors", type=int, default=None,
                        help="palette-quantise the grid to this many colours (2-256; smaller PNG)")
    parser.add_argument("--compress-level", type=int, default=1, help="PNG compression 0-9 (default 1: fast)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per renderer (default 1: fastest)")
    parser.add_argument("--workers", type=int, default=0,
                        help="render in this many processes (default 0: in this one; same files either way)")


def run(args: argparse.Namespace) -> int:
    from harmonykit.data.render import make_style_grid, render_dataset

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    if args.grid_scenes < 1:
        raise ValueError(f"--grid-scenes must be >= 1, got {args.grid_scenes}")
    if args.grid_size < 64:
        raise ValueError(f"--grid-size must be at least 64, got {args.grid_size}")
    if args.grid_colors is not None and not 2 <= args.grid_colors <= 256:
        raise ValueError(f"--grid-colors must be in 2..256, got {args.grid_colors}")
    try:
        folders = render_dataset(
            args.out, args.num_scenes, size=args.size, seed=args.seed, start=args.start,
            compress_level=args.compress_level, threads=args.threads, workers=args.workers,
        )
    except OSError as e:  # unwritable / not a folder / disk full: one line, not a traceback
        print(f"harmonykit render: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(folders)} scenes x 10 styles to {args.out} (<scene>/<k>.png, k=1..10, + mask.png)")
    if args.grid:
        from pathlib import Path

        grid = make_style_grid(
            args.grid_scenes, args.grid_size, seed=args.seed, start=args.start, colors=args.grid_colors, threads=args.threads
        )
        path = Path(args.grid)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix.lower() == ".png":
                grid.save(path, optimize=True)
            else:
                grid.save(path)
        except (OSError, ValueError) as e:
            print(f"harmonykit render: error: cannot write grid {str(path)!r}: {e}", file=sys.stderr)
            return 2
        print(f"style grid: {path}")
    return 0
