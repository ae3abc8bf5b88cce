"""Harmonize composites of any size and aspect ratio.

:func:`harmonize` takes a composite and its foreground mask as PIL images, numpy arrays, tensors
or file paths and returns the harmonized image as the same kind of object, at the input size.
The network always runs at its own resolution (``model.pretrained_cfg["input_size"]``, 256 x 256
for iDIH/CharmNet). Two policies bring the result back to the input size:

``"resize"`` (the official protocol)
    resize composite and mask to the model size (bilinear, antialiased when shrinking),
    predict, resize the prediction back (bilinear). The whole image is replaced by the
    up-sampled prediction, so fine detail is lost at high resolution.
``"full"`` (full-resolution colour transfer)
    predict at low resolution as above, then fit a **grid of local affine colour maps**
    (a 3 x 4 matrix per grid node, ``y = A [r, g, b, 1]``) by mask-weighted least squares from
    the low-resolution composite to the low-resolution prediction. Each node sees the pixels
    under its bilinear "tent" and is ridge-regularised towards one global affine map, so nodes
    with little foreground fall back to the global colour change. At full resolution the 12
    parameters are bilinearly interpolated per pixel and applied to the full-resolution
    composite, which is then pasted through the (soft) mask: pixels where the mask is 0 are
    returned **unchanged** (bit for bit), the foreground keeps its full-resolution texture.
    The work is done in horizontal strips over the mask's bounding box, so memory stays
    bounded (about the size of the input and output images plus a few MB).
``"native"`` (full-resolution models: PCT-Net, Harmonizer, LabStatNet, ...)
    the model's own full-resolution output, pasted through the mask (background bit for bit).
    Models with ``fullres_plan(composite, mask)`` run their low-resolution network once and
    return a plan whose ``render(window, mask_window, rows=, cols=)`` gives the output on any
    window; :func:`harmonize` renders the foreground's bounding box band by band straight from
    the uint8 image into the output (bands spread over ``torch.get_num_threads()`` Python
    threads), so no full-size float copy of the image is ever made.

``precision="bf16"`` runs the low-resolution network under ``torch.autocast`` (bfloat16) on the
model's device; every full-resolution step stays float32 on the CPU.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "harmonize",
    "predict_lowres",
    "fit_color_grid",
    "apply_color_grid",
    "MIN_SIDE",
    "RandomWeightsError",
    "RandomWeightsWarning",
    "model_input_size",
    "load_model",
    "parse_model_args",
    "POLICIES",
    "PRECISIONS",
    "DEFAULT_MODEL",
    "default_model",
]

_logger = logging.getLogger(__name__)

POLICIES = ("resize", "full", "native")
DEFAULT_MODEL = "lab_transfer"
"""The model :func:`harmonize` and ``harmonykit harmonize`` use when none is named: the best model
by measured quality on real composites (``benchmarks/bench_quality.py``, docs/models.md). Today
that is the weight-free half-way Lab transfer: the shipped network ``lab_statnet.hk_synth`` ties
with it on real iHarmony4 triplets (fMSE difference +5.6, 95% interval [-53, +63]) and is worse
on rendered ones, so it is not the default. Never random weights."""
MIN_SIDE = 16
"""Smallest composite side :func:`harmonize` accepts (pixels)."""
ImageInput = Union[str, os.PathLike, "Image.Image", np.ndarray, torch.Tensor]  # noqa: F821
ModelLike = Union[nn.Module, Callable[..., Any], str]


# --------------------------------------------------------------------------------------------
# I/O: any input kind -> (H, W, 3) / (H, W) torch tensors, and back
# --------------------------------------------------------------------------------------------
def _image_to_hwc(x: Any, name: str) -> Tuple[torch.Tensor, str, Optional[np.ndarray]]:
    """-> ((H, W, 3) uint8 or float32 tensor on CPU, kind, alpha or None). The alpha channel of
    an RGBA input is kept aside and put back on the output."""
    from PIL import Image

    from harmonykit.data.io import read_image

    if isinstance(x, (str, os.PathLike)):
        dec = read_image(x, what=name)
        rgb8 = np.rint(dec.rgb * 255.0).astype(np.uint8)
        alpha = None if dec.alpha is None else np.rint(dec.alpha * 255.0).astype(np.uint8)
        return torch.from_numpy(rgb8), "path", alpha
    if isinstance(x, Image.Image):
        alpha = None
        if x.mode in ("RGBA", "LA", "PA") or (x.mode == "P" and "transparency" in x.info):
            rgba = x.convert("RGBA")
            alpha = np.array(rgba, dtype=np.uint8)[..., 3]
            im = rgba.convert("RGB")
        else:
            im = x if x.mode == "RGB" else x.convert("RGB")
        return torch.from_numpy(np.array(im, dtype=np.uint8)), "pil", alpha
    if isinstance(x, np.ndarray):
        a = x
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise ValueError(f"{name}: expected an (H, W, 3) or (H, W, 4) array, got shape {x.shape}")
        alpha = np.array(a[..., 3], copy=True) if a.shape[2] == 4 else None
        a = a[..., :3]
        if a.dtype == np.uint8:
            return torch.from_numpy(np.array(a, copy=True)), "numpy_u8", alpha
        if a.dtype == np.uint16:
            raise TypeError(f"{name}: uint16 arrays are not taken as is; pass float32 in [0, 1] (x / 65535)")
        f = np.array(a, dtype=np.float32, copy=True)
        _check_unit_range(f, name)
        return torch.from_numpy(f), "numpy_float", alpha
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"{name}: expected a (3, H, W) or (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        t = t.cpu().permute(1, 2, 0)
        if t.dtype == torch.uint8:
            return t, "tensor_u8", None
        if not t.is_floating_point():
            raise TypeError(f"{name}: tensor dtype {t.dtype}; expected float in [0, 1] or uint8")
        _check_unit_range(t.float().numpy(), name)
        return t.float(), "tensor_float", None
    raise TypeError(f"{name}: unsupported type {type(x).__name__}; expected a path, PIL image, numpy array or tensor")


def _check_unit_range(a: np.ndarray, name: str) -> None:
    if a.size and (float(a.max()) > 1.0 + 1e-3 or float(a.min()) < -1e-3):
        raise ValueError(
            f"{name}: float values in [{float(a.min()):.3g}, {float(a.max()):.3g}]; expected [0, 1] "
            f"(divide 0..255 data by 255, or pass uint8)"
        )


def _mask_to_hw(x: Any, name: str = "mask") -> torch.Tensor:
    """-> (H, W) uint8 0..255 or float32 0..1 tensor on CPU."""
    from PIL import Image

    if isinstance(x, (str, os.PathLike)):
        from harmonykit.data.io import load_mask_u8

        return torch.from_numpy(load_mask_u8(x, what=name))
    if isinstance(x, Image.Image):
        if x.mode not in ("L", "1"):
            x = x.convert("L")
        a = np.array(x.convert("L") if x.mode == "1" else x, dtype=np.uint8)
    elif isinstance(x, torch.Tensor):
        a = x.detach().cpu().numpy()
    elif isinstance(x, np.ndarray):
        a = x
    else:
        raise TypeError(f"{name}: unsupported type {type(x).__name__}; expected a path, PIL image, numpy array or tensor")
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected an (H, W) or (1, H, W) mask, got shape {tuple(a.shape)}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    if a.dtype == np.uint8:
        if a.max(initial=0) <= 1:  # a 0/1 mask
            a = a * np.uint8(255)
        return torch.from_numpy(np.array(a, dtype=np.uint8, copy=True))
    a = a.astype(np.float32)
    if a.max(initial=0.0) > 1.0 + 1e-6:  # 0..255 floats
        a = a / 255.0
    return torch.from_numpy(np.ascontiguousarray(np.clip(a, 0.0, 1.0)))


def _hwc_to_kind(t: torch.Tensor, kind: str, like: Any, alpha: Optional[np.ndarray] = None) -> Any:
    from PIL import Image

    if kind in ("pil", "path"):
        if alpha is not None:
            return Image.fromarray(np.concatenate([t.numpy(), alpha[..., None]], axis=2), mode="RGBA")
        return Image.fromarray(t.numpy(), mode="RGB")
    if kind in ("numpy_u8", "numpy_float"):
        out = t.numpy()
        if alpha is not None:
            out = np.concatenate([out, alpha[..., None].astype(out.dtype)], axis=2)
        return out
    out = t.permute(2, 0, 1)
    if kind == "tensor_float":
        out = out.to(dtype=like.dtype if like.is_floating_point() else torch.float32)
    return out.to(like.device)


def _unit(t: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 / 255; float kept."""
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


