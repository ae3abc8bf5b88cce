"""Atomic training checkpoints.

A training checkpoint is ONE file written with ``torch.save`` holding only tensors and plain
Python types, so ``torch.load(path, weights_only=True)`` reads it. Layout (``format`` =
``"harmonykit.train/1"``)::

    {
      "format": "harmonykit.train/1",
      "model": generator state_dict,          # what create_model(..., checkpoint_path=) loads
      "model_name": str, "model_args": dict,  # create_model arguments
      "ema": state_dict | None,               # EMA generator (timm ModelEmaV3)
      "discriminator": state_dict | None,
      "style_heads": {"in": state_dict, "out": state_dict} | None,
      "optimizer": {"generator": sd, "discriminator": sd | None},
      "scheduler": {"generator": sd | None, "discriminator": sd | None},
      "scaler": sd | None,
      "rng": {"torch": uint8 tensor, "cuda": [uint8 tensor] , "numpy": [...], "python": [...]},
      "iteration": int, "epoch": int, "best_metric": float | None,
      "recipe": resolved recipe (nested dict),
      "metrics": dict,
    }
"""
from __future__ import annotations

import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_training_checkpoint", "get_rng_state", "set_rng_state"]

_logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "harmonykit.train/1"


def save_checkpoint(state: Dict[str, Any], path: Union[str, Path]) -> Path:
    """Write ``state`` atomically: temp file in the same folder, flush + fsync, rename, fsync dir."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable
        dfd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - not every platform can fsync a directory
        pass
    return path


def load_training_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Read a training checkpoint (``weights_only=True``); checks the format tag."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = torch.load(str(path), map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a harmonykit training checkpoint (format {CHECKPOINT_FORMAT!r})")
    return state


def get_rng_state() -> Dict[str, Any]:
    """Every RNG state as tensors / lists (weights_only-safe)."""
    state: Dict[str, Any] = {"torch": torch.get_rng_state(), "python": _py_state_to_list(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [kind, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(cached)]
    except ImportError:  # pragma: no cover
        pass
    return state


def set_rng_state(state: Optional[Dict[str, Any]]) -> None:
    """Restore what :func:`get_rng_state` captured (missing parts are left alone)."""
    if not state:
        return
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "python" in state:
        v, internal, gauss = state["python"]
        random.setstate((v, tuple(internal), gauss))
    if state.get("cuda") is not None and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
        except (RuntimeError, IndexError) as e:  # a different GPU count
            _logger.warning("could not restore the CUDA RNG state: %s", e)
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))


def _py_state_to_list(st: Any) -> list:
    v, internal, gauss = st
    return [v, list(internal), gauss]
