"""PCT-Net (Guerreiro, Nakazawa, Stent, "PCT-Net: Full Resolution Image Harmonization Using
Pixel-Wise Color Transformations", CVPR 2023), numerically equal to the official
``CNN_pct`` and ``ViT_pct`` of rakutentech/PCT-Net-Image-Harmonization.

A backbone looks at a low-resolution view of the composite (256x256 in the official inference
code) and predicts, per pixel, the 12 parameters of an affine colour transform
``y = M x + b`` (``M``: 3x3, row-major in channels 0..8; ``b``: channels 9..11). The parameter
map is upsampled (bicubic) to the full resolution and applied to every full-resolution pixel:
``out = normalize(clamp(M x + b, 0, 1))`` with ``x`` the composite in the network's input
normalisation. The result is blended with the input:

- ``pctnet_cnn``: S2AM UNet backbone (iSSAM's, ImageNet normalisation); the blend uses the
  network's attention map upsampled bicubic, ``out * A + x * (1 - A)`` (the background is
  *not* guaranteed untouched; ``harmonize()`` composites);
- ``pctnet_vit``: ViT backbone on 4x4 patches, inputs in [0, 1]; the blend uses the
  full-resolution mask, ``out * M + x * (1 - M)``: the official model composites internally.

Forward: ``model(composite, mask, domain=None, composite_lowres=None, mask_lowres=None)``.
Without a low-resolution view, the model makes it as the official inference code does
(``scripts/evaluate_folder.py``): ``cv2.resize(..., (256, 256))`` (INTER_LINEAR) of the uint8
composite ``round(255 * composite)`` and of the float64 mask.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.convert import register_single_network_layout
from harmonykit.models._builder import finalize_model, pop_pretrained_opts, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import FeatureInfo, Harmonizer, StageBackbone, StageOutput
from harmonykit.models.charmnet import make_charmnet_entrypoints
from harmonykit.models.layers import init_weights
from harmonykit.models.outputs import HarmonizationOutput
from harmonykit.models.ssam import _SSAM_RULES, build_ssam_stages, rename_keys, run_ssam_unet
from harmonykit.normalization import IMAGENET_MEAN, IMAGENET_STD
from harmonykit.registry import BACKBONES

__all__ = [
    "PCTNetCNN",
    "PCTNetViT",
    "PCTPlan",
    "ViTParamEncoder",
    "apply_color_transform",
    "bicubic_resize",
    "official_lowres_view",
    "official_pctnet_to_ours",
    "pctnet_cnn",
    "pctnet_vit",
]

NUM_PARAMS = 12  # 3x3 matrix + 3 offsets
_COLUMN_MAJOR = [0, 3, 6, 1, 4, 7, 2, 5, 8, 9, 10, 11]  # M row-major -> column-major, then b


def apply_color_transform(image: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Per-pixel affine colour transform ``y_c = sum_j M[c, j] x_j + b_c``.

    Args:
        image: ``(B, 3, H, W)``; params: ``(B, 12, H, W)`` (``M`` row-major, then ``b``).

    Returns:
        ``(B, 3, H, W)`` (not clamped).
    """
    # channel 3c + j holds M[c, j]: params[:, j:9:3] is column j of M for the 3 outputs
    y = params[:, 0:9:3] * image[:, 0:1]
    y = y + params[:, 1:9:3] * image[:, 1:2]
    y = y + params[:, 2:9:3] * image[:, 2:3]
    return y + params[:, 9:12]


