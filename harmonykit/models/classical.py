"""Classical (weight-free) harmonization baselines as registered models.

Every learned harmonizer is compared with these in the literature; here they are ordinary
:class:`~harmonykit.models.base.Harmonizer` models, so ``create_model``, ``harmonize``,
``evaluate`` and the demo take them like any network:

- ``identity``: the composite itself (the do-nothing reference every metric is read against);
- ``lab_transfer``: move the foreground's per-channel CIE Lab mean and standard deviation
  ``strength`` of the way towards the background's (0.5 by default: half-way);
- ``reinhard``: Reinhard et al., "Color Transfer between Images" (IEEE CG&A 2001): full mean /
  standard-deviation transfer in the decorrelated l-alpha-beta space (log LMS);
- ``histogram_matching``: map each RGB channel of the foreground onto the background's
  distribution (equal quantiles), as ``skimage.exposure.match_histograms`` does per channel.

They have no parameters, accept any input size (``size_divisor=1``) and run at full
resolution directly. ``.image`` is the composite with the foreground replaced by the transferred
colours (``composite + mask * (transferred - composite)``): pixels where the mask is 0 keep their
value exactly. Statistics are weighted by the soft mask (foreground ``m``, background ``1 - m``);
histogram matching uses the pixels with ``m > 0.5``. When the foreground or the background is
empty the composite is returned unchanged.

All computations are torch operations (CPU or GPU); ``lab_transfer``, ``reinhard`` and
``identity`` export to ONNX (see :mod:`harmonykit.export`).
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from harmonykit.models._builder import finalize_model, pop_pretrained_opts, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import Harmonizer
from harmonykit.models.outputs import HarmonizationOutput

__all__ = [
    "ClassicalHarmonizer",
    "IdentityHarmonizer",
    "StatisticsTransfer",
    "HistogramMatching",
    "COLOR_SPACES",
    "to_color_space",
    "from_color_space",
    "weighted_mean_std",
    "identity",
    "lab_transfer",
    "reinhard",
    "histogram_matching",
    "is_weight_free",
    "list_weight_free_models",
]

COLOR_SPACES = ("lab", "lalphabeta", "rgb")
"""Colour spaces of the statistics transfer: CIE Lab (D65, kornia), Reinhard's l-alpha-beta, sRGB."""

# Reinhard et al. 2001, eq. 1 (RGB -> LMS; applied here to linear sRGB) and eq. 4 (log LMS -> l-alpha-beta)
_RGB2LMS = ((0.3811, 0.5783, 0.0402), (0.1967, 0.7244, 0.0782), (0.0241, 0.1288, 0.8444))
_LMS2LAB = (
    (1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)),
    (1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)),
    (1 / math.sqrt(2), -1 / math.sqrt(2), 0.0),
)
_LMS_FLOOR = 1e-4  # log of black: clamp LMS before the logarithm


def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``matrix @ x`` for ``x (B, 3, H, W)``."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(x.dtype), x)


def _rgb_to_lalphabeta(rgb: torch.Tensor) -> torch.Tensor:
    from kornia.color import rgb_to_linear_rgb

    lms = _mix(rgb_to_linear_rgb(rgb.clamp(0.0, 1.0)), torch.tensor(_RGB2LMS, device=rgb.device))
    return _mix(torch.log(lms.clamp_min(_LMS_FLOOR)), torch.tensor(_LMS2LAB, device=rgb.device))


def _lalphabeta_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    from kornia.color import linear_rgb_to_rgb

    lms2lab = torch.tensor(_LMS2LAB, dtype=torch.float64)
    rgb2lms = torch.tensor(_RGB2LMS, dtype=torch.float64)
    lms = torch.exp(_mix(lab, torch.linalg.inv(lms2lab).float().to(lab.device)))
    lin = _mix(lms, torch.linalg.inv(rgb2lms).float().to(lab.device)).clamp(0.0, 1.0)
    return linear_rgb_to_rgb(lin).clamp(0.0, 1.0)


