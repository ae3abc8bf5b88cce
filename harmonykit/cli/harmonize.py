"""Harmonize one composite (COMPOSITE MASK) or every pair found under a folder, at the input's
size, with the best shipped model unless ``--model`` names another.

Positional forms (decided by their number, never by guessing)::

    harmonykit harmonize COMPOSITE MASK -o OUT [--model MODEL]   # one pair
    harmonykit harmonize FOLDER -o OUT_DIR [--model MODEL]       # every pair under FOLDER
    harmonykit harmonize MODEL COMPOSITE MASK -o OUT             # older form: 3 positionals
    harmonykit harmonize MODEL FOLDER -o OUT_DIR                 # older form: 2 positionals whose
                                                                 # second is an existing folder

Two positionals are COMPOSITE MASK unless the second is an existing folder (a mask is never a
folder). With no ``--model`` and no MODEL positional the model is
:data:`harmonykit.inference.DEFAULT_MODEL` with its packaged weights (never random weights). Folders may hold ``<id>_composite.*`` + ``<id>_mask.*`` files, ``composite.*`` + ``mask.*``
sub-folders, folder datasets or iHarmony4 roots (searched recursively). ``--grid`` also writes a
comparison PNG: composite | harmonized | ground truth (when present) | mask.
"""
from __future__ import annotations

import argparse

COMMAND = "harmonize"
HELP = "harmonize a composite or a folder of composites at any size"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", metavar="COMPOSITE MASK | FOLDER", nargs="+",
                        help="composite image and its mask, or a folder of pairs (older forms: MODEL COMPOSITE MASK, "
                             "MODEL FOLDER)")
    parser.add_argument("--model", default=None,
                        help="registry name (+ --checkpoint / --pretrained), MODEL.tag, local-dir:PATH or hf-hub:org/name "
                             "(default: the best shipped model, harmonykit.inference.DEFAULT_MODEL)")
    parser.add_argument("-o", "--output", required=True,
                        help="output image (single pair) or output folder (folder input)")
    parser.add_argument("--policy", choices=("resize", "full", "native"), default=None,
                        help="full (default for fixed-size networks): local colour transfer at full resolution, "
                             "background untouched; native (default for full-resolution models such as pctnet_cnn, "
                             "harmonizer): the model itself at full resolution; resize: the official resize -> "
                             "predict -> resize back")
    parser.add_argument("--checkpoint", default=None, help="weights file for a registry-name MODEL")
    parser.add_argument("--pretrained", action="store_true", help="load the registered weights of MODEL (implied by a MODEL.tag name)")
    parser.add_argument("--random-weights", action="store_true",
                        help="allow a registry-name MODEL without weights (random initialisation; for smoke tests only)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="model argument for a registry-name MODEL (e.g. ch=8), repeatable")
    parser.add_argument("--domain", default=None, help="domain of multi-domain models (default real)")
    parser.add_argument("--flip", action="store_true", help="horizontal-flip test-time augmentation")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: the low-resolution network under torch.autocast(bfloat16) on the model's device; the "
                             "full-resolution colour step stays float32 on the CPU (default fp32)")
    parser.add_argument("--real", default=None, help="ground truth for the comparison grid (single pair)")
    parser.add_argument("--grid", action="store_true", help="also write <output>_grid.png comparison images")
    parser.add_argument("--grid-height", type=int, default=256, help="row height of the comparison grid (px)")
    parser.add_argument("--color-grid", type=int, default=16, help="full policy: colour-map nodes per axis")
    parser.add_argument("--ext", default=".png", help="output extension for folders (default .png)")


def comparison_grid(images, height: int = 256):
    """Paste PIL images side by side, each resized to ``height`` (aspect kept)."""
    from PIL import Image

    tiles = []
    for im in images:
        im = im.convert("RGB")
        w = max(1, round(im.width * height / im.height))
        tiles.append(im.resize((w, height), Image.BILINEAR))
    pad = 4
    grid = Image.new("RGB", (sum(t.width for t in tiles) + pad * (len(tiles) - 1), height), (255, 255, 255))
    x = 0
    for t in tiles:
        grid.paste(t, (x, 0))
        x += t.width + pad
    return grid


