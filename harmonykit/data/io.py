"""Image and mask decoding, cheap file checks, list files and data errors.

Decoding rules (every loader in :mod:`harmonykit.data` goes through these):

Images -> ``(3, H, W)`` float32 RGB in [0, 1]
    * JPEG, PNG, WebP (and anything else Pillow reads). EXIF orientation is applied, so
      sizes are those of the image as displayed.
    * ``RGB`` as is; ``L`` / ``1`` (grayscale) replicated to three channels; ``P`` (palette)
      expanded; ``RGBA`` / ``LA`` / ``PA``: the alpha channel is **dropped** (colour kept, not
      composited); ``CMYK`` / ``YCbCr`` / ``LAB`` / ``HSV`` converted by Pillow;
      16-bit (``I;16*``, ``I``) divided by 65535; float (``F``) taken as [0, 1] and clipped.
    * ``size=(W, H)`` resizes (bilinear, antialiased). Large JPEGs are decoded at a reduced
      DCT scale first (``PIL.Image.draft``), which makes a 4256x2832 HAdobe5k file several
      times cheaper to read at 1024 px.

Masks -> ``(1, H, W)`` float32 in [0, 1] (foreground = 1)
    * The mask value is the **alpha channel** when the file has one that is not fully opaque,
      otherwise the **maximum over the colour channels** (an RGB mask painted in any colour
      works).
    * Integer masks whose maximum is 1 are read as 0/1 masks; other 8-bit masks are divided
      by 255, 16-bit ones by 65535; float masks are clipped to [0, 1].
    * ``threshold=0.5`` (the default) binarises: ``mask >= threshold`` -> 1, else 0.
      ``threshold=None`` keeps soft values. A resize happens before the threshold.

Errors are :class:`DataError` (a ``ValueError``) or :class:`DataFileNotFoundError` (also a
``FileNotFoundError``); their message starts with ``path:line:`` when a list line is
involved, then says what was expected.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "DataFileNotFoundError",
    "CorruptFileError",
    "SizeMismatchError",
    "ListFormatError",
    "ImageInfo",
    "ListLine",
    "probe_image",
    "load_image",
    "load_mask",
    "decode_rgb",
    "decode_mask",
    "fit_size",
    "read_list",
    "find_image",
    "to_uint8_image",
    "save_image",
    "save_mask",
    "DecodedImage",
    "read_image",
    "load_image_u8",
    "load_mask_u8",
    "write_image",
]

_logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
IMAGE_EXTENSIONS: Tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

_EXIF_ORIENTATION = 0x0112
_REDUCING_GAP = 3.0  # Pillow: box-reduce first when shrinking by more than 3x (fast, near-identical)
_SWAP_ORIENTATIONS = (5, 6, 7, 8)


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------
class DataError(ValueError):
    """A data problem; ``str(e)`` is ``"<path>[:<line>]: <message>"``.

    Attributes:
        path: the offending file (a list file when ``line`` is set), or None.
        line: 1-based line number in ``path``, or None.
    """

    def __init__(self, message: str, path: Optional[PathLike] = None, line: Optional[int] = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        if self.path is None:
            text = message
        elif line is not None:
            text = f"{self.path}:{line}: {message}"
        else:
            text = f"{self.path}: {message}"
        super().__init__(text)

    def __reduce__(self):  # keep pickling (DataLoader workers) working with the extra args
        return (type(self), (self.message, self.path, self.line))


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A file named by a dataset or a list line does not exist."""


class CorruptFileError(DataError):
    """A file exists but cannot be decoded (empty, truncated, not an image)."""


class SizeMismatchError(DataError):
    """Composite, real image and mask of one sample differ in size."""


class ListFormatError(DataError):
    """A list file is empty or one of its lines cannot be parsed."""


# --------------------------------------------------------------------------------------
# cheap checks
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageInfo:
    """Header facts of an image file; ``width``/``height`` after EXIF orientation."""

    path: str
    width: int
    height: int
    mode: str
    format: Optional[str]

    @property
    def size(self) -> Tuple[int, int]:
        return (self.width, self.height)


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not stop decoding
        return 1


