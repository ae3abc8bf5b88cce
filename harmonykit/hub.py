"""Our checkpoint format and the Hugging Face Hub.

A harmonykit checkpoint is a folder::

    model.safetensors   the generator's state dict (never discriminator or style heads)
    config.json         {"architecture", "model_args", "pretrained_cfg", "format_version", ...}

``config.json`` holds what rebuilds the exact graph (``create_model(architecture,
**model_args)``) and what a user needs to feed it (input size, value range, mean/std, mask
convention, weight licence, metric protocol). Loading is strict and safetensors-first.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn as nn

from harmonykit.version import __version__

__all__ = ["save_pretrained", "resolve_checkpoint", "load_config", "download_weights", "model_config", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
PathLike = Union[str, os.PathLike]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    return str(obj)


def model_config(model: nn.Module, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``config.json`` content for ``model`` (built by ``create_model``)."""
    arch = getattr(model, "architecture", None)
    if arch is None:
        raise ValueError("model has no 'architecture': build it with harmonykit.create_model() to save it")
    cfg = {
        "format_version": FORMAT_VERSION,
        "library": "harmonykit",
        "library_version": __version__,
        "architecture": arch,
        "model_args": _jsonable(getattr(model, "model_args", {})),
        "pretrained_cfg": _jsonable(getattr(model, "pretrained_cfg", {})),
    }
    if extra:
        cfg.update(_jsonable(extra))
    return cfg


def save_pretrained(model: nn.Module, save_directory: PathLike, config_extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``save_directory`` atomically
    (written to a temporary sibling folder, then moved into place file by file)."""
    from safetensors.torch import save_file

    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model_config(model, config_extra)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory(dir=out, prefix=".tmp-") as tmp:
        save_file(sd, os.path.join(tmp, WEIGHTS_NAME), metadata={"format": "pt"})
        with open(os.path.join(tmp, CONFIG_NAME), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        for name in (WEIGHTS_NAME, CONFIG_NAME):
            os.replace(os.path.join(tmp, name), out / name)
    return out


def load_config(path: PathLike) -> Dict[str, Any]:
    """Read and check a ``config.json``."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no config.json (is this a harmonykit checkpoint folder?)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        raise ValueError(f"{path}: expected a JSON object with an 'architecture' key")
    if not isinstance(cfg.get("model_args", {}), dict):
        raise ValueError(f"{path}: 'model_args' must be an object, got {type(cfg['model_args']).__name__}")
    return cfg


def _split_revision(hub_id: str) -> tuple:
    repo, _, rev = hub_id.partition("@")
    return repo, (rev or None)


def _hub_download(repo_id: str, filename: str, revision: Optional[str], cache_dir: Optional[PathLike]) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            library_name="harmonykit",
            library_version=__version__,
        )
    except LocalEntryNotFoundError as e:
        raise FileNotFoundError(
            f"hf-hub:{repo_id}{'@' + revision if revision else ''}: {filename} is neither in the local "
            f"Hugging Face cache nor reachable (offline mode or no network). ({e.__class__.__name__})"
        ) from e
    except (EntryNotFoundError, RepositoryNotFoundError) as e:
        raise FileNotFoundError(f"hf-hub:{repo_id}: {filename} not found ({e.__class__.__name__})") from e


def download_weights(repo_id: str, revision: Optional[str] = None, cache_dir: Optional[PathLike] = None, filename: Optional[str] = None) -> str:
    """Path of the weights file of a Hub repo: ``model.safetensors`` first, then a ``.bin``."""
    if filename:
        return _hub_download(repo_id, filename, revision, cache_dir)
    try:
        return _hub_download(repo_id, WEIGHTS_NAME, revision, cache_dir)
    except FileNotFoundError as first:
        try:
            return _hub_download(repo_id, "pytorch_model.bin", revision, cache_dir)
        except FileNotFoundError:
            raise first from None


def resolve_checkpoint(
    id_or_dir: PathLike,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    source: Optional[str] = None,
) -> Tuple[Dict[str, Any], Path]:
    """Find ``(config, weights file)`` of a checkpoint folder or a Hub repo (``"org/name"`` or
    ``"org/name@rev"``; ``source="hf-hub"`` forces the Hub). I/O only: builds nothing."""
    path = Path(id_or_dir)
    if source != "hf-hub" and path.is_dir():
        cfg_path, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
        if not weights.is_file():
            alts = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.pth")) + sorted(path.glob("*.bin"))
            if not alts:
                raise FileNotFoundError(f"{path}: no {WEIGHTS_NAME} (or other weights file) in the folder")
            weights = alts[0]
    else:
        if source != "hf-hub" and (str(id_or_dir).startswith((".", "/", "~")) or os.sep in str(id_or_dir).strip("/").split("/", 1)[-1]):
            raise FileNotFoundError(f"{id_or_dir}: no such checkpoint folder")
        repo, rev = _split_revision(str(id_or_dir))
        rev = revision or rev
        cfg_path = Path(_hub_download(repo, CONFIG_NAME, rev, cache_dir))
        weights = Path(download_weights(repo, rev, cache_dir))
    return load_config(cfg_path), weights
