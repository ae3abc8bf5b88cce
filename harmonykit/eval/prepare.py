"""Evaluation input preparation: how each metric protocol reads, resizes and masks a triplet.

A protocol is more than its metric formulas: the official scripts also fix how the files are
decoded, how composite and ground truth are resized to the evaluation size, how the mask file
is turned into the mask fed to the network, and which mask the metrics use. Each protocol
names one :class:`InputPreparation` here (``MetricProtocol.inputs``).

``charmnet`` (bcmi CharmNet ``test.py`` through ``RealDataset`` + ``HCompose([Resize(256, 256)])``)
    images: ``cv2.imread`` (BGR -> RGB), uint8, resized with cv2 ``INTER_LINEAR`` (OpenCV's
    fixed-point bilinear, no antialias). Mask file: ``cv2.imread`` channel 0, ``/ 255`` then cast
    to uint8, i.e. **truncated** (only 255 -> 1). Model mask: that 0/1 uint8 mask resized **as an
    image** (``HCompose(no_nearest_for_masks=True)``), cv2 ``INTER_LINEAR`` on uint8, so it stays
    {0, 1}. Metric mask: the mask file through PIL ``convert('1')`` (Floyd-Steinberg) and a
    NEAREST resize (see :class:`~harmonykit.eval.metrics.CharmNetProtocol`).
``idih`` (SamsungLabs ``scripts/evaluate_model.py`` through ``HDataset`` + ``HCompose([Resize(256, 256)])``)
    images as above (cv2 decode, ``INTER_LINEAR`` on uint8). Mask file: ``cv2.imread`` channel 0
    ``/ 255`` as float32, **soft**. Model mask and metric mask: that float32 mask resized as an
    image, cv2 ``INTER_LINEAR`` in float32 (soft edges).
``harmonykit`` (ours)
    files decoded by :mod:`harmonykit.data.io`'s rules (EXIF, grey, alpha, palette, 16-bit);
    images resized with torch's uint8 bilinear kernel (no antialias, rounded); model mask: the
    mask ``/ 255`` resized bilinearly (soft); metric mask: that soft mask (the protocol
    thresholds it at 0.5).

The two official preparations need OpenCV (``opencv-python-headless``): OpenCV's fixed-point
bilinear differs from torch's by one level on some pixels, which moves per-image fMSE by up to
~0.5 % with a random network, so it is used rather than approximated.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PreparedTriplet",
    "InputPreparation",
    "CharmNetInputs",
    "IDIHInputs",
    "HarmonykitInputs",
    "get_preparation",
    "cv2_read_rgb",
    "cv2_read_mask_channel0",
    "cv2_resize_linear",
    "truncate_mask",
]

PathLike = Union[str, Path]
SizeHW = Tuple[int, int]


def _cv2():
    try:
        import cv2  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError(
            "the 'charmnet' and 'idih' evaluation protocols resize with OpenCV's arithmetic; "
            "install opencv-python-headless"
        ) from e
    return cv2


# --------------------------------------------------------------------------------------------
# the official building blocks
# --------------------------------------------------------------------------------------------
def cv2_read_rgb(path: PathLike, what: str = "image") -> np.ndarray:
    """``cv2.imread`` + BGR -> RGB: ``(H, W, 3)`` uint8 (the official loaders' decode)."""
    cv2 = _cv2()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    img = cv2.imread(str(p))
    if img is None:
        raise ValueError(f"{p}: OpenCV cannot decode this {what} (expected a JPEG/PNG image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def cv2_read_mask_channel0(path: PathLike) -> np.ndarray:
    """``cv2.imread(path)[:, :, 0]``: ``(H, W)`` uint8 (channel 0 of the BGR decode = blue for a
    colour mask, the grey value for a grey one), as both official loaders read masks."""
    cv2 = _cv2()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"mask file not found: {p}")
    m = cv2.imread(str(p))
    if m is None:
        raise ValueError(f"{p}: OpenCV cannot decode this mask (expected a PNG/JPEG image)")
    return np.ascontiguousarray(m[:, :, 0])


def truncate_mask(mask_u8: np.ndarray) -> np.ndarray:
    """CharmNet's mask rule: ``(m / 255).astype(uint8)`` in float32, i.e. 1 only where m == 255."""
    return (mask_u8.astype(np.float32) / np.float32(255.0)).astype(np.uint8)


def cv2_resize_linear(img: np.ndarray, size: SizeHW) -> np.ndarray:
    """cv2 ``INTER_LINEAR`` resize to ``size = (h, w)`` in the input dtype (albumentations
    ``Resize``: returned unchanged when the size already matches)."""
    if img.shape[:2] == tuple(size):
        return img
    cv2 = _cv2()
    return cv2.resize(img, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)


def torch_resize_u8(img: np.ndarray, size: SizeHW) -> np.ndarray:
    """(H, W, 3) uint8 -> torch bilinear (no antialias, uint8 kernel, rounded) -> (h, w, 3) uint8."""
    if img.shape[:2] == tuple(size):
        return img
    t = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None]
    y = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    return y[0].permute(1, 2, 0).contiguous().numpy()