def _truncation_problem(path: Path, fmt: Optional[str]) -> Optional[str]:
    """Look at the file's last bytes for the end marker of its format (cheap, no decode)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 1024))
        tail = f.read()
        if fmt == "JPEG":
            if b"\xff\xd9" not in tail:
                return "JPEG is truncated (no end-of-image marker FFD9 in its last 1 KiB)"
        elif fmt == "PNG":
            if b"IEND" not in tail[-64:]:
                return "PNG is truncated (no IEND chunk at its end)"
        elif fmt == "WEBP":
            f.seek(4)
            riff = int.from_bytes(f.read(4), "little")
            if riff + 8 > size:
                return f"WebP is truncated (RIFF header says {riff + 8} bytes, file has {size})"
    return None


def probe_image(path: PathLike, what: str = "image", check_truncation: bool = True) -> ImageInfo:
    """Read only the header of ``path``: existence, format, size, and (cheaply) truncation.

    Raises:
        DataFileNotFoundError: the file does not exist.
        CorruptFileError: empty, not an image, or truncated.
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileNotFoundError(f"{what} file not found (expected an image file here)", p)
    if p.stat().st_size == 0:
        raise CorruptFileError(f"{what} file is empty (0 bytes)", p)
    try:
        with Image.open(p) as img:
            w, h = img.size
            mode, fmt = img.mode, img.format
            if _orientation(img) in _SWAP_ORIENTATIONS:
                w, h = h, w
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CorruptFileError(f"cannot read {what} header ({type(e).__name__}: {e}); expected JPEG/PNG/WebP", p) from e
    if check_truncation:
        problem = _truncation_problem(p, fmt)
        if problem:
            raise CorruptFileError(f"{what}: {problem}", p)
    return ImageInfo(str(p), w, h, mode, fmt)


def fit_size(size: Tuple[int, int], max_size: Optional[int]) -> Tuple[int, int]:
    """``(W, H)`` scaled down (aspect kept) so that its longer side is at most ``max_size``."""
    w, h = size
    if not max_size or max(w, h) <= max_size:
        return (w, h)
    s = max_size / max(w, h)
    return (max(1, round(w * s)), max(1, round(h * s)))


# --------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------
def _open(path: PathLike, what: str, size: Optional[Tuple[int, int]]) -> Image.Image:
    """Open, reduced-DCT decode when a smaller ``size`` is wanted, EXIF-transpose, load."""
    p = Path(path)
    if not p.is_file():
        raise DataFileNotFoundError(f"{what} file not found (expected an image file here)", p)
    try:
        img = Image.open(p)
        if size is not None and img.format == "JPEG":
            tw, th = size
            if _orientation(img) in _SWAP_ORIENTATIONS:
                tw, th = th, tw
            if tw < img.size[0] and th < img.size[1]:
                img.draft(img.mode if img.mode in ("RGB", "L") else "RGB", (tw, th))
        img.load()
        img = ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CorruptFileError(
            f"cannot decode {what} ({type(e).__name__}: {e}); expected a complete JPEG/PNG/WebP", p
        ) from e
    return img


def open_image(path: PathLike, what: str = "image", size: Optional[Tuple[int, int]] = None) -> Image.Image:
    """Open an image file by the module's rules (EXIF orientation applied, reduced-size JPEG
    decode when ``size`` is smaller); errors name the file. Returns the Pillow image as stored
    (any mode): pass it to :func:`decode_rgb` / :func:`decode_mask`."""
    return _open(path, what, size)


