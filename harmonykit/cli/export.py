"""Export a model to ONNX or to a torch.export ExportedProgram (``.pt2``).

The exported graph takes ``composite (B, 3, H, W)`` float in [0, 1] and ``mask (B, 1, H, W)``
(foreground = 1) and returns ``image (B, 3, H, W)``, the harmonized image on the [0, 1] scale
(the ``real`` branch of multi-domain models unless --domain). It is the network at its own
resolution; harmonize()'s full-resolution step runs outside it (docs/inference.md). The file is
checked against eager PyTorch (onnxruntime for ONNX) before the command reports success.
"""
from __future__ import annotations

import argparse

COMMAND = "export"
HELP = "export a model to ONNX or a torch.export ExportedProgram"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="registry name (+ --checkpoint), arch.tag, local-dir:PATH or hf-hub:org/name")
    parser.add_argument("output", metavar="OUT", help="output file (.onnx or .pt2)")
    parser.add_argument("--format", default=None, metavar="FORMAT",
                        help="onnx or exported-program (default: from OUT's suffix, .pt2 = exported-program, else onnx)")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--size", default=None, metavar="HxW",
                       help="fixed input size (default: the model's input size, e.g. 256x256)")
    shape.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    parser.add_argument("--batch-size", type=int, default=1, help="fixed batch size without --dynamic (default 1)")
    parser.add_argument("--domain", default=None, help="branch of a multi-domain model (default real)")
    parser.add_argument("--checkpoint", default=None, help="weights file for a registry-name MODEL")
    parser.add_argument("--pretrained", action="store_true", help="load the registered weights of MODEL")
    parser.add_argument("--random-weights", action="store_true",
                        help="allow a registry-name MODEL without weights (random initialisation; for tests only)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="model argument for a registry-name MODEL (e.g. ch=8), repeatable")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--no-verify", action="store_true", help="do not compare the exported file with PyTorch")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harmonykit.export import export_model, format_for_path, parse_size
    from harmonykit.inference import parse_model_args

    fmt = format_for_path(args.output, args.format)  # bad --format / --size fail before the model is built
    size = parse_size(args.size) if args.size is not None else None
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint file not found: {args.checkpoint}")
    res = export_model(
        args.model,
        args.output,
        fmt,
        size=size,
        dynamic=args.dynamic,
        domain=args.domain,
        batch_size=args.batch_size,
        checkpoint=args.checkpoint,
        pretrained=args.pretrained,
        model_args=parse_model_args(args.model_arg),
        allow_random=args.random_weights,
        opset=args.opset,
        verify=not args.no_verify,
    )
    print(res.summary())
    return 0