def to_color_space(rgb: torch.Tensor, space: str) -> torch.Tensor:
    """``(B, 3, H, W)`` sRGB in [0, 1] -> ``space`` (``lab``: L in [0, 100], a/b about [-128, 127])."""
    if space == "lab":
        from kornia.color import rgb_to_lab

        return rgb_to_lab(rgb.clamp(0.0, 1.0))
    if space == "lalphabeta":
        return _rgb_to_lalphabeta(rgb)
    if space == "rgb":
        return rgb
    raise ValueError(f"unknown colour space {space!r}; expected one of {COLOR_SPACES}")


def from_color_space(x: torch.Tensor, space: str) -> torch.Tensor:
    """Inverse of :func:`to_color_space`; sRGB ``(B, 3, H, W)`` clamped to [0, 1]."""
    if space == "lab":
        from kornia.color import lab_to_rgb

        return lab_to_rgb(x, clip=True)
    if space == "lalphabeta":
        return _lalphabeta_to_rgb(x)
    if space == "rgb":
        return x.clamp(0.0, 1.0)
    raise ValueError(f"unknown colour space {space!r}; expected one of {COLOR_SPACES}")


def weighted_mean_std(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image, per-channel weighted mean and (population) standard deviation.

    Args:
        x: ``(B, C, H, W)``.
        weight: ``(B, 1, H, W)`` non-negative.

    Returns:
        mean ``(B, C, 1, 1)``, std ``(B, C, 1, 1)``, total weight ``(B, 1, 1, 1)``.
    """
    total = weight.sum(dim=(2, 3), keepdim=True)
    denom = total.clamp_min(eps)
    mean = (x * weight).sum(dim=(2, 3), keepdim=True) / denom
    var = ((x - mean).square() * weight).sum(dim=(2, 3), keepdim=True) / denom
    return mean, var.clamp_min(0.0).sqrt(), total


class ClassicalHarmonizer(Harmonizer):
    """Base of the weight-free models: no parameters, any size, full resolution.

    Subclasses implement :meth:`transfer` (the recoloured image); :meth:`forward` keeps the
    background: ``image = composite + mask * (transfer(composite, mask) - composite)``.

    ``has_trained_weights`` is always ``True`` (there is nothing to train), so code that refuses
    randomly initialised networks accepts these models; ``weight_free`` marks them, and
    ``native_resolution`` says that running them on the full-size image is the intended use.
    """

    weight_free: bool = True
    output_mean = (0.0, 0.0, 0.0)  # .image_normalized is the [0, 1] image itself
    output_std = (1.0, 1.0, 1.0)
    native_resolution: bool = True  # runs on the full-size image directly (harmonize policy "native")
    size_divisor: int = 1
    min_size: int = 2

    @property
    def has_trained_weights(self) -> bool:  # nothing to load: always "trained"
        return True

    @has_trained_weights.setter
    def has_trained_weights(self, value: bool) -> None:  # the factory sets it; ignored
        pass

    def transfer(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` recoloured image (only its foreground is used)."""
        raise NotImplementedError

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, domain: Optional[str] = None) -> HarmonizationOutput:
        self.resolve_domain(domain)
        self.check_inputs(composite, mask)
        m = mask.to(composite.dtype)
        image = composite + m * (self.transfer(composite, m) - composite)
        return HarmonizationOutput(image=image, image_normalized=image)


