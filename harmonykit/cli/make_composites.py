"""Make an RdHarmony-format dataset from scenes rendered under several styles.

Input: ``<input>/<scene>/<style>.png`` (style 1..K) and ``<input>/<scene>/mask.png``.
Every ordered pair of styles (b, f) of a scene gives a composite with the background of
style b and the foreground of style f, its ground truth (the style-b render), and the soft
label y = (1 - r) e_b + r e_f (r = mask area fraction). Output:
``<output>/<category>/{composite_images,real_images,masks}/`` and
``<output>/<category>/<category>_all_labeled.txt``; load it with the ``rdharmony`` dataset.
"""
from __future__ import annotations

import argparse

COMMAND = "make-composites"
HELP = "exchange foregrounds between style renders -> RdHarmony-format dataset with soft labels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="render folder: <scene>/<style>.png + <scene>/mask.png")
    parser.add_argument("output", help="dataset root to write")
    parser.add_argument("--category", default="SRendered", help="category folder / list name (default SRendered)")
    parser.add_argument("--num-styles", type=int, default=10, help="number of styles K (default 10)")
    parser.add_argument("--pairs-per-scene", type=int, default=None,
                        help="random ordered style pairs per scene (default: all S*(S-1))")
    parser.add_argument("--ext", choices=("jpg", "png", "webp"), default="jpg", help="image format (default jpg)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG / WebP quality (default 95)")
    parser.add_argument("--max-size", type=int, default=None, help="downscale so the longer side is at most this")
    parser.add_argument("--seed", type=int, default=0, help="seed for --pairs-per-scene (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing list file")


def run(args: argparse.Namespace) -> int:
    from harmonykit.data.composites import make_composites
    from harmonykit.data.io import read_list

    list_path = make_composites(
        args.input, args.output, category=args.category, num_styles=args.num_styles,
        pairs_per_scene=args.pairs_per_scene, ext=args.ext, quality=args.quality,
        max_size=args.max_size, seed=args.seed, overwrite=args.overwrite,
    )
    n = len(read_list(list_path))
    print(f"wrote {n} composites; list: {list_path}")
    print(f"load with: DATASETS.create('rdharmony', root={args.output!r}, "
          f"list_file={args.category + '/' + list_path.name!r})")
    return 0