def torch_resize_mask(mask_u8: np.ndarray, size: SizeHW) -> np.ndarray:
    """(H, W) uint8 0..255 -> (h, w) float32 in [0, 1], torch bilinear (soft)."""
    t = torch.tensor(mask_u8, dtype=torch.float32)[None, None] / 255.0
    if mask_u8.shape != tuple(size):
        t = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    return t[0, 0].clamp_(0, 1).numpy()


# --------------------------------------------------------------------------------------------
# preparations
# --------------------------------------------------------------------------------------------
@dataclass
class PreparedTriplet:
    """One triplet ready for the network and the metrics.

    Attributes:
        composite, real: ``(h, w, 3)`` uint8 at the evaluation size.
        model_mask: ``(h, w)`` float32 in [0, 1], the mask fed to the network.
        metric_mask: the mask handed to the protocol's metrics (``(h, w)``; uint8 0/255 for
            ``charmnet``, float32 in [0, 1] otherwise).
        mask_u8: the mask as read from the file, ``(H, W)`` uint8 (original size).
    """

    composite: np.ndarray
    real: np.ndarray
    model_mask: np.ndarray
    metric_mask: np.ndarray
    mask_u8: np.ndarray


class InputPreparation:
    """Base class; subclasses set the descriptive attributes and implement :meth:`__call__`."""

    name: str = "base"
    decode: str = ""
    image_resize: str = ""
    mask_rule: str = ""
    model_mask: str = ""
    metric_mask: str = ""

    def describe(self) -> Dict[str, str]:
        return {k: getattr(self, k) for k in ("decode", "image_resize", "mask_rule", "model_mask", "metric_mask")}

    def __call__(self, composite: PathLike, mask: PathLike, real: PathLike, size: SizeHW) -> PreparedTriplet:
        raise NotImplementedError

    @classmethod
    def _read_cv2(cls, composite: PathLike, mask: PathLike, real: PathLike) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The official loaders' decode: composite and real (H, W, 3) uint8 RGB, mask file channel
        0 (H, W) uint8, sizes checked."""
        comp, gt = cv2_read_rgb(composite, "composite"), cv2_read_rgb(real, "ground truth")
        m8 = cv2_read_mask_channel0(mask)
        cls._check(comp, m8, gt, (composite, mask, real))
        return comp, m8, gt

    @staticmethod
    def _check(comp: np.ndarray, mask: np.ndarray, real: np.ndarray, paths: Tuple[PathLike, PathLike, PathLike]) -> None:
        if comp.shape != real.shape:
            raise ValueError(
                f"size mismatch: composite {paths[0]} is {comp.shape[1]}x{comp.shape[0]}, real {paths[2]} is "
                f"{real.shape[1]}x{real.shape[0]}"
            )
        if mask.shape[:2] != comp.shape[:2]:
            raise ValueError(
                f"mask size mismatch: {paths[1]} is {mask.shape[1]}x{mask.shape[0]}, composite {paths[0]} is "
                f"{comp.shape[1]}x{comp.shape[0]}"
            )


class CharmNetInputs(InputPreparation):
    """bcmi CharmNet ``test.py`` (see the module docstring)."""

    name = "charmnet"
    decode = "cv2.imread, BGR->RGB; mask = channel 0"
    image_resize = "cv2 INTER_LINEAR on uint8 (albumentations Resize)"
    mask_rule = "truncate: (m / 255).astype(uint8), only 255 -> 1"
    model_mask = "truncated 0/1 uint8 mask resized as an image, cv2 INTER_LINEAR (stays {0, 1})"
    metric_mask = "PIL convert('1') of the mask file + NEAREST resize"

    def __call__(self, composite, mask, real, size):
        comp, m8, gt = self._read_cv2(composite, mask, real)
        model_mask = cv2_resize_linear(truncate_mask(m8), size).astype(np.float32)
        from PIL import Image

        with Image.open(mask) as im:
            grey = np.asarray(im.convert("L"))
        metric = pil_binarize_mask(grey, size) * np.uint8(255)
        return PreparedTriplet(cv2_resize_linear(comp, size), cv2_resize_linear(gt, size), model_mask, metric, m8)


def pil_binarize_mask(mask_u8: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """PIL ``convert('1')`` (Floyd-Steinberg) then NEAREST resize to ``size_hw`` -> {0, 1} uint8
    (the CharmNet ``test.py`` metric mask)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(mask_u8), mode="L").convert("1")
    h, w = size_hw
    if im.size != (w, h):
        im = im.resize((w, h), Image.NEAREST)
    return np.asarray(im, dtype=np.uint8)


