"""Write rendered scenes to disk (the ``make-composites`` input layout) and style grid pictures.

Output layout of :func:`render_dataset` (what :mod:`harmonykit.data.composites` reads)::

    <out>/styles.json                 {"1": "Night", ..., "10": "Other times Cloudy"}
    <out>/render.json                 seed, size, scene count, renderer version
    <out>/<scene>/<k>.png             k = 1..10: the scene under style k (RGB, 8 bit)
    <out>/<scene>/mask.png            the foreground mask shared by all styles (L, 0 / 255)
    <out>/<scene>/meta.json           category, scene facts and each style's sampled lighting

``<scene>`` is ``scene<index:06d>``; scene ``index`` of seed ``s`` is the same image whatever
``num_scenes`` is (its generator is seeded from ``(s, index)``), so a dataset can be extended
with ``start=``.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .lighting import NUM_STYLES, STYLE_SPECS, style_table
from .renderer import Size, parse_size, render_scene, scene_seed

__all__ = ["render_dataset", "make_style_grid", "scene_name", "to_uint8", "torch_threads", "RENDERER_VERSION"]

from harmonykit.utils import progress_enabled

_logger = logging.getLogger(__name__)

RENDERER_VERSION = "1"


def scene_name(index: int) -> str:
    """Folder name of scene ``index``: ``scene000042``."""
    return f"scene{int(index):06d}"


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, H, W) float in [0, 1] -> (H, W, 3) / (H, W) uint8 array."""
    arr = (img.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    arr = arr.permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[2] == 1 else arr


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Iterator[None]:
    """Temporarily use ``n`` torch intra-op threads (None: leave unchanged)."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output path {str(out_dir)!r} exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".harmonykit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"output folder {str(out_dir)!r} is not writable: {e.strerror or e}") from e


def render_dataset(
    out_dir: Union[str, Path],
    num_scenes: int,
    size: Size = 256,
    seed: int = 0,
    *,
    start: int = 0,
    progress: Optional[bool] = None,
    compress_level: int = 1,
    threads: Optional[int] = 1,
    workers: int = 0,
) -> List[Path]:
    """Render ``num_scenes`` scenes x 10 styles into ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: output folder (created; existing scene files are overwritten).
        num_scenes: how many scenes (>= 1).
        size: ``256`` or ``(H, W)``, each side >= 64.
        seed: dataset seed; scene ``i`` uses ``scene_seed(seed, i)``.
        start: index of the first scene (to extend an existing dataset).
        progress: tqdm bar; default on unless ``HARMONYKIT_DISABLE_PROGRESS=1``.
        compress_level: PNG zlib level 0-9 (1: fast, larger files).
        threads: torch intra-op threads while rendering (restored afterwards); the tensors are
            small, so 1 thread is fastest, especially on a busy machine. None: leave as is.
        workers: render in this many worker processes (``spawn``; each uses ``threads``
            threads). 0: in this process. The files are identical either way.

    Returns:
        The scene folders written, in order.

    Raises:
        ValueError: ``num_scenes < 1``, ``start < 0``, a bad ``size``, ``threads`` or ``workers``
            (the value is named).
        NotADirectoryError / PermissionError: ``out_dir`` is a file or not writable.
    """
    if isinstance(num_scenes, bool) or not isinstance(num_scenes, int) or num_scenes < 1:
        raise ValueError(f"num_scenes must be an integer >= 1, got {num_scenes!r}")
    if int(start) < 0:
        raise ValueError(f"start must be >= 0, got {start!r}")
    if not 0 <= int(compress_level) <= 9:
        raise ValueError(f"compress_level must be in 0..9, got {compress_level!r}")
    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise ValueError(f"threads must be >= 1 or None, got {threads!r}")
    if isinstance(workers, bool) or int(workers) < 0:
        raise ValueError(f"workers must be >= 0, got {workers!r}")
    h, w = parse_size(size)
    out = Path(out_dir)
    _check_out_dir(out)
    (out / "styles.json").write_text(json.dumps(style_table(), indent=2) + "\n")
    (out / "render.json").write_text(
        json.dumps(
            {"renderer_version": RENDERER_VERSION, "seed": int(seed), "size": [h, w], "start": int(start),
             "num_scenes": int(num_scenes), "layout": "<scene>/<k>.png (k=1..10) + <scene>/mask.png",
             "styles": {str(i + 1): {"name": s.name, "time": s.time, "weather": s.weather} for i, s in enumerate(STYLE_SPECS)}},
            indent=2,
        )
        + "\n"
    )
    from tqdm.auto import tqdm

    disable = not progress_enabled() if progress is None else not progress
    jobs = [(str(out), index, h, w, int(seed), int(compress_level)) for index in range(int(start), int(start) + num_scenes)]
    bar = tqdm(total=num_scenes, desc="render", unit="scene", disable=disable)
    written: List[Path] = []
    try:
        if int(workers) == 0:
            with torch_threads(threads):
                for job in jobs:
                    written.append(_write_scene(job))
                    bar.update(1)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(int(workers), mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as ex:
                for path in ex.map(_write_scene, jobs, chunksize=1):
                    written.append(path)
                    bar.update(1)
    finally:
        bar.close()
    _logger.info("rendered %d scenes x %d styles at %dx%d into %s", num_scenes, NUM_STYLES, h, w, out)
    return written


def _init_worker(threads: Optional[int]) -> None:
    if threads is not None:
        torch.set_num_threads(int(threads))


def _write_scene(job: tuple) -> Path:
    """Render scene ``index`` and write its 10 renders, mask and metadata; returns its folder."""
    out, index, h, w, seed, compress_level = job
    r = render_scene(seed=scene_seed(seed, index), size=(h, w))
    d = Path(out) / scene_name(index)
    d.mkdir(exist_ok=True)
    for k in range(len(r.styles)):
        Image.fromarray(to_uint8(r.images[k])).save(d / f"{int(r.styles[k]) + 1}.png", compress_level=compress_level)
    Image.fromarray(to_uint8(r.mask)).save(d / "mask.png", compress_level=compress_level)
    meta: Dict[str, object] = {
        "scene": d.name,
        "index": index,
        "seed": scene_seed(seed, index),
        "size": [h, w],
        "mask_fraction": round(float(r.mask.mean()), 5),
        **r.scene.info,
        "styles": {str(int(r.styles[k]) + 1): r.params.to_dict(k) for k in range(len(r.styles))},
    }
    (d / "meta.json").write_text(json.dumps(meta) + "\n")
    return d


def _two_line_label(index: int) -> List[str]:
    spec = STYLE_SPECS[index]
    if spec.time == "Night":
        return [f"{index + 1} Night", ""]
    time = {"Sunrise&Sunset": "Sunrise/set", "Noon": "Noon", "Other times": "Other times"}[spec.time]
    return [f"{index + 1} {time}", spec.weather]


def make_style_grid(
    num_scenes: int = 4,
    size: Size = 128,
    seed: int = 0,
    *,
    start: int = 0,
    labels: bool = True,
    with_mask: bool = True,
    scenes: Optional[Sequence[int]] = None,
    threads: Optional[int] = 1,
    colors: Optional[int] = None,
) -> Image.Image:
    """A picture of ``num_scenes`` rows x 10 style columns (+ the mask), labelled on top.

    Rows are scenes ``start .. start + num_scenes - 1`` of ``seed`` (or the explicit ``scenes``
    indices), i.e. the same images :func:`render_dataset` writes at that size. ``colors``
    (2..256) palette-quantises the picture (much smaller PNG files, slight banding).
    """
    if colors is not None and not 2 <= int(colors) <= 256:
        raise ValueError(f"colors must be in 2..256 or None, got {colors!r}")
    idx = list(scenes) if scenes is not None else list(range(int(start), int(start) + int(num_scenes)))
    if not idx:
        raise ValueError(f"num_scenes must be >= 1, got {num_scenes!r}")
    h, w = parse_size(size)
    gap = 2
    cols = NUM_STYLES + (1 if with_mask else 0)
    font = None
    header = 0
    if labels:
        try:
            font = ImageFont.load_default()
            header = 26
        except OSError:  # pragma: no cover - PIL without its bundled font
            _logger.warning("PIL default font unavailable: style grid without labels")
            font = None
    W = cols * w + (cols - 1) * gap
    H = header + len(idx) * h + (len(idx) - 1) * gap
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    for row, i in enumerate(idx):
        with torch_threads(threads):
            r = render_scene(seed=scene_seed(seed, i), size=(h, w))
        y = header + row * (h + gap)
        for k in range(NUM_STYLES):
            canvas.paste(Image.fromarray(to_uint8(r.images[k])), (k * (w + gap), y))
        if with_mask:
            canvas.paste(Image.fromarray(to_uint8(r.mask)).convert("RGB"), (NUM_STYLES * (w + gap), y))
    if font is not None:
        draw = ImageDraw.Draw(canvas)
        names = [_two_line_label(k) for k in range(NUM_STYLES)] + ([["mask", ""]] if with_mask else [])
        for k, (l1, l2) in enumerate(names):
            draw.text((k * (w + gap) + 3, 1), l1, fill=(0, 0, 0), font=font)
            draw.text((k * (w + gap) + 3, 13), l2, fill=(60, 60, 60), font=font)
    if colors is not None:
        return canvas.quantize(colors=int(colors), method=Image.Quantize.FASTOCTREE)
    return canvas

