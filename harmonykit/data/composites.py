"""RdHarmony-style composites from scenes rendered under several styles.

**Input layout** (what a renderer must write)::

    <input>/<scene>/<style>.<ext>    one render per style; <style> is the integer style index
                                     1..K (K = 10 by default; "3.png" and "03.png" both work);
                                     <ext> is png, jpg, jpeg or webp
    <input>/<scene>/mask.png         the foreground mask of the scene, shared by all its styles
                                     (white / 255 = foreground; any mask rule of
                                     harmonykit.data.io: 0/1, 0/255, soft, RGB or alpha;
                                     binarised at 0.5)

All renders of a scene show the same viewpoint and have the mask's size. ``<scene>`` is any
folder name without tabs or newlines (dashes and underscores are fine); other files in a scene
folder are ignored. A scene needs at least two styles.

**What is made**: for every ordered pair of distinct styles ``(b, f)`` of a scene (or
``pairs_per_scene`` pairs drawn with a seeded generator), the composite takes the background
of render ``b`` and the foreground of render ``f``:
``composite = where(mask >= 0.5, render_f, render_b)``; its ground truth is render ``b``.
Its soft style label is ``y = (1 - r) * e_b + r * e_f`` with ``r`` the foreground area fraction
(binarised mask, at the written resolution); its hard label is ``b`` (the background style).
Scenes with an empty mask are skipped (logged).

**Output** (the RdHarmony format, read back by :class:`~harmonykit.data.rdharmony.RdHarmonyDataset`)::

    <out>/<Cat>/composite_images/<scene>-<b>_<f>.<ext>
    <out>/<Cat>/real_images/<scene>-<b>.<ext>
    <out>/<Cat>/masks/<scene>.png
    <out>/<Cat>/<Cat>_all_labeled.txt     "<Cat>/composite_images/<scene>-<b>_<f>.<ext>\\t<y_1>_..._<y_K>\\t<b>"

with ``<Cat>`` the category (``"SRendered"`` by default) and styles written 1-based.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .base import progress_disabled
from .io import (
    DataError,
    DataFileNotFoundError,
    SizeMismatchError,
    find_image,
    fit_size,
    load_image,
    load_mask,
    probe_image,
    save_image,
    save_mask,
)
from .rdharmony import format_rdharmony_line

__all__ = [
    "OutputExistsError",
    "RenderedScene",
    "scan_renders",
    "soft_style_label",
    "exchange_foreground",
    "make_composites",
]

_logger = logging.getLogger(__name__)

_EXTS = (".png", ".jpg", ".jpeg", ".webp")


class OutputExistsError(DataError, FileExistsError):
    """The output would overwrite an existing dataset."""


@dataclass
class RenderedScene:
    """One scene: ``styles`` maps the 1-based style index to its render; one ``mask``."""

    name: str
    styles: Dict[int, Path]
    mask: Path


def scan_renders(input_dir: Union[str, Path], num_styles: int = 10) -> List[RenderedScene]:
    """Find the scenes of an input folder (layout in the module docstring).

    Raises:
        DataFileNotFoundError: no input folder, no scene, or a scene without ``mask.png``.
        DataError: a style index outside 1..K, a scene with fewer than two styles, or a
            scene name with a tab / newline.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise DataFileNotFoundError("render folder not found (expected <input>/<scene>/<style>.png + mask.png)", root)
    scenes: List[RenderedScene] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if any(c in d.name for c in "\t\n\r"):
            raise DataError("scene folder name contains a tab or newline (expected a plain name)", d)
        mask = find_image(d, "mask", _EXTS)
        if mask is None:
            raise DataFileNotFoundError(
                "scene has no mask (expected mask.png beside the style renders)", d / "mask.png"
            )
        styles: Dict[int, Path] = {}
        for f in sorted(d.iterdir()):
            if not f.is_file() or f.suffix.lower() not in _EXTS or not f.stem.isdigit():
                continue
            k = int(f.stem)
            if not 1 <= k <= num_styles:
                raise DataError(f"style index {k} is out of range (expected a file named 1..{num_styles})", f)
            if k in styles:
                raise DataError(
                    f"style {k} is rendered twice ({styles[k].name} and {f.name}); expected one file per style", f
                )
            styles[k] = f
        if len(styles) < 2:
            raise DataError(
                f"scene has {len(styles)} style render(s); expected at least two files named "
                f"<style>.png (1..{num_styles})",
                d,
            )
        scenes.append(RenderedScene(d.name, styles, mask))
    if not scenes:
        raise DataFileNotFoundError("no scene folders (expected <input>/<scene>/<style>.png + mask.png)", root)
    return scenes


