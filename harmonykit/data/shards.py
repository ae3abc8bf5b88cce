"""Tar shards of a prepared root, for sequential reads (``harmonykit prepare --format shards``).

Layout, one folder per dataset view (an iHarmony4 subset + split, an RdHarmony list)::

    <root>/shards/<view>/shard-00000.tar     plain tar: <key>.composite.jpg, <key>.real.jpg,
                                             <key>.mask.png, <key>.json (key = 8 digits)
    <root>/shards/<view>/index.json          per sample: name, subset, style labels, and the
                                             byte offset + length of each member in its shard

The tar files are standard (``tar tf`` lists them; WebDataset reads them as they are: members
are grouped by key); :class:`ShardDataset` reads a sample with one positioned read per member
from the index, so a sequential sampler reads each shard front to back.
"""
from __future__ import annotations

import io as _io
import json
import logging
import os
import tarfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ..registry import DATASETS
from .io import CorruptFileError, DataError, DataFileNotFoundError, decode_mask, decode_rgb

__all__ = ["SHARDS_DIR", "write_shards", "shard_views", "ShardDataset"]

_logger = logging.getLogger(__name__)

SHARDS_DIR = "shards"
INDEX_NAME = "index.json"
_ROLES = ("composite", "real", "mask")


def _view_dir_name(view: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in view)


def shard_views(root: Union[str, os.PathLike]) -> List[str]:
    """Names of the shard views written under ``root/shards`` (folder names)."""
    d = Path(root) / SHARDS_DIR
    return sorted(p.name for p in d.iterdir() if (p / INDEX_NAME).is_file()) if d.is_dir() else []


def write_shards(
    root: Union[str, os.PathLike], shard_samples: int = 1000, progress: Optional[bool] = None
) -> List[Path]:
    """Pack every view of the dataset at ``root`` (a prepared root) into tar shards.

    Views are those ``check-data`` reads: one per iHarmony4 subset and split, one per RdHarmony
    ``*_labeled.txt`` list, one for a folder dataset. Each view's shards are rewritten as a whole
    (temporary names + ``os.replace``; its ``index.json`` last). Returns the view folders.
    """
    from harmonykit.utils import progress as progress_bar
    from harmonykit.utils import write_json

    from .check import _datasets, detect_format

    root = Path(root)
    fmt = detect_format(root)
    views = _datasets(root, fmt, None, None)
    out: List[Path] = []
    for view, ds in views:
        vdir = root / SHARDS_DIR / _view_dir_name(view)
        vdir.mkdir(parents=True, exist_ok=True)
        old = sorted(vdir.glob("shard-*.tar"))
        samples: List[Dict[str, Any]] = []
        shards: List[str] = []
        recs = ds.records
        bar = progress_bar(total=len(recs), desc=f"sharding {view}", unit="sample", enabled=progress)
        for s0 in range(0, len(recs), shard_samples):
            name = f"shard-{len(shards):05d}.tar"
            final = vdir / name
            tmp = vdir / f".{name}.{os.getpid()}.hkprep-tmp"
            try:
                with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                    for i, rec in enumerate(recs[s0: s0 + shard_samples], start=s0):
                        key = f"{i:08d}"
                        meta: Dict[str, Any] = {"name": rec.name, "subset": rec.subset}
                        if rec.style_soft is not None:
                            meta["style_soft"] = list(rec.style_soft)
                            meta["style"] = int(rec.style or 0)
                        for role in _ROLES:
                            p = Path(getattr(rec, role))
                            try:
                                data = p.read_bytes()
                            except OSError as e:
                                raise DataFileNotFoundError(f"{role} file cannot be read ({e})", p) from e
                            _add(tar, f"{key}.{role}{p.suffix.lower()}", data)
                        _add(tar, f"{key}.json", json.dumps(meta).encode())
                        samples.append(meta)
                        bar.update(1)
                with tarfile.open(tmp, "r") as tar:  # the members' data offsets
                    for m in tar.getmembers():
                        key, role = m.name.split(".")[:2]
                        if role in _ROLES:
                            samples[int(key)].setdefault("members", {})[role] = [
                                len(shards), m.offset_data, m.size, Path(m.name).suffix]
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    tmp.unlink()
            shards.append(name)
        bar.close()
        for p in old:
            if p.name not in shards:
                p.unlink()
        write_json(vdir / INDEX_NAME, {"view": view, "format": fmt, "domain": ds.domain, "shards": shards,
                                       "samples": samples}, indent=None)
        out.append(vdir)
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tar.addfile(ti, _io.BytesIO(data))


