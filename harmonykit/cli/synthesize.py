"""Make synthetic composites from real photos and object masks (the iHarmony4 recipe):
change the foreground's colour statistics (Lab transfer from another photo, histogram
matching, exposure, gamma, white balance, Planckian illuminant, hue / saturation) and keep
the background bit-exact. Writes a folder dataset (composite_images/, masks/, real_images/)
readable by the ``folder`` dataset.

Input: a folder dataset's ``real_images/`` + ``masks/`` (same stems), or a flat folder of
``<id>_photo.<ext>`` + ``<id>_mask.png`` pairs.
"""
from __future__ import annotations

import argparse

COMMAND = "synthesize"
HELP = "make synthetic composites from photo + mask pairs (offline) -> folder dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harmonykit.data.synthetic import METHODS

    parser.add_argument("input", help="real_images/ + masks/ folder, or a folder of <id>_photo.* + <id>_mask.png")
    parser.add_argument("output", help="folder dataset to write")
    parser.add_argument("--per-image", type=int, default=1, help="composites per photo (default 1)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated edits (default all: {','.join(METHODS)})")
    parser.add_argument("--ext", choices=("png", "jpg", "webp"), default="png",
                        help="composite format (default png; jpg is lossy, so the background is no longer bit-exact)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG / WebP quality (default 95)")
    parser.add_argument("--max-size", type=int, default=None, help="downscale so the longer side is at most this")
    parser.add_argument("--min-change", type=float, default=0.01, help="minimum mean foreground change in [0,1] units")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device for the edits (default cpu)")


def run(args: argparse.Namespace) -> int:
    from harmonykit.data.synthetic import synthesize_folder

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    n = synthesize_folder(
        args.input, args.output, per_image=args.per_image, methods=methods, ext=args.ext,
        quality=args.quality, max_size=args.max_size, min_change=args.min_change,
        seed=args.seed, device=args.device,
    )
    print(f"wrote {n} composites to {args.output} (load with the 'folder' dataset)")
    return 0
