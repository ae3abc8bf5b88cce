"""Lighting pass: one rasterised :class:`~.scene.Scene` x ``S`` styles -> ``S`` RGB renders.

The G-buffer is shaded for all styles at once (tensors with a leading style dimension):

* direct sun / moon light: Lambert ``max(n . l, 0)`` with a blackbody colour, dimmed by clouds,
  plus a Blinn specular lobe on glossy materials (car paint, glass, metal);
* cast shadows on the ground: every upright object's silhouette is projected along the sun
  direction onto the ground plane (a per-object shear/flip through ``grid_sample``), blurred more
  under clouds, and removes the direct light where it falls; a little sky light too;
* ambient sky light from a blackbody "sky temperature" (blue under clear skies, grey when
  overcast), weighted by how much the normal faces up;
* street lamps (2700 K pools of light on the ground, halos) and lit windows / headlights (emission)
  at night and a few at dusk;
* sky: zenith -> horizon gradient (warm horizon at sunrise / sunset), a perspective cloud layer
  whose coverage and colour follow the style, stars at night, a sun glow when the sun is in view;
* aerial perspective (distant surfaces fade to the horizon colour) and a ``1 - exp(-k x)`` tone
  curve, then the sRGB transfer function.

Everything is vectorised over pixels and styles; there are no per-pixel Python loops.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .lighting import NUM_STYLES, StyleParams, sample_style_params
from .scene import Scene, sample_scene
from .shapes import CH_ALBEDO, CH_DEPTH, CH_EMISSION, CH_NORMAL, CH_RECEIVE, CH_SKY, CH_SPEC

__all__ = ["MultiStyleRender", "shade", "cast_shadows", "render_scene", "scene_seed", "parse_size", "linear_to_srgb"]

_logger = logging.getLogger(__name__)

_FOCAL = 1.1  # focal length in image-height units (~49 degrees vertical field of view)

Size = Union[int, Tuple[int, int], Sequence[int]]


def parse_size(size: Size) -> Tuple[int, int]:
    """``256`` or ``(H, W)`` -> ``(H, W)``; each side must be an integer >= 64.

    Raises:
        ValueError: naming the offending value.
    """
    if isinstance(size, (int,)) and not isinstance(size, bool):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"size must be an int or (height, width), got {size!r}") from None
    if h < 64 or w < 64:
        raise ValueError(f"size must be at least 64 pixels per side, got {size!r}")
    return h, w


def scene_seed(seed: int, index: int) -> int:
    """Seed of scene ``index`` of a dataset made with ``seed`` (independent of the scene count)."""
    digest = hashlib.sha256(f"harmonykit-render:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear [0, 1] -> sRGB-encoded [0, 1], same shape."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) (``sigma`` in pixels, replicated borders)."""
    if sigma <= 0.2:
        return x
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def cast_shadows(scene: Scene, sun_dir: torch.Tensor, softness: torch.Tensor) -> torch.Tensor:
    """Ground shadows of the scene's upright objects, ``(S, 1, H, W)`` in [0, 1] (1 = full shadow).

    ``sun_dir`` (S, 3) unit vectors towards the light (camera space), ``softness`` (S,) in [0, 1].
    Computed at half resolution, at most 256 pixels on the longer side (shadows are soft
    anyway; this bounds memory at S x K x 256 x 256), and upsampled.
    """
    h, w = scene.size
    s = sun_dir.shape[0]
    if scene.casters.shape[0] == 0:
        return torch.zeros(s, 1, h, w)
    factor = max(2.0, max(h, w) / 256.0) if min(h, w) >= 128 else 1.0
    sh, sw = max(1, round(h / factor)), max(1, round(w / factor))
    casters = scene.casters[:, None]
    if (sh, sw) != (h, w):
        casters = F.interpolate(casters, size=(sh, sw), mode="area")
    k = casters.shape[0]
    ly = sun_dir[:, 1].clamp_min(0.06)
    sx = (-sun_dir[:, 0] / ly).clamp(-6, 6)  # (S,) image x offset per unit of image height
    sz = (-sun_dir[:, 2] / ly).clamp(-6, 6)  # towards the camera per unit of height (world)
    base = scene.caster_base  # (K,)
    sy = sz[:, None] * ((base - scene.horizon).clamp_min(0.005) / _FOCAL)[None, :]  # (S, K)
    sy = torch.where(sy.abs() < 1e-3, torch.full_like(sy, 1e-3), sy)
    ys = (torch.arange(sh, dtype=torch.float32) + 0.5) / sh  # image-height units
    xs = (torch.arange(sw, dtype=torch.float32) + 0.5) / sh
    Y = ys.view(1, 1, sh, 1)
    X = xs.view(1, 1, 1, sw)
    hgt = (Y - base.view(1, k, 1, 1)) / sy.view(s, k, 1, 1)  # (S, K, sh, 1) height of the occluder
    src_x = X - hgt * sx.view(s, 1, 1, 1)  # (S, K, sh, sw)
    src_y = base.view(1, k, 1, 1) - hgt
    valid = hgt > 0
    gx = torch.where(valid, src_x * (2.0 * sh / sw) - 1.0, torch.full_like(src_x, 3.0))
    gy = torch.where(valid, src_y * 2.0 - 1.0, torch.full_like(src_y, 3.0)).expand_as(gx)
    grid = torch.stack([gx, gy], dim=-1).reshape(s * k, sh, sw, 2)
    src = casters.expand(k, 1, sh, sw).repeat(s, 1, 1, 1)  # (S*K, 1, sh, sw)
    proj = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    proj = proj.view(s, k, sh, sw)
    shadow = 1.0 - torch.prod(1.0 - proj.clamp(0, 1), dim=1, keepdim=True)  # (S, 1, sh, sw)
    scale = sh / 128.0
    sharp = _gauss_blur(shadow, 0.6 * scale)
    soft = _gauss_blur(shadow, 4.0 * scale)
    a = softness.view(s, 1, 1, 1)
    out = sharp * (1 - a) + soft * a
    if (sh, sw) != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
    return out.clamp(0, 1)


