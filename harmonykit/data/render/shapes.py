"""Anti-aliased 2D primitives drawn into a G-buffer (:class:`Canvas`).

Coordinates are in *image-height units*: ``y`` runs 0 (top) .. 1 (bottom) and ``x`` runs
0 .. ``W / H``; pixel ``(i, j)`` has its centre at ``((j + 0.5) / H, (i + 0.5) / H)``. Every shape
is a signed distance function (negative inside) evaluated only on the pixels of its bounding
box; coverage is ``clamp(0.5 - sdf / pixel, 0, 1)`` (one-pixel anti-aliased edges).

The canvas keeps, per pixel and premultiplied by coverage (so edges blend correctly):
albedo (3, linear RGB in [0, 1]), a camera-space normal (3; x right, y up, z towards the viewer),
emission (3, linear HDR, scaled by the style at render time), specular strength, "receives cast
shadows", foreground coverage, aerial depth (0 near .. 1 at the horizon) and sky coverage (what is
left uncovered). Shapes drawn later are in front ("painter's order").
"""
from __future__ import annotations

import logging
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "Canvas",
    "Caster",
    "CH_ALBEDO",
    "CH_NORMAL",
    "CH_EMISSION",
    "CH_SPEC",
    "CH_RECEIVE",
    "CH_FG",
    "CH_DEPTH",
    "CH_SKY",
    "NUM_CHANNELS",
    "sdf_circle",
    "sdf_ellipse",
    "sdf_capsule",
    "sdf_box",
    "sdf_polygon",
    "srgb_to_linear",
]

_logger = logging.getLogger(__name__)

CH_ALBEDO = slice(0, 3)
CH_NORMAL = slice(3, 6)
CH_EMISSION = slice(6, 9)
CH_SPEC = 9
CH_RECEIVE = 10
CH_FG = 11
CH_DEPTH = 12
CH_SKY = 13
NUM_CHANNELS = 14

Color = Union[Sequence[float], torch.Tensor]
SdfFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ColorFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def srgb_to_linear(rgb: Color) -> torch.Tensor:
    """sRGB-encoded colour(s) in [0, 1] -> linear, same shape, float32."""
    c = torch.as_tensor(rgb, dtype=torch.float32).clamp(0, 1)
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# ---------------------------------------------------------------------------------------------
# Signed distance functions (all take pixel-centre coordinate grids xs, ys of one shape)
# ---------------------------------------------------------------------------------------------
def sdf_circle(xs: torch.Tensor, ys: torch.Tensor, cx: float, cy: float, r: float) -> torch.Tensor:
    """Disc of radius ``r`` centred at ``(cx, cy)``."""
    return torch.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) - r


def sdf_ellipse(
    xs: torch.Tensor, ys: torch.Tensor, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0
) -> torch.Tensor:
    """Ellipse with radii ``(rx, ry)`` rotated by ``angle`` radians (first-order distance)."""
    ca, sa = float(torch.cos(torch.tensor(angle))), float(torch.sin(torch.tensor(angle)))
    dx, dy = xs - cx, ys - cy
    u = (dx * ca + dy * sa) / rx
    v = (-dx * sa + dy * ca) / ry
    k = torch.sqrt(u * u + v * v)
    return (k - 1.0) * min(rx, ry) * (0.5 + 0.5 * torch.clamp(k, max=1.0))


def sdf_capsule(
    xs: torch.Tensor, ys: torch.Tensor, ax: float, ay: float, bx: float, by: float, ra: float, rb: Optional[float] = None
) -> torch.Tensor:
    """Segment ``a -> b`` thickened by a radius going linearly from ``ra`` to ``rb``."""
    rb = ra if rb is None else rb
    px, py = xs - ax, ys - ay
    vx, vy = bx - ax, by - ay
    h = ((px * vx + py * vy) / max(vx * vx + vy * vy, 1e-12)).clamp(0.0, 1.0)
    return torch.sqrt((px - vx * h) ** 2 + (py - vy * h) ** 2) - (ra + (rb - ra) * h)