def soft_style_label(area_fraction: float, bg_style: int, fg_style: int, num_styles: int = 10) -> Tuple[float, ...]:
    """``y = (1 - r) e_bg + r e_fg`` as a tuple of K floats (styles 0-based)."""
    r = float(min(max(area_fraction, 0.0), 1.0))
    y = [0.0] * num_styles
    y[bg_style] += 1.0 - r
    y[fg_style] += r
    return tuple(y)


def exchange_foreground(background: Tensor, foreground: Tensor, mask: Tensor) -> Tensor:
    """``where(mask >= 0.5, foreground, background)``: ``(3, H, W)`` images, ``(1, H, W)`` mask."""
    return torch.where(mask >= 0.5, foreground, background)


def _pairs(styles: Sequence[int], n: Optional[int], rng: np.random.Generator) -> List[Tuple[int, int]]:
    allp = [(b, f) for b in styles for f in styles if b != f]
    if n is None or n >= len(allp):
        return allp
    idx = sorted(rng.choice(len(allp), size=n, replace=False).tolist())
    return [allp[i] for i in idx]


def make_composites(
    input_dir: Union[str, Path],
    output_dir: Union[str, Path],
    category: str = "SRendered",
    num_styles: int = 10,
    pairs_per_scene: Optional[int] = None,
    ext: str = "jpg",
    quality: int = 95,
    max_size: Optional[int] = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write an RdHarmony-format dataset made from multi-style renders (see the module docstring).

    Args:
        input_dir: the render folder.
        output_dir: the dataset root to write (``<output_dir>/<category>/...``).
        category: the category folder and list name.
        num_styles: K.
        pairs_per_scene: how many ordered (background, foreground) style pairs per scene
            (drawn with ``numpy.random.default_rng(seed)``); None = all ``S * (S - 1)``.
        ext: image format of composites and real images (``jpg``, ``png``, ``webp``).
        quality: JPEG / WebP quality.
        max_size: downscale renders (and mask) so the longer side is at most this.
        overwrite: allow writing into an existing list file.
    Returns:
        The path of the list file.
    """
    ext = ext.lower().lstrip(".")
    if ext not in ("jpg", "jpeg", "png", "webp"):
        raise ValueError(f"ext={ext!r}; expected jpg, png or webp")
    if not category or any(c in category for c in "/\\\t"):
        raise ValueError(f"category={category!r}; expected a plain folder name")
    scenes = scan_renders(input_dir, num_styles)
    out = Path(output_dir) / category
    list_path = out / f"{category}_all_labeled.txt"
    if list_path.exists() and not overwrite:
        raise OutputExistsError("list file exists; pass overwrite=True (--overwrite) to replace it", list_path)
    for sub in ("composite_images", "real_images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines: List[str] = []
    skipped = 0
    it = scenes
    if progress:
        from tqdm import tqdm

        it = tqdm(scenes, desc="make-composites", unit="scene", disable=progress_disabled())
    for sc in it:
        info = probe_image(sc.mask, "mask")
        size = fit_size(info.size, max_size)
        load_size = None if size == info.size else size
        for k, p in sc.styles.items():
            pi = probe_image(p, f"style {k} render")
            if pi.size != info.size:
                raise SizeMismatchError(
                    f"render is {pi.width}x{pi.height} but the scene mask is {info.width}x{info.height} "
                    "(expected equal sizes)",
                    p,
                )
        mask = load_mask(sc.mask, load_size, threshold=0.5)
        r = float(mask.mean())
        if r <= 0.0:
            _logger.warning("scene %s: empty mask, skipped", sc.name)
            skipped += 1
            continue
        renders = {k: load_image(p, load_size, f"style {k} render") for k, p in sc.styles.items()}
        save_mask(mask, out / "masks" / f"{sc.name}.png")
        written_real = set()
        for b, f in _pairs(sorted(renders), pairs_per_scene, rng):
            if b not in written_real:
                save_image(renders[b], out / "real_images" / f"{sc.name}-{b}.{ext}", quality)
                written_real.add(b)
            comp = exchange_foreground(renders[b], renders[f], mask)
            rel = f"{category}/composite_images/{sc.name}-{b}_{f}.{ext}"
            save_image(comp, Path(output_dir) / rel, quality)
            lines.append(format_rdharmony_line(rel, soft_style_label(r, b - 1, f - 1, num_styles), b - 1))
    if not lines:
        raise DataError("no composite was made (every scene had an empty mask)", input_dir)
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _logger.info(
        "wrote %d composites from %d scenes (%d skipped) to %s", len(lines), len(scenes) - skipped, skipped, out
    )
    return list_path
