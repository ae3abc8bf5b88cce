"""Batch augmentation with kornia, run on the batch's device.

Batches come from :func:`harmonykit.data.collate.collate_samples`: ``composite`` / ``real`` /
``mask`` are stacked tensors when every sample has the same size, or **lists** of
``(C, H_i, W_i)`` tensors when sizes differ (datasets yield full-size images). The geometry
step (:class:`AlignedRandomResizedCrop`) crops every sample with its own random box, resizes
it to ``size`` (kornia ``resize``) and flips it, with **identical parameters for composite,
real and mask**, and returns stacked ``(B, C, size, size)`` tensors. Move the batch to the GPU
first (:func:`harmonykit.data.collate.batch_to_device`), then augment.

Crops follow the official iDIH / CharmNet recipe: ``RandomResizedCrop(256, scale=(0.5, 1),
ratio=(3/4, 4/3))`` + horizontal flip (p = 0.5); a crop whose mask sum at the output size is
<= 1 is re-drawn unless a draw with probability ``keep_background_prob`` (0.05) keeps it. The
mask takes the bilinear image path (soft edges, as in the official code) unless
``mask_interpolation="nearest"``; ``mask_threshold`` binarises it afterwards.

Colour augmentation (:class:`PairedColorJitter`) is separate and opt-in: it draws one set of
parameters per sample and applies it to composite **and** real alike (pixel-wise ops only), so
the pair never desynchronises and the background of the composite still equals the real's.

Every random draw comes from a ``torch.Generator`` (the module's own, seeded by ``seed``, or
one passed to ``forward``); draws happen on the CPU, so results do not depend on the device.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from kornia.enhance import adjust_brightness, adjust_contrast, adjust_gamma, adjust_hue, adjust_saturation
from kornia.geometry.transform import hflip, resize
from torch import Tensor, nn

from ..registry import AUGMENTATIONS

__all__ = [
    "CropParams",
    "sample_crop",
    "resized_crop",
    "AlignedRandomResizedCrop",
    "RandomResizedCropSample",
    "PairedColorJitter",
    "Compose",
    "harmonization_train",
]

_logger = logging.getLogger(__name__)

ImageBatch = Union[Tensor, Sequence[Tensor]]
CropParams = Tuple[int, int, int, int, bool]  # top, left, height, width, flip


def _uniform(g: Optional[torch.Generator], lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _randint(g: Optional[torch.Generator], lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (inclusive)."""
    return int(torch.randint(lo, hi + 1, (), generator=g))