def _one(net, comp_path, mask_path, out_path, args, real_path=None):
    """Harmonize one file pair and write it, keeping the input's alpha and 16-bit depth where
    the output format allows."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from harmonykit.data.io import load_mask, read_image, write_image
    from harmonykit.inference import harmonize

    comp = read_image(comp_path, what="composite")
    mask = load_mask(mask_path, threshold=None)[0].numpy()
    h, w = comp.rgb.shape[:2]
    if mask.shape != (h, w):
        raise ValueError(f"mask size mismatch: {comp_path} is {w}x{h} but {mask_path} is {mask.shape[1]}x{mask.shape[0]}")
    policy = args.policy or ("native" if getattr(net, "native_resolution", False) else "full")
    out = harmonize(comp.rgb, mask, net, policy, domain=args.domain, flip=args.flip, grid=args.color_grid,
                    precision=getattr(args, "precision", "fp32"))
    out_path = Path(out_path)
    bits = write_image(out_path, out, alpha=comp.alpha, bits=comp.bits)
    if args.grid:
        def pil(rgb):
            return Image.fromarray(np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8))

        panels = [pil(comp.rgb), pil(out)] + ([pil(read_image(real_path, what="real").rgb)] if real_path else [])
        panels.append(Image.fromarray(np.rint(mask * 255).astype(np.uint8), mode="L"))
        comparison_grid(panels, args.grid_height).save(out_path.with_name(out_path.stem + "_grid.png"))
    return w, h, bits


def split_inputs(inputs, model):
    """``(model, composite, mask)`` from the positionals (see the module docstring)."""
    from pathlib import Path

    if len(inputs) > 3:
        raise ValueError(f"expected COMPOSITE MASK, FOLDER or MODEL COMPOSITE MASK; got {len(inputs)} positionals")
    legacy = len(inputs) == 3 or (len(inputs) == 2 and Path(inputs[1]).is_dir())
    if legacy:
        if model is not None:
            raise ValueError(f"the model is given twice: --model {model} and the positional {inputs[0]!r}")
        return inputs[0], inputs[1], (inputs[2] if len(inputs) == 3 else None)
    return model, inputs[0], (inputs[1] if len(inputs) == 2 else None)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harmonykit.eval.triplets import find_pairs
    from harmonykit.inference import load_model, parse_model_args
    from harmonykit.utils import progress

    model, composite, args.mask = split_inputs(args.inputs, args.model)
    src = Path(composite)
    if not src.exists():
        raise FileNotFoundError(f"composite not found: {src}")
    kwargs = parse_model_args(args.model_arg)
    if model is None:
        from harmonykit.inference import DEFAULT_MODEL, default_model

        if args.checkpoint or kwargs or args.random_weights:
            raise ValueError(f"--checkpoint / --model-arg / --random-weights need --model (the default {DEFAULT_MODEL} has its weights)")
        net = default_model()
    else:
        net = load_model(model, checkpoint_path=args.checkpoint, pretrained=args.pretrained,
                         allow_random=args.random_weights, **kwargs)
    if src.is_dir():
        if args.mask is not None:
            raise ValueError("MASK is only for a single composite; for a folder, masks are found next to the composites")
        pairs = find_pairs(src)
        if not pairs:
            raise FileNotFoundError(f"no composite/mask pairs found under {src}")
        out_dir = Path(args.output)
        ext = args.ext if args.ext.startswith(".") else "." + args.ext
        for t in progress(pairs, desc="harmonize", unit="img"):
            _one(net, t.composite, t.mask, out_dir / f"{t.name}{ext}", args, t.real)
        print(f"wrote {len(pairs)} image(s) to {out_dir}")
        return 0
    if args.mask is None:
        raise ValueError("MASK is required for a single composite")
    w, h, bits = _one(net, src, args.mask, args.output, args, args.real)
    print(f"wrote {args.output} ({w}x{h}, {bits}-bit)")
    return 0