class IdentityHarmonizer(ClassicalHarmonizer):
    """The composite itself: ``image = composite`` (the do-nothing reference)."""

    def transfer(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return composite


def _check_strength(strength: float) -> float:
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    return strength


STRIP_PIXELS = 1 << 21
"""Pixels per strip of the strip-wise path (smaller strips make kornia's colour conversions slow)."""
STRIP_MIN_PIXELS = 1 << 22
"""Eager, gradient-free forwards of images with more pixels than this run in strips of rows."""


def _use_strips(x: torch.Tensor) -> bool:
    if x.shape[-2] * x.shape[-1] <= STRIP_MIN_PIXELS:
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    try:
        if torch.compiler.is_compiling():
            return False
    except AttributeError:  # pragma: no cover
        pass
    return not (torch.is_grad_enabled() and x.requires_grad)


class StatisticsTransfer(ClassicalHarmonizer):
    """Move the foreground's per-channel mean and standard deviation towards the background's.

    With foreground statistics ``(mu_f, s_f)`` and background ``(mu_b, s_b)`` in ``color_space``,
    the targets are ``mu = mu_f + strength * (mu_b - mu_f)`` and ``s = s_f + strength * (s_b - s_f)``
    and every foreground value becomes ``(x - mu_f) * s / s_f + mu``: ``strength=0`` keeps the
    composite, ``strength=1`` is the full transfer (Reinhard et al. 2001 in ``lalphabeta``).

    Args:
        strength: in [0, 1].
        color_space: ``"lab"`` (CIE Lab, kornia), ``"lalphabeta"`` (Reinhard's log-LMS space on
            linear sRGB) or ``"rgb"``.
        min_std: floor of ``s_f`` (in the colour space's units) so a flat foreground is not
            divided by zero (it then takes the target mean).
    """

    def __init__(self, strength: float = 0.5, color_space: str = "lab", min_std: float = 1e-3) -> None:
        super().__init__()
        if color_space not in COLOR_SPACES:
            raise ValueError(f"unknown colour space {color_space!r}; expected one of {COLOR_SPACES}")
        self.strength = _check_strength(strength)
        self.color_space = color_space
        self.min_std = float(min_std)

    def extra_repr(self) -> str:
        return f"strength={self.strength}, color_space={self.color_space!r}"

    def _targets(
        self, mu_f: torch.Tensor, s_f: torch.Tensor, w_f: torch.Tensor, mu_b: torch.Tensor, s_b: torch.Tensor, w_b: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-image ``(scale, mu)`` of ``x -> (x - mu_f) * scale + mu`` from the statistics."""
        s = self.strength
        mu = mu_f + s * (mu_b - mu_f)
        sd = s_f + s * (s_b - s_f)
        scale = sd / s_f.clamp_min(self.min_std)
        # no foreground or no background: keep the foreground as it is
        ok = (w_f > 1e-6) & (w_b > 1e-6)
        scale = torch.where(ok, scale, torch.ones_like(scale))
        mu = torch.where(ok, mu, mu_f)
        return scale, mu

    def transfer(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = to_color_space(composite, self.color_space)
        mu_f, s_f, w_f = weighted_mean_std(x, mask)
        mu_b, s_b, w_b = weighted_mean_std(x, 1.0 - mask)
        scale, mu = self._targets(mu_f, s_f, w_f, mu_b, s_b, w_b)
        return from_color_space((x - mu_f) * scale + mu, self.color_space)

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, domain: Optional[str] = None) -> HarmonizationOutput:
        if not _use_strips(composite):
            return super().forward(composite, mask, domain)
        self.resolve_domain(domain)
        self.check_inputs(composite, mask)
        image = self._forward_strips(composite, mask.to(composite.dtype))
        return HarmonizationOutput(image=image, image_normalized=image)

    def _forward_strips(self, composite: torch.Tensor, mask: torch.Tensor, rows: Optional[int] = None) -> torch.Tensor:
        """The same result as the vectorised path, in strips of rows (large images, no autograd):
        one pass accumulates the weighted moments in float64, a second recolours the rows and
        columns that hold foreground. Peak memory: the output plus a few strips."""
        B, _, H, W = composite.shape
        rows = rows or max(16, STRIP_PIXELS // max(W * B, 1))
        # per strip: float32 sums (pairwise, a strip at a time), accumulated in float64
        n_all = torch.zeros(B, 1, dtype=torch.float64, device=composite.device)
        n_fg = torch.zeros_like(n_all)
        sums = torch.zeros(4, B, 3, dtype=torch.float64, device=composite.device)  # x, x^2, m x, m x^2
        for s in range(0, H, rows):
            c, m = composite[:, :, s : s + rows], mask[:, :, s : s + rows]
            x = to_color_space(c, self.color_space)
            x2 = x.square()
            n_all += float(c.shape[-2] * c.shape[-1])
            n_fg += m.sum(dim=(2, 3)).double()
            sums[0] += x.sum(dim=(2, 3)).double()
            sums[1] += x2.sum(dim=(2, 3)).double()
            sums[2] += (x * m).sum(dim=(2, 3)).double()
            sums[3] += (x2 * m).sum(dim=(2, 3)).double()
        stats = []
        for total, sx, sx2 in ((n_fg, sums[2], sums[3]), (n_all - n_fg, sums[0] - sums[2], sums[1] - sums[3])):
            mean = sx / total.clamp_min(1e-6)
            var = (sx2 / total.clamp_min(1e-6) - mean.square()).clamp_min(0.0)
            stats += [t.to(composite.dtype)[:, :, None, None] for t in (mean, var.sqrt(), total)]
        mu_f, s_f, w_f, mu_b, s_b, w_b = stats
        scale, mu = self._targets(mu_f, s_f, w_f, mu_b, s_b, w_b)
        out = composite.clone()
        fg_rows = (mask > 0).any(dim=3).any(dim=1).any(dim=0).nonzero()
        fg_cols = (mask > 0).any(dim=2).any(dim=1).any(dim=0).nonzero()
        if fg_rows.numel() == 0:
            return out
        r0, r1 = int(fg_rows[0]), int(fg_rows[-1]) + 1
        c0, c1 = int(fg_cols[0]), int(fg_cols[-1]) + 1
        for s in range(r0, r1, rows):
            e = min(s + rows, r1)
            c, m = composite[:, :, s:e, c0:c1], mask[:, :, s:e, c0:c1]
            x = to_color_space(c, self.color_space)
            t = from_color_space((x - mu_f) * scale + mu, self.color_space)
            out[:, :, s:e, c0:c1] = c + m * (t - c)
        return out


def _match_channel(src: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Values of 1-D ``src`` mapped to the quantiles of 1-D ``ref`` (ties share one mid-rank
    quantile; linear interpolation between ``ref``'s order statistics)."""
    s_sorted = torch.sort(src).values
    r_sorted = torch.sort(ref).values
    n, k = s_sorted.numel(), r_sorted.numel()
    lo = torch.searchsorted(s_sorted, src, right=False)
    hi = torch.searchsorted(s_sorted, src, right=True)
    q = (lo + hi - 1).to(src.dtype) / (2.0 * max(n - 1, 1))  # mid-rank quantile in [0, 1]
    pos = q * (k - 1)
    i0 = pos.floor().long().clamp(0, k - 1)
    i1 = (i0 + 1).clamp(max=k - 1)
    t = pos - i0.to(pos.dtype)
    return r_sorted[i0] + t * (r_sorted[i1] - r_sorted[i0])


class HistogramMatching(ClassicalHarmonizer):
    """Match each channel's foreground histogram to the background's (equal quantiles).

    Foreground = pixels with ``mask > 0.5``, background = the rest. The matched image is blended
    with the composite by ``strength`` (1 = full matching).

    Args:
        strength: in [0, 1].
        color_space: ``"rgb"`` (per RGB channel, as ``skimage.exposure.match_histograms``),
            ``"lab"`` or ``"lalphabeta"``.
    """

    exportable = False
    export_note = (
        "histogram matching sorts a data-dependent number of foreground and background pixels per image "
        "(no fixed-shape graph); use lab_transfer or reinhard for ONNX / ExportedProgram"
    )

    def __init__(self, strength: float = 1.0, color_space: str = "rgb") -> None:
        super().__init__()
        if color_space not in COLOR_SPACES:
            raise ValueError(f"unknown colour space {color_space!r}; expected one of {COLOR_SPACES}")
        self.strength = _check_strength(strength)
        self.color_space = color_space

    def extra_repr(self) -> str:
        return f"strength={self.strength}, color_space={self.color_space!r}"

    def transfer(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = to_color_space(composite, self.color_space)
        out = x.clone()
        fg_all = mask[:, 0] > 0.5
        for b in range(x.shape[0]):
            fg = fg_all[b]
            if not bool(fg.any()) or bool(fg.all()):
                continue
            for c in range(x.shape[1]):
                ch = x[b, c]
                matched = _match_channel(ch[fg], ch[~fg])
                out[b, c] = ch.masked_scatter(fg, matched)
        if self.strength < 1.0:
            out = x + self.strength * (out - x)
        return from_color_space(out, self.color_space)


# --------------------------------------------------------------------------------------------
# entrypoints
# --------------------------------------------------------------------------------------------
_COMMON = dict(
    input_size=(3, 256, 256),
    size_divisor=1,
    min_size=2,
    tiny_args={},
    license="Apache-2.0 (harmonykit's own implementation)",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
)

default_cfgs: Dict[str, PretrainedCfg] = {
    "identity": PretrainedCfg(
        paper_name="the input composite (no-op reference)",
        notes="weight-free; returns the composite unchanged",
        **_COMMON,
    ),
    "lab_transfer": PretrainedCfg(
        paper_name="foreground Lab mean/std moved towards the background's (statistics transfer)",
        notes="weight-free; strength in [0, 1] (default 0.5 = half-way); full resolution",
        **_COMMON,
    ),
    "reinhard": PretrainedCfg(
        paper_name="Color Transfer between Images (Reinhard et al., IEEE CG&A 2001)",
        paper_ids="doi:10.1109/38.946629",
        notes="weight-free; full mean/std transfer in l-alpha-beta (log LMS of linear sRGB)",
        **_COMMON,
    ),
    "histogram_matching": PretrainedCfg(
        paper_name="per-channel histogram matching of the foreground to the background",
        notes="weight-free; equal-quantile mapping per RGB channel, foreground = mask > 0.5",
        **_COMMON,
    ),
}
register_pretrained_cfgs(default_cfgs)


def _weight_free(fn: Callable[..., Harmonizer]) -> Callable[..., Harmonizer]:
    """Mark an entrypoint as weight-free (``fn.weight_free = True``): nothing to load or train."""
    fn.weight_free = True  # type: ignore[attr-defined]
    return fn


def is_weight_free(name: str) -> bool:
    """Whether registry model ``name`` (``"arch"`` or ``"arch.tag"``) needs no weights (its
    entrypoint is marked ``weight_free``); such models are ready to use as built."""
    from harmonykit.registry import MODELS

    arch = name.partition(".")[0]
    return arch in MODELS and bool(getattr(MODELS.get(arch), "weight_free", False))


def list_weight_free_models() -> List[str]:
    """Registered models that need no weights (the classical baselines and any plugin marked so)."""
    from harmonykit.registry import MODELS

    return [n for n in MODELS.list() if is_weight_free(n)]


def _build(cls: type, name: str, defaults: Dict[str, Any], pretrained: bool, kwargs: Dict[str, Any]) -> Harmonizer:
    kwargs = dict(kwargs)
    pop_pretrained_opts(kwargs)  # nothing to load: pretrained=True is the model as built
    args = dict(defaults)
    args.update({k: v for k, v in kwargs.items() if v is not None})
    accepted = {n for n in inspect.signature(cls.__init__).parameters if n != "self"}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise TypeError(
            f"model {name!r}: unexpected argument(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(sorted(accepted)) or 'none'}"
        )
    return finalize_model(cls(**args), name, args)


@register_model
@_weight_free
def identity(pretrained: bool = False, **kwargs: Any) -> Harmonizer:
    """The composite unchanged (weight-free reference)."""
    return _build(IdentityHarmonizer, "identity", {}, pretrained, kwargs)


@register_model
@_weight_free
def lab_transfer(pretrained: bool = False, **kwargs: Any) -> Harmonizer:
    """Foreground Lab mean/std moved ``strength`` (default 0.5) of the way to the background's."""
    return _build(StatisticsTransfer, "lab_transfer", dict(strength=0.5, color_space="lab"), pretrained, kwargs)


@register_model
@_weight_free
def reinhard(pretrained: bool = False, **kwargs: Any) -> Harmonizer:
    """Reinhard et al. 2001 colour transfer (full strength, l-alpha-beta) of the foreground."""
    return _build(StatisticsTransfer, "reinhard", dict(strength=1.0, color_space="lalphabeta"), pretrained, kwargs)


@register_model
@_weight_free
def histogram_matching(pretrained: bool = False, **kwargs: Any) -> Harmonizer:
    """Per-channel histogram matching of the foreground to the background."""
    return _build(HistogramMatching, "histogram_matching", dict(strength=1.0, color_space="rgb"), pretrained, kwargs)
