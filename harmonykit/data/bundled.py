"""The bundled real photos: a real domain harmonykit may redistribute.

``harmonykit/assets/photos/photos.json`` lists a handful of permissively licensed photos
(per-file ``source``, ``licence``, ``attribution``), each with a ``split`` (``"train"`` or
``"eval"``) and a hand-drawn foreground mask made of shapes in pixel coordinates of the stored
file: ``{"polygon": [[x, y], ...]}`` and ``{"ellipse": [cx, cy, rx, ry]}`` (their union).

Two uses:

* :class:`BundledPhotosDataset` (registered in ``DATASETS`` as ``"bundled_photos"``): an
  online stream of synthetic composites from the ``train`` photos for training. Every sample
  is a random resized crop + flip of one photo, with either the drawn object mask (cropped the
  same way) or a random object-like blob mask, and a foreground colour edit from
  :class:`~harmonykit.data.synthetic.SyntheticComposite` (background kept bit-exact). Sample
  ``i`` depends only on ``(seed, i)``, so runs are reproducible whatever the loader order.
* :func:`write_eval_triplets`: held-back real triplets from the ``eval`` photos (object masks,
  several seeded colour perturbations each) written as a folder dataset
  (``composite_images/``, ``masks/``, ``real_images/``) that ``harmonykit eval`` reads.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torch.utils.data import Dataset

from ..registry import DATASETS
from .augment import resized_crop, sample_crop
from .io import DataError, DataFileNotFoundError, save_image, save_mask
from .synthetic import METHODS, SyntheticComposite

__all__ = [
    "PHOTOS_DIR",
    "BundledPhoto",
    "load_photo_index",
    "load_bundled_photos",
    "rasterize_mask",
    "random_object_mask",
    "BundledPhotosDataset",
    "write_eval_triplets",
]

_logger = logging.getLogger(__name__)

PHOTOS_DIR = Path(__file__).resolve().parents[1] / "assets" / "photos"
_REQUIRED = ("file", "source", "licence", "attribution", "split", "mask")


@dataclass
class BundledPhoto:
    """One bundled photo.

    Attributes:
        name: the key in ``photos.json`` (``"astronaut"``).
        path: the image file.
        split: ``"train"`` or ``"eval"``.
        shapes: the mask shapes (``{"polygon": ...}`` / ``{"ellipse": ...}``), stored-file pixels.
        licence, source, attribution: provenance, as recorded in ``photos.json``.
        image: ``(3, H, W)`` float32 in [0, 1] once loaded (possibly downscaled).
        mask: ``(1, H, W)`` float32 in {0, 1} at the size of ``image``.
    """

    name: str
    path: Path
    split: str
    shapes: List[Dict[str, Any]]
    licence: str
    source: str
    attribution: str
    image: Optional[Tensor] = None
    mask: Optional[Tensor] = None
    meta: Dict[str, Any] = field(default_factory=dict)


def load_photo_index(photos_dir: Union[str, Path, None] = None) -> List[BundledPhoto]:
    """Read ``photos.json`` (no image decoding). Photos are returned sorted by name.

    Raises:
        DataFileNotFoundError: no ``photos.json`` or a listed image file is missing.
        DataError: an entry lacks a required key (``file source licence attribution split mask``)
            or has an unknown split / mask shape.
    """
    root = Path(photos_dir) if photos_dir is not None else PHOTOS_DIR
    index = root / "photos.json"
    if not index.is_file():
        raise DataFileNotFoundError("bundled photo index not found (expected photos.json)", index)
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e}", index) from None
    photos = data.get("photos") if isinstance(data, dict) else None
    if not isinstance(photos, dict) or not photos:
        raise DataError("expected a non-empty 'photos' mapping", index)
    out: List[BundledPhoto] = []
    for name in sorted(photos):
        entry = photos[name]
        missing = [k for k in _REQUIRED if not entry.get(k)]
        if missing:
            raise DataError(f"photo {name!r} lacks {', '.join(missing)}", index)
        if entry["split"] not in ("train", "eval"):
            raise DataError(f"photo {name!r}: split {entry['split']!r}; expected 'train' or 'eval'", index)
        for s in entry["mask"]:
            if not (isinstance(s, dict) and len(s) == 1 and next(iter(s)) in ("polygon", "ellipse")):
                raise DataError(f"photo {name!r}: mask shape {s!r}; expected {{'polygon': [[x, y], ...]}} or {{'ellipse': [cx, cy, rx, ry]}}", index)
        path = root / entry["file"]
        if not path.is_file():
            raise DataFileNotFoundError(f"bundled photo {name!r} is listed in photos.json but missing", path)
        out.append(
            BundledPhoto(name, path, entry["split"], list(entry["mask"]), entry["licence"], entry["source"], entry["attribution"])
        )
    return out


def rasterize_mask(shapes: Sequence[Dict[str, Any]], size: Tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """The union of polygon / ellipse shapes as an ``(H, W)`` uint8 mask in {0, 255}.

    Args:
        shapes: ``{"polygon": [[x, y], ...]}`` / ``{"ellipse": [cx, cy, rx, ry]}`` in pixels.
        size: ``(W, H)`` of the output.
        scale: multiply every coordinate by this first (for a downscaled image).
    """
    img = Image.new("L", tuple(size), 0)
    draw = ImageDraw.Draw(img)
    for s in shapes:
        if "polygon" in s:
            pts = [(float(x) * scale, float(y) * scale) for x, y in s["polygon"]]
            draw.polygon(pts, fill=255)
        else:
            cx, cy, rx, ry = (float(v) * scale for v in s["ellipse"])
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    return np.asarray(img, dtype=np.uint8)


def _decode(photo: BundledPhoto, max_side: Optional[int]) -> Tuple[Tensor, Tensor]:
    """``(3, H, W)`` image on the uint8 grid and ``(1, H, W)`` binary mask, longer side <= max_side."""
    with Image.open(photo.path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = 1.0
        if max_side is not None and max(w, h) > max_side:
            scale = max_side / max(w, h)
            im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    size = (arr.shape[1], arr.shape[0])
    m = rasterize_mask(photo.shapes, size, scale)
    image = torch.from_numpy(arr.transpose(2, 0, 1).copy()).float() / 255.0
    mask = torch.from_numpy((m >= 128).astype(np.float32))[None]
    return image, mask


def load_bundled_photos(
    split: Optional[str] = None, max_side: Optional[int] = 512, photos_dir: Union[str, Path, None] = None
) -> List[BundledPhoto]:
    """Bundled photos of ``split`` (``"train"``, ``"eval"`` or None for all), decoded.

    ``image`` is ``(3, H, W)`` float32 in [0, 1] with the longer side at most ``max_side``
    (None: stored size), ``mask`` ``(1, H, W)`` float32 in {0, 1} at the same size.
    """
    if split not in (None, "train", "eval"):
        raise ValueError(f"split={split!r}; expected 'train', 'eval' or None")
    photos = [p for p in load_photo_index(photos_dir) if split is None or p.split == split]
    if not photos:
        raise DataError(f"no bundled photos with split {split!r}", Path(photos_dir or PHOTOS_DIR) / "photos.json")
    for p in photos:
        p.image, p.mask = _decode(p, max_side)
        if not bool(p.mask.any()):
            raise DataError(f"photo {p.name!r}: its mask shapes cover no pixel", Path(photos_dir or PHOTOS_DIR) / "photos.json")
    return photos


def random_object_mask(
    size: Tuple[int, int],
    generator: torch.Generator,
    area: Tuple[float, float] = (0.06, 0.35),
    vertices: int = 32,
) -> Tensor:
    """A random object-like blob: a smooth star-shaped polygon, randomly stretched and rotated.

    Args:
        size: ``(H, W)`` of the mask.
        generator: the source of randomness.
        area: approximate range of the foreground fraction.
        vertices: polygon resolution.
    Returns:
        ``(1, H, W)`` float32 mask in {0, 1} with a non-empty foreground.
    """
    h, w = size

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    frac = u(*area)
    aspect = math.exp(u(-0.6, 0.6))
    # the mean radius of a unit-area-fraction blob: pi * r^2 ~ frac * h * w
    r0 = math.sqrt(frac * h * w / math.pi)
    rx, ry = r0 * math.sqrt(aspect), r0 / math.sqrt(aspect)
    cx, cy = u(0.25, 0.75) * w, u(0.25, 0.75) * h
    rot = u(0, 2 * math.pi)
    harmonics = [(k, u(0.0, 0.22 / k), u(0, 2 * math.pi)) for k in (2, 3, 4, 5)]
    pts = []
    for i in range(vertices):
        t = 2 * math.pi * i / vertices
        rad = 1.0 + sum(a * math.cos(k * t + ph) for k, a, ph in harmonics)
        x, y = rx * rad * math.cos(t), ry * rad * math.sin(t)
        pts.append((cx + x * math.cos(rot) - y * math.sin(rot), cy + x * math.sin(rot) + y * math.cos(rot)))
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).polygon(pts, fill=255)
    m = torch.from_numpy((np.asarray(img) >= 128).astype(np.float32))[None]
    if not bool(m.any()):  # a blob pushed off-frame: fall back to a centred ellipse
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        m = ((((xx - w / 2) / (w / 4)) ** 2 + ((yy - h / 2) / (h / 4)) ** 2) <= 1).float()[None]
    return m


def _u8_grid(x: Tensor) -> Tensor:
    """Round to the uint8 grid (so a written PNG reads back to exactly these values)."""
    return (x.clamp(0, 1) * 255.0).round() / 255.0


@DATASETS.register("bundled_photos")
class BundledPhotosDataset(Dataset):
    """Synthetic composites from the bundled ``train`` photos, made on the fly.

    A sample is ``{"composite": (3, S, S), "real": (3, S, S), "mask": (1, S, S), "domain": str,
    "name": str}``, float32 in [0, 1], mask in {0, 1}, ``S = size``; the composite's background
    equals ``real`` exactly. Sample ``i`` uses photo ``i mod n_photos`` and a generator seeded
    by ``(seed, i)``: a random resized crop (area fraction in ``scale``, aspect 3/4..4/3) and a
    horizontal flip; with probability ``object_mask_prob`` the drawn object mask (when the crop
    keeps 3-90 % of it as foreground), else a :func:`random_object_mask`; then one colour edit
    of the foreground drawn from ``methods`` (the statistics of ``lab_transfer`` /
    ``histogram`` come from another train photo's object).

    Args:
        split: which bundled photos to use (``"train"``; ``"eval"`` only for experiments).
        size: output side in pixels.
        length: samples per epoch (a virtual length: samples are generated, not stored).
        seed: dataset seed.
        object_mask_prob: probability of using the drawn object mask.
        scale: crop area range as a fraction of the photo.
        flip_p: horizontal flip probability.
        methods: colour edits (see :data:`harmonykit.data.synthetic.METHODS`).
        max_side: photos are decoded with the longer side at most this many pixels.
        domain: the sample domain (``"real"``).
        photos_dir: another folder with a ``photos.json`` (default: the bundled one).
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 256,
        length: int = 1000,
        seed: int = 0,
        object_mask_prob: float = 0.5,
        scale: Tuple[float, float] = (0.3, 1.0),
        flip_p: float = 0.5,
        methods: Sequence[str] = METHODS,
        max_side: int = 512,
        domain: str = "real",
        photos_dir: Optional[str] = None,
    ) -> None:
        if int(size) < 16:
            raise ValueError(f"size={size!r}; expected at least 16 pixels")
        if int(length) < 1:
            raise ValueError(f"length={length!r}; expected >= 1")
        if not 0.0 <= float(object_mask_prob) <= 1.0:
            raise ValueError(f"object_mask_prob={object_mask_prob!r}; expected a probability in [0, 1]")
        self.photos = load_bundled_photos(split, max_side, photos_dir)
        self.size, self.length, self.seed = int(size), int(length), int(seed)
        self.object_mask_prob, self.scale, self.flip_p = float(object_mask_prob), tuple(scale), float(flip_p)
        self.domain = domain
        self.synth = SyntheticComposite(methods=methods, min_change=0.02, seed=seed)
        # small references for lab_transfer / histogram: each photo's object region
        self._refs = [
            (resized_crop(p.image, (0, 0, p.image.shape[1], p.image.shape[2], False), (96, 96)),
             (resized_crop(p.mask, (0, 0, p.mask.shape[1], p.mask.shape[2], False), (96, 96)) >= 0.5).float())
            for p in self.photos
        ]

    def __len__(self) -> int:
        return self.length

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + int(index) * 7919 + 17) % (2**63 - 1))

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        g = self._generator(index)
        j = index % len(self.photos)
        photo = self.photos[j]
        img, omask = photo.image, photo.mask
        params = sample_crop(img.shape[1], img.shape[2], self.scale, (3 / 4, 4 / 3), self.flip_p, g)
        out = (self.size, self.size)
        real = _u8_grid(resized_crop(img, params, out))
        mask = None
        kind = "random"
        if float(torch.rand((), generator=g)) < self.object_mask_prob:
            m = (resized_crop(omask, params, out) >= 0.5).float()
            if 0.03 <= float(m.mean()) <= 0.9:
                mask, kind = m, "object"
        if mask is None:
            mask = random_object_mask(out, g)
        k = int(torch.randint(0, len(self.photos) - 1, (), generator=g)) if len(self.photos) > 1 else 0
        k = k + 1 if (len(self.photos) > 1 and k >= j) else k
        ref, ref_mask = self._refs[k]
        comp = self.synth(real[None], mask[None], reference=[ref], reference_mask=[ref_mask], generator=g)[0]
        comp = torch.where(mask >= 0.5, _u8_grid(comp), real)
        return {
            "composite": comp,
            "real": real,
            "mask": mask,
            "domain": self.domain,
            "name": f"{photo.name}-{index}-{kind}",
        }

    def __repr__(self) -> str:
        return f"BundledPhotosDataset({self.length} samples from {[p.name for p in self.photos]}, size={self.size}, seed={self.seed})"


