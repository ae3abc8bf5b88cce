"""A training-ready copy of a dataset root (``harmonykit prepare SRC DST``).

One pass over an iHarmony4, RdHarmony or folder root writes the same layout under ``DST``:

* images in ``composite_images/`` and ``real_images/``: longest side at most ``max_size``
  (aspect kept; decoded and resized by the rules of :mod:`harmonykit.data.io`, i.e. exactly what
  a dataset with ``max_size=`` reads, then re-encoded in the file's own format: JPEG at
  ``quality=95`` with 4:4:4 chroma, PNG lossless). The file name is kept, so list files stay valid.
  An image that needs no resize and is already plain 8-bit RGB / gray is copied byte for byte
  (no second JPEG generation); others (RGBA, palette, 16-bit, CMYK) are converted to 8-bit RGB
  by the decoding rules (alpha dropped, as every loader does) and re-encoded.
* masks in ``masks/``: single-channel 8-bit PNG ``<stem>.png`` (0..255, 0/1 masks scaled to
  0/255, soft values kept, resized bilinearly like the image), read by the mask rules.
* every other file (list files with their soft labels, READMEs) copied unchanged.
* :data:`MANIFEST_NAME` at the root (written atomically, also every few seconds during the
  run): the settings and, per output file, its source path, the source's byte size and
  mtime, the output's pixel size, byte size and sha256. A second run redoes only the files
  whose source changed (or whose output is missing or altered), and removes outputs whose
  source is gone. The manifest is also the marker by which datasets and ``check-data``
  recognise a prepared root (:func:`read_prepared`).

Every output is written to a temporary name in its folder and moved into place with
``os.replace``, so an interrupted run never leaves a half-written file under a final name
(temporaries are removed on the way out, and at the start of the next run).
"""
from __future__ import annotations

import hashlib
import io as _io
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image

from .prepared import MANIFEST_NAME, MANIFEST_VERSION, PreparedInfo, find_prepared, read_prepared  # noqa: F401
from .io import (
    IMAGE_EXTENSIONS,
    CorruptFileError,
    DataError,
    decode_rgb,
    fit_size,
    _orientation,
    load_mask,
    open_image,
    probe_image,
)

__all__ = [
    "MANIFEST_NAME",
    "PreparedInfo",
    "PrepareResult",
    "PrepareError",
    "prepare_dataset",
    "read_prepared",
    "find_prepared",
]

_logger = logging.getLogger(__name__)

TMP_MARK = ".hkprep-tmp"
_IMAGE_DIRS = {"composite_images": "composite", "real_images": "real"}
_MASK_DIRS = {"masks": "mask"}
_REDUCING_GAP = 3.0  # as harmonykit.data.io: box-reduce first when shrinking > 3x
_SAVE_EVERY_S = 30.0


class PrepareError(DataError):
    """Files that could not be prepared; ``errors`` holds one message per file."""

    def __init__(self, message: str, path: Optional[Union[str, os.PathLike]] = None,
                 line: Optional[int] = None, errors: Optional[List[str]] = None) -> None:
        super().__init__(message, path, line)
        self.errors = list(errors or [])

    def __reduce__(self):
        return (type(self), (self.message, self.path, self.line, self.errors))


# --------------------------------------------------------------------------------------
# one file
# --------------------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rgb_u8(path: Path, size: Optional[Tuple[int, int]], what: str) -> Image.Image:
    """Decode by the io rules to an 8-bit RGB / L Pillow image at ``size`` (same path as
    ``load_image(path, size)`` up to the final float conversion)."""
    img = open_image(path, what, size)
    if img.mode not in ("RGB", "L"):
        img = Image.fromarray(np.rint(decode_rgb(img) * 255.0).astype(np.uint8))
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.BILINEAR, reducing_gap=_REDUCING_GAP)
    return img