def decode_rgb(img: Image.Image) -> np.ndarray:
    """A Pillow image as ``(H, W, 3)`` float32 in [0, 1] by the module's conversion rules."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.float32) / 255.0
    if mode in ("L", "1"):
        a = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        return np.repeat(a[..., None], 3, axis=2)
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(img, dtype=np.float32)[..., :3] / 255.0
    if mode == "LA":
        a = np.asarray(img, dtype=np.float32)[..., 0] / 255.0
        return np.repeat(a[..., None], 3, axis=2)
    if mode in ("P", "PA"):
        return np.asarray(img.convert("RGBA"), dtype=np.float32)[..., :3] / 255.0
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I (16-bit PNG grayscale)
        a = np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0.0, 1.0)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(a[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def decode_mask(img: Image.Image) -> np.ndarray:
    """A Pillow image as a ``(H, W)`` float32 mask in [0, 1] (see the module rules)."""
    mode = img.mode
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "CMYK" or mode == "YCbCr" or mode == "LAB" or mode == "HSV":
        img = img.convert("RGB")
        mode = "RGB"
    arr = np.asarray(img)
    if mode in ("RGBA", "LA", "RGBa"):
        alpha = arr[..., -1]
        arr = alpha if alpha.min() < 255 else arr[..., :-1].max(axis=-1)
    elif arr.ndim == 3:
        arr = arr.max(axis=-1)
    if mode == "F":
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
    if mode == "1":
        return arr.astype(np.float32)
    arr = arr.astype(np.float32)
    top = float(arr.max()) if arr.size else 0.0
    if top <= 1.0:
        return arr  # a 0/1 mask
    if mode.startswith("I") and top > 255:
        return np.clip(arr / 65535.0, 0.0, 1.0)
    return np.clip(arr / 255.0, 0.0, 1.0)


def _resize_float(arr: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of an ``(H, W)`` or ``(H, W, C)`` float array to ``(W, H)``."""
    if arr.ndim == 2:
        return np.asarray(Image.fromarray(arr, mode="F").resize(size, Image.BILINEAR), dtype=np.float32)
    return np.stack([_resize_float(arr[..., c], size) for c in range(arr.shape[2])], axis=2)


def load_image(path: PathLike, size: Optional[Tuple[int, int]] = None, what: str = "image") -> torch.Tensor:
    """Decode an image file to ``(3, H, W)`` float32 RGB in [0, 1].

    Args:
        path: the file.
        size: ``(W, H)`` to resize to (bilinear, antialiased; JPEGs use a reduced DCT decode
            first). None keeps the file's size.
        what: the file's role, used in error messages (``"composite"``).
    """
    img = _open(path, what, size)
    if size is not None and img.size != tuple(size) and img.mode not in ("RGB", "L", "RGBA", "LA", "P", "PA", "1"):
        arr = _resize_float(decode_rgb(img), tuple(size))
    else:
        if size is not None and img.size != tuple(size):
            if img.mode not in ("RGB", "L"):
                img = Image.fromarray((decode_rgb(img) * 255.0 + 0.5).astype(np.uint8))
            img = img.resize(tuple(size), Image.BILINEAR, reducing_gap=_REDUCING_GAP)
        arr = decode_rgb(img)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def load_image_u8(path: PathLike, what: str = "image") -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 RGB by the module's rules (for 8-bit
    evaluation pipelines that work on the file's own levels)."""
    img = _open(path, what, None)
    if img.mode == "RGB":
        return np.array(img, dtype=np.uint8)
    return np.rint(decode_rgb(img) * 255.0).astype(np.uint8)


def load_mask_u8(path: PathLike, what: str = "mask") -> np.ndarray:
    """Decode a mask file to ``(H, W)`` uint8 in 0..255 by the module's rules (0/1 masks are
    scaled to 0/255; soft values kept)."""
    return np.rint(load_mask(path, threshold=None, what=what)[0].numpy() * 255.0).astype(np.uint8)


def _mask_band(img: Image.Image) -> Optional[Image.Image]:
    """The mask rule done in Pillow for 8-bit images: one ``L`` band (or None if not 8-bit)."""
    mode = img.mode
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
        mode = "RGB"
    if mode == "1":
        return img.convert("L").point(lambda v: 1 if v else 0)
    if mode == "L":
        return img
    if mode in ("RGBA", "LA", "RGBa"):
        alpha = img.getchannel(img.getbands()[-1])
        if alpha.getextrema()[0] < 255:
            return alpha
        bands = img.split()[:-1]
    elif mode == "RGB":
        bands = img.split()
    else:
        return None
    out = bands[0]
    for b in bands[1:]:
        out = ImageChops.lighter(out, b)
    return out