def official_lowres_view(
    composite: torch.Tensor, mask: Optional[torch.Tensor], size: Any = 256
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The official inference code's low-resolution view (needs ``opencv-python-headless``).

    ``composite (B, 3, H, W)`` in [0, 1] is quantised to uint8 (``round(255 x)``; a uint8
    composite is taken as is) and resized
    with ``cv2.resize(img, (size, size))`` (INTER_LINEAR), then divided by 255; the mask
    ``(B, 1, H, W)`` (float, or uint8 read as ``v / 255``) is resized in float64 the same way. ``size``: a side or ``(h, w)``.
    Returns float tensors on the input's device and dtype: ``(B, 3, h, w)`` and
    ``(B, 1, h, w)`` (or ``None``).
    """
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise ImportError(
            "PCT-Net makes its low-resolution view with OpenCV, as the official code does: "
            "pip install opencv-python-headless, or pass composite_lowres= and mask_lowres="
        ) from e
    import numpy as np

    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if composite.dtype == torch.uint8:  # already quantised (0..255)
        u8 = composite.detach().permute(0, 2, 3, 1).cpu().numpy()
    else:
        u8 = composite.detach().float().mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out_dtype = torch.float32 if composite.dtype == torch.uint8 else composite.dtype
    comp = np.stack([cv2.resize(np.ascontiguousarray(c), (w, h), interpolation=cv2.INTER_LINEAR) for c in u8])
    comp_t = torch.from_numpy(comp).permute(0, 3, 1, 2).to(composite.device).float().div(255.0).to(out_dtype)
    if mask is None:
        return comp_t, None
    m = mask.detach()[:, 0]
    mask_dtype = torch.float32 if m.dtype == torch.uint8 else mask.dtype
    if m.dtype == torch.uint8:  # 0..255, as the float mask v / 255
        m = m.float().div_(255.0)
    m64 = m.cpu().double().numpy()
    m = np.stack([cv2.resize(np.ascontiguousarray(x), (w, h), interpolation=cv2.INTER_LINEAR) for x in m64])
    return comp_t, torch.from_numpy(m)[:, None].float().to(device=mask.device, dtype=mask_dtype)


_CUBIC_A = -0.75  # torch's (and OpenCV's) bicubic kernel


def bicubic_taps(in_size: int, out_size: int, device: Any = None, dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights ``(4, out_size)`` of bicubic resizing along one axis, as
    ``F.interpolate(mode="bicubic", align_corners=False)`` (A = -0.75, border taps clamped)."""
    # float32 arithmetic as torch's CPU kernel: src = scale * (dst + 0.5) - 0.5 (no clamp for cubic)
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    src = scale * (torch.arange(out_size, dtype=torch.float32) + 0.5) - 0.5
    base = torch.floor(src)
    t = src - base
    a = _CUBIC_A

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)])
    idx = torch.stack([(base + k - 1).clamp(0, in_size - 1) for k in range(4)]).long()
    return idx.to(device), weights.to(device=device, dtype=dtype)