def sample_crop(
    height: int,
    width: int,
    scale: Tuple[float, float] = (0.5, 1.0),
    ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    generator: Optional[torch.Generator] = None,
) -> CropParams:
    """Draw a RandomResizedCrop box (the torchvision / albumentations algorithm) and a flip.

    Returns:
        ``(top, left, crop_h, crop_w, flip)`` in integer pixels of the ``height x width`` image.
    """
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    box = None
    for _ in range(10):
        target = area * _uniform(generator, scale[0], scale[1])
        aspect = math.exp(_uniform(generator, *log_r))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            box = (_randint(generator, 0, height - h), _randint(generator, 0, width - w), h, w)
            break
    if box is None:  # fall back to a centre crop with the ratio clamped
        in_ratio = width / height
        if in_ratio < ratio[0]:
            w, h = width, int(round(width / ratio[0]))
        elif in_ratio > ratio[1]:
            h, w = height, int(round(height * ratio[1]))
        else:
            w, h = width, height
        h, w = max(1, min(h, height)), max(1, min(w, width))
        box = ((height - h) // 2, (width - w) // 2, h, w)
    flip = bool(float(torch.rand((), generator=generator)) < flip_p)
    return (*box, flip)


def resized_crop(
    x: Tensor,
    params: CropParams,
    size: Tuple[int, int],
    interpolation: str = "bilinear",
    antialias: bool = True,
) -> Tensor:
    """Crop ``x`` ``(C, H, W)`` by ``params``, resize to ``size`` ``(h, w)``, flip (kornia).

    Downscaling with ``antialias=True`` uses torch's separable antialiased bilinear filter
    (the same as ``kornia.geometry.transform.resize`` up to its Gaussian prefilter, and ~10x
    faster on 4k crops); everything else goes through kornia ``resize`` / ``hflip``.

    Returns ``(C, h, w)``, same dtype and device.
    """
    top, left, h, w, flip = params
    crop = x[None, :, top : top + h, left : left + w]
    if (h, w) != tuple(size):
        if interpolation == "nearest":
            crop = resize(crop, size, interpolation="nearest")
        elif antialias and (h > size[0] or w > size[1]):
            # torch's separable antialiased bilinear: kornia's antialias blurs at full
            # resolution first, ~10x slower on a 4k crop
            crop = F.interpolate(crop, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        else:
            crop = resize(crop, size, interpolation=interpolation, align_corners=False)
    if flip:
        crop = hflip(crop)
    return crop[0]


def _as_list(x: ImageBatch) -> List[Tensor]:
    if isinstance(x, Tensor):
        if x.dim() != 4:
            raise ValueError(
                f"expected a (B, C, H, W) tensor or a list of (C, H, W) tensors, got shape {tuple(x.shape)}"
            )
        return list(x.unbind(0))
    return list(x)


def _check_float(name: str, t: Tensor) -> None:
    if not t.is_floating_point():
        raise TypeError(f"batch[{name!r}] has dtype {t.dtype}; expected float values in [0, 1] (divide uint8 by 255)")


@AUGMENTATIONS.register("aligned_crop")
class AlignedRandomResizedCrop(nn.Module):
    """Random resized crop + horizontal flip, identical for composite, real and mask.

    Args:
        size: output side (or ``(h, w)``); 256 in the official recipes.
        scale: crop area range as a fraction of the image.
        ratio: crop aspect ratio range (w / h).
        flip_p: horizontal flip probability.
        keep_background_prob: probability of keeping a crop with no foreground (mask sum at
            the output size <= 1) instead of re-drawing it. A value < 0 never re-draws.
        max_redraws: re-draw at most this many times per sample (then keep the last crop).
        mask_interpolation: ``"bilinear"`` (official, soft edges) or ``"nearest"``.
        mask_threshold: binarise the resized mask at this value (None: keep it soft).
        antialias: antialias when downscaling (kornia backend; off in the official cv2 path).
        backend: ``"kornia"`` (ours: torch / kornia on the batch's device, antialiased
            downscaling) or ``"cv2"`` (the official arithmetic: albumentations'
            ``RandomResizedCrop`` + ``HorizontalFlip``, cv2 ``INTER_LINEAR`` on the uint8 bytes,
            no antialias, on the CPU; :mod:`harmonykit.data.cv2_crop`).
        mask_dtype: cv2 backend: the dtype the mask is resized in, as an image: ``"uint8"``
            (a 0/1 mask, CharmNet: stays {0, 1}) or ``"float32"`` (Samsung: soft edges).
        seed: seed of the module's generator (None: a non-deterministic seed).
        whole_image: no crop: every sample is resized whole to ``size`` (aspect not kept) and
            flipped with ``flip_p``, as the DoveNet and Guo et al. official loaders do
            (``tf.resize(img, [256, 256])``); ``scale`` / ``ratio`` / ``keep_background_prob``
            are then unused.

    Input: a batch dict with ``composite``, ``real`` ``(B, 3, H, W)`` and ``mask``
    ``(B, 1, H, W)`` (or lists of per-sample tensors), float in [0, 1], on any device.
    Output: the same dict with those three keys as ``(B, C, h, w)``; other keys are kept.
    The parameters used are in ``self.last_params`` and replayed by ``forward(batch, params=...)``.
    """

    def __init__(
        self,
        size: Union[int, Tuple[int, int]] = 256,
        scale: Tuple[float, float] = (0.5, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        keep_background_prob: float = 0.05,
        max_redraws: int = 20,
        mask_interpolation: str = "bilinear",
        mask_threshold: Optional[float] = None,
        antialias: bool = True,
        backend: str = "kornia",
        mask_dtype: str = "float32",
        seed: Optional[int] = None,
        whole_image: bool = False,
    ) -> None:
        super().__init__()
        from harmonykit.data.cv2_crop import MASK_DTYPES

        if backend not in ("kornia", "cv2"):
            raise ValueError(f"backend={backend!r}; expected 'kornia' (ours) or 'cv2' (official arithmetic)")
        if mask_dtype not in MASK_DTYPES:
            raise ValueError(f"mask_dtype={mask_dtype!r}; expected one of {MASK_DTYPES}")
        self.backend, self.mask_dtype = backend, mask_dtype
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale={scale}; expected 0 < lo <= hi <= 1")
        if mask_interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"mask_interpolation={mask_interpolation!r}; expected 'bilinear' or 'nearest'")
        self.scale, self.ratio, self.flip_p = tuple(scale), tuple(ratio), flip_p
        self.whole_image = bool(whole_image)
        self.keep_background_prob = keep_background_prob
        self.max_redraws = max_redraws
        self.mask_interpolation = mask_interpolation
        self.mask_threshold = mask_threshold
        self.antialias = antialias
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.last_params: List[CropParams] = []

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, " + ("whole_image=True, " if self.whole_image else f"scale={self.scale}, ") + f"flip_p={self.flip_p}, "
            f"keep_background_prob={self.keep_background_prob}, backend={self.backend}, "
            f"mask={self.mask_dtype if self.backend == 'cv2' else self.mask_interpolation}"
        )

    def _crop_image(self, x: Tensor, p: CropParams) -> Tensor:
        if self.backend == "cv2":
            from harmonykit.data.cv2_crop import cv2_resized_crop

            return cv2_resized_crop(x, p, self.size, "image")
        return resized_crop(x, p, self.size, "bilinear", self.antialias)

    def _crop_mask(self, m: Tensor, p: CropParams) -> Tensor:
        if self.backend == "cv2":
            from harmonykit.data.cv2_crop import cv2_resized_crop

            out = cv2_resized_crop(m, p, self.size, self.mask_dtype)
        else:
            out = resized_crop(m, p, self.size, self.mask_interpolation, self.antialias)
        if self.mask_threshold is not None:
            out = (out >= self.mask_threshold).to(out.dtype)
        return out

    def _draw(self, mask: Tensor, g: torch.Generator) -> CropParams:
        h, w = mask.shape[-2:]
        if self.whole_image:
            return (0, 0, int(h), int(w), bool(float(torch.rand((), generator=g)) < self.flip_p))
        out_area = self.size[0] * self.size[1]
        p = sample_crop(h, w, self.scale, self.ratio, self.flip_p, g)
        for _ in range(self.max_redraws):
            if self.keep_background_prob < 0 or float(torch.rand((), generator=g)) < self.keep_background_prob:
                break
            top, left, ch, cw, _f = p
            fg = float(mask[..., top : top + ch, left : left + cw].float().mean()) * out_area
            if fg > 1.0:
                break
            p = sample_crop(h, w, self.scale, self.ratio, self.flip_p, g)
        return p

    def forward(
        self,
        batch: Dict[str, Any],
        params: Optional[Sequence[CropParams]] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Dict[str, Any]:
        comps, reals, masks = (_as_list(batch[k]) for k in ("composite", "real", "mask"))
        if not (len(comps) == len(reals) == len(masks)):
            raise ValueError(f"batch sizes differ: composite {len(comps)}, real {len(reals)}, mask {len(masks)}")
        g = generator or self.generator
        out_c, out_r, out_m, used = [], [], [], []
        for i, (c, r, m) in enumerate(zip(comps, reals, masks)):
            for k, t in (("composite", c), ("real", r), ("mask", m)):
                _check_float(k, t)
            if not (c.shape[-2:] == r.shape[-2:] == m.shape[-2:]):
                raise ValueError(
                    f"sample {i}: composite {tuple(c.shape)}, real {tuple(r.shape)} and mask {tuple(m.shape)} "
                    "differ in size (expected equal H, W)"
                )
            p = params[i] if params is not None else self._draw(m, g)
            used.append(p)
            out_c.append(self._crop_image(c, p))
            out_r.append(self._crop_image(r, p))
            out_m.append(self._crop_mask(m, p))
        self.last_params = used
        out = dict(batch)
        out["composite"] = torch.stack(out_c).clamp_(0, 1)
        out["real"] = torch.stack(out_r).clamp_(0, 1)
        out["mask"] = torch.stack(out_m).clamp_(0, 1)
        return out


class RandomResizedCropSample:
    """The same aligned crop as :class:`AlignedRandomResizedCrop`, for one sample dict.

    Use it as a dataset ``transform`` to crop in DataLoader workers (CPU), so that batches
    are fixed-size and stack. With ``generator=None`` it draws from torch's default RNG,
    which the DataLoader seeds per worker (reproducible with a seeded loader generator).
    """

    def __init__(self, generator: Optional[torch.Generator] = None, **kwargs: Any) -> None:
        self.crop = AlignedRandomResizedCrop(seed=0, **kwargs)
        self.generator = generator

    def __call__(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        g = self.generator if self.generator is not None else torch.default_generator
        batch = {k: [sample[k]] for k in ("composite", "real", "mask")}
        out = self.crop(batch, generator=g)
        res = dict(sample)
        for k in ("composite", "real", "mask"):
            res[k] = out[k][0]
        return res


@AUGMENTATIONS.register("paired_color_jitter")
class PairedColorJitter(nn.Module):
    """Colour jitter applied with the **same** parameters to composite and real (mask untouched).

    Each sample draws its own factors; with probability ``1 - p`` a sample is left as is.
    Only pixel-wise ops are used (kornia ``adjust_*``), so wherever composite == real before,
    they are equal after.

    Args:
        brightness: additive shift range ``(-b, b)``.
        contrast, saturation: factor ranges ``(1 - c, 1 + c)``.
        hue: shift range in turns ``(-h, h)``, ``h <= 0.5``.
        gamma: ``(lo, hi)`` range, or None.
        p: probability per sample.
        seed: the module generator's seed.

    Input/output: a batch dict with ``composite``, ``real`` ``(B, 3, H, W)`` in [0, 1].
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        gamma: Optional[Tuple[float, float]] = None,
        p: float = 1.0,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue={hue}; expected a shift in turns in [0, 0.5]")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.gamma = gamma
        self.p = p
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def _factors(self, n: int, lo: float, hi: float, g: torch.Generator) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    def forward(self, batch: Dict[str, Any], generator: Optional[torch.Generator] = None) -> Dict[str, Any]:
        g = generator or self.generator
        comp, real = batch["composite"], batch["real"]
        if not isinstance(comp, Tensor) or comp.dim() != 4:
            raise ValueError("PairedColorJitter expects stacked (B, 3, H, W) tensors; crop first")
        _check_float("composite", comp)
        n, dev = comp.shape[0], comp.device
        apply = (torch.rand(n, generator=g) < self.p).to(dev)
        both = torch.cat([comp, real], 0)

        def twice(t: Tensor) -> Tensor:
            return torch.cat([t, t], 0).to(device=dev, dtype=comp.dtype)

        if self.brightness:
            both = adjust_brightness(both, twice(self._factors(n, -self.brightness, self.brightness, g) * apply.cpu()))
        if self.contrast:
            f = self._factors(n, 1 - self.contrast, 1 + self.contrast, g)
            both = adjust_contrast(both, twice(torch.where(apply.cpu(), f, torch.ones_like(f))))
        if self.saturation:
            f = self._factors(n, 1 - self.saturation, 1 + self.saturation, g)
            both = adjust_saturation(both, twice(torch.where(apply.cpu(), f, torch.ones_like(f))))
        if self.hue:
            f = self._factors(n, -self.hue, self.hue, g) * apply.cpu()
            both = adjust_hue(both, twice(f * 2 * math.pi))
        if self.gamma is not None:
            f = self._factors(n, self.gamma[0], self.gamma[1], g)
            both = adjust_gamma(both, twice(torch.where(apply.cpu(), f, torch.ones_like(f))))
        out = dict(batch)
        out["composite"], out["real"] = both[:n].clamp(0, 1), both[n:].clamp(0, 1)
        return out


class Compose(nn.Module):
    """Apply batch-dict augmentations in order."""

    def __init__(self, *steps: nn.Module) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def forward(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        for step in self.steps:
            batch = step(batch)
        return batch


@AUGMENTATIONS.register("harmonization_train")
def harmonization_train(
    size: int = 256,
    scale: Tuple[float, float] = (0.5, 1.0),
    flip_p: float = 0.5,
    keep_background_prob: float = 0.05,
    mask_threshold: Optional[float] = None,
    color_jitter: Optional[Dict[str, Any]] = None,
    seed: Optional[int] = None,
    ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    backend: str = "kornia",
    mask_dtype: str = "float32",
    antialias: bool = True,
    whole_image: bool = False,
    mask_interpolation: str = "bilinear",
) -> Compose:
    """The official training augmentation (aligned crop + flip), plus an optional
    :class:`PairedColorJitter` given as a dict of its arguments. ``backend="cv2"`` gives the
    official arithmetic (see :class:`AlignedRandomResizedCrop`); ``whole_image=True`` resizes the
    whole image instead of cropping (DoveNet, Guo et al.)."""
    steps: List[nn.Module] = [
        AlignedRandomResizedCrop(
            size, scale, ratio=tuple(ratio), flip_p=flip_p, keep_background_prob=keep_background_prob,
            mask_threshold=mask_threshold, antialias=antialias, backend=backend, mask_dtype=mask_dtype,
            seed=seed, whole_image=whole_image, mask_interpolation=mask_interpolation,
        )
    ]
    if color_jitter:
        cj = dict(color_jitter)
        cj.setdefault("seed", None if seed is None else seed + 1)
        steps.append(PairedColorJitter(**cj))
    return Compose(*steps)
