"""Write a training-ready copy of a dataset root: images capped at --max-size on the longer side
(JPEG quality 95, PNG lossless), masks as single-channel 8-bit PNG, list files and soft labels
copied, and a manifest (harmonykit_prepared.json) so that a second run redoes only what changed.
Datasets read the copy like the original (same layout)."""
from __future__ import annotations

import argparse

COMMAND = "prepare"
HELP = "write a training-ready (resized, re-encoded) copy of an iHarmony4 / RdHarmony root"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="raw dataset root (iHarmony4, RdHarmony or folder layout)")
    parser.add_argument("dst", help="output root (created; reruns update it)")
    parser.add_argument("--max-size", type=int, default=1024,
                        help="cap on the longer side in pixels (default 1024, as the official iDIH "
                             "README); 0 keeps sizes and only normalises formats")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (default 0: this process)")
    parser.add_argument("--quality", type=int, default=95,
                        help="JPEG quality of re-encoded images (default 95)")
    parser.add_argument("--format", choices=("files", "shards"), default="files",
                        help="files: the same layout as SRC; shards: that, plus each subset/split packed into "
                             "tar shards under DST/shards/ (read with DATASETS 'prepared_shards')")
    parser.add_argument("--shard-samples", type=int, default=1000, help="samples per tar shard (default 1000)")
    parser.add_argument("--verify", action="store_true",
                        help="re-hash outputs that look up to date (default: byte size + source size/mtime)")


def run(args: argparse.Namespace) -> int:
    from harmonykit.data.prepare import prepare_dataset

    res = prepare_dataset(args.src, args.dst, max_size=args.max_size or None, workers=args.workers,
                          quality=args.quality, verify=args.verify, format=args.format,
                          shard_samples=args.shard_samples)
    print(res.summary())
    return 0