def _window_matrix(idx: torch.Tensor, weights: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Dense ``(n, stop - start)`` resampling matrix of taps ``idx``/``weights`` ``(4, n)``."""
    n = idx.shape[1]
    m = torch.zeros(n, stop - start, dtype=weights.dtype, device=weights.device)
    rows = torch.arange(n, device=idx.device).expand(4, n)
    m.index_put_((rows.reshape(-1), (idx - start).reshape(-1)), weights.reshape(-1), accumulate=True)
    return m


def bicubic_resize_width(x: torch.Tensor, width: int, block: int = 512, cols: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Bicubic resize of ``(B, C, h, w)`` along W only (``align_corners=False``), by blocks
    of output columns, each a small matrix product over its source-column window.
    ``cols = (c0, c1)``: only those output columns (``(B, C, h, c1 - c0)``)."""
    idx, wts = bicubic_taps(x.shape[-1], width, x.device, x.dtype)
    start, stop = cols if cols is not None else (0, width)
    out = []
    for c0 in range(start, stop, block):
        c1 = min(stop, c0 + block)
        s0, s1 = int(idx[:, c0:c1].min()), int(idx[:, c0:c1].max()) + 1
        out.append(torch.matmul(x[..., s0:s1], _window_matrix(idx[:, c0:c1], wts[:, c0:c1], s0, s1).t()))
    return torch.cat(out, dim=-1)


def bicubic_resize_height_rows(x: torch.Tensor, height: int, r0: int, r1: int, taps: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
    """Rows ``r0:r1`` of the bicubic resize of ``(B, C, h, W)`` to ``height`` rows (along H
    only, ``align_corners=False``): ``(B, C, r1 - r0, W)``."""
    iy, wy = taps if taps is not None else bicubic_taps(x.shape[-2], height, x.device, x.dtype)
    s0, s1 = int(iy[:, r0:r1].min()), int(iy[:, r0:r1].max()) + 1
    return torch.matmul(_window_matrix(iy[:, r0:r1], wy[:, r0:r1], s0, s1), x[:, :, s0:s1])


def bicubic_resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Separable bicubic resize of ``(B, C, h, w)`` to ``size`` (what :class:`PCTNetCNN` and
    :class:`PCTNetViT` use at full resolution); equals ``F.interpolate(x, size,
    mode="bicubic", align_corners=False)`` up to float rounding."""
    x = bicubic_resize_width(x, size[1])
    return bicubic_resize_height_rows(x, size[0], 0, size[0])


def _normalize(x: torch.Tensor, config: Dict[str, Any]) -> torch.Tensor:
    mean = torch.tensor(config["mean"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(config["std"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _denormalize(x: torch.Tensor, config: Dict[str, Any]) -> torch.Tensor:
    mean = torch.tensor(config["mean"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(config["std"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * std + mean


def _identity_normalization(config: Dict[str, Any]) -> bool:
    return all(m == 0 for m in config["mean"]) and all(s == 1 for s in config["std"])


def fold_normalization(params: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Parameters acting on the normalised image -> the same transform on the [0, 1] image:
    ``M (x - mean) / std + b = (M / std) x + (b - M mean / std)`` (per pixel, exact in exact
    arithmetic; upsampling is linear, so folding before it changes nothing)."""
    inv_std = torch.tensor([1.0 / s for s in std], dtype=params.dtype, device=params.device)
    shift = torch.tensor([m / s for m, s in zip(mean, std)], dtype=params.dtype, device=params.device)
    m = params[:, :9]
    b = params[:, 9:12] - (m.unflatten(1, (3, 3)) * shift.view(1, 1, 3, 1, 1)).sum(dim=2)
    return torch.cat([m * inv_std.repeat(3).view(1, 9, 1, 1), b], dim=1)


class PCTPlan:
    """PCT-Net's full-resolution step for one low-resolution prediction, window by window.

    Holds the folded parameter maps (and the CNN's attention) at low resolution; :meth:`render`
    upsamples them (bicubic, as ``F.interpolate(..., mode="bicubic", align_corners=False)``,
    separably: along W once per column range, then along H for the window's rows) and applies
    ``y = clamp(M x + b, 0, 1)``, ``x + A (y - x)`` with A the upsampled attention (CNN) or the
    mask (ViT). Float32 on the [0, 1] scale.

    Args:
        config: :meth:`_PCTNetBase.pct_config` values.
        params: ``(B, 12, h, w)`` in the network's input normalisation (folded here).
        blend: ``(B, 1, h, w)`` attention (used with ``config["blend_with_attention"]``).
        height, width: the full-resolution size.
    """

    def __init__(self, config: Dict[str, Any], params: torch.Tensor, blend: torch.Tensor, height: int, width: int) -> None:
        self.attention = bool(config["blend_with_attention"])
        p = params if _identity_normalization(config) else fold_normalization(params, config["mean"], config["std"])
        p = p[:, _COLUMN_MAJOR]  # channels [M[:, 0], M[:, 1], M[:, 2], b]: contiguous slices below
        self.maps = torch.cat([p, blend.to(p.dtype)], dim=1) if self.attention else p
        self.height, self.width = int(height), int(width)
        self.taps = bicubic_taps(self.maps.shape[-2], self.height, self.maps.device, self.maps.dtype)
        self._cols: Optional[Tuple[int, int]] = None
        self._rows_first: Optional[torch.Tensor] = None

    def to(self, device: Any) -> "PCTPlan":
        """Move the maps (in place); returns ``self``."""
        self.maps = self.maps.to(device)
        self.taps = tuple(t.to(device) for t in self.taps)
        self._cols, self._rows_first = None, None
        return self

    def _width_resized(self, cols: Tuple[int, int]) -> torch.Tensor:
        """``(h, B * C * (c1 - c0))``: the maps resized along W for columns ``cols``, one
        low-resolution row per matrix row (so a window of rows is one matrix product)."""
        if self._cols != cols:
            mw = bicubic_resize_width(self.maps, self.width, cols=cols)  # (B, C, h, wb)
            self._rows_first = mw.permute(2, 0, 1, 3).reshape(mw.shape[2], -1).contiguous()
            self._cols = cols
        return self._rows_first

    def upsampled(self, rows: Tuple[int, int], cols: Tuple[int, int]) -> torch.Tensor:
        """``(B, C, r1 - r0, c1 - c0)`` full-resolution maps of the window (a strided view)."""
        (r0, r1), (c0, c1) = rows, cols
        rf = self._width_resized((c0, c1))
        iy, wy = self.taps
        s0, s1 = int(iy[:, r0:r1].min()), int(iy[:, r0:r1].max()) + 1
        up = torch.matmul(_window_matrix(iy[:, r0:r1], wy[:, r0:r1], s0, s1), rf[s0:s1])  # (n, B * C * wb)
        b, ch = self.maps.shape[:2]
        return up.view(r1 - r0, b, ch, c1 - c0).permute(1, 2, 0, 3)

    def render(self, composite: torch.Tensor, mask: torch.Tensor, rows: Optional[Tuple[int, int]] = None, cols: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """``composite (B, 3, n, wb)``, ``mask (B, 1, n, wb)`` in [0, 1]: the window at ``rows``
        / ``cols`` (default: the whole image) -> ``(B, 3, n, wb)``, the model's ``.image``
        there."""
        rows = rows if rows is not None else (0, self.height)
        cols = cols if cols is not None else (0, self.width)
        up = self.upsampled(rows, cols)
        x = composite.to(up.dtype)
        a = up[:, NUM_PARAMS:] if self.attention else mask.to(up.dtype)
        y = torch.addcmul(up[:, 9:12], up[:, 0:3], x[:, 0:1])
        y.addcmul_(up[:, 3:6], x[:, 1:2]).addcmul_(up[:, 6:9], x[:, 2:3]).clamp_(0, 1).sub_(x).nan_to_num_(0.0)
        return torch.addcmul(x, a, y)


def pct_fullres(
    config: Dict[str, Any], composite: torch.Tensor, mask: torch.Tensor, params: torch.Tensor, blend: torch.Tensor
) -> torch.Tensor:
    """The official full-resolution branch on the [0, 1] scale, in bands of rows.

    ``params`` ``(B, 12, h, w)`` (in the network's input normalisation; folded onto the [0, 1]
    image, :func:`fold_normalization`) and, with ``config["blend_with_attention"]`` (CNN), the
    blend map ``(B, 1, h, w)`` are upsampled bicubic (as ``F.interpolate(..., mode="bicubic",
    align_corners=False)``, separably: along W at low resolution once, then along H band by
    band); per band ``y = clamp(M x + b, 0, 1)`` and ``x + A (y - x)`` with A the upsampled
    attention (CNN) or the full-resolution mask (ViT). At most ``config["band_pixels"]``
    pixels are processed at once (bounded memory at 4K). Returns ``(B, 3, H, W)`` on the
    [0, 1] scale; its normalisation is the official ``images_fullres``. Without autograd this
    is :class:`PCTPlan` band by band.
    """
    b, _, height, width = composite.shape
    band = max(1, min(height, int(config["band_pixels"]) // max(width, 1)))
    plan = PCTPlan(config, params, blend, height, width)
    out = torch.empty(b, 3, height, width, dtype=plan.maps.dtype, device=composite.device)
    if not torch.is_grad_enabled():  # inference: fused, in place
        for r0 in range(0, height, band):
            r1 = min(height, r0 + band)
            out[:, :, r0:r1] = plan.render(composite[:, :, r0:r1], mask[:, :, r0:r1], rows=(r0, r1))
        return out
    for r0 in range(0, height, band):  # the same maps, arithmetic out of place: autograd
        r1 = min(height, r0 + band)
        up = plan.upsampled((r0, r1), (0, width))
        x = composite[:, :, r0:r1].to(up.dtype)
        a = up[:, NUM_PARAMS:] if plan.attention else mask[:, :, r0:r1].to(up.dtype)
        y = torch.addcmul(up[:, 9:12], up[:, 0:3], x[:, 0:1])
        y = torch.addcmul(y, up[:, 3:6], x[:, 1:2])
        y = torch.addcmul(y, up[:, 6:9], x[:, 2:3]).clamp(0, 1)
        out[:, :, r0:r1] = torch.addcmul(x, a, y - x)
    return out


def pct_outputs(
    config: Dict[str, Any],
    composite: torch.Tensor,
    mask: torch.Tensor,
    image_lowres: torch.Tensor,
    params: torch.Tensor,
    blend: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
    """Low- and full-resolution outputs from the predicted parameters.

    ``image_lowres``: the normalised low-resolution view. Returns ``(image, image_normalized,
    extras)`` (see :meth:`_PCTNetBase.forward`).
    """
    out_lr = _normalize(apply_color_transform(image_lowres, params).clamp(0, 1), config)
    out_lr = out_lr * blend + image_lowres * (1 - blend)
    image = pct_fullres(config, composite, mask, params, blend)
    image_normalized = image if _identity_normalization(config) else _normalize(image, config)
    extras = {"transform": params, "blend": blend, "image_lowres": _denormalize(out_lr, config), "image_lowres_normalized": out_lr}
    return image, image_normalized, extras


class _PCTNetBase(Harmonizer):
    """What both variants share: the low-resolution view, the forward contract with its two
    optional keywords, and the full-resolution branch (:func:`pct_fullres`). Subclasses
    implement :meth:`predict` on the low-resolution view."""

    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    lowres_size: int
    blend_with_attention: bool
    band_pixels: int = 1 << 16  # full-resolution pixels processed at once (small: cache-resident bands)
    native_resolution = True  # the transform is applied to the whole full-resolution image

    def pct_config(self) -> Dict[str, Any]:
        """Plain values the full-resolution branch needs."""
        return {
            "mean": tuple(self.mean), "std": tuple(self.std), "blend_with_attention": self.blend_with_attention,
            "band_pixels": int(self.band_pixels), "lowres_size": int(self.lowres_size),
        }

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] image -> the network's input space."""
        return _normalize(x, self.pct_config())

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return _denormalize(x, self.pct_config())

    @staticmethod
    def upsample_transform(params: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """Low-resolution parameters ``(B, 12, h, w)`` -> full resolution (bicubic, as official)."""
        return F.interpolate(params, size=size, mode="bicubic", align_corners=False)

    def predict(self, image_lowres: torch.Tensor, mask_lowres: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalised low-resolution image and mask -> (params ``(B, 12, h, w)``, blend map ``(B, 1, h, w)``)."""
        raise NotImplementedError

    def lowres_view(
        self,
        composite: torch.Tensor,
        mask: torch.Tensor,
        composite_lowres: Optional[torch.Tensor] = None,
        mask_lowres: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The given low-resolution view, or the official one (:func:`official_lowres_view`,
        at ``lowres_size``, or at the size of the half of the view that is given)."""
        if composite_lowres is None or mask_lowres is None:
            given = composite_lowres if composite_lowres is not None else mask_lowres
            size = tuple(given.shape[-2:]) if given is not None else self.lowres_size
            c, m = official_lowres_view(composite, mask if mask_lowres is None else None, size)
            composite_lowres = c if composite_lowres is None else composite_lowres
            mask_lowres = m if mask_lowres is None else mask_lowres
        for name, t, ch in (("composite_lowres", composite_lowres, 3), ("mask_lowres", mask_lowres, 1)):
            if t.ndim != 4 or t.shape[1] != ch or t.shape[0] != composite.shape[0]:
                raise ValueError(f"{name} must be a (B, {ch}, h, w) tensor with B={composite.shape[0]}, got {tuple(t.shape)}")
        if composite_lowres.shape[-2:] != mask_lowres.shape[-2:]:
            raise ValueError(f"mask_lowres {tuple(mask_lowres.shape)} does not match composite_lowres {tuple(composite_lowres.shape)}")
        self.check_lowres_size(*composite_lowres.shape[-2:])
        return composite_lowres, mask_lowres

    def check_lowres_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` when the backbone cannot run on an ``height x width`` view."""

    def fullres_plan(self, composite: torch.Tensor, mask: torch.Tensor) -> PCTPlan:
        """Run the network once and return what renders any window of ``.image``.

        ``composite (B, 3, H, W)`` float in [0, 1] or uint8 (0..255), ``mask (B, 1, H, W)``
        float in [0, 1] or uint8 (``v / 255``). ``plan.render(composite_window, mask_window,
        rows=(r0, r1), cols=(c0, c1))`` (float windows in [0, 1]) equals ``.image`` there up to
        float rounding. The network runs under any active autocast; the plan is float32."""
        comp_lr, mask_lr = self.lowres_view(composite, mask)
        x_lr = self.normalize(comp_lr)
        params, blend = self.predict(x_lr, mask_lr.to(x_lr.dtype))
        return PCTPlan(self.pct_config(), params.float(), blend.float(), composite.shape[-2], composite.shape[-1])

    def forward(
        self,
        composite: torch.Tensor,
        mask: torch.Tensor,
        domain: Optional[str] = None,
        composite_lowres: Optional[torch.Tensor] = None,
        mask_lowres: Optional[torch.Tensor] = None,
    ) -> HarmonizationOutput:
        """composite ``(B, 3, H, W)`` in [0, 1], mask ``(B, 1, H, W)`` in [0, 1]; optional
        low-resolution view ``(B, 3, h, w)`` / ``(B, 1, h, w)`` in [0, 1].

        Returns ``.image`` (full resolution, [0, 1] scale, not clamped by the blend),
        ``.image_normalized`` (the official ``images_fullres``) and ``extras``:
        ``transform`` (low-resolution parameters ``(B, 12, h, w)``; the full-resolution ones
        are ``upsample_transform(transform, (H, W))``), ``blend`` (the low-resolution blend map:
        attention for the CNN, the mask for the ViT), ``image_lowres`` /
        ``image_lowres_normalized`` (the official low-resolution output ``images``).
        """
        self.resolve_domain(domain)
        self.check_inputs(composite, mask)
        comp_lr, mask_lr = self.lowres_view(composite, mask, composite_lowres, mask_lowres)
        x_lr = self.normalize(comp_lr)
        params, blend = self.predict(x_lr, mask_lr.to(x_lr.dtype))
        image, image_normalized, extras = pct_outputs(self.pct_config(), composite, mask, x_lr, params, blend)
        return HarmonizationOutput(image=image, image_normalized=image_normalized, extras=extras)


class PCTHead(nn.Module):
    """PCT-Net CNN head on the last UNet feature: ``to_params`` (1x1 conv -> 12 parameters)
    and the attention ``sigmoid(3 conv_attention(F))``. ``to_rgb`` exists in the official
    model but its forward does not use it: it is kept, frozen (``requires_grad=False``), so
    official checkpoints load strictly and the parameter count is the official one."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv_attention = nn.Conv2d(in_channels, 1, kernel_size=1)
        self.to_rgb = nn.Conv2d(in_channels, 3, kernel_size=1)
        self.to_params = nn.Conv2d(in_channels, NUM_PARAMS, kernel_size=1)

    def forward(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.to_params(features), torch.sigmoid(3.0 * self.conv_attention(features))


@BACKBONES.register("pctnet_cnn")
class PCTNetCNN(_PCTNetBase, StageBackbone):
    """PCT-Net with the S2AM UNet backbone (official ``CNN_pct``): 2,185,736 parameters.

    Args:
        depth, ch, max_channels, batchnorm_from, attend_from, attention_mid_k: the UNet (as
            :class:`harmonykit.models.ssam.SSAMBackbone`; the official model fixes ``ch=32``).
        lowres_size: side of the square low-resolution view the model makes itself (256).
        init: weight init (``"xavier_gluon"``: the official training init).

    Implements the stage protocol on the low-resolution UNet (``encoder``, ``decoder``,
    ``head`` = :class:`PCTHead`), so the domain adapters (``charmnet_pctnet_cnn``) split it;
    through an adapter the view is always the official one, and ``feature_info`` strides are
    relative to that view.
    """

    blend_with_attention = True
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(
        self,
        depth: int = 4,
        ch: int = 32,
        max_channels: int = 512,
        batchnorm_from: int = 2,
        attend_from: int = 2,
        attention_mid_k: float = 0.5,
        lowres_size: int = 256,
        init: str = "xavier_gluon",
    ) -> None:
        super().__init__()
        self.encoder, self.decoder, chs = build_ssam_stages(depth, ch, max_channels, batchnorm_from, attend_from, attention_mid_k)
        self.encoder_channels = chs
        self.head = PCTHead(chs[0])
        self.feature_info = [FeatureInfo(c, 2**i, f"encoder.{i}") for i, c in enumerate(chs)]
        self.lowres_size = int(lowres_size)
        self.lowres_divisor = 2 ** (depth - 1)
        self.init_scheme = init
        init_weights(self, init)
        self.head.to_rgb.requires_grad_(False)
        self.check_lowres_size(self.lowres_size, self.lowres_size)

    def check_lowres_size(self, height: int, width: int) -> None:
        d = self.lowres_divisor
        if height % d or width % d:
            raise ValueError(f"the low-resolution view must have sides that are multiples of {d}, got {height}x{width}")

    def predict(self, image_lowres: torch.Tensor, mask_lowres: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([image_lowres, mask_lowres], dim=1)
        feats, _, _ = run_ssam_unet(self.encoder, self.decoder, x, mask_lowres)
        return self.head(feats)

    # -- stage protocol (domain adapters) ---------------------------------------------------
    def stage_config(self) -> Dict[str, Any]:
        return self.pct_config()

    @classmethod
    def run_stages(cls, config, encoder, decoder, head, composite, mask, split_depth=None) -> StageOutput:
        """Official view (cv2 to ``lowres_size``), UNet on it, full-resolution transform;
        ``features_in`` / ``features_out`` are low-resolution UNet features."""
        comp_lr, mask_lr = official_lowres_view(composite, mask, config["lowres_size"])
        x_lr = _normalize(comp_lr, config)
        feats, f, g = run_ssam_unet(encoder, decoder, torch.cat([x_lr, mask_lr.to(x_lr.dtype)], dim=1), mask_lr, split_depth)
        params, blend = head(feats)
        image, image_normalized, extras = pct_outputs(config, composite, mask, x_lr, params, blend)
        return StageOutput(image=image, image_normalized=image_normalized, features_in=f, features_out=g, extras=extras)


def encoder_layer_sdpa(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode forward of a post-norm ``nn.TransformerEncoderLayer`` (``batch_first``, no
    masks, dropout off) with :func:`F.scaled_dot_product_attention`: equal to ``layer(x)`` up
    to float rounding, faster on CPU than the built-in fast path (fused attention, no
    ``(L, L)`` attention matrix in memory). ``x (B, L, D)`` -> ``(B, L, D)``."""
    if layer.norm_first:  # pragma: no cover - PCT-Net's layers are post-norm
        raise NotImplementedError("encoder_layer_sdpa: pre-norm layers are not used by PCT-Net")
    attn = layer.self_attn
    b, n, d = x.shape
    h = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    o = F.linear(o.transpose(1, 2).reshape(b, n, d), attn.out_proj.weight, attn.out_proj.bias)
    x = layer.norm1(x + o)
    return layer.norm2(x + layer.linear2(layer.activation(layer.linear1(x))))


class ViTParamEncoder(nn.Module):
    """The PCT-Net ViT: 4x4 patches of ``[image, mask]`` -> Linear(64, 256) -> transformer
    encoder (post-norm, GELU, dropout 0.1) -> ConvTranspose2d(k=s=4) -> tanh.

    ``(B, 4, h, w)`` (h, w multiples of ``ksize``) -> ``(B, out_channels, h, w)`` in (-1, 1).
    """

    def __init__(
        self,
        out_channels: int = NUM_PARAMS,
        ksize: int = 4,
        tr_r_enc_head: int = 2,
        tr_r_enc_layers: int = 9,
        in_channels: int = 4,
        dim_forward: int = 2,
        dim: int = 256,
    ) -> None:
        super().__init__()
        self.ksize = ksize
        self.patch_embed = nn.Linear(ksize * ksize * in_channels, dim)
        layer = nn.TransformerEncoderLayer(dim, nhead=tr_r_enc_head, dim_feedforward=dim * dim_forward, activation="gelu", batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers=tr_r_enc_layers, enable_nested_tensor=False)
        self.unpatch = nn.ConvTranspose2d(dim, out_channels, kernel_size=ksize, stride=ksize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.ksize
        hp, wp = h // p, w // p
        # (B, C, hp, p, wp, p) -> (B, hp*wp, p*p*C): patch pixels row-major, channels last
        tokens = x.reshape(b, c, hp, p, wp, p).permute(0, 2, 4, 3, 5, 1).reshape(b, hp * wp, p * p * c)
        tokens = self.patch_embed(tokens)
        if self.training:
            tokens = self.transformer(tokens)
        else:  # the same layers with F.scaled_dot_product_attention (fused, exact up to rounding)
            for layer in self.transformer.layers:
                tokens = encoder_layer_sdpa(layer, tokens)
        grid = tokens.transpose(1, 2).reshape(b, -1, hp, wp)
        return torch.tanh(self.unpatch(grid))


class PCTNetViT(_PCTNetBase):
    """PCT-Net with the ViT backbone (official ``ViT_pct``): 4,809,896 parameters.

    Args:
        tr_r_enc_layers: transformer layers (9); tr_r_enc_head: heads (2); dim_forward: MLP
            ratio (2); ksize: patch size (4).
        lowres_size: side of the square low-resolution view the model makes itself (256).

    Inputs are not normalised (the official ``input_normalization`` is mean 0, std 1); the
    official model composites the transformed image with the full-resolution mask, so the
    background of ``.image`` equals the composite.
    """

    blend_with_attention = False
    composites_with_mask = True  # .image is pasted on the composite through the mask
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)

    def __init__(
        self,
        tr_r_enc_layers: int = 9,
        tr_r_enc_head: int = 2,
        dim_forward: int = 2,
        ksize: int = 4,
        lowres_size: int = 256,
        init: str = "normal",
    ) -> None:
        super().__init__()
        self.encoder = ViTParamEncoder(NUM_PARAMS, ksize, tr_r_enc_head, tr_r_enc_layers, dim_forward=dim_forward)
        self.to_params = nn.Conv2d(NUM_PARAMS, NUM_PARAMS, kernel_size=1)
        self.lowres_size = int(lowres_size)
        self.ksize = ksize
        if init == "normal":  # the official ViT init: conv / linear weights N(0, 0.02), biases 0
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    nn.init.normal_(m.weight, 0.0, 0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        elif init != "torch":
            raise ValueError(f"unknown init {init!r} for PCT-Net ViT; expected 'normal' or 'torch'")
        self.check_lowres_size(self.lowres_size, self.lowres_size)

    def check_lowres_size(self, height: int, width: int) -> None:
        if height % self.ksize or width % self.ksize:
            raise ValueError(f"the low-resolution view must have sides that are multiples of {self.ksize}, got {height}x{width}")

    def predict(self, image_lowres: torch.Tensor, mask_lowres: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        latent = self.encoder(torch.cat([image_lowres, mask_lowres], dim=1))
        return self.to_params(latent), mask_lowres


# -- official checkpoint layout ------------------------------------------------------------
_PCT_CNN_RULES = list(_SSAM_RULES) + [(re.compile(r"^get_params\.(.+)$"), lambda m: f"head.to_params.{m[1]}")]
_PCT_VIT_RULES = [
    (re.compile(r"^encoder\.patch_to_embedding\.1\.(.+)$"), lambda m: f"encoder.patch_embed.{m[1]}"),
    (re.compile(r"^encoder\.transformer_enc\.layers\.(.+)$"), lambda m: f"encoder.transformer.layers.{m[1]}"),
    (re.compile(r"^encoder\.dec\.0\.(.+)$"), lambda m: f"encoder.unpatch.{m[1]}"),
    (re.compile(r"^get_params\.(.+)$"), lambda m: f"to_params.{m[1]}"),
]


def official_pctnet_to_ours(state_dict: Mapping[str, torch.Tensor], variant: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Official ``PCTNet`` names (CNN or ViT backbone) -> ours; our own names pass through.

    ``variant`` (``"cnn"`` / ``"vit"``) forces the official rules (for partial dicts such as
    buffers only); by default the layout is detected from the keys.
    """
    keys = list(state_dict)
    if variant is not None:
        if variant not in ("cnn", "vit"):
            raise ValueError(f"variant must be 'cnn' or 'vit', got {variant!r}")
        return rename_keys(state_dict, _PCT_VIT_RULES if variant == "vit" else _PCT_CNN_RULES, f"PCT-Net {variant.upper()}")
    if any(k.startswith("get_params.") for k in keys):
        if any(k.startswith("encoder.transformer_enc.") for k in keys):
            return rename_keys(state_dict, _PCT_VIT_RULES, "PCT-Net ViT")
        return rename_keys(state_dict, _PCT_CNN_RULES, "PCT-Net CNN")
    return dict(state_dict)


PCTNetCNN.checkpoint_filter_fn = staticmethod(official_pctnet_to_ours)
PCTNetViT.checkpoint_filter_fn = staticmethod(official_pctnet_to_ours)


register_single_network_layout(
    "official_pctnet", detect=lambda keys: any(k.startswith("get_params.") for k in keys), to_ours=official_pctnet_to_ours, priority=50
)


# -- registered entrypoints ------------------------------------------------------------------

_PAPER = dict(
    paper_ids="arXiv:2303.13404",
    paper_name="PCT-Net: Full Resolution Image Harmonization Using Pixel-Wise Color Transformations",
    origin_url="https://github.com/rakutentech/PCT-Net-Image-Harmonization",
    license="code: MPL-2.0 (rakutentech/PCT-Net-Image-Harmonization); weights trained on iHarmony4 (research use)",
)
# input_size: the low-resolution view the backbone runs at; the model itself takes any size
_RAW = "https://github.com/rakutentech/PCT-Net-Image-Harmonization/raw/main/pretrained_models/"
_CNN = dict(depth=4, ch=32, max_channels=512, batchnorm_from=2, attend_from=2, attention_mid_k=0.5, lowres_size=256, init="xavier_gluon")
_VIT = dict(tr_r_enc_layers=9, tr_r_enc_head=2, dim_forward=2, ksize=4, lowres_size=256, init="normal")

default_cfgs = {
    "pctnet_cnn": PretrainedCfg(**_PAPER, input_size=(3, 256, 256), min_size=1, tiny_args=dict(max_channels=32, lowres_size=64)),
    "pctnet_vit": PretrainedCfg(**_PAPER, input_size=(3, 256, 256), min_size=1, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                tiny_args=dict(tr_r_enc_layers=1, lowres_size=32)),
    "pctnet_cnn.rakuten_ihd4": PretrainedCfg(
        url=_RAW + "PCTNet_CNN.pth", train_datasets=["HCOCO", "HFlickr", "Hday2night"], metric_protocol="idih",
        notes="official checkpoint in the official key layout; converted on load",
    ),
    "pctnet_vit.rakuten_ihd4": PretrainedCfg(
        url=_RAW + "PCTNet_ViT.pth", train_datasets=["HCOCO", "HFlickr", "Hday2night"], metric_protocol="idih",
        notes="official checkpoint in the official key layout; converted on load",
    ),
}
register_pretrained_cfgs(default_cfgs)


def _build(cls: type, name: str, defaults: Dict[str, Any], kwargs: Dict[str, Any], pretrained: bool = False) -> nn.Module:
    kwargs = dict(kwargs)
    opts = pop_pretrained_opts(kwargs)
    args = dict(defaults)
    args.update({k: v for k, v in kwargs.items() if v is not None})
    ok = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    unknown = sorted(k for k in args if k not in ok)
    if unknown:
        raise TypeError(f"model {name!r}: unexpected argument(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(sorted(ok))}")
    return finalize_model(cls(**args), name, args, pretrained=pretrained, **opts)


@register_model
def pctnet_cnn(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """PCT-Net CNN (official ``CNN_pct``): S2AM UNet on a 256x256 view, affine colour
    transforms applied at full resolution; 2,185,736 parameters."""
    return _build(PCTNetCNN, "pctnet_cnn", _CNN, kwargs, pretrained=pretrained)


@register_model
def pctnet_vit(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """PCT-Net ViT (official ``ViT_pct``): 9-layer ViT on a 256x256 view; 4,809,896 parameters."""
    return _build(PCTNetViT, "pctnet_vit", _VIT, kwargs, pretrained=pretrained)


_ENTRIES = make_charmnet_entrypoints(
    "pctnet_cnn", dict(_CNN, backbone="pctnet_cnn", init="normal"), dict(ch=8, max_channels=16, lowres_size=64), split_depth=3
)
for _name, _fn in _ENTRIES.items():
    globals()[_name] = _fn
    __all__.append(_name)
