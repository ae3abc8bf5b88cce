"""Small shared helpers: progress bars."""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional

__all__ = ["progress_enabled", "progress"]


def progress_enabled() -> bool:
    """False when ``HARMONYKIT_DISABLE_PROGRESS`` is set to 1 / true / yes (tests, logs)."""
    return os.environ.get("HARMONYKIT_DISABLE_PROGRESS", "").strip().lower() not in ("1", "true", "yes", "on")


def progress(iterable: Optional[Iterable[Any]] = None, enabled: Optional[bool] = None, **kwargs: Any):
    """A tqdm bar over ``iterable`` (honours ``HARMONYKIT_DISABLE_PROGRESS``)."""
    from tqdm.auto import tqdm

    on = progress_enabled() if enabled is None else enabled
    return tqdm(iterable, disable=not on, dynamic_ncols=True, **kwargs)
