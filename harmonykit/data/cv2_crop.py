"""The official training crop arithmetic: OpenCV ``INTER_LINEAR`` on uint8 / float32 arrays.

Both official codes crop with albumentations ``RandomResizedCrop`` + ``HorizontalFlip`` inside
``HCompose(no_nearest_for_masks=True)``: the box is cut from the uint8 image, resized with cv2
``INTER_LINEAR`` (OpenCV's fixed-point bilinear, **no antialias**) and flipped; the mask takes
the *image* path, so it is resized bilinearly in its own dtype: CharmNet's truncated 0/1 uint8
mask stays {0, 1}, Samsung's float32 ``png / 255`` mask gets soft edges.

:func:`cv2_resized_crop` does that on our float ``(C, H, W)`` tensors in [0, 1] (which hold
``uint8 / 255`` values exactly: ``rint(x * 255)`` recovers the bytes). It runs on the CPU; the
kornia / torch path of :mod:`harmonykit.data.augment` is ours (GPU, antialiased downscaling).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["MASK_DTYPES", "cv2_resized_crop"]

#: how a mask is handed to cv2: ``uint8`` (a 0/1 mask, CharmNet) or ``float32`` (Samsung)
MASK_DTYPES = ("uint8", "float32")


def _cv2():
    try:
        import cv2  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("backend='cv2' crops with OpenCV; install opencv-python-headless") from e
    return cv2


def cv2_resized_crop(
    x: Tensor,
    params: Tuple[int, int, int, int, bool],
    size: Tuple[int, int],
    kind: str = "image",
) -> Tensor:
    """Crop ``x`` by ``params = (top, left, h, w, flip)``, resize to ``size = (h, w)`` with cv2
    ``INTER_LINEAR`` and flip, as albumentations ``RandomResizedCrop`` + ``HorizontalFlip``.

    Args:
        x: ``(C, H, W)`` float in [0, 1] (any device).
        kind: ``"image"`` (uint8 bytes ``rint(255 x)``), ``"uint8"`` (a 0/1 mask resized as 0/1
            uint8: stays {0, 1}) or ``"float32"`` (a soft mask resized in float32).

    Returns:
        ``(C, h, w)`` in [0, 1], same dtype and device as ``x``.
    """
    cv2 = _cv2()
    top, left, h, w, flip = params
    crop = x[:, top : top + h, left : left + w].detach().to("cpu", torch.float32)
    a = crop.permute(1, 2, 0).numpy()
    if kind == "image":
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    elif kind == "uint8":
        b = np.rint(a)
        if not np.array_equal(b, a):
            raise ValueError(
                "mask_dtype='uint8' resizes a 0/1 mask as CharmNet does; got a soft mask "
                "(load it with mask_rule='truncate' or 'threshold', or use mask_dtype='float32')"
            )
        a = b.astype(np.uint8)
    elif kind == "float32":
        a = np.ascontiguousarray(a, dtype=np.float32)
    else:
        raise ValueError(f"kind={kind!r}; expected 'image', 'uint8' or 'float32'")
    if (h, w) != tuple(size):
        a = cv2.resize(a, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    if a.ndim == 2:
        a = a[..., None]
    if flip:
        a = a[:, ::-1]
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)
    t = t.float() / 255.0 if kind == "image" else t.float()
    return t.to(device=x.device, dtype=x.dtype)
