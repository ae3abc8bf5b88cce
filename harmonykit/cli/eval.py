"""Evaluate models on an iHarmony4-layout root or a folder dataset and print a table per
subset, list-file group and foreground-ratio bucket (0-5 %, 5-15 %, 15-100 %).

MODEL is anything ``create_model`` accepts (registry name + --checkpoint, ``local-dir:PATH``,
``hf-hub:org/name@rev``) or ``composite`` (the no-op baseline).
The composite baseline row is added unless --no-composite. Compare more models with --model.
"""
from __future__ import annotations

import argparse

COMMAND = "eval"
HELP = "evaluate models (MSE, fMSE, PSNR, fPSNR, SSIM, fSSIM) under a named metric protocol"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="model to evaluate (or 'composite')")
    parser.add_argument("data", metavar="DATA", help="dataset root: iHarmony4 layout or folder dataset")
    parser.add_argument("--model", dest="more_models", action="append", default=[], metavar="MODEL",
                        help="another model to compare in the same table (repeatable)")
    parser.add_argument("--protocol", default="harmonykit",
                        help="metric protocol: harmonykit (default), charmnet or idih")
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="weights file for a registry-name MODEL (repeat in MODEL order)")
    parser.add_argument("--pretrained", action="store_true", help="load the registered weights of registry-name models")
    parser.add_argument("--random-weights", action="store_true",
                        help="allow registry-name models without weights (random initialisation; for smoke tests only)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="model argument for registry-name models (e.g. ch=8), repeatable")
    parser.add_argument("--size", default="256",
                        help="evaluation size: N (N x N, default 256), HxW, or 'original' (full resolution)")
    parser.add_argument("--policy", choices=("resize", "full"), default="resize",
                        help="with --size original: how predictions reach full resolution")
    parser.add_argument("--flip", action="store_true", help="horizontal-flip test-time augmentation")
    parser.add_argument("--list", action="append", default=[], metavar="NAME=FILE",
                        help="extra row from a list file of composite names (e.g. base=base.txt novel=novel.txt)")
    parser.add_argument("--split", default="test", help="list files *_<split>.txt select composites (default test; 'all' = every file)")
    parser.add_argument("--subset", action="append", default=None, help="only these subsets (repeatable)")
    parser.add_argument("--domain", default=None, help="domain of multi-domain models (default real)")
    parser.add_argument("--model-mode", choices=("eval", "train", "official"), default="eval",
                        help="eval (default: running statistics, no dropout); train (batch statistics and live "
                             "dropout under no_grad, as DoveNet's official test.py); official (each model's "
                             "official test mode: train for dovenet, eval for the others)")
    parser.add_argument("--seed", type=int, default=0, help="dropout seed of --model-mode train")
    parser.add_argument("--no-composite", action="store_true", help="do not add the composite baseline row")
    parser.add_argument("--no-ssim", action="store_true", help="skip SSIM / fSSIM (faster)")
    parser.add_argument("--csv", default=None, metavar="OUT", help="write per-image metrics to this CSV")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the summary table to this JSON")


def _parse_size(text: str):
    if text.lower() in ("original", "full", "none"):
        return None
    parts = text.lower().replace("x", " ").split()
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--size: expected N, HxW or 'original', got {text!r}") from None
    if len(nums) == 1:
        return (nums[0], nums[0])
    if len(nums) == 2:
        return (nums[0], nums[1])
    raise ValueError(f"--size: expected N, HxW or 'original', got {text!r}")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harmonykit.eval import COMPOSITE, evaluate, find_triplets
    from harmonykit.eval.metrics import get_protocol
    from harmonykit.inference import load_model, parse_model_args

    specs, data = [args.model] + list(args.more_models), args.data
    proto = get_protocol(args.protocol)  # fails early on an unknown protocol
    size = _parse_size(args.size)
    model_args = parse_model_args(args.model_arg)
    groups = {}
    for item in args.list:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--list {item!r}: expected NAME=FILE")
        if not Path(path).is_file():
            raise FileNotFoundError(f"--list {name}: list file not found: {path}")
        groups[name] = path
    trips = find_triplets(data, split=None if args.split == "all" else args.split, subsets=args.subset)

    models = {}
    if not args.no_composite and COMPOSITE not in specs:
        models[COMPOSITE] = COMPOSITE
    ckpts = list(args.checkpoint)
    for spec in specs:
        if spec == COMPOSITE:
            models[COMPOSITE] = COMPOSITE
            continue
        is_registry = not spec.startswith(("local-dir:", "hf-hub:", "hf_hub:"))
        ckpt = ckpts.pop(0) if (is_registry and ckpts) else None
        name = spec if ckpt is None else f"{spec}:{Path(ckpt).stem}"
        models[name] = load_model(spec, checkpoint_path=ckpt, pretrained=args.pretrained, allow_random=args.random_weights,
                                  **(model_args if is_registry else {}))
    if ckpts:
        raise ValueError(f"{len(ckpts)} --checkpoint value(s) left over: give one per registry-name MODEL")

    res = evaluate(models, trips, proto, size=size, policy=args.policy, flip=args.flip, groups=groups,
                   ssim=not args.no_ssim, domain=args.domain, model_mode=args.model_mode, seed=args.seed)
    res.settings["data"] = str(data)
    print(res.format_table())
    if args.csv:
        print(f"per-image metrics: {res.to_csv(args.csv)}")
    if args.json:
        print(f"summary: {res.to_json(args.json)}")
    return 0
