"""Harmonization metrics under named protocols (all values in 0-255 units).

Every metric is computed **per image** and then averaged. The three protocols differ only in how
the prediction, the ground truth and the mask are prepared and in the PSNR peak:

``charmnet`` (bcmi CharmNet ``test.py``)
    prediction and ground truth pass through ``tensor2im`` (x std + mean, x 255, clip, cast to
    uint8 = truncation; float32 arithmetic); the ground truth also takes the normalise ->
    denormalise round trip first. Mask: PIL ``convert('1')`` (Floyd-Steinberg dithering), then a
    NEAREST resize to the prediction size. ``fMSE = sum_fg d^2 / (3 * fore_area)`` (no epsilon:
    an empty mask gives ``inf``/``nan``), ``PSNR = 10 log10((max(out) - min(out))^2 / MSE)``.
``idih`` (SamsungLabs ``evaluate_model.py``)
    prediction ``clamp(255 * x, 0, 255)`` in float (not quantised), target uint8 as float, soft
    mask ``png / 255`` as weights. ``fMSE = sum m d^2 / (3 sum m + 1e-6)``,
    ``PSNR = 10 log10(max(target)^2 / (MSE + 1e-6))``. Overall = image-weighted mean.
``harmonykit`` (our default)
    prediction ``clamp(255 * x, 0, 255)`` in float, mask binarised at 0.5, PSNR peak 255,
    fMSE / fPSNR / fSSIM undefined (``nan``) for an empty mask and left out of the means.

In every protocol ``fPSNR = 10 log10(255^2 / fMSE)`` and SSIM uses a Gaussian window
(11 x 11, sigma 1.5) with ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2`` on 0-255 values,
per channel, reflect padding so that the SSIM map has the image size; ``SSIM`` is the mean of
the map, ``fSSIM`` its mask-weighted mean (the protocol's mask).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from harmonykit.registry import METRICS

__all__ = [
    "METRIC_NAMES",
    "MetricProtocol",
    "CharmNetProtocol",
    "IDIHProtocol",
    "HarmonykitProtocol",
    "get_protocol",
    "list_protocols",
    "compute_metrics",
    "mean_metrics",
    "ssim_map",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

from harmonykit.normalization import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

_logger = logging.getLogger(__name__)

METRIC_NAMES: Tuple[str, ...] = ("mse", "fmse", "psnr", "fpsnr", "ssim", "fssim")

ArrayLike = Union[np.ndarray, torch.Tensor]


# --------------------------------------------------------------------------------------------
# input normalisation helpers
# --------------------------------------------------------------------------------------------
def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _as_nhwc_image(x: ArrayLike, name: str) -> np.ndarray:
    """(3,H,W) / (H,W,3) / (B,3,H,W) / (B,H,W,3) -> (B,H,W,3), dtype kept.

    Torch tensors are taken as channel-first, numpy arrays as channel-last (the usual
    conventions of each); a 4-D numpy array with 3 channels first and not last is also accepted.
    """
    is_tensor = isinstance(x, torch.Tensor)
    a = _to_numpy(x)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"{name}: expected an RGB image (B,3,H,W) or (B,H,W,3), got shape {tuple(a.shape)}")
    if is_tensor or (a.shape[1] == 3 and a.shape[-1] != 3):
        if a.shape[1] != 3:
            raise ValueError(f"{name}: expected 3 channels in dim 1 of a tensor, got shape {tuple(a.shape)}")
        a = a.transpose(0, 2, 3, 1)
    if a.shape[-1] != 3:
        raise ValueError(f"{name}: expected 3 colour channels, got shape {tuple(a.shape)}")
    return a


def _as_bhw_mask(x: ArrayLike, name: str = "mask") -> np.ndarray:
    """(H,W) / (1,H,W) / (B,H,W) / (B,1,H,W) / (B,H,W,1) -> (B,H,W), dtype kept."""
    a = _to_numpy(x)
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 4:
        if a.shape[1] == 1:
            a = a[:, 0]
        elif a.shape[-1] == 1:
            a = a[..., 0]
        else:
            raise ValueError(f"{name}: expected one channel, got shape {tuple(a.shape)}")
    elif a.ndim == 3 and a.shape[0] == 1 and a.shape[-1] != 1:
        pass  # (1,H,W): a batch of one
    if a.ndim != 3:
        raise ValueError(f"{name}: expected (B,1,H,W), (B,H,W) or (H,W), got shape {tuple(a.shape)}")
    return a


def _mask_to_u8(m: np.ndarray) -> np.ndarray:
    """A mask as stored in a PNG (0..255): uint8 kept, floats in [0, 1] scaled and rounded."""
    if m.dtype == np.uint8:
        return m
    if m.dtype == np.bool_:
        return m.astype(np.uint8) * 255
    return np.clip(np.rint(m.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _mask_to_unit(m: np.ndarray) -> np.ndarray:
    """A mask as float32 in [0, 1] (uint8 masks are divided by 255, as ``png / 255``)."""
    if m.dtype == np.uint8:
        return m.astype(np.float32) / np.float32(255.0)
    if m.dtype == np.bool_:
        return m.astype(np.float32)
    return np.clip(m.astype(np.float32), 0.0, 1.0)


def _target_to_u8(t: np.ndarray) -> np.ndarray:
    if t.dtype == np.uint8:
        return t
    return np.clip(np.rint(t.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _pred_to_unit(p: np.ndarray) -> np.ndarray:
    if p.dtype == np.uint8:
        return p.astype(np.float32) / np.float32(255.0)
    return p.astype(np.float32, copy=False)


def _check_shapes(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, mask_any_size: bool = False) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction and target must have the same shape (B,H,W,3); got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if mask.shape[0] != pred.shape[0] or (mask.shape[1:] != pred.shape[1:3] and not mask_any_size):
        raise ValueError(
            f"mask size mismatch: mask is {tuple(mask.shape)} (B,H,W) but the prediction is "
            f"{tuple(pred.shape[:3])}; resize the mask to the prediction size first"
        )


# --------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------
def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def ssim_map(
    pred: ArrayLike,
    target: ArrayLike,
    window: int = 11,
    sigma: float = 1.5,
    data_range: float = 255.0,
) -> np.ndarray:
    """Per-pixel SSIM (mean over the colour channels).

    Args:
        pred, target: (H, W, 3) images in 0..``data_range`` (any numeric dtype).
        window, sigma: Gaussian window size and standard deviation.
        data_range: L in ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.

    Returns:
        (H, W) float64 SSIM map (reflect padding, so it has the image size).
    """
    xa, ya = _to_numpy(pred), _to_numpy(target)
    h, w = xa.shape[:2]
    dtype = torch.float32  # values are centred first, which keeps float32 variances accurate
    g = _gaussian_1d(window, sigma).to(dtype)
    pad = window // 2
    mode = "reflect" if min(h, w) > pad else "replicate"

    taps = [float(v) for v in g]

    def blur(t: torch.Tensor) -> torch.Tensor:
        # separable Gaussian as sums of shifted slices (much faster than a 1-channel conv2d)
        t = F.pad(t[None, None], (pad, pad, pad, pad), mode=mode)[0, 0]
        v = t[0:h] * taps[0]
        for k in range(1, window):
            v.add_(t[k : k + h], alpha=taps[k])
        o = v[:, 0:w] * taps[0]
        for k in range(1, window):
            o.add_(v[:, k : k + w], alpha=taps[k])
        return o

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    acc = torch.zeros(h, w, dtype=torch.float64)
    for c in range(xa.shape[2]):
        off = 0.5 * data_range
        x = torch.as_tensor(np.ascontiguousarray(xa[..., c]), dtype=dtype) - off
        y = torch.as_tensor(np.ascontiguousarray(ya[..., c]), dtype=dtype) - off
        mu_x, mu_y = blur(x), blur(y)
        sxx = blur(x * x) - mu_x**2
        syy = blur(y * y) - mu_y**2
        sxy = blur(x * y) - mu_x * mu_y
        mu_x, mu_y = mu_x + off, mu_y + off
        num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
        den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
        acc += num / den
    return (acc / xa.shape[2]).numpy()


# --------------------------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------------------------
@dataclass
class MetricProtocol:
    """Base class: ``prepare`` images and mask, then per-image formulas, then averaging.

    Subclasses set the class attributes below and may override :meth:`prepare`.

    Call as ``protocol(pred, target, mask)`` with ``pred`` (B,3,H,W) in [0, 1] (denormalised,
    not clamped; uint8 also accepted), ``target`` (B,3,H,W) in [0, 1] or uint8, ``mask``
    (B,1,H,W) in [0, 1] or uint8 0..255. Returns one dict per image.
    """

    name: str = "base"
    description: str = ""
    #: how the metric mask reaches the prediction size (``nearest_dither``: the protocol
    #: resizes the original mask itself)
    mask_resize: str = "bilinear"
    #: the input preparation (:mod:`harmonykit.eval.prepare`) that evaluation uses with this
    #: protocol: decoding, image resize, mask rule, model mask and metric mask
    inputs: str = "harmonykit"
    #: whether fMSE-type metrics of an empty mask are left out of the means
    skip_empty_foreground: bool = False
    fmse_eps: float = 0.0
    psnr_eps: float = 0.0
    extras: Dict[str, object] = field(default_factory=dict)

    # --- per protocol --------------------------------------------------------------
    def prepare(
        self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B,H,W,3) pred/target, (B,H,W) mask -> float32 0-255 pred, target and mask weights."""
        raise NotImplementedError

    def psnr_peak(self, out: np.ndarray, gt: np.ndarray) -> float:
        raise NotImplementedError

    def denormalize(self, pred_norm: ArrayLike) -> np.ndarray:
        """ImageNet-normalised network output (B,3,H,W) -> (B,H,W,3) float32 in [0, 1] space
        (``x * std + mean`` in float32, the arithmetic of both official codes)."""
        p = _as_nhwc_image(pred_norm, "pred_norm").astype(np.float32)
        return p * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)

    def preparation(self):
        """The :class:`~harmonykit.eval.prepare.InputPreparation` of this protocol."""
        from harmonykit.eval.prepare import get_preparation

        return get_preparation(self.inputs)

    def prepare_inputs(self, composite, mask, real, size: Tuple[int, int]):
        """Read a triplet from files and prepare it at ``size = (h, w)`` the way this protocol's
        official script does (see :mod:`harmonykit.eval.prepare`).

        Returns a :class:`~harmonykit.eval.prepare.PreparedTriplet`: uint8 composite and real,
        the float32 mask fed to the model and the mask for the metrics.
        """
        return self.preparation()(composite, mask, real, size)

    # --- shared --------------------------------------------------------------------
    def __call__(self, pred: ArrayLike, target: ArrayLike, mask: ArrayLike, ssim: bool = True) -> List[Dict[str, float]]:
        p = _as_nhwc_image(pred, "prediction")
        t = _as_nhwc_image(target, "target")
        m = _as_bhw_mask(mask)
        # charmnet resizes the original mask itself (NEAREST after dithering), the others do not
        _check_shapes(p, t, m, mask_any_size=self.mask_resize == "nearest_dither")
        out, gt, w = self.prepare(p, t, m)
        return [self._one(out[i], gt[i], w[i], ssim) for i in range(out.shape[0])]

    def _one(self, out: np.ndarray, gt: np.ndarray, w: np.ndarray, ssim: bool) -> Dict[str, float]:
        d2 = np.square(out.astype(np.float32) - gt.astype(np.float32))  # exact for uint8 data
        mse = float(d2.sum(dtype=np.float64) / d2.size)
        w = w.astype(np.float32, copy=False)
        wsum = float(w.sum(dtype=np.float64))
        fg_sum = float((d2.sum(axis=-1, dtype=np.float64) * w).sum(dtype=np.float64))
        empty = wsum <= 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            fmse = float(np.float64(fg_sum) / np.float64(3.0 * wsum + self.fmse_eps))
            if empty and self.skip_empty_foreground:
                fmse = math.nan
            peak = self.psnr_peak(out, gt)
            psnr = float(10.0 * np.log10(np.float64(peak) ** 2 / np.float64(mse + self.psnr_eps)))
            fpsnr = float(10.0 * np.log10(255.0**2 / np.float64(fmse))) if not math.isnan(fmse) else math.nan
        rec: Dict[str, float] = {"mse": mse, "fmse": fmse, "psnr": psnr, "fpsnr": fpsnr}
        if ssim:
            smap = ssim_map(out, gt)
            rec["ssim"] = float(smap.mean())
            rec["fssim"] = float((smap * w).sum(dtype=np.float64) / wsum) if not empty else math.nan
        rec["fg_area"] = wsum
        rec["fg_ratio"] = float((w > 0.5).mean())
        rec["psnr_peak"] = float(peak)
        return rec

    def mean(self, records: Iterable[Mapping[str, float]]) -> Dict[str, float]:
        """Arithmetic mean over images of each metric (``nan`` values left out when this
        protocol skips empty foregrounds); ``n`` is the image count."""
        return mean_metrics(records, skip_nan=self.skip_empty_foreground)


