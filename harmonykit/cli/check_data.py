"""Validate a dataset folder and print a summary: counts per subset, sizes, mask coverage,
problems found (missing, unreadable or truncated files, size mismatches, bad list lines)."""
from __future__ import annotations

import argparse

COMMAND = "check-data"
HELP = "validate a dataset folder (iHarmony4, RdHarmony, folder) and print a summary"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="dataset folder")
    parser.add_argument("--format", choices=("iharmony4", "rdharmony", "folder"), default=None,
                        help="dataset layout (default: detected)")
    parser.add_argument("--list", dest="list_file", default=None,
                        help="list file to check instead of the default ones (relative to ROOT or absolute)")
    parser.add_argument("--split", choices=("train", "test"), default=None,
                        help="iHarmony4 split (default: both where present)")
    parser.add_argument("--no-coverage", action="store_true", help="skip decoding masks for coverage statistics")
    parser.add_argument("--deep", action="store_true", help="fully decode composites and real images too")
    parser.add_argument("--max-problems", type=int, default=50, help="problems to print (default 50)")


def run(args: argparse.Namespace) -> int:
    from harmonykit.data.check import check_dataset, format_report

    report = check_dataset(
        args.root, format=args.format, list_file=args.list_file, split=args.split,
        coverage=not args.no_coverage, deep=args.deep,
    )
    print(format_report(report, max_problems=args.max_problems))
    return 0 if report.ok else 1