# --------------------------------------------------------------------------------------------
# model plumbing
# --------------------------------------------------------------------------------------------
class RandomWeightsError(ValueError):
    """A model would run with random weights where the user did not ask for them."""


class RandomWeightsWarning(UserWarning):
    """A harmonization ran with randomly initialised weights."""


def has_trained_weights(model: Any) -> bool:
    """False only for a model known to hold random weights (``create_model`` without
    ``pretrained`` / ``checkpoint_path``); weight-free models and plain callables count as trained."""
    if isinstance(model, nn.Module) and not any(True for _ in model.parameters()):
        return True
    return bool(getattr(model, "has_trained_weights", True))


def random_weights_message(model: Any, name: Optional[str] = None) -> str:
    from harmonykit.factory import list_models

    arch = name or getattr(model, "architecture", type(model).__name__)
    tags = list_models(str(arch).partition(".")[0], pretrained=True)
    hint = f"registered weights: {', '.join(tags)} (--pretrained)" if tags else "no weights are registered for it"
    return (
        f"model {arch!r} has random weights (no checkpoint, no pretrained weights loaded); {hint}. Pass "
        f"--checkpoint FILE, a local-dir:/hf-hub: name, or --random-weights to run random weights on purpose"
    )


def _resolve_model(model: ModelLike) -> Any:
    if isinstance(model, str):
        from harmonykit.factory import create_model  # names, arch.tag, local-dir: and hf-hub:

        tagged = "." in model and ":" not in model
        model = create_model(model, pretrained=tagged)
    if model is None or not callable(model):
        raise TypeError(f"model: expected an nn.Module, a callable or a model name, got {type(model).__name__}")
    if not has_trained_weights(model) and not getattr(model, "random_weights_ok", False):
        import warnings

        arch = getattr(model, "architecture", type(model).__name__)
        warnings.warn(
            f"model {arch!r} has random weights: its output is noise. Load weights with "
            f"create_model({arch!r}, pretrained=True) or checkpoint_path=FILE",
            RandomWeightsWarning,
            stacklevel=3,
        )
    return model