class IDIHInputs(InputPreparation):
    """SamsungLabs ``evaluate_model.py`` (see the module docstring)."""

    name = "idih"
    decode = "cv2.imread, BGR->RGB; mask = channel 0"
    image_resize = "cv2 INTER_LINEAR on uint8 (albumentations Resize)"
    mask_rule = "soft: m / 255 in float32"
    model_mask = "the float32 mask resized as an image, cv2 INTER_LINEAR (soft)"
    metric_mask = "the model mask"

    def __call__(self, composite, mask, real, size):
        comp, m8, gt = self._read_cv2(composite, mask, real)
        soft = cv2_resize_linear(m8.astype(np.float32) / np.float32(255.0), size).astype(np.float32, copy=False)
        return PreparedTriplet(cv2_resize_linear(comp, size), cv2_resize_linear(gt, size), soft, soft, m8)


class HarmonykitInputs(InputPreparation):
    """Ours (see the module docstring)."""

    name = "harmonykit"
    decode = "harmonykit.data.io rules (EXIF, grey, alpha, palette, 16-bit)"
    image_resize = "torch bilinear on uint8, no antialias, rounded"
    mask_rule = "soft: m / 255 (the metrics threshold at 0.5)"
    model_mask = "soft mask, torch bilinear"
    metric_mask = "the model mask"

    def __call__(self, composite, mask, real, size):
        from harmonykit.data.io import load_image_u8, load_mask_u8

        comp = load_image_u8(composite, "composite")
        m8 = load_mask_u8(mask)
        gt = load_image_u8(real, "ground truth")
        self._check(comp, m8, gt, (composite, mask, real))
        soft = torch_resize_mask(m8, size)
        return PreparedTriplet(torch_resize_u8(comp, size), torch_resize_u8(gt, size), soft, soft, m8)


_PREPARATIONS: Dict[str, InputPreparation] = {
    p.name: p for p in (CharmNetInputs(), IDIHInputs(), HarmonykitInputs())
}


def get_preparation(name: Union[str, InputPreparation]) -> InputPreparation:
    """The input preparation named ``name`` (``charmnet``, ``idih``, ``harmonykit``)."""
    if isinstance(name, InputPreparation):
        return name
    if name not in _PREPARATIONS:
        raise ValueError(f"unknown input preparation {name!r}; expected one of: {', '.join(_PREPARATIONS)}")
    return _PREPARATIONS[name]

