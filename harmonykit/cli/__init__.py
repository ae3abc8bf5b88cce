"""The ``harmonykit`` command line.

Each sub-command lives in its own module of this package and exposes
``COMMAND`` (its name), ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are discovered automatically, so adding a command means adding one file.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import List, Optional

__all__ = ["main", "build_parser"]


def _command_modules():
    mods = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "COMMAND") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


def build_parser() -> argparse.ArgumentParser:
    from harmonykit.version import __version__

    parser = argparse.ArgumentParser(
        prog="harmonykit", description="Deep image harmonization: CharmNet and friends."
    )
    parser.add_argument("--version", action="version", version=f"harmonykit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.COMMAND, help=mod.HELP, description=getattr(mod, "__doc__", None))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:  # user errors: one clear line
        if args.verbose:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"harmonykit {args.command}: error: {msg}", file=sys.stderr)
        return 2


def _user_errors() -> tuple:
    """Exceptions shown as one ``harmonykit CMD: error: ...`` line (``-v`` shows the traceback)."""
    from harmonykit.convert import CheckpointError
    from harmonykit.factory import WeightsUnavailableError

    return (FileNotFoundError, ValueError, KeyError, TypeError, CheckpointError, WeightsUnavailableError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