def _lamp_fields(scene: Scene) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Street-lamp light: ground pools (H, W), light on upright surfaces (3 dir + falloff) and halos."""
    h, w = scene.size
    ys = ((torch.arange(h, dtype=torch.float32) + 0.5) / h).view(h, 1)
    xs = ((torch.arange(w, dtype=torch.float32) + 0.5) / h).view(1, w)
    pool = torch.zeros(h, w)
    near = torch.zeros(h, w)
    halo = torch.zeros(h, w)
    if scene.lamps.shape[0] == 0:
        return pool, near, halo
    for lx, hy, by, k in scene.lamps.tolist():  # a handful of lamps: loop over lamps, not pixels
        r = 1.6 * k
        pool += torch.exp(-(((xs - lx) / r) ** 2) - ((ys - by) / (r * 0.3 + 1e-4)) ** 2)
        cy = hy + (by - hy) * 0.6
        near += 0.5 * torch.exp(-(((xs - lx) / (r * 1.2)) ** 2) - ((ys - cy) / (r * 1.4)) ** 2)
        halo += torch.exp(-((xs - lx) ** 2 + (ys - hy) ** 2) / (0.45 * k) ** 2)
    return pool, near, halo


def _sky_radiance(scene: Scene, params: StyleParams, rows: int) -> torch.Tensor:
    """Linear HDR sky of the top ``rows`` rows, ``(S, 3, rows, W)``: gradient, clouds, stars, sun."""
    h, w = scene.size
    s = len(params)
    col = lambda t: t.view(s, 3, 1, 1)  # noqa: E731
    one = lambda t: t.view(s, 1, 1, 1)  # noqa: E731
    L = params.sun_dir
    ys = ((torch.arange(rows, dtype=torch.float32) + 0.5) / h).view(1, 1, rows, 1)
    xs = ((torch.arange(w, dtype=torch.float32) + 0.5) / h).view(1, 1, 1, w)
    hz = scene.horizon
    t = ((hz - ys) / max(hz, 1e-3)).clamp(0, 1) ** 0.55
    sky_rgb = col(params.horizon_rgb) * (1 - t) + col(params.zenith_rgb) * t  # (S, 3, rows, 1)
    cover = one(params.cloud_cover)
    thr = torch.special.ndtri((1.0 - cover).clamp(0.02, 0.98))
    cl = scene.clouds[None, None, :rows]
    alpha = torch.sigmoid((cl - thr) / 0.35)
    alpha = alpha * (cover / 0.2).clamp(max=1.0)  # (almost) no cloud in a clear sky
    alpha = torch.maximum(alpha, ((cover - 0.8) * 5.0).clamp(0, 1) * 0.92)
    alpha = alpha * (1.0 - (ys > hz - 0.005).float() * 0.5)
    cloud_rgb = (col(params.ambient_rgb) * 1.5 + col(params.sun_rgb) * 0.22 * (1 - cover)) * (0.78 + 0.22 * torch.tanh(cl))
    cloud_rgb = cloud_rgb * one(params.cloud_brightness)
    sky_full = sky_rgb * (1 - alpha) + cloud_rgb * alpha
    sky_full = sky_full + scene.stars[None, None, :rows] * one(params.star_intensity) * 0.25 * (1 - alpha)
    # sun glow when the sun is in front of the camera (behind the scene)
    lz = (-L[:, 2]).clamp_min(1e-3)
    sun_x = xs.new_tensor(w / h / 2) + _FOCAL * L[:, 0] / lz
    sun_y = hz - _FOCAL * L[:, 1] / lz
    in_view = (L[:, 2] < -0.05).float() * (1.0 - params.cloud_cover * 0.85)
    d2 = (xs - one(sun_x)) ** 2 + (ys - one(sun_y)) ** 2
    glow = col(params.sun_rgb) * one(in_view) * (0.25 * torch.exp(-d2 / 0.03) + 2.0 * torch.exp(-d2 / 0.0004))
    return sky_full + glow * (1 - 0.7 * alpha)


_MAX_CHUNK_VALUES = 8_000_000  # bound the (S, 3, H, W) temporaries of one shading pass


def shade(scene: Scene, params: StyleParams) -> torch.Tensor:
    """Render ``scene`` under every lighting in ``params``: ``(S, 3, H, W)`` sRGB in [0, 1].

    Large images are shaded a few styles at a time to bound memory (same result).
    """
    h, w = scene.size
    chunk = max(1, _MAX_CHUNK_VALUES // (3 * h * w))
    if len(params) <= chunk:
        return _shade(scene, params)
    return torch.cat([_shade(scene, params.select(slice(i, i + chunk))) for i in range(0, len(params), chunk)])


def _shade(scene: Scene, params: StyleParams) -> torch.Tensor:
    g = scene.gbuf
    h, w = scene.size
    s = len(params)
    albedo = g[CH_ALBEDO][None]  # (1, 3, H, W), premultiplied by surface coverage
    n = g[CH_NORMAL]
    n = n / n.norm(dim=0, keepdim=True).clamp_min(1e-6)
    emission = g[CH_EMISSION][None]
    spec_w = g[CH_SPEC][None, None]
    receive = g[CH_RECEIVE][None, None]
    depth = g[CH_DEPTH][None, None]
    sky = g[CH_SKY][None, None]
    surf = 1.0 - sky

    col = lambda t: t.view(s, 3, 1, 1)  # noqa: E731
    one = lambda t: t.view(s, 1, 1, 1)  # noqa: E731

    L = params.sun_dir
    ndotl = torch.einsum("sc,chw->shw", L, n)[:, None]  # (S, 1, H, W)
    shadow = cast_shadows(scene, L, params.shadow_softness)
    lit = 1.0 - shadow * receive
    direct = col(params.sun_rgb) * ndotl.clamp_min(0.0) * lit
    up = n[1][None, None]
    ambient = col(params.ambient_rgb) * (0.6 + 0.4 * up) * (1.0 - 0.3 * shadow * receive)

    pool, near, halo = _lamp_fields(scene)
    lamp_light = pool[None, None] * receive + near[None, None] * (1.0 - receive) * (0.5 + 0.5 * n[2].clamp_min(0))[None, None]
    lamp = col(params.lamp_rgb) * lamp_light

    half = L + torch.tensor([0.0, 0.0, 1.0])
    half = half / half.norm(dim=1, keepdim=True)
    ndoth = torch.einsum("sc,chw->shw", half, n)[:, None].clamp_min(0.0)
    spec = spec_w * ndoth**40 * col(params.sun_rgb) * 1.5 * lit * (ndotl > 0).float()

    surface = albedo * (direct + ambient + lamp) + spec + emission * one(params.window_emission)

    horizon = col(params.horizon_rgb)
    fog = one(params.haze) * depth**2.5
    surface = surface * (1 - fog) + horizon * surf * fog
    hdr = surface + col(params.lamp_rgb) * 0.08 * halo[None, None]
    # the sky only where some of it shows (rows above the ground): about half the work
    rows = torch.nonzero(g[CH_SKY].amax(dim=1) > 0)
    r = int(rows.max()) + 1 if rows.numel() else 0
    if r > 0:
        hdr[:, :, :r] += sky[:, :, :r] * _sky_radiance(scene, params, r)
    out = 1.0 - torch.exp(-one(params.exposure) * hdr.clamp_min(0.0))
    return linear_to_srgb(out)


@dataclass
class MultiStyleRender:
    """One scene under ``S`` styles.

    ``images`` (S, 3, H, W) float32 sRGB in [0, 1]; ``mask`` (1, H, W) float32 in {0, 1};
    ``coverage`` (1, H, W) soft mask in [0, 1]; ``styles`` (S,) int64 0-based style ids;
    ``params`` the sampled lighting; ``scene`` the G-buffer and scene metadata.
    """

    images: torch.Tensor
    mask: torch.Tensor
    coverage: torch.Tensor
    styles: torch.Tensor
    params: StyleParams
    scene: Scene

    @property
    def category(self) -> str:
        return self.scene.category


def render_scene(
    seed: int = 0,
    size: Size = 256,
    styles: Optional[Sequence[int]] = None,
    generator: Optional[torch.Generator] = None,
) -> MultiStyleRender:
    """Sample one scene and render it under ``styles`` (0-based ids, default all 10 in order).

    Deterministic: the same ``seed`` (or generator state) and size give identical tensors.
    """
    h, w = parse_size(size)
    gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    scene = sample_scene(gen, h, w)
    params = sample_style_params(list(range(NUM_STYLES)) if styles is None else styles, gen, sun_side=scene.sun_side)
    images = shade(scene, params)
    return MultiStyleRender(
        images=images, mask=scene.mask, coverage=scene.coverage, styles=params.style, params=params, scene=scene
    )