def load_mask(
    path: PathLike,
    size: Optional[Tuple[int, int]] = None,
    threshold: Optional[float] = 0.5,
    what: str = "mask",
) -> torch.Tensor:
    """Decode a mask file to ``(1, H, W)`` float32 in [0, 1] (foreground = 1).

    Args:
        path: the file.
        size: ``(W, H)`` to resize to (bilinear, before the threshold), or None.
        threshold: binarise at this value (``mask >= threshold``); None keeps soft values.
    """
    img = _open(path, what, size)
    if img.mode == "RGB" and size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.BILINEAR, reducing_gap=_REDUCING_GAP)  # shrink first: cheaper
    band = _mask_band(img)
    if band is not None:  # 8-bit: stay in Pillow (fast on 4k masks)
        scale = 1.0 if band.getextrema()[1] <= 1 else 1.0 / 255.0
        if scale == 1.0 and size is not None and band.size != tuple(size):
            band = band.point(lambda v: 255 if v else 0)  # 0/1 -> 0/255 before resizing
            scale = 1.0 / 255.0
        if size is not None and band.size != tuple(size):
            band = band.resize(tuple(size), Image.BILINEAR, reducing_gap=_REDUCING_GAP)
        if threshold is not None:
            cut = threshold / scale
            arr = (np.asarray(band) >= cut).astype(np.float32)
        else:
            arr = np.asarray(band, dtype=np.float32) * scale
    else:
        arr = decode_mask(img)
        if size is not None and (arr.shape[1], arr.shape[0]) != tuple(size):
            arr = np.clip(_resize_float(arr, tuple(size)), 0.0, 1.0)
        if threshold is not None:
            arr = (arr >= threshold).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr[None]))


