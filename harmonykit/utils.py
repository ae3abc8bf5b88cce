"""Small shared helpers: progress bars, the device rule, atomic JSON files."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Union

__all__ = ["progress_enabled", "progress", "resolve_device", "write_json"]


def progress_enabled() -> bool:
    """False when ``HARMONYKIT_DISABLE_PROGRESS`` is set to 1 / true / yes (tests, logs)."""
    return os.environ.get("HARMONYKIT_DISABLE_PROGRESS", "").strip().lower() not in ("1", "true", "yes", "on")


def progress(iterable: Optional[Iterable[Any]] = None, enabled: Optional[bool] = None, **kwargs: Any):
    """A tqdm bar over ``iterable`` (honours ``HARMONYKIT_DISABLE_PROGRESS``)."""
    from tqdm.auto import tqdm

    on = progress_enabled() if enabled is None else enabled
    return tqdm(iterable, disable=not on, dynamic_ncols=True, **kwargs)


def resolve_device(name: Optional[str] = "auto") -> str:
    """``"auto"`` / None -> ``"cuda"`` when available, else ``"cpu"``; an explicit CUDA device
    on a machine without one raises a ``ValueError`` that says so."""
    import torch

    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine (use cpu or auto)")
    return str(name)


def write_json(path: Union[str, os.PathLike], obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (temporary file + rename): a crash never leaves half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=indent, default=str) + "\n")
    os.replace(tmp, p)
    return p