@DATASETS.register("prepared_shards")
class ShardDataset(Dataset):
    """Samples of one shard view (see the module doc), as the other datasets yield them.

    A sample is ``{"composite": (3, H, W), "real": (3, H, W), "mask": (1, H, W), "domain", "name"}``
    (float32 in [0, 1]; ``style_soft`` float64 / ``style`` int64 for rendered samples).

    Args:
        root: a prepared root holding ``shards/`` (then ``view`` is required when it has several),
            or one view folder.
        view: the view's folder name (``"HAdobe5k_train"``, ``"SHuman_all_labeled"``).
        mask_threshold: binarise masks at this value (``>= t``); None keeps soft values.
        transform: optional callable applied to each sample dict.
        domain: overrides the index's domain.
    """

    def __init__(
        self,
        root: Union[str, os.PathLike],
        view: Optional[str] = None,
        mask_threshold: Optional[float] = 0.5,
        transform: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
        domain: Optional[str] = None,
    ) -> None:
        root = Path(root).expanduser()
        vdir = root
        if not (vdir / INDEX_NAME).is_file():
            views = shard_views(root)
            if view is None and len(views) == 1:
                view = views[0]
            if view is None:
                raise DataFileNotFoundError(
                    f"no shard index here; pass view= one of {views or 'none (run harmonykit prepare --format shards)'}",
                    root / SHARDS_DIR,
                )
            vdir = root / SHARDS_DIR / view
            if not (vdir / INDEX_NAME).is_file():
                raise DataFileNotFoundError(f"shard view {view!r} not found (found: {', '.join(views) or 'none'})",
                                            vdir / INDEX_NAME)
        self.dir = vdir
        idx = json.loads((vdir / INDEX_NAME).read_text())
        self.samples: List[Dict[str, Any]] = idx["samples"]
        self.shards: List[str] = idx["shards"]
        self.domain = domain or idx.get("domain", "real")
        self.mask_threshold = mask_threshold
        self.transform = transform
        self._fds: Dict[int, int] = {}
        if not self.samples:
            raise DataError("shard view has no samples", vdir / INDEX_NAME)

    def __getstate__(self) -> Dict[str, Any]:  # file descriptors are per process
        state = dict(self.__dict__)
        state["_fds"] = {}
        return state

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, member: List[Any]) -> bytes:
        shard, off, size = int(member[0]), int(member[1]), int(member[2])
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self.dir / self.shards[shard], os.O_RDONLY)
        data = os.pread(fd, size, off)
        if len(data) != size:
            raise CorruptFileError(f"shard is truncated (wanted {size} bytes at {off})", self.dir / self.shards[shard])
        return data

    def _image(self, data: bytes, what: str, name: str) -> Image.Image:
        try:
            img = Image.open(_io.BytesIO(data))
            img.load()
            return ImageOps.exif_transpose(img)
        except (OSError, SyntaxError, ValueError) as e:
            raise CorruptFileError(f"sample {name!r}: cannot decode its {what} ({e})", self.dir) from e

    def __getitem__(self, index: int) -> Dict[str, Any]:
        s = self.samples[index]
        m = s["members"]
        comp = decode_rgb(self._image(self._read(m["composite"]), "composite", s["name"]))
        real = decode_rgb(self._image(self._read(m["real"]), "real", s["name"]))
        mask = decode_mask(self._image(self._read(m["mask"]), "mask", s["name"]))
        if self.mask_threshold is not None:
            mask = (mask >= self.mask_threshold).astype(np.float32)
        sample: Dict[str, Any] = {
            "composite": torch.from_numpy(np.ascontiguousarray(comp.transpose(2, 0, 1))),
            "real": torch.from_numpy(np.ascontiguousarray(real.transpose(2, 0, 1))),
            "mask": torch.from_numpy(np.ascontiguousarray(mask[None])),
            "domain": self.domain,
            "name": s["name"],
        }
        if "style_soft" in s:
            sample["style_soft"] = torch.tensor(s["style_soft"], dtype=torch.float64)
            sample["style"] = torch.tensor(int(s["style"]), dtype=torch.int64)
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __repr__(self) -> str:
        return f"ShardDataset({len(self)} samples, {len(self.shards)} shards, view={self.dir.name!r})"
