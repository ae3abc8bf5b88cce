"""Convert an official checkpoint (SamsungLabs iDIH ``.pth``, bcmi CharmNet ``latest_net_G.pth``)
or any state dict harmonykit can read into a harmonykit folder (``model.safetensors`` +
``config.json``), loadable with ``create_model("local-dir:OUT")``. The architecture and its
arguments are inferred from the tensor shapes unless --arch is given.
"""
from __future__ import annotations

import argparse

COMMAND = "convert"
HELP = "convert an official iDIH / CharmNet checkpoint into a harmonykit model folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="official .pth / .safetensors state dict")
    parser.add_argument("output", metavar="OUT_DIR", help="folder to write model.safetensors + config.json into")
    parser.add_argument("--arch", default=None, help="architecture name (default: inferred from the weights)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture argument overriding the inferred ones, repeatable")
    parser.add_argument("--domain", default=None,
                        help="for a single-network checkpoint loaded into a multi-domain model: the branch to fill")
    parser.add_argument("--license", default=None, help="licence of the weights, stored in pretrained_cfg")
    parser.add_argument("--origin-url", default=None, help="where the weights come from, stored in pretrained_cfg")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import harmonykit
    from harmonykit.convert import infer_model_args, load_weights, read_state_dict
    from harmonykit.hub import save_pretrained
    from harmonykit.inference import parse_model_args

    src = Path(args.checkpoint)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {src}")
    sd = read_state_dict(src)
    arch, model_args = infer_model_args(sd)
    if args.arch:
        arch = args.arch
    model_args.update(parse_model_args(args.model_arg))
    model = harmonykit.create_model(arch, **model_args)
    load_weights(model, sd, strict=True, domain=args.domain, source=str(src))
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    cfg["converted_from"] = src.name
    if args.license:
        cfg["license"] = args.license
    if args.origin_url:
        cfg["origin_url"] = args.origin_url
    model.pretrained_cfg = cfg
    out = save_pretrained(model, args.output)
    n = sum(p.numel() for p in model.parameters())
    print(f"converted {src} -> {out} (architecture {arch}, {n:,} parameters, args {model_args})")
    return 0
