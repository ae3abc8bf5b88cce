"""Publish a model to the Hugging Face Hub with a generated model card (architecture, recipe,
training data, metrics with their protocol, licence of the weights, limitations).

With --local-dir nothing is uploaded: the exact files of the upload are written there. With
--cache-dir they are also installed into that Hugging Face cache (``models--org--name``) so that
``create_model("hf-hub:ORG/NAME")`` loads them offline.
"""
from __future__ import annotations

import argparse

COMMAND = "push"
HELP = "push a model (+ model card) to the Hugging Face Hub, a local folder or a local HF cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="registry name (+ --checkpoint), local-dir:PATH or hf-hub:org/name")
    parser.add_argument("repo_id", metavar="REPO_ID", help="target repository, org/name")
    parser.add_argument("--checkpoint", default=None, help="weights file for a registry-name MODEL")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="model argument for a registry-name MODEL, repeatable")
    parser.add_argument("--local-dir", default=None, help="write the files here instead of uploading")
    parser.add_argument("--cache-dir", default=None,
                        help="also install the files into this Hugging Face cache (implies no upload)")
    parser.add_argument("--revision", default="main", help="branch / ref (default main)")
    parser.add_argument("--metrics", default=None, help="JSON summary written by `harmonykit eval --json`")
    parser.add_argument("--recipe", default=None, help="training recipe file (YAML/JSON) to include in the card")
    parser.add_argument("--training-data", action="append", default=None, help="training dataset name, repeatable")
    parser.add_argument("--license", default=None, help="licence of the weights (default: from pretrained_cfg, else 'other')")
    parser.add_argument("--limitation", action="append", default=None, help="limitation bullet, repeatable")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    parser.add_argument("--token", default=None, help="Hugging Face token (default: the logged-in one)")
    parser.add_argument("--commit-message", default=None)


def run(args: argparse.Namespace) -> int:
    import json
    import tempfile
    from pathlib import Path

    from harmonykit.inference import load_model, parse_model_args
    from harmonykit.publish import install_to_hf_cache, push_to_hub

    metrics = None
    if args.metrics:
        p = Path(args.metrics)
        if not p.is_file():
            raise FileNotFoundError(f"--metrics: file not found: {p}")
        metrics = json.loads(p.read_text())
    recipe = None
    if args.recipe:
        p = Path(args.recipe)
        if not p.is_file():
            raise FileNotFoundError(f"--recipe: file not found: {p}")
        recipe = p.read_text()
    is_registry = not args.model.startswith(("local-dir:", "hf-hub:", "hf_hub:"))
    model = load_model(args.model, checkpoint_path=args.checkpoint, **(parse_model_args(args.model_arg) if is_registry else {}))
    kw = dict(metrics=metrics, recipe=recipe, training_data=args.training_data, license=args.license,
              limitations=args.limitation)
    if args.local_dir or args.cache_dir:
        tmp = None
        folder = args.local_dir
        if folder is None:
            tmp = tempfile.TemporaryDirectory(prefix="hk-push-")
            folder = tmp.name
        out = push_to_hub(model, args.repo_id, local_dir=folder, **kw)
        if args.local_dir:
            print(f"wrote {', '.join(sorted(p.name for p in Path(out).iterdir()))} to {out} (not uploaded)")
        if args.cache_dir:
            snap = install_to_hf_cache(out, args.repo_id, cache_dir=args.cache_dir, revision=args.revision)
            print(f"installed into the Hugging Face cache: {snap}")
        if tmp is not None:
            tmp.cleanup()
        return 0
    url = push_to_hub(model, args.repo_id, commit_message=args.commit_message, private=args.private, token=args.token,
                      revision=None if args.revision == "main" else args.revision, **kw)
    print(f"pushed to {url}")
    return 0