def parse_model_args(items: Optional[Sequence[str]]) -> dict:
    """``["ch=8", "domains=[\"a\",\"b\"]"]`` -> ``{"ch": 8, "domains": ["a", "b"]}`` (values parsed
    as JSON when possible, else kept as strings)."""
    import json

    out = {}
    for it in items or ():
        key, sep, val = it.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"model argument {it!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(val)
        except json.JSONDecodeError:
            out[key.strip()] = val
    return out


def load_model(
    spec: str,
    checkpoint_path: Optional[Union[str, os.PathLike]] = None,
    pretrained: bool = False,
    allow_random: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a model from anything :func:`harmonykit.create_model` accepts (registry name,
    ``arch.tag``, ``local-dir:``, ``hf-hub:``), in eval mode, for the command line.

    A name with a weights tag (``idih256.samsung_ihd4``) loads those weights. A model that
    would hold random weights raises :class:`RandomWeightsError` unless ``allow_random``."""
    from harmonykit.factory import create_model, parse_model_name

    if checkpoint_path is not None and not Path(checkpoint_path).is_file():
        raise FileNotFoundError(f"checkpoint file not found: {checkpoint_path}")
    source, rest = parse_model_name(spec)
    if source == "registry":
        tagged = "." in rest
        model = create_model(spec, pretrained=pretrained or (tagged and checkpoint_path is None), checkpoint_path=checkpoint_path, **kwargs)
    else:
        model = create_model(spec, checkpoint_path=checkpoint_path, **kwargs)
    if not has_trained_weights(model):
        if not allow_random:
            raise RandomWeightsError(random_weights_message(model, spec))
        _logger.warning("model %r runs with RANDOM weights (--random-weights)", spec)
        model.random_weights_ok = True
    return model.eval()


def model_input_size(model: Any, default: Tuple[int, int] = (256, 256)) -> Tuple[int, int]:
    """(H, W) the network runs at: ``model.pretrained_cfg["input_size"][-2:]`` or ``default``."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") if isinstance(cfg, dict) else getattr(cfg, "input_size", None)
    if size:
        return int(size[-2]), int(size[-1])
    return default


def _default_domain(model: Any, domain: Optional[str]) -> Optional[str]:
    """The domain to run: the model resolves it (one rule, :meth:`Harmonizer.resolve_domain`)."""
    if hasattr(model, "resolve_domain"):
        return model.resolve_domain(domain)
    if domain is not None:
        raise ValueError(f"domain={domain!r} given but the model has no domains")
    return None


