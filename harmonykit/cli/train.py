"""Train a harmonization network from a recipe (single process or under torchrun).

Examples:
  harmonykit train recipes/tiny.yaml
  harmonykit train charmnet_idih --set optim.lr=2e-4 --set data.real.root=/data/iHarmony4
  harmonykit train recipes/charmnet_idih.yaml --resume            # continue runs/<name>/last.pth
  harmonykit train charmnet_idih --dry-run --set train.batch_size=2   # one step, synthetic tensors
  torchrun --nproc_per_node 4 -m harmonykit train charmnet_idih
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

COMMAND = "train"
HELP = "train from a recipe (YAML); --dry-run checks a recipe with one synthetic step"

_logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("recipe", help="recipe file, or the name of a shipped recipe (recipes/*.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key (dotted path, YAML value); repeatable")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                        help="continue from CKPT (default: <run dir>/last.pth)")
    parser.add_argument("--output-dir", default=None, help="parent of the run folder (recipe output_dir)")
    parser.add_argument("--name", default=None, help="run name (recipe name); run folder = output_dir/name")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (recipe train.device)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate, build everything and run one step on synthetic tensors; writes nothing")
    parser.add_argument("--print-recipe", action="store_true", help="print the resolved recipe and exit")


def run(args: argparse.Namespace) -> int:
    import yaml

    from harmonykit.train.distributed import cleanup_distributed, init_distributed
    from harmonykit.train.recipe import load_recipe
    from harmonykit.train.trainer import NonFiniteLossError, TrainData, Trainer

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if args.name:
        overrides.append(f"name={args.name}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    recipe = load_recipe(args.recipe, overrides=overrides, check_data=not (args.dry_run or args.print_recipe))
    if args.print_recipe:
        print(yaml.safe_dump(recipe, sort_keys=False), end="")
        return 0
    if args.dry_run:
        return _dry_run(recipe)

    import torch

    dev = recipe["train"]["device"]
    dev_type = "cuda" if (dev == "auto" and torch.cuda.is_available()) or dev.startswith("cuda") else "cpu"
    info = init_distributed(dev_type)
    try:
        run_dir = Path(recipe["output_dir"]) / recipe["name"]
        resume = None
        if args.resume is not None:
            resume = run_dir / "last.pth" if args.resume == "auto" else Path(args.resume)
            if not resume.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint at {resume}")
        trainer = Trainer(recipe, run_dir=run_dir, dist_info=info)
        data = TrainData.from_recipe(recipe, dist_info=info)
        try:
            status = trainer.fit(data, resume=resume)
        except NonFiniteLossError as e:
            last = run_dir / "last.pth"
            kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
            print(f"harmonykit train: error: {e}; training stopped, {kept}", file=sys.stderr)
            return 3
        if info.is_main:
            if status == "interrupted":
                print(f"interrupted at iteration {trainer.iteration}; saved {run_dir / 'last.pth'} "
                      f"(continue with --resume)", file=sys.stderr)
            else:
                print(f"done: {trainer.iteration} iterations; checkpoints in {run_dir}")
        return 130 if status == "interrupted" else 0
    finally:
        cleanup_distributed(info)


def _dry_run(recipe) -> int:
    import torch

    from harmonykit.train.trainer import TrainData, Trainer

    trainer = Trainer(recipe, run_dir=None)
    data = TrainData.from_recipe(recipe, synthetic=True)
    trainer.plan(data)
    doms = trainer._step_domains(0)
    batches = {d: next(data.batches(d, 0, 0)) for d in doms}
    logs = trainer.train_step(batches)
    n = sum(p.numel() for p in trainer.model.parameters())
    print(f"dry run of {recipe['name']!r} ({recipe['train']['mode']}, model {recipe['model']['name']}, {n:,} parameters, "
          f"batch {recipe['train']['batch_size']} per domain, device {trainer.device}): one step OK")
    for k, v in logs.items():
        print(f"  {k:16s} {float(v):.6g}")
    ok = all(torch.isfinite(v).all() for v in logs.values())
    return 0 if ok else 3