def sdf_box(
    xs: torch.Tensor,
    ys: torch.Tensor,
    cx: float,
    cy: float,
    hw: float,
    hh: float,
    radius: float = 0.0,
    angle: float = 0.0,
) -> torch.Tensor:
    """Box of half-size ``(hw, hh)`` with corner ``radius``, rotated by ``angle`` radians."""
    dx, dy = xs - cx, ys - cy
    if angle:
        ca, sa = float(torch.cos(torch.tensor(angle))), float(torch.sin(torch.tensor(angle)))
        dx, dy = dx * ca + dy * sa, -dx * sa + dy * ca
    qx = dx.abs() - (hw - radius)
    qy = dy.abs() - (hh - radius)
    outside = torch.sqrt(qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2)
    inside = torch.maximum(qx, qy).clamp_max(0)
    return outside + inside - radius


def sdf_polygon(xs: torch.Tensor, ys: torch.Tensor, points: Sequence[Tuple[float, float]]) -> torch.Tensor:
    """Convex polygon (vertices in either winding order); exact inside, bevelled outside."""
    pts = list(points)
    n = len(pts)
    if n < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {n}")
    area = sum(pts[i][0] * pts[(i + 1) % n][1] - pts[(i + 1) % n][0] * pts[i][1] for i in range(n))
    sign = 1.0 if area > 0 else -1.0
    d = None
    for i in range(n):
        (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % n]
        ex, ey = x1 - x0, y1 - y0
        norm = max((ex * ex + ey * ey) ** 0.5, 1e-12)
        # outward normal of edge (image y points down)
        nx, ny = sign * ey / norm, -sign * ex / norm
        di = (xs - x0) * nx + (ys - y0) * ny
        d = di if d is None else torch.maximum(d, di)
    assert d is not None
    return d


# ---------------------------------------------------------------------------------------------
# Canvas
# ---------------------------------------------------------------------------------------------
class Caster:
    """Silhouette of one upright object standing at ``base_y``; casts a ground shadow.

    ``mask`` (H, W) in [0, 1], full frame.
    """

    __slots__ = ("mask", "base_y")

    def __init__(self, mask: torch.Tensor, base_y: float) -> None:
        self.mask = mask
        self.base_y = float(base_y)