def _output_image(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "image"):
        return out.image
    if isinstance(out, dict):
        for k in ("image", "images"):
            if k in out:
                return out[k]
    raise TypeError(f"model output of type {type(out).__name__} has no `.image`")


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    was_training = isinstance(model, nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            model.train()


PRECISIONS = ("fp32", "bf16")


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return precision


@contextmanager
def _autocast(precision: str, device: torch.device) -> Iterator[None]:
    """``torch.autocast(device.type, torch.bfloat16)`` for ``"bf16"``, nothing for ``"fp32"``."""
    if _check_precision(precision) == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


def _model_device(model: Any) -> torch.device:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def predict_lowres(
    model: Any,
    composite: torch.Tensor,
    mask: torch.Tensor,
    domain: Optional[str] = None,
    flip: bool = False,
    precision: str = "fp32",
) -> torch.Tensor:
    """Run the network on a batch at its own resolution.

    Args:
        model: harmonization model (or a callable ``(composite, mask[, domain=]) -> output``).
        composite: (B, 3, h, w) float in [0, 1]; ``h, w`` must be valid for the model.
        mask: (B, 1, h, w) float in [0, 1].
        domain: domain for multi-domain models (default ``"real"``).
        flip: average with the prediction of the horizontally flipped input (test-time aug.).
        precision: ``"fp32"`` or ``"bf16"`` (the network under ``torch.autocast`` in bfloat16
            on the model's device).

    Returns:
        (B, 3, h, w) float32 prediction in [0, 1] scale (not clamped), on the input's device.
    """
    domain = _default_domain(model, domain)
    dev = _model_device(model)
    kw = {"domain": domain} if domain is not None else {}
    if hasattr(model, "check_input_size"):
        model.check_input_size(int(composite.shape[-2]), int(composite.shape[-1]))
    c, m = composite.to(dev), mask.to(dev)
    with _eval_mode(model), _autocast(precision, dev):
        pred = _output_image(model(c, m, **kw)).float()
        if flip:
            pf = _output_image(model(c.flip(-1), m.flip(-1), **kw)).float().flip(-1)
            pred = 0.5 * (pred + pf)
    return pred.to(composite.device)


def _downsample(t: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(H, W, C) or (H, W) uint8/float -> (1, C, h, w) float32 in [0, 1] (bilinear, antialiased)."""
    x = t.unsqueeze(-1) if t.ndim == 2 else t
    x = x.permute(2, 0, 1).unsqueeze(0)
    H, W = x.shape[-2:]
    if (H, W) == tuple(size):
        return _unit(x.contiguous())
    shrink = size[0] < H or size[1] < W
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    if x.dtype == torch.uint8 and x.shape[1] != 3:
        x = x.float()  # the uint8 kernel is fastest on RGB channels-last
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return y.float() / scale if scale != 1.0 else _unit(y)


# --------------------------------------------------------------------------------------------
# full-resolution colour transfer: a grid of affine colour maps
# --------------------------------------------------------------------------------------------
def _tent_weights(n_pix: int, n_nodes: int, start: int = 0, count: Optional[int] = None) -> torch.Tensor:
    """(count, n_nodes) linear-interpolation weights of pixels ``start..start+count`` of an axis
    of ``n_pix`` pixels to ``n_nodes`` nodes, with the first and last node on the first and last
    pixel (the ``align_corners=True`` convention, so full-resolution application can use
    ``F.interpolate``)."""
    count = n_pix - start if count is None else count
    s = torch.arange(start, start + count, dtype=torch.float64) * ((n_nodes - 1) / max(n_pix - 1, 1))
    k = torch.arange(n_nodes, dtype=torch.float64)
    return (1.0 - (s[:, None] - k[None, :]).abs()).clamp_(min=0.0).float()


def fit_color_grid(
    composite: torch.Tensor,
    prediction: torch.Tensor,
    mask: torch.Tensor,
    grid: Union[int, Tuple[int, int]] = 16,
    reg: float = 0.03,
) -> torch.Tensor:
    """Fit local affine colour maps ``composite -> prediction`` over the foreground.

    Args:
        composite, prediction: (3, h, w) float in [0, 1] (low resolution).
        mask: (h, w) float weights in [0, 1].
        grid: nodes per axis (``int`` or ``(gy, gx)``), at least 2.
        reg: ridge strength pulling each node towards the global map, as a fraction of the
            weight of one grid cell full of foreground.

    Returns:
        (gy, gx, 4, 3) maps ``A`` with ``y = [r, g, b, 1] @ A`` (float32). An empty mask gives
        the identity everywhere.
    """
    gy, gx = (grid, grid) if isinstance(grid, int) else grid
    if gy < 2 or gx < 2:
        raise ValueError(f"grid must have at least 2 nodes per axis, got {(gy, gx)}")
    _, h, w = composite.shape
    # normal equations per node: sums of tent * mask * [x 1]^T [x 1] and tent * mask * [x 1]^T y
    x = torch.cat([composite.float(), torch.ones(1, h, w)], 0).reshape(4, h * w)  # 4, P
    y = prediction.float().clamp(0, 1).reshape(3, h * w)
    xw = x * mask.float().clamp(0, 1).reshape(1, h * w)
    q = torch.cat([(xw[:, None] * x[None]).reshape(16, h * w), (xw[:, None] * y[None]).reshape(12, h * w)], 0)
    ty, tx = _tent_weights(h, gy), _tent_weights(w, gx)
    nodes = torch.matmul(q.reshape(28 * h, w), tx).reshape(28, h, gx)  # along x
    nodes = torch.matmul(nodes.permute(0, 2, 1), ty).permute(2, 1, 0).double()  # gy, gx, 28
    G = nodes[..., :16].reshape(gy, gx, 4, 4)
    B = nodes[..., 16:].reshape(gy, gx, 4, 3)
    eye4 = torch.eye(4, dtype=torch.float64)
    ident = torch.zeros(4, 3, dtype=torch.float64)
    ident[:3, :3] = torch.eye(3, dtype=torch.float64)
    # global map, lightly pulled to the identity (exactly the identity for an empty mask)
    tot = q.double().sum(1)
    Gt, Bt = tot[:16].reshape(4, 4), tot[16:].reshape(4, 3)
    lam_g = 1.0
    A_g = torch.linalg.solve(Gt + lam_g * eye4, Bt + lam_g * ident)
    cell = (h / max(gy - 1, 1)) * (w / max(gx - 1, 1))
    lam = max(reg * cell, 1e-6)
    A = torch.linalg.solve(G + lam * eye4, B + lam * A_g)
    return A.float()


def apply_color_grid(
    image: torch.Tensor,
    mask: torch.Tensor,
    maps: torch.Tensor,
    out: Optional[torch.Tensor] = None,
    strip_rows: int = 64,
) -> torch.Tensor:
    """Apply interpolated colour maps at full resolution and paste through the mask.

    Args:
        image: (H, W, 3) uint8 or float in [0, 1] (full resolution).
        mask: (H, W) uint8 0..255 or float in [0, 1]; pixels where it is 0 are left unchanged.
        maps: (gy, gx, 4, 3) from :func:`fit_color_grid`.
        out: optional (H, W, 3) output of ``image``'s dtype (defaults to a copy of ``image``).
        strip_rows: rows processed at once (bounds the temporary memory).

    Returns:
        (H, W, 3) tensor of ``image``'s dtype: ``image + m * (A(image) - image)`` inside the mask.
    """
    H, W, _ = image.shape
    if mask.shape != (H, W):
        raise ValueError(f"mask size mismatch: mask is {tuple(mask.shape)}, image is {(H, W)}")
    if out is None:
        out = image.clone()
    gy, gx = maps.shape[:2]
    box = _foreground_box(mask)
    if box is None:
        return out
    r0, r1, c0, c1 = box
    is_u8 = image.dtype == torch.uint8
    scale = 255.0 if is_u8 else 1.0  # work in the image's own units (no /255, *255 passes)
    P = maps.reshape(gy, gx, 4, 3).clone()
    P[:, :, 3] *= scale  # the offsets
    P = P.reshape(gy, gx, 12)
    m_full = 255 if mask.dtype == torch.uint8 else 1.0

    def do_strip(s: int) -> None:
        e = min(s + strip_rows, r1)
        with torch.inference_mode():
            ty = _tent_weights(H, gy, s, e - s)  # (hs, gy)
            p = torch.matmul(ty, P.reshape(gy, gx * 12)).reshape(-1, gx, 12).permute(0, 2, 1)  # hs, 12, gx
            # along x: linear interpolation between the two neighbouring nodes (align_corners=True)
            p = F.interpolate(p, size=W, mode="linear", align_corners=True)[..., c0:c1]  # hs, 12, wb; k = 3 * in + out
            src = image[s:e, c0:c1]
            xf = src.permute(0, 2, 1).float()  # hs, 3, wb
            res = torch.addcmul(p[:, 9:12], p[:, 0:3], xf[:, 0:1])
            res.addcmul_(p[:, 3:6], xf[:, 1:2]).addcmul_(p[:, 6:9], xf[:, 2:3]).clamp_(0.0, scale).nan_to_num_(0.0)
            m = mask[s:e, c0:c1].unsqueeze(1).float()
            if m_full != 1.0:
                m.div_(float(m_full))
            # paste through the mask: lerp is exact at both ends (m = 0: the source, bit for bit;
            # m = 1: the mapped colour)
            res = torch.lerp(xf, res, m)
            if is_u8:
                res.round_()
            out[s:e, c0:c1].copy_(res.permute(0, 2, 1))

    _parallel_bands(do_strip, list(range(r0, r1, strip_rows)))
    return out


def _upsample_image(pred: torch.Tensor, H: int, W: int, dtype: torch.dtype, strip_rows: int = 256) -> torch.Tensor:
    """(3, h, w) prediction -> (H, W, 3) clamped to [0, 1] (uint8: x 255, rounded), bilinear
    (``align_corners=False``, as ``F.interpolate``), computed in strips of rows."""
    h, w = pred.shape[-2:]
    out = torch.empty(H, W, 3, dtype=dtype)
    src = pred.unsqueeze(0).float()
    gx = ((torch.arange(W, dtype=torch.float64) + 0.5) / W * 2 - 1).float()  # normalised x of pixel centres
    for s in range(0, H, strip_rows):
        e = min(s + strip_rows, H)
        gy = ((torch.arange(s, e, dtype=torch.float64) + 0.5) / H * 2 - 1).float()
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), -1).unsqueeze(0)
        if (h, w) == (H, W):
            strip = src[..., s:e, :]
        else:
            strip = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        strip = strip[0].clamp(0.0, 1.0).permute(1, 2, 0)  # not in place: may be a view of an inference tensor
        out[s:e] = strip.mul(255.0).round_() if dtype == torch.uint8 else strip
    return out


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------
def _harmonize_one(
    img: torch.Tensor,
    msk: torch.Tensor,
    model: Any,
    policy: str,
    size: Tuple[int, int],
    domain: Optional[str],
    flip: bool,
    grid: Union[int, Tuple[int, int]],
    reg: float,
    precision: str = "fp32",
) -> torch.Tensor:
    H, W = img.shape[:2]
    if policy == "native":
        return _harmonize_native(img, msk, model, domain, flip, precision)
    comp_lr = _downsample(img, size)
    mask_lr = _downsample(msk, size)
    pred = predict_lowres(model, comp_lr, mask_lr, domain=domain, flip=flip, precision=precision)[0].float().cpu()
    if policy == "resize":
        return _upsample_image(pred, H, W, img.dtype)
    maps = fit_color_grid(comp_lr[0], pred, mask_lr[0, 0], grid=grid, reg=reg)
    return apply_color_grid(img, msk, maps)


NATIVE_BAND_PIXELS = 1 << 18
"""Full-resolution pixels :func:`harmonize` renders and pastes at once in the ``"native"`` policy."""


def _harmonize_native(
    img: torch.Tensor, msk: torch.Tensor, model: Any, domain: Optional[str], flip: bool, precision: str = "fp32"
) -> torch.Tensor:
    """Full-resolution models (``model.native_resolution``): the model sees the whole image and
    makes its own low-resolution view; the prediction is pasted through the mask, and pixels
    where the mask is 0 are returned unchanged, bit for bit.

    Models with a ``fullres_plan(composite, mask)`` method (PCT-Net, Harmonizer) run their
    network once and then render only the foreground's bounding box, in bands of rows, straight
    from the uint8 (or float) image into the output: no full-size float copy is made."""
    plan_fn = getattr(model, "fullres_plan", None)
    if plan_fn is not None and not flip:
        return _harmonize_planned(img, msk, model, plan_fn, domain, precision)
    comp = _unit(img.permute(2, 0, 1).unsqueeze(0).contiguous())
    m = _unit(msk.unsqueeze(0).unsqueeze(0).contiguous())
    pred = predict_lowres(model, comp, m, domain=domain, flip=flip, precision=precision)[0].float().clamp(0.0, 1.0).permute(1, 2, 0)
    if getattr(model, "composites_with_mask", False):
        out = pred  # the model pasted its result through this mask already
    else:
        mm = m[0, 0].unsqueeze(-1)
        out = comp[0].permute(1, 2, 0) * (1.0 - mm) + pred * mm
    keep = (msk == 0).unsqueeze(-1)
    if img.dtype == torch.uint8:
        return torch.where(keep, img, out.mul(255.0).round_().to(torch.uint8))
    return torch.where(keep, img, out.to(img.dtype))


def _parallel_bands(fn: Callable[[int], None], starts: Sequence[int]) -> None:
    """``fn(start)`` for every band, spread over ``torch.get_num_threads()`` Python threads, each
    running its tensor ops single-threaded: one band per thread instead of one thread team per
    (small) op, which is faster and does not collapse on a busy machine (many short parallel
    regions wait on each other). The thread setting is restored afterwards."""
    n = torch.get_num_threads()
    if n <= 1 or len(starts) <= 1:
        for s in starts:
            fn(s)
        return
    from concurrent.futures import ThreadPoolExecutor

    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            for f in [pool.submit(fn, s) for s in starts]:
                f.result()
    finally:
        torch.set_num_threads(n)


def _foreground_box(msk: torch.Tensor) -> Optional[Tuple[int, int, int, int]]:
    """``(r0, r1, c0, c1)``: the bounding box of ``msk > 0`` (``(H, W)``), or ``None`` if empty."""
    rows = torch.nonzero(msk.amax(dim=1) > 0).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(msk[int(rows[0]):int(rows[-1]) + 1].amax(dim=0) > 0).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _harmonize_planned(
    img: torch.Tensor, msk: torch.Tensor, model: Any, plan_fn: Callable[..., Any], domain: Optional[str], precision: str
) -> torch.Tensor:
    """The ``"native"`` policy through ``model.fullres_plan``: same result as the model's own
    forward pasted through the mask (up to float rounding), rendered band by band over the
    foreground's bounding box; the network runs under ``precision`` on the model's device, the
    colour step in float32 on the CPU."""
    _default_domain(model, domain)  # validates: these models have no domains
    dev = _model_device(model)
    n_threads = torch.get_num_threads()
    plan_threads = getattr(model, "plan_threads", None)  # a tiny network: fewer intra-op threads
    if plan_threads and dev.type == "cpu" and plan_threads < n_threads:
        torch.set_num_threads(int(plan_threads))
    try:
        with _eval_mode(model), _autocast(precision, dev):
            plan = plan_fn(img.permute(2, 0, 1).unsqueeze(0).to(dev), msk.unsqueeze(0).unsqueeze(0).to(dev))
    finally:
        torch.set_num_threads(n_threads)
    plan = plan.to("cpu")  # the full-resolution colour step: float32 on the CPU
    out = img.clone()
    box = _foreground_box(msk)
    if box is None:
        return out
    r0, r1, c0, c1 = box
    is_u8, mask_u8 = img.dtype == torch.uint8, msk.dtype == torch.uint8
    blend = not getattr(model, "composites_with_mask", False)
    band = max(1, int(getattr(model, "band_pixels", NATIVE_BAND_PIXELS)) // (c1 - c0))

    def do_band(s: int) -> None:
        e = min(s + band, r1)
        with torch.inference_mode():
            x = torch.empty(1, 3, e - s, c1 - c0).copy_(img[s:e, c0:c1].permute(2, 0, 1))
            m = msk[s:e, c0:c1].to(torch.float32)[None, None]
            if is_u8:
                x.div_(255.0)
            if mask_u8:
                m.div_(255.0)
            y = plan.render(x, m, rows=(s, e), cols=(c0, c1)).float().clamp_(0.0, 1.0)
            if blend:  # composite * (1 - m) + prediction * m
                y = x.mul_(torch.rsub(m, 1.0)).add_(y.nan_to_num_(0.0).mul_(m))
            # where m == 0 this is x * 1 + y * 0 = x exactly, and round(255 * (v / 255)) == v for
            # every uint8 v: background pixels come back bit for bit (tested)
            if is_u8:
                y.mul_(255.0).round_()
            out[s:e, c0:c1].copy_(y[0].permute(1, 2, 0))

    starts = list(range(r0, r1, band))
    do_band(starts[0])  # serially first: fills the plan's caches for this column range
    _parallel_bands(do_band, starts[1:])
    return out


_DEFAULT_CACHE: dict = {}


def default_model() -> nn.Module:
    """The :data:`DEFAULT_MODEL` with its shipped weights (built once, eval mode). Never random:
    a missing weights file raises :class:`~harmonykit.models._pretrained.WeightsUnavailableError`."""
    if DEFAULT_MODEL not in _DEFAULT_CACHE:
        from harmonykit.factory import create_model

        net = create_model(DEFAULT_MODEL, pretrained=True).eval()
        if not has_trained_weights(net):  # pragma: no cover - create_model(pretrained=True) loads or raises
            raise RandomWeightsError(random_weights_message(net, DEFAULT_MODEL))
        _DEFAULT_CACHE[DEFAULT_MODEL] = net
    return _DEFAULT_CACHE[DEFAULT_MODEL]


def harmonize(
    composite: Any,
    mask: Any,
    model: Optional[ModelLike] = None,
    policy: Optional[str] = None,
    *,
    domain: Optional[str] = None,
    size: Optional[Tuple[int, int]] = None,
    flip: bool = False,
    grid: Union[int, Tuple[int, int]] = 16,
    reg: float = 0.03,
    precision: str = "fp32",
) -> Any:
    """Harmonize a composite of any size.

    Args:
        composite: RGB image: a path, PIL image, numpy (H, W, 3) uint8 or float in [0, 1],
            tensor (3, H, W) or (B, 3, H, W) float in [0, 1] (or uint8).
        mask: its foreground mask, same height and width: path, PIL, (H, W) array or
            (1, H, W) / (B, 1, H, W) tensor; 0/1, 0/255 or soft values.
        model: harmonization model, a callable ``(composite, mask) -> output``, or a name for
            :func:`harmonykit.create_model`; ``None`` (default): :data:`DEFAULT_MODEL`
            (:func:`default_model`), never random weights.
        policy: ``"resize"`` (official: predict at the model size, resize back), ``"full"``
            (local colour transfer at full resolution, background untouched) or ``"native"``
            (full-resolution models such as ``pctnet_cnn`` / ``harmonizer``: the model sees the
            whole image, background untouched). Default: ``"native"`` for models with
            ``native_resolution``, else ``"full"`` (as the command line): the background is
            never changed unless ``"resize"`` is asked for.
        domain: domain for multi-domain models (default ``"real"``).
        size: (h, w) for the network; default ``model.pretrained_cfg["input_size"]``.
        flip: horizontal-flip test-time augmentation.
        grid, reg: nodes per axis and regularisation of the ``"full"`` colour maps
            (see :func:`fit_color_grid`).
        precision: ``"fp32"`` (default) or ``"bf16"``: the low-resolution network runs under
            ``torch.autocast(device, torch.bfloat16)`` on the model's device. The
            full-resolution colour step (PCT-Net's per-pixel transforms, Harmonizer's filters,
            the ``"full"`` colour maps, resizing and pasting) always runs in float32 on the
            CPU, and the background stays bit exact in both precisions.

    Returns:
        The harmonized image as the kind of object given (a path gives an 8-bit PIL image), at
        the input size; uint8 inputs give uint8, float inputs float in [0, 1]. An alpha channel
        (RGBA PIL image, (H, W, 4) array, RGBA file) is passed through unchanged. For 16-bit
        files read them with :func:`harmonykit.data.io.read_image` and pass the float array
        (the command line does this and writes 16-bit PNG / TIFF).

    Raises:
        ValueError: a composite smaller than :data:`MIN_SIDE`, mismatched sizes, values
            outside [0, 1]. A model holding random weights gives a :class:`RandomWeightsWarning`.
    """
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    _check_precision(precision)
    net = default_model() if model is None else _resolve_model(model)
    if policy is None:
        policy = "native" if getattr(net, "native_resolution", False) else "full"
    size = tuple(size) if size is not None else model_input_size(net)
    if hasattr(net, "check_input_size"):
        net.check_input_size(int(size[0]), int(size[1]))

    if isinstance(composite, torch.Tensor) and composite.ndim == 4:
        masks = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
        if masks.ndim == 3:
            masks = masks.unsqueeze(1)
        if masks.ndim != 4 or masks.shape[0] != composite.shape[0]:
            raise ValueError(
                f"mask: expected (B, 1, H, W) with B = {composite.shape[0]}, got shape {tuple(masks.shape)}"
            )
        outs = [
            harmonize(c, m, net, policy, domain=domain, size=size, flip=flip, grid=grid, reg=reg, precision=precision)
            for c, m in zip(composite, masks)
        ]
        return torch.stack(outs)

    img, kind, alpha = _image_to_hwc(composite, "composite")
    if min(img.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"composite is {img.shape[1]}x{img.shape[0]} (WxH); harmonize() needs at least {MIN_SIDE} px per side"
        )
    msk = _mask_to_hw(mask)
    if tuple(msk.shape) != tuple(img.shape[:2]):
        raise ValueError(
            f"mask size mismatch: the composite is {img.shape[1]}x{img.shape[0]} (WxH) but the mask is "
            f"{msk.shape[1]}x{msk.shape[0]}"
            + (f" ({mask})" if isinstance(mask, (str, os.PathLike)) else "")
        )
    res = _harmonize_one(img, msk, net, policy, size or tuple(img.shape[:2]), domain, flip, grid, reg, precision)
    return _hwc_to_kind(res, kind, composite, alpha)