# --------------------------------------------------------------------------------------
# writing (used by the composite makers)
# --------------------------------------------------------------------------------------
def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` float in [0, 1] -> ``(H, W, C)`` (or ``(H, W)`` for C=1) uint8, rounded."""
    a = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
    a = a.transpose(1, 2, 0)
    return a[..., 0] if a.shape[2] == 1 else a


def save_image(x: Union[torch.Tensor, np.ndarray], path: PathLike, quality: int = 95) -> None:
    """Write ``(3, H, W)`` float in [0, 1] (or an ``(H, W, 3)`` uint8 array); format from the suffix."""
    arr = to_uint8_image(x) if isinstance(x, torch.Tensor) else x
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    kw = {"quality": quality} if p.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    if p.suffix.lower() == ".webp" and quality >= 100:
        kw = {"lossless": True}
    Image.fromarray(arr).save(p, **kw)


def save_mask(x: Union[torch.Tensor, np.ndarray], path: PathLike) -> None:
    """Write a ``(1, H, W)`` float mask (or ``(H, W)`` uint8 array) as an 8-bit 0..255 PNG."""
    arr = to_uint8_image(x) if isinstance(x, torch.Tensor) else x
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="L").save(p)


# --------------------------------------------------------------------------------------
# full-fidelity reading and writing (user photos: alpha and 16-bit kept)
# --------------------------------------------------------------------------------------
@dataclass
class DecodedImage:
    """A photo as read for harmonization: ``rgb`` ``(H, W, 3)`` float32 in [0, 1], ``alpha``
    ``(H, W)`` float32 in [0, 1] or None, ``bits`` per channel of the file (8 or 16)."""

    rgb: np.ndarray
    alpha: Optional[np.ndarray]
    bits: int
    path: Optional[Path] = None


_SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")


def _file_bits(p: Path, img: Image.Image) -> int:
    """Bits per channel of a PNG / TIFF file (Pillow reduces 16-bit RGB to 8 bits silently)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        return 16
    with open(p, "rb") as f:
        head = f.read(25)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return int(head[24]) if len(head) == 25 and head[12:16] == b"IHDR" else 8
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        with Image.open(p) as raw:
            bps = raw.tag_v2.get(258)
        vals = bps if isinstance(bps, tuple) else (bps,)
        return 16 if any(v == 16 for v in vals if v) else 8
    return 8


def read_image(path: PathLike, what: str = "image") -> DecodedImage:
    """Read a photo keeping what :func:`load_image` drops: the alpha channel and 16-bit
    precision (16-bit RGB PNG / TIFF are read through OpenCV, since Pillow reduces them to 8
    bits). EXIF orientation is applied as by every loader here."""
    p = Path(path)
    img = _open(p, what, None)
    bits = _file_bits(p, img)
    if bits == 16 and not (img.mode.startswith("I;16") or img.mode == "I"):
        import cv2

        arr = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if arr is None or arr.dtype != np.uint16:
            raise CorruptFileError(f"cannot decode the 16-bit {what}; expected a 16-bit RGB(A) PNG or TIFF", p)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        rgb = arr[..., 2::-1].astype(np.float32) / 65535.0
        alpha = arr[..., 3].astype(np.float32) / 65535.0 if arr.shape[2] == 4 else None
        return DecodedImage(np.ascontiguousarray(rgb), alpha, 16, p)
    alpha = None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        alpha = np.asarray(img.convert("RGBA"), dtype=np.float32)[..., 3] / 255.0
    return DecodedImage(decode_rgb(img), alpha, bits, p)


def write_image(path: PathLike, rgb: np.ndarray, alpha: Optional[np.ndarray] = None, bits: int = 8, quality: int = 95) -> int:
    """Write ``rgb`` ``(H, W, 3)`` float in [0, 1] (+ ``alpha``) at ``bits`` per channel where
    the format allows (16 bits: PNG, TIFF; alpha: PNG, TIFF, WebP). Returns the bits written;
    a format that cannot hold the alpha or the 16 bits logs a warning naming the file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower()
    if alpha is not None and suffix in (".jpg", ".jpeg", ".bmp"):
        _logger.warning("%s: %s cannot store the alpha channel of the input; it is dropped", p, suffix)
        alpha = None
    chans = [rgb] if alpha is None else [rgb, alpha[..., None]]
    arr = np.clip(np.concatenate(chans, axis=2), 0.0, 1.0)
    if bits == 16 and suffix in _SIXTEEN_BIT_SUFFIXES:
        import cv2

        a16 = np.rint(arr * 65535.0).astype(np.uint16)
        bgr = a16[..., [2, 1, 0, 3]] if a16.shape[2] == 4 else a16[..., ::-1]
        tmp = p.with_name(p.name + ".tmp" + p.suffix)
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(bgr)):
            raise OSError(f"{p}: OpenCV could not write a 16-bit {suffix} file")
        os.replace(tmp, p)
        return 16
    if bits == 16:
        _logger.warning("%s: %s holds 8 bits per channel; the 16-bit input is written as 8-bit", p, suffix)
    a8 = np.rint(arr * 255.0).astype(np.uint8)
    kw = {"quality": quality} if suffix in (".jpg", ".jpeg", ".webp") else {}
    Image.fromarray(a8, mode="RGBA" if a8.shape[2] == 4 else "RGB").save(p, **kw)
    return 8


# --------------------------------------------------------------------------------------
# list files and name lookup
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ListLine:
    """One non-blank line of a list file: 1-based ``lineno`` and its ``text`` (stripped)."""

    path: str
    lineno: int
    text: str


def read_list(path: PathLike, what: str = "list file") -> List[ListLine]:
    """Non-blank, non-``#`` lines of a text list file.

    Raises:
        DataFileNotFoundError: the file does not exist.
        ListFormatError: it has no entries.
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileNotFoundError(f"{what} not found", p)
    out: List[ListLine] = []
    with open(p, "r", encoding="utf-8-sig") as f:
        for i, raw in enumerate(f, start=1):
            text = raw.strip()
            if text and not text.startswith("#"):
                out.append(ListLine(str(p), i, text))
    if not out:
        raise ListFormatError(f"{what} is empty (expected one entry per line)", p)
    return out


def find_image(folder: Path, stem: str, preferred: Sequence[str] = IMAGE_EXTENSIONS) -> Optional[Path]:
    """``folder/stem<ext>`` for the first extension (lower or upper case) that exists, else None."""
    for ext in preferred:
        for e in (ext, ext.upper()):
            p = folder / f"{stem}{e}"
            if p.is_file():
                return p
    return None
