"""List registered components: models (optionally with weights tags) or any registry."""
from __future__ import annotations

import argparse

COMMAND = "list"
HELP = "list registered models or components (wildcards allowed)"

_KINDS = ("models", "pretrained", "backbones", "adapters", "discriminators", "style_heads", "losses", "datasets", "metrics", "augmentations")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", default="models", metavar="KIND",
                   help=f"what to list: {', '.join(_KINDS)} (default: models); a pattern here lists models")
    p.add_argument("filter", nargs="?", default="*", help="fnmatch pattern, e.g. 'charmnet*'")


def run(args: argparse.Namespace) -> int:
    import harmonykit
    from harmonykit import registry

    if args.kind not in _KINDS:
        if args.filter != "*":
            raise ValueError(f"unknown kind {args.kind!r}; expected one of {', '.join(_KINDS)}")
        args.kind, args.filter = "models", args.kind  # `harmonykit list 'charmnet*'`

    if args.kind == "models":
        names = harmonykit.list_models(args.filter)
    elif args.kind == "pretrained":
        names = harmonykit.list_models(args.filter, pretrained=True)
    else:
        names = getattr(registry, args.kind.upper()).list(args.filter)
    for n in names:
        print(n)
    if not names:
        print(f"(no {args.kind} match {args.filter!r})")
    return 0