def _encode(img: Image.Image, suffix: str, quality: int) -> bytes:
    buf = _io.BytesIO()
    s = suffix.lower()
    if s in (".jpg", ".jpeg"):
        img.save(buf, format="JPEG", quality=quality, subsampling=0)
    elif s == ".png":
        img.save(buf, format="PNG", compress_level=3)
    elif s == ".webp":
        img.save(buf, format="WEBP", quality=quality)
    elif s in (".tif", ".tiff"):
        img.save(buf, format="TIFF")
    elif s == ".bmp":
        img.save(buf, format="BMP")
    else:  # pragma: no cover - IMAGE_EXTENSIONS only
        raise CorruptFileError(f"cannot write {s} files", suffix)
    return buf.getvalue()


def _write_atomic(dst: Path, data: bytes) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}{TMP_MARK}")
    try:
        _write_bytes(tmp, data)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (a module-level hook; the interruption test patches it)."""
    with open(path, "wb") as f:
        f.write(data)


def _prepare_one(kind: str, src: str, dst: str, max_size: Optional[int], quality: int) -> Dict[str, Any]:
    """Prepare one file; returns its manifest entry (without the source facts).

    Raises:
        DataError: the source cannot be read (the message names it).
    """
    s, d = Path(src), Path(dst)
    size: Optional[Tuple[int, int]] = None
    if kind == "copy":
        data = s.read_bytes()
        action = "copied"
    else:
        info = probe_image(s, kind, check_truncation=True)
        full = info.size
        target = fit_size(full, max_size)
        load_size = None if target == full else target
        if kind == "mask":
            m = load_mask(s, load_size, threshold=None, what=kind)
            out = Image.fromarray(np.rint(m[0].numpy() * 255.0).astype(np.uint8), mode="L")
            data = _encode(out, ".png", quality)
            action = "mask"
        else:
            out = _rgb_u8(s, load_size, kind)  # a full decode: also finds corrupt data inside files
            if load_size is None and info.mode in ("RGB", "L") and not _needs_transpose(s):
                data = s.read_bytes()  # already what the loader reads: no second JPEG generation
                action = "copied"
            else:
                data = _encode(out, d.suffix, quality)
                action = "converted" if load_size is None else "resized"
        size = out.size
    _write_atomic(d, data)
    return {"kind": kind, "action": action, "size": list(size) if size else None,
            "bytes": len(data), "sha256": _sha256(data)}


def _needs_transpose(p: Path) -> bool:
    with Image.open(p) as img:
        return _orientation(img) != 1


# --------------------------------------------------------------------------------------
# the pass
# --------------------------------------------------------------------------------------
@dataclass
class PrepareResult:
    """What :func:`prepare_dataset` did: output paths (relative to ``dst``) by action."""

    dst: str
    done: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.dst}: {len(self.done)} written, {len(self.skipped)} up to date, "
                f"{len(self.removed)} removed, {len(self.errors)} errors ({self.seconds:.1f} s)")


def _plan(src: Path, dst: Path) -> List[Tuple[str, str, str]]:
    """``(kind, source rel path, output rel path)`` for every file under ``src``."""
    plan: List[Tuple[str, str, str]] = []
    owners: Dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(src):
        dp = Path(dirpath)
        dirnames[:] = sorted(
            n for n in dirnames
            if not n.startswith(".") and (dp / n).resolve() != dst
            and not (dp == src and n == "shards" and (src / MANIFEST_NAME).is_file())
        )
        for name in sorted(filenames):
            if name.startswith(".") or (dp == src and name == MANIFEST_NAME):
                continue
            rel = (dp / name).relative_to(src)
            parent = dp.name
            is_img = Path(name).suffix.lower() in IMAGE_EXTENSIONS
            if is_img and parent in _MASK_DIRS:
                kind, out = "mask", rel.with_suffix(".png")
            elif is_img and parent in _IMAGE_DIRS:
                kind, out = _IMAGE_DIRS[parent], rel
            else:
                kind, out = "copy", rel
            key = out.as_posix()
            if key in owners:
                raise DataError(
                    f"two source files map to the same output {key} ({owners[key]} and {rel.as_posix()}); "
                    "expected one mask per stem", src / rel,
                )
            owners[key] = rel.as_posix()
            plan.append((kind, rel.as_posix(), key))
    return plan


def _load_manifest(dst: Path) -> Dict[str, Any]:
    import json

    p = dst / MANIFEST_NAME
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except ValueError:
        _logger.warning("%s: unreadable manifest; everything is prepared again", p)
        return {}


def _clean_temporaries(dst: Path) -> int:
    n = 0
    for dirpath, _, filenames in os.walk(dst):
        for name in filenames:
            if name.endswith(TMP_MARK) or name == f".{MANIFEST_NAME}.tmp":
                Path(dirpath, name).unlink(missing_ok=True)
                n += 1
    return n


def prepare_dataset(
    src: Union[str, os.PathLike],
    dst: Union[str, os.PathLike],
    max_size: Optional[int] = 1024,
    workers: int = 0,
    quality: int = 95,
    verify: bool = False,
    progress: Optional[bool] = None,
    format: str = "files",
    shard_samples: int = 1000,
) -> PrepareResult:
    """Write a training-ready copy of ``src`` (an iHarmony4, RdHarmony or folder root) to ``dst``.

    Args:
        src: the raw dataset root.
        dst: the output root (created; not ``src`` itself; a ``dst`` inside ``src`` is left out of the walk).
        max_size: cap on the longer side in pixels (None: no resize, formats normalised only).
        workers: processes decoding in parallel (0: in this process).
        quality: JPEG / WebP quality of re-encoded images (95).
        verify: on a rerun, also re-hash outputs that look up to date (default: byte size only).
        progress: show a progress bar (None: unless ``HARMONYKIT_DISABLE_PROGRESS``).
        format: ``"files"`` (the same layout as ``src``) or ``"shards"`` (that, then every view
            packed into tar shards under ``dst/shards/``: :mod:`harmonykit.data.shards`).
        shard_samples: samples per tar shard.

    Returns:
        a :class:`PrepareResult`.

    Raises:
        PrepareError: some files could not be read (every one is named; the others are done and
            recorded, so a rerun after fixing them redoes only those).
        DataError: ``src`` is not a dataset layout, or ``dst`` is ``src``.
    """
    from harmonykit.utils import progress as progress_bar
    from harmonykit.utils import write_json
    from harmonykit.version import __version__

    from .check import detect_format

    if format not in ("files", "shards"):
        raise ValueError(f"format={format!r}; expected 'files' or 'shards'")
    if max_size is not None and int(max_size) < 1:
        raise ValueError(f"max_size={max_size!r}; expected a positive number of pixels or None")
    src_p, dst_p = Path(src).expanduser().resolve(), Path(dst).expanduser().resolve()
    fmt = detect_format(src_p)
    if dst_p == src_p:
        raise DataError("the output folder is the source folder (expected another folder)", dst_p)
    if src_p in dst_p.parents:
        _logger.info("%s lies inside the source; it is left out of the walk", dst_p)
    dst_p.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stale_tmp = _clean_temporaries(dst_p)
    if stale_tmp:
        _logger.info("%s: removed %d temporary file(s) of an interrupted run", dst_p, stale_tmp)

    settings = {"max_size": None if max_size is None else int(max_size), "quality": int(quality),
                "mask": "8-bit single-channel PNG"}
    old = _load_manifest(dst_p)
    old_files: Dict[str, Any] = old.get("files", {}) if old.get("settings") == settings else {}
    if old.get("files") and not old_files:
        _logger.info("%s: settings changed (%s -> %s); everything is prepared again",
                     dst_p, old.get("settings"), settings)

    plan = _plan(src_p, dst_p)
    result = PrepareResult(str(dst_p))
    files: Dict[str, Any] = {}
    todo: List[Tuple[str, str, str, Dict[str, Any]]] = []
    for kind, rel_src, rel_out in plan:
        st = (src_p / rel_src).stat()
        facts = {"source": rel_src, "source_bytes": st.st_size, "source_mtime_ns": st.st_mtime_ns}
        prev = old_files.get(rel_out)
        outp = dst_p / rel_out
        if (
            prev is not None
            and all(prev.get(k) == v for k, v in facts.items())
            and outp.is_file()
            and outp.stat().st_size == prev.get("bytes")
            and (not verify or _sha256(outp.read_bytes()) == prev.get("sha256"))
        ):
            files[rel_out] = prev
            result.skipped.append(rel_out)
        else:
            todo.append((kind, rel_src, rel_out, facts))

    # outputs recorded before whose source is gone
    planned = {o for _, _, o in plan}
    for rel_out in sorted(set(old.get("files", {})) - planned):
        (dst_p / rel_out).unlink(missing_ok=True)
        result.removed.append(rel_out)

    manifest: Dict[str, Any] = {
        "harmonykit_prepare": MANIFEST_VERSION,
        "harmonykit_version": __version__,
        "source": str(src_p),
        "format": fmt,
        "settings": settings,
        "complete": False,
        "files": files,
    }

    def save(complete: bool) -> None:
        manifest["complete"] = complete
        manifest["files"] = dict(sorted(files.items()))
        write_json(dst_p / MANIFEST_NAME, manifest, indent=None)

    def record(rel_out: str, facts: Dict[str, Any], entry: Dict[str, Any]) -> None:
        files[rel_out] = {**facts, **entry}
        result.done.append(rel_out)

    save(False)
    bar = progress_bar(total=len(todo), desc=f"preparing {src_p.name}", unit="file", enabled=progress)
    last = time.monotonic()
    pool: Optional[ProcessPoolExecutor] = None
    try:
        if workers and workers > 0 and len(todo) > 1:
            pool = ProcessPoolExecutor(max_workers=int(workers))
            pending: Dict[Future, Tuple[str, Dict[str, Any]]] = {}
            it = iter(todo)

            def submit_next() -> bool:
                nxt = next(it, None)
                if nxt is None:
                    return False
                kind, rel_src, rel_out, facts = nxt
                fut = pool.submit(_prepare_one, kind, str(src_p / rel_src), str(dst_p / rel_out),
                                  max_size, quality)
                pending[fut] = (rel_out, facts)
                return True

            for _ in range(4 * int(workers)):
                if not submit_next():
                    break
            while pending:
                finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in finished:
                    rel_out, facts = pending.pop(fut)
                    try:
                        record(rel_out, facts, fut.result())
                    except DataError as e:
                        result.errors.append(str(e))
                    bar.update(1)
                    submit_next()
                if time.monotonic() - last > _SAVE_EVERY_S:
                    save(False)
                    last = time.monotonic()
        else:
            for kind, rel_src, rel_out, facts in todo:
                try:
                    record(rel_out, facts, _prepare_one(kind, str(src_p / rel_src), str(dst_p / rel_out),
                                                        max_size, quality))
                except DataError as e:
                    result.errors.append(str(e))
                bar.update(1)
                if time.monotonic() - last > _SAVE_EVERY_S:
                    save(False)
                    last = time.monotonic()
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            pool = None
        save(False)  # what finished is kept: the rerun redoes only the rest
        _clean_temporaries(dst_p)
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True)
    if format == "shards" and not result.errors:
        from .shards import SHARDS_DIR, shard_views, write_shards

        save(True)  # the files are complete; the shards are read from them

        views = shard_views(dst_p)
        if (result.done or result.removed or not views or old.get("shards") != views
                or old.get("shard_samples") != shard_samples):
            for vdir in write_shards(dst_p, shard_samples=shard_samples, progress=progress):
                result.done.append(vdir.relative_to(dst_p).as_posix() + "/")
            views = shard_views(dst_p)
        manifest["shards"], manifest["shard_samples"] = views, shard_samples
        _logger.debug("%s/%s: %s", dst_p, SHARDS_DIR, views)
    elif old.get("shards"):
        # a files-only rerun leaves the shards as they are (stale if files changed); a shards run rebuilds
        manifest["shards"], manifest["shard_samples"] = [], old.get("shard_samples")
    save(not result.errors)
    result.seconds = time.perf_counter() - t0
    if result.errors:
        n = len(result.errors)
        raise PrepareError(
            f"{n} file(s) could not be prepared (the rest is done; fix or remove them and run again): "
            + "; ".join(result.errors[:5]) + (f"; ... and {n - 5} more" if n > 5 else ""),
            None, None, result.errors,
        )
    _logger.debug("%s", result.summary())
    return result
