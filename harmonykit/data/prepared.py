"""The marker of a prepared root (``harmonykit prepare``): its manifest name and what it says.

Kept apart from :mod:`harmonykit.data.prepare` so that the datasets and ``check-data`` can
recognise prepared roots without importing the preparation machinery (which uses them).
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

__all__ = ["MANIFEST_NAME", "MANIFEST_VERSION", "PreparedInfo", "read_prepared", "find_prepared"]

_logger = logging.getLogger(__name__)

MANIFEST_NAME = "harmonykit_prepared.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class PreparedInfo:
    """What the manifest of a prepared root says (see :func:`read_prepared`)."""

    root: str
    max_size: Optional[int]
    quality: int
    format: str
    source: str
    files: int
    complete: bool = True

    def __str__(self) -> str:
        state = "" if self.complete else " (INCOMPLETE: interrupted or had errors; run prepare again)"
        return (f"prepared: max_size={self.max_size}, jpeg quality={self.quality}, {self.files} files, "
                f"from {self.source}{state}")


def read_prepared(root: Union[str, os.PathLike]) -> Optional[PreparedInfo]:
    """The :class:`PreparedInfo` of ``root`` if it holds a manifest written by
    :func:`prepare_dataset`, else None (raw roots). A manifest that cannot be parsed gives None
    and a warning naming it."""
    p = Path(root) / MANIFEST_NAME
    try:
        st = p.stat()
    except OSError:
        return None
    return _read_prepared(str(p), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _read_prepared(path: str, mtime_ns: int, nbytes: int) -> Optional[PreparedInfo]:
    import json

    p = Path(path)
    try:
        m = json.loads(p.read_text())
        s = m["settings"]
        return PreparedInfo(
            str(p.parent), s.get("max_size"), int(s.get("quality", 95)), str(m.get("format", "")),
            str(m.get("source", "")), len(m.get("files", {})), bool(m.get("complete", False)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        _logger.warning("%s: not a readable harmonykit prepare manifest (%s); root treated as raw", p, e)
        return None


def find_prepared(path: Union[str, os.PathLike]) -> Optional[PreparedInfo]:
    """:func:`read_prepared` for ``path`` or its parent (a subset folder of a prepared root)."""
    p = Path(path)
    return read_prepared(p) or read_prepared(p.parent)


