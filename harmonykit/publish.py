"""Publishing: model cards, ``push_to_hub`` and a Hugging Face cache installer.

* :func:`generate_model_card` writes a ``README.md`` (YAML front matter + sections:
  architecture, usage, training recipe, training data, evaluation with its metric protocol,
  licence of the weights, limitations).
* :func:`push_to_hub` stages exactly what would be uploaded (``model.safetensors``,
  ``config.json``, ``README.md``); with ``local_dir=`` it stops there (no network), otherwise it
  uploads the folder in one commit with ``huggingface_hub.HfApi``.
* :func:`install_to_hf_cache` puts a folder into the Hub cache layout
  (``models--org--name/{blobs,refs,snapshots}``) so that ``create_model("hf-hub:org/name")``
  loads it offline. The layout is a huggingface_hub internal detail kept in this one function.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

import torch.nn as nn

__all__ = ["generate_model_card", "push_to_hub", "install_to_hf_cache", "CARD_NAME"]

_logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
PathLike = Union[str, os.PathLike]

_DEFAULT_LIMITATIONS = [
    "Trained and evaluated at 256 x 256: larger images go through `harmonykit.harmonize`, whose "
    '`policy="full"` applies the low-resolution colour change at full resolution (background untouched) '
    'and whose `policy="resize"` (the official protocol) returns an up-sampled, softer image.',
    "Harmonizes colour and tone of the masked foreground only; it does not fix geometry, shadows, "
    "reflections or lighting direction, and a wrong or coarse mask gives halos.",
    "Metrics on iHarmony4-style benchmarks depend on the protocol (PSNR peak, mask binarisation, "
    "resize); compare numbers only under the same protocol.",
]


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4f}" if abs(x) <= 1.0 else f"{x:.{digits}f}"
    return str(x)


def _metrics_section(metrics: Optional[Mapping[str, Any]], model_name: Optional[str]) -> List[str]:
    if not metrics:
        return ["No evaluation was recorded for these weights."]
    if "models" not in metrics:  # a flat {"protocol": ..., "All": {...}} mapping
        metrics = {"protocol": metrics.get("protocol", "unspecified"), "models": {model_name or "model": {k: v for k, v in metrics.items() if isinstance(v, Mapping)}}}
    proto = metrics.get("protocol", "unspecified")
    lines = [f"Metric protocol: **`{proto}`**" + (f": {metrics['protocol_description']}" if metrics.get("protocol_description") else "") + "."]
    settings = metrics.get("settings") or {}
    if settings:
        lines.append("Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items() if k != "groups") + ".")
    lines.append("")
    cols = ["mse", "fmse", "psnr", "fpsnr", "ssim", "fssim"]
    present = [c for c in cols if any(c in row for per in metrics["models"].values() for row in per.values())]
    lines.append("| model | subset | N | " + " | ".join(c.upper() if not c.startswith("f") else "f" + c[1:].upper() for c in present) + " |")
    lines.append("|---|---|---|" + "---|" * len(present))
    for name, per in metrics["models"].items():
        for row, vals in per.items():
            lines.append(f"| {name} | {row} | {_fmt(vals.get('n'))} | " + " | ".join(_fmt(vals.get(c)) for c in present) + " |")
    return lines


def generate_model_card(
    model: nn.Module,
    repo_id: Optional[str] = None,
    *,
    metrics: Optional[Mapping[str, Any]] = None,
    recipe: Optional[Union[Mapping[str, Any], str]] = None,
    training_data: Optional[Sequence[str]] = None,
    license: Optional[str] = None,
    limitations: Optional[Sequence[str]] = None,
    description: Optional[str] = None,
) -> str:
    """Markdown model card for a harmonykit model.

    Args:
        model: a model built by :func:`harmonykit.create_model` (``architecture``,
            ``model_args``, ``pretrained_cfg``).
        repo_id: ``org/name`` used in the usage snippet.
        metrics: the JSON summary of ``harmonykit eval --json`` (``protocol``, ``settings``,
            ``models``) or ``{"protocol": ..., row: {metric: value}}``.
        recipe: the resolved training recipe (mapping or text).
        training_data: dataset names; default ``pretrained_cfg["train_datasets"]``.
        license: licence of the **weights**; default ``pretrained_cfg["license"]`` or ``"other"``.
        limitations: bullet points; default: generic harmonization limitations.
        description: one paragraph; default from ``pretrained_cfg``.
    """
    from huggingface_hub import ModelCardData

    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    arch = getattr(model, "architecture", type(model).__name__)
    args = getattr(model, "model_args", {}) or {}
    lic = license or cfg.get("license") or "other"
    data = list(training_data or cfg.get("train_datasets") or [])
    if metrics is None and cfg.get("metrics"):
        metrics = {"protocol": cfg.get("metric_protocol", "unspecified"), "models": {arch: cfg["metrics"]}}
    n_params = sum(p.numel() for p in model.parameters())
    card = ModelCardData(
        library_name="harmonykit",
        license=lic if lic.replace("-", "").replace(".", "").isalnum() else "other",
        tags=["image-harmonization", "harmonykit", arch],
        pipeline_tag="image-to-image",
        datasets=data or None,
    )
    name = repo_id or arch
    desc = description or cfg.get("description") or cfg.get("notes") or (
        f"`{arch}` image harmonization model for harmonykit" + (f" ({cfg['paper_name']}, {cfg['paper_ids']})" if cfg.get("paper_name") else "") + "."
    )
    rec = recipe if recipe is not None else cfg.get("recipe")
    lines = ["---", card.to_yaml().strip(), "---", "", f"# {name}", "", desc, "", "## Architecture", ""]
    lines += [
        f"- architecture: `{arch}` ({n_params:,} parameters)",
        f"- model_args: `{json.dumps(args, sort_keys=True, default=str)}`",
        f"- input: RGB in [0, 1] at {tuple(cfg.get('input_size', (3, 256, 256)))} (C, H, W), "
        f"ImageNet mean/std applied inside the model; mask: {cfg.get('mask_convention', 'foreground = 1')}",
    ]
    domains = tuple(getattr(model, "domains", ()))
    if len(domains) > 1:
        lines.append(f"- domains: {', '.join(domains)} (use `domain=\"real\"` for photographs)")
    lines += ["", "## Usage", "", "```python", "import harmonykit", "",
              f'model = harmonykit.create_model("hf-hub:{name}")' if repo_id else f'model = harmonykit.create_model("local-dir:/path/to/{name}")',
              'out = harmonykit.harmonize("composite.jpg", "mask.png", model=model, policy="full")  # any size',
              'out.save("harmonized.png")', "```", "", "## Training recipe", ""]
    if rec is None:
        lines.append("Not recorded with these weights.")
    elif isinstance(rec, str):
        lines += ["```yaml", rec.strip(), "```"]
    else:
        lines += ["```json", json.dumps(rec, indent=2, sort_keys=True, default=str), "```"]
    lines += ["", "## Training data", ""]
    lines.append(", ".join(data) if data else "Not recorded with these weights.")
    lines += ["", "## Evaluation", ""] + _metrics_section(metrics, arch)
    lines += ["", "## Licence of the weights", "", f"`{lic}`" + (f" (origin: {cfg['origin_url']})" if cfg.get("origin_url") else "")
              + ". The harmonykit code has its own licence; the weights' licence also follows from their training data.", ""]
    lines += ["## Limitations", ""] + [f"- {l}" for l in (limitations or _DEFAULT_LIMITATIONS)] + [""]
    return "\n".join(lines)


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    local_dir: Optional[PathLike] = None,
    metrics: Optional[Mapping[str, Any]] = None,
    recipe: Optional[Union[Mapping[str, Any], str]] = None,
    training_data: Optional[Sequence[str]] = None,
    license: Optional[str] = None,
    limitations: Optional[Sequence[str]] = None,
    commit_message: Optional[str] = None,
    private: bool = False,
    token: Optional[str] = None,
    revision: Optional[str] = None,
    create_pr: bool = False,
) -> Union[Path, str]:
    """Publish ``model`` as ``repo_id`` (``org/name``).

    Writes ``model.safetensors``, ``config.json`` and a model card ``README.md``. With
    ``local_dir`` the files are written there and nothing is uploaded (returns the folder);
    otherwise they are uploaded in one commit (returns the commit URL).
    """
    from harmonykit.hub import save_pretrained

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    card = generate_model_card(
        model, repo_id, metrics=metrics, recipe=recipe, training_data=training_data, license=license, limitations=limitations
    )

    def stage(folder: Path) -> Path:
        save_pretrained(model, folder)
        (folder / CARD_NAME).write_text(card)
        return folder

    if local_dir is not None:
        out = stage(Path(local_dir))
        _logger.info("wrote %s for %s (not uploaded)", out, repo_id)
        return out
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hk-push-") as tmp:
        stage(Path(tmp))
        info = api.upload_folder(
            folder_path=tmp,
            repo_id=repo_id,
            commit_message=commit_message or f"Upload {getattr(model, 'architecture', 'model')} with harmonykit",
            revision=revision,
            create_pr=create_pr,
        )
    return str(getattr(info, "commit_url", info))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def install_to_hf_cache(
    folder: PathLike,
    repo_id: str,
    *,
    cache_dir: Optional[PathLike] = None,
    revision: str = "main",
    commit_hash: Optional[str] = None,
    repo_type: str = "model",
) -> Path:
    """Install the files of ``folder`` into a Hugging Face cache as ``repo_id@revision``.

    Writes ``<cache>/models--org--name/blobs/<sha256>``, ``snapshots/<commit>/<file>`` (a relative
    symlink to the blob, or a copy where symlinks are unavailable) and ``refs/<revision>``.
    ``commit_hash`` defaults to a digest of the files (40 hex digits). Returns the snapshot folder.
    """
    from huggingface_hub import constants

    src = Path(folder)
    if not src.is_dir():
        raise FileNotFoundError(f"folder to install not found: {src}")
    if repo_id.count("/") != 1:
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    files = sorted(p for p in src.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts))
    if not files:
        raise FileNotFoundError(f"no files to install in {src}")
    shas = {p: _sha256(p) for p in files}
    if commit_hash is None:
        h = hashlib.sha1()
        for p in files:
            h.update(str(p.relative_to(src)).encode() + b"\0" + shas[p].encode())
        commit_hash = h.hexdigest()
    if len(commit_hash) != 40 or any(c not in "0123456789abcdef" for c in commit_hash):
        raise ValueError(f"commit_hash must be 40 lowercase hex digits, got {commit_hash!r}")
    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    repo_dir = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit_hash
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    for p in files:
        rel = p.relative_to(src)
        blob = repo_dir / "blobs" / shas[p]
        if not blob.exists():
            shutil.copyfile(p, blob)
        dst = snap / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        try:
            dst.symlink_to(os.path.relpath(blob, dst.parent))
        except OSError:
            shutil.copyfile(blob, dst)
    ref = repo_dir / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit_hash)
    return snap