def write_eval_triplets(
    out_dir: Union[str, Path],
    per_photo: int = 8,
    seed: int = 0,
    split: str = "eval",
    max_side: int = 512,
    methods: Sequence[str] = METHODS,
    min_change: float = 0.04,
    progress: Optional[bool] = None,
    photos_dir: Union[str, Path, None] = None,
) -> List[Dict[str, Any]]:
    """Write held-back real triplets as a folder dataset; returns one record per composite.

    Output (the ``folder`` dataset layout, read by ``harmonykit eval``)::

        <out>/real_images/<photo>.png          the photo (longer side <= max_side), lossless
        <out>/masks/<photo>.png                its drawn object mask, 0 / 255
        <out>/composite_images/<photo>_<k>.png k = 1..per_photo: a seeded colour edit of the
                                               foreground; background bit-identical to the photo
        <out>/triplets.json                    per composite: photo, edit method, seed, licence

    Edits are drawn with a generator seeded by ``(seed, photo, k)``; the statistics of
    ``lab_transfer`` / ``histogram`` come from the object of a ``train`` photo. ``min_change``
    (mean absolute foreground change in [0, 1] units) keeps the composites visibly off.
    """
    from harmonykit.utils import progress as progress_bar

    if int(per_photo) < 1:
        raise ValueError(f"per_photo={per_photo!r}; expected >= 1")
    out = Path(out_dir)
    photos = load_bundled_photos(split, max_side, photos_dir)
    refs = load_bundled_photos("train", 256, photos_dir) if split != "train" else photos
    synth = SyntheticComposite(methods=methods, min_change=min_change, seed=seed)
    for sub in ("composite_images", "masks", "real_images"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    records: List[Dict[str, Any]] = []
    jobs = [(pi, k) for pi in range(len(photos)) for k in range(1, int(per_photo) + 1)]
    for pi, k in progress_bar(jobs, enabled=progress, desc="eval triplets", unit="img"):
        p = photos[pi]
        assert p.image is not None and p.mask is not None
        if k == 1:
            save_image(p.image, out / "real_images" / f"{p.name}.png")
            save_mask(p.mask, out / "masks" / f"{p.name}.png")
        g = torch.Generator().manual_seed(int(seed) * 100_003 + pi * 1009 + k)
        r = refs[int(torch.randint(0, len(refs), (), generator=g))]
        comp = synth(p.image[None], p.mask[None], reference=[r.image], reference_mask=[r.mask], generator=g)[0]
        comp = torch.where(p.mask >= 0.5, comp, p.image)
        name = f"{p.name}_{k}.png"
        save_image(comp, out / "composite_images" / name)
        records.append({
            "composite": name,
            "photo": p.name,
            "method": synth.last_methods[0],
            "reference": r.name,
            "seed": int(seed),
            "licence": p.licence,
            "attribution": p.attribution,
            "source": p.source,
        })
    (out / "triplets.json").write_text(json.dumps({"split": split, "per_photo": int(per_photo), "seed": int(seed), "triplets": records}, indent=2))
    _logger.info("wrote %d eval triplets from %d photos to %s", len(records), len(photos), out)
    return records