def mean_metrics(records: Iterable[Mapping[str, float]], skip_nan: bool = False) -> Dict[str, float]:
    """Per-metric arithmetic mean over ``records`` (dicts of per-image values).

    Returns ``{"n": count, metric: mean, ...}`` for every metric of :data:`METRIC_NAMES` present;
    with ``skip_nan`` the mean of a metric is over the images where it is defined and
    ``n_<metric>`` gives that count when it differs from ``n``.
    """
    records = list(records)
    res: Dict[str, float] = {"n": len(records)}
    for k in METRIC_NAMES:
        vals = [float(r[k]) for r in records if k in r]
        if not vals:
            continue
        if skip_nan:
            kept = [v for v in vals if not math.isnan(v)]
            if len(kept) != len(vals):
                res[f"n_{k}"] = len(kept)
            vals = kept
        res[k] = float(np.mean(np.asarray(vals, dtype=np.float64))) if vals else math.nan
    return res


@METRICS.register("charmnet")
@dataclass
class CharmNetProtocol(MetricProtocol):
    """bcmi CharmNet ``test.py``: uint8 truncation, dithered mask, PSNR peak = prediction range."""

    name: str = "charmnet"
    description: str = (
        "CharmNet test.py: tensor2im uint8 truncation of prediction and round-tripped ground truth; "
        "mask PIL convert('1') + NEAREST resize; fMSE without epsilon; PSNR peak = max(out) - min(out)"
    )
    mask_resize: str = "nearest_dither"
    inputs: str = "charmnet"

    def prepare(self, pred, target, mask):
        # prediction: tensor2im = clip(255 * x, 0, 255) cast to uint8 (float32 arithmetic)
        if pred.dtype == np.uint8:
            out_u8 = pred
        else:
            out_u8 = np.clip(pred.astype(np.float32) * np.float32(255.0), 0, 255).astype(np.uint8)
        gt_u8 = self.roundtrip_target(_target_to_u8(target))
        size = pred.shape[1:3]
        w = np.stack([self.binarize_mask(_mask_to_u8(mi), size) for mi in mask]).astype(np.float64)
        return out_u8.astype(np.float32), gt_u8.astype(np.float32), w.astype(np.float32)

    @staticmethod
    def roundtrip_target(gt_u8: np.ndarray) -> np.ndarray:
        """ToTensor -> Normalize -> tensor2im of the uint8 ground truth (float32; truncation)."""
        mean = np.asarray(IMAGENET_MEAN, np.float32)
        std = np.asarray(IMAGENET_STD, np.float32)
        t = gt_u8.astype(np.float32) / np.float32(255.0)
        t = (t - mean) / std
        t = (t * std + mean) * np.float32(255.0)
        return np.clip(t, 0, 255).astype(np.uint8)

    @staticmethod
    def binarize_mask(mask_u8: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
        """PIL ``convert('1')`` (Floyd-Steinberg) then NEAREST resize to ``size_hw`` -> {0, 1} uint8."""
        from harmonykit.eval.prepare import pil_binarize_mask

        return pil_binarize_mask(mask_u8, size_hw)

    def psnr_peak(self, out, gt):
        return float(out.max() - out.min())


@METRICS.register("idih")
@dataclass
class IDIHProtocol(MetricProtocol):
    """SamsungLabs iDIH ``evaluate_model.py``: float prediction, soft mask, PSNR peak = max(target)."""

    name: str = "idih"
    description: str = (
        "iDIH evaluate_model.py: clamp(255 x, 0, 255) float prediction, uint8 target, soft mask png/255; "
        "fMSE = sum m d^2 / (3 sum m + 1e-6); PSNR = 10 log10(max(target)^2 / (MSE + 1e-6))"
    )
    mask_resize: str = "bilinear"
    inputs: str = "idih"
    fmse_eps: float = 1e-6
    psnr_eps: float = 1e-6

    def prepare(self, pred, target, mask):
        if pred.dtype == np.uint8:
            out = pred.astype(np.float32)
        else:
            out = np.clip(np.float32(255.0) * pred.astype(np.float32), 0, 255)
        gt = _target_to_u8(target).astype(np.float32)
        w = _mask_to_unit(mask)
        return out.astype(np.float32, copy=False), gt, w

    def psnr_peak(self, out, gt):
        return float(gt.max())


@METRICS.register("harmonykit")
@dataclass
class HarmonykitProtocol(MetricProtocol):
    """harmonykit default: float prediction clamped to 0-255, binary mask (> 0.5), PSNR peak 255,
    foreground metrics undefined and excluded for empty masks."""

    name: str = "harmonykit"
    description: str = (
        "harmonykit: clamp(255 x, 0, 255) float prediction, uint8 target, mask binarised at 0.5; "
        "PSNR peak 255; fMSE/fPSNR/fSSIM excluded for an empty mask"
    )
    mask_resize: str = "bilinear"
    skip_empty_foreground: bool = True
    threshold: float = 0.5

    def prepare(self, pred, target, mask):
        if pred.dtype == np.uint8:
            out = pred.astype(np.float32)
        else:
            out = np.clip(pred.astype(np.float32) * np.float32(255.0), 0, 255)
        gt = _target_to_u8(target).astype(np.float32)
        w = (_mask_to_unit(mask) > self.threshold).astype(np.float32)
        return out, gt, w

    def psnr_peak(self, out, gt):
        return 255.0


def list_protocols() -> List[str]:
    """Names of the registered metric protocols."""
    return METRICS.list()


def get_protocol(protocol: Union[str, MetricProtocol]) -> MetricProtocol:
    """A protocol object from its registered name (``charmnet``, ``idih``, ``harmonykit``)."""
    if isinstance(protocol, MetricProtocol):
        return protocol
    if protocol not in METRICS:
        raise ValueError(
            f"unknown metric protocol {protocol!r}; expected one of: {', '.join(list_protocols())}"
        )
    return METRICS.create(protocol)


def compute_metrics(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike,
    protocol: Union[str, MetricProtocol] = "harmonykit",
    ssim: bool = True,
) -> List[Dict[str, float]]:
    """Per-image metrics of a batch under ``protocol``.

    Args:
        pred: (B,3,H,W) tensor (or (B,H,W,3) array) in [0, 1], not necessarily clamped; uint8 is
            taken as already quantised 0..255.
        target: same shape, in [0, 1] or uint8.
        mask: (B,1,H,W) in [0, 1] or uint8 0..255 (foreground = 1 / 255), at the same size.
        protocol: a registered protocol name or object.
        ssim: also compute SSIM and fSSIM (the slowest part).

    Returns:
        One dict per image: ``mse fmse psnr fpsnr [ssim fssim] fg_area fg_ratio psnr_peak``.
    """
    return get_protocol(protocol)(pred, target, mask, ssim=ssim)