class Canvas:
    """A G-buffer of ``NUM_CHANNELS x H x W`` that shapes are composited into.

    ``buf`` float32 (14, H, W); see the module docstring for the channels. Starts as pure sky.
    """

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = int(height), int(width)
        self.px = 1.0 / self.h  # one pixel in image-height units
        self.aspect = self.w / self.h
        self.buf = torch.zeros(NUM_CHANNELS, self.h, self.w)
        self.buf[CH_NORMAL.start + 2] = 1.0
        self.buf[CH_SKY] = 1.0
        self.buf[CH_DEPTH] = 1.0
        self._xs = (torch.arange(self.w, dtype=torch.float32) + 0.5) / self.h
        self._ys = (torch.arange(self.h, dtype=torch.float32) + 0.5) / self.h
        self.casters: List[Caster] = []
        self._caster: Optional[torch.Tensor] = None
        self._caster_base = 0.0

    # -- helpers ----------------------------------------------------------------------------
    def grid(self, i0: int = 0, i1: Optional[int] = None, j0: int = 0, j1: Optional[int] = None):
        """Pixel-centre coordinate grids ``(xs, ys)`` of shape (i1-i0, j1-j0)."""
        i1 = self.h if i1 is None else i1
        j1 = self.w if j1 is None else j1
        ys = self._ys[i0:i1, None].expand(i1 - i0, j1 - j0)
        xs = self._xs[None, j0:j1].expand(i1 - i0, j1 - j0)
        return xs, ys

    def _bbox(self, x0: float, y0: float, x1: float, y1: float) -> Optional[Tuple[int, int, int, int]]:
        j0 = max(int((x0 * self.h)) - 2, 0)
        j1 = min(int((x1 * self.h)) + 3, self.w)
        i0 = max(int((y0 * self.h)) - 2, 0)
        i1 = min(int((y1 * self.h)) + 3, self.h)
        if j1 <= j0 or i1 <= i0:
            return None
        return i0, i1, j0, j1

    def begin_caster(self, base_y: float) -> None:
        """Start recording the silhouette of an object standing at ``base_y`` (for shadows)."""
        self._caster = torch.zeros(self.h, self.w)
        self._caster_base = float(base_y)

    def end_caster(self) -> None:
        """Finish the silhouette started by :meth:`begin_caster`."""
        if self._caster is not None and bool(self._caster.any()):
            self.casters.append(Caster(self._caster, self._caster_base))
        self._caster = None

    # -- drawing ------------------------------------------------------------------------------
    def draw(
        self,
        sdf: SdfFn,
        bbox: Tuple[float, float, float, float],
        albedo: Union[Color, ColorFn],
        *,
        thick: float = 0.0,
        normal: Sequence[float] = (0.0, 0.0, 1.0),
        emission: Union[None, Color, ColorFn] = None,
        spec: float = 0.0,
        receive: float = 0.0,
        fg: float = 0.0,
        depth: Union[float, ColorFn] = 0.0,
        opacity: float = 1.0,
    ) -> None:
        """Composite one shape over the canvas.

        ``sdf(xs, ys)`` gives the signed distance on the crop of ``bbox = (x0, y0, x1, y1)``.
        ``albedo`` is a linear RGB colour (3,) or ``f(xs, ys) -> (3, h, w)``. ``thick`` > 0 bends
        the normal like a pillow of that thickness (a disc becomes a sphere, a capsule a
        cylinder); the flat interior keeps ``normal``. ``emission`` (3,) or callable, linear HDR.
        """
        box = self._bbox(*bbox)
        if box is None:
            return
        i0, i1, j0, j1 = box
        xs, ys = self.grid(i0, i1, j0, j1)
        d = sdf(xs, ys)
        cov = (0.5 - d / self.px).clamp(0.0, 1.0) * opacity
        if not bool((cov > 0).any()):
            return
        h, w = cov.shape
        val = torch.empty(NUM_CHANNELS, h, w)
        val[CH_ALBEDO] = albedo(xs, ys) if callable(albedo) else torch.as_tensor(albedo, dtype=torch.float32)[:, None, None]
        base = torch.as_tensor(normal, dtype=torch.float32)
        base = base / base.norm().clamp_min(1e-6)
        if thick > 0:
            gy, gx = torch.gradient(d, spacing=self.px) if min(h, w) > 1 else (torch.zeros_like(d), torch.zeros_like(d))
            gn = torch.sqrt(gx * gx + gy * gy).clamp_min(1e-6)
            s = (1.0 + d / thick).clamp(0.0, 1.0)  # 1 at the edge, 0 deeper than `thick`
            c = torch.sqrt((1.0 - s * s).clamp_min(0.0))
            val[CH_NORMAL.start] = s * gx / gn + c * base[0]
            val[CH_NORMAL.start + 1] = -s * gy / gn + c * base[1]
            val[CH_NORMAL.start + 2] = c * base[2] + 0.05
        else:
            val[CH_NORMAL] = base[:, None, None]
        if emission is None:
            val[CH_EMISSION] = 0.0
        else:
            val[CH_EMISSION] = (
                emission(xs, ys) if callable(emission) else torch.as_tensor(emission, dtype=torch.float32)[:, None, None]
            )
        val[CH_SPEC] = spec
        val[CH_RECEIVE] = receive
        val[CH_FG] = fg
        val[CH_DEPTH] = depth(xs, ys) if callable(depth) else depth
        val[CH_SKY] = 0.0
        region = self.buf[:, i0:i1, j0:j1]
        region.mul_(1.0 - cov).add_(val * cov)
        if self._caster is not None:
            cr = self._caster[i0:i1, j0:j1]
            torch.maximum(cr, cov, out=cr)
