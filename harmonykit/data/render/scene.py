"""Random 2D street / park scenes rasterised once into a G-buffer (lighting comes later).

A scene is: a sky (perspective cloud layer and stars, lit per style), optional distant hills,
a row of buildings on the horizon (front and side faces, windows that light up at night), a
textured ground (grass, asphalt, paving, sand or dirt, maybe a road), background props (trees,
street lamps, bushes, benches, people) and ONE foreground object whose coverage is the mask:
a human figure (head, hair, torso, arms, legs, shoes), a car, a cow-like animal, a motorcycle,
a bench or a tree. Sizes follow a pinhole camera at height ``camera_height`` metres looking at the horizon:
an object of ``h`` metres standing at image row ``y`` is ``(y - horizon) * h / camera_height``
image heights tall, so every person's head sits near the horizon.

Everything is drawn from one ``torch.Generator`` in a fixed order: same generator state -> the
same scene, bit for bit.
"""
from __future__ import annotations

import colorsys
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .shapes import (
    CH_FG,
    Canvas,
    sdf_box,
    sdf_capsule,
    sdf_circle,
    sdf_ellipse,
    sdf_polygon,
    srgb_to_linear,
)

__all__ = ["Scene", "CATEGORIES", "sample_scene", "value_noise"]

_logger = logging.getLogger(__name__)

CATEGORIES: Tuple[str, ...] = ("human", "car", "animal", "bench", "tree", "motorcycle")
_CATEGORY_WEIGHTS = (0.4, 0.13, 0.13, 0.11, 0.11, 0.12)


@dataclass
class Scene:
    """A rasterised scene, independent of lighting.

    ``gbuf`` (14, H, W) float32 G-buffer (see :mod:`.shapes`); ``mask`` (1, H, W) float32 in {0, 1}
    (foreground coverage >= 0.5); ``coverage`` (1, H, W) soft foreground coverage in [0, 1];
    ``casters`` (K, H, W) silhouettes in [0, 1] with ``caster_base`` (K,) ground rows (image-height
    units); ``lamps`` (L, 4) street lamps as (x, head_y, base_y, metres-to-units scale);
    ``clouds`` (H, W) zero-mean unit-variance cloud field (sky only); ``stars`` (H, W) in [0, 1].
    """

    gbuf: torch.Tensor
    mask: torch.Tensor
    coverage: torch.Tensor
    casters: torch.Tensor
    caster_base: torch.Tensor
    lamps: torch.Tensor
    clouds: torch.Tensor
    stars: torch.Tensor
    horizon: float
    camera_height: float
    category: str
    sun_side: float
    info: dict = field(default_factory=dict)

    @property
    def size(self) -> Tuple[int, int]:
        """(H, W)."""
        return int(self.gbuf.shape[1]), int(self.gbuf.shape[2])


# ---------------------------------------------------------------------------------------------
# Random helpers
# ---------------------------------------------------------------------------------------------
class _Rng:
    """Scalar draws from a ``torch.Generator`` (so that scenes are reproducible by seed)."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.gen))

    def i(self, lo: int, hi: int) -> int:
        """Integer in [lo, hi] inclusive."""
        return int(torch.randint(lo, hi + 1, (), generator=self.gen))

    def p(self, prob: float) -> bool:
        return self.u() < prob

    def choice(self, seq: Sequence, weights: Optional[Sequence[float]] = None):
        if weights is None:
            return seq[self.i(0, len(seq) - 1)]
        w = torch.tensor(weights, dtype=torch.float32)
        return seq[int(torch.multinomial(w, 1, generator=self.gen))]

    def hsv(self, h: Tuple[float, float], s: Tuple[float, float], v: Tuple[float, float]) -> torch.Tensor:
        """A linear RGB colour from sRGB-space HSV ranges."""
        rgb = colorsys.hsv_to_rgb(self.u(*h) % 1.0, self.u(*s), self.u(*v))
        return srgb_to_linear(rgb)

    def jitter(self, rgb: Sequence[float], amount: float = 0.08) -> torch.Tensor:
        """Linear RGB of an sRGB palette colour, each channel jittered by +-amount."""
        c = torch.tensor([x + self.u(-amount, amount) for x in rgb])
        return srgb_to_linear(c.clamp(0.02, 0.98))


def value_noise(gen: torch.Generator, h: int, w: int, cells: int = 8, octaves: int = 4) -> torch.Tensor:
    """Fractal value noise (H, W), roughly zero mean / unit variance (bicubic-upsampled grids)."""
    out = torch.zeros(1, 1, h, w)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = cells * 2**o
        grid = torch.randn(1, 1, max(2, n * h // max(h, w) + 1), max(2, n * w // max(h, w) + 1), generator=gen)
        out += amp * F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        total += amp * amp
        amp *= 0.55
    out = out[0, 0] / math.sqrt(total)
    return (out - out.mean()) / out.std().clamp_min(1e-6)


# ---------------------------------------------------------------------------------------------
# Palettes (sRGB)
# ---------------------------------------------------------------------------------------------
_SKIN = ((0.96, 0.80, 0.69), (0.88, 0.68, 0.54), (0.74, 0.54, 0.40), (0.56, 0.39, 0.27), (0.38, 0.26, 0.18))
_HAIR = ((0.08, 0.06, 0.05), (0.25, 0.16, 0.09), (0.45, 0.30, 0.16), (0.80, 0.66, 0.40), (0.62, 0.60, 0.58))
_WALL = (
    (0.62, 0.30, 0.22),
    (0.64, 0.63, 0.60),
    (0.84, 0.76, 0.62),
    (0.90, 0.88, 0.84),
    (0.72, 0.60, 0.50),
    (0.55, 0.58, 0.64),
    (0.80, 0.70, 0.52),
)
_GROUND = {
    "grass": (0.32, 0.46, 0.18),
    "asphalt": (0.32, 0.32, 0.34),
    "paving": (0.62, 0.57, 0.50),
    "sand": (0.80, 0.71, 0.53),
    "dirt": (0.46, 0.37, 0.27),
}
_FOLIAGE = ((0.22, 0.40, 0.14), (0.30, 0.45, 0.16), (0.18, 0.32, 0.15), (0.45, 0.50, 0.20), (0.55, 0.40, 0.15))


class _Builder:
    """Draws one scene into a :class:`Canvas` (keeps the shared state of the drawing code)."""

    def __init__(self, rng: _Rng, h: int, w: int) -> None:
        self.rng = rng
        self.c = Canvas(h, w)
        self.h, self.w = h, w
        self.aspect = w / h
        self.horizon = rng.u(0.36, 0.52)
        self.cam_h = rng.u(1.35, 2.2)
        self.tex = value_noise(rng.gen, h, w, cells=40, octaves=2)  # size-independent draws
        self.ground_tex = self._ground_noise()
        self.lamps: List[Tuple[float, float, float, float]] = []

    # -- utilities ---------------------------------------------------------------------------
    def _ground_noise(self) -> torch.Tensor:
        """Noise (H, W) on the ground plane seen in perspective (finer towards the horizon)."""
        xs, ys = self.c.grid()
        below = (ys - self.horizon).clamp_min(0.004)
        v = 1.0 / below
        u = (xs - self.aspect / 2) * v
        tex = torch.randn(1, 1, 96, 96, generator=self.rng.gen)
        out = torch.zeros_like(xs)
        off = torch.rand(2, generator=self.rng.gen) * 2 - 1
        for o, amp in enumerate((1.0, 0.6, 0.35)):
            f = 2.0**o
            grid = torch.stack([u * 0.25 * f + off[0], v * 0.25 * f + off[1]], dim=-1)[None]
            out += amp * F.grid_sample(tex, grid, mode="bilinear", padding_mode="reflection", align_corners=False)[0, 0]
        # fade the (aliasing) detail out towards the horizon
        out = out * (below / (below + 0.08))
        return out / out.std().clamp_min(1e-6)

    def scale_at(self, base_y: float) -> float:
        """Image-height units per metre for an object standing at row ``base_y``."""
        return max(base_y - self.horizon, 1e-3) / self.cam_h

    def depth_at(self, base_y: float) -> float:
        return float(min(max(1.0 - (base_y - self.horizon) / (1.0 - self.horizon), 0.0), 1.0))

    def textured(
        self, color: torch.Tensor, amount: float, ground: bool = False
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Albedo callable: ``color`` modulated by the scene's texture noise (+-amount)."""
        tex = self.ground_tex if ground else self.tex
        h, w = self.h, self.w

        def fn(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            i = (ys[:, 0] * h).long().clamp(0, h - 1)
            j = (xs[0] * h).long().clamp(0, w - 1)
            t = tex[i][:, j]
            return (color[:, None, None] * (1.0 + amount * torch.tanh(t))).clamp(0.0, 1.0)

        return fn

    # -- background -----------------------------------------------------------------------------
    def hills(self) -> None:
        r = self.rng
        hz = self.horizon
        amp = r.u(0.03, 0.1)
        freqs = [(r.u(2, 5), r.u(0, 6.28), r.u(0.4, 1.0)), (r.u(6, 14), r.u(0, 6.28), r.u(0.1, 0.35))]
        col = r.jitter(r.choice(_FOLIAGE), 0.05) * 0.8

        def sdf(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            prof = sum(a * torch.sin(f * xs + p) for f, p, a in freqs)
            top = hz - amp * (0.6 + 0.4 * prof / 1.35)
            return (top - ys) * 0.7

        self.c.draw(sdf, (0, hz - amp * 1.2, self.aspect, hz + 0.01), col, depth=0.95, normal=(0, 0.4, 1))

    def buildings(self) -> None:
        r = self.rng
        hz = self.horizon
        x = r.u(-0.3, 0.0)
        while x < self.aspect:
            if r.p(0.22):  # a gap
                x += r.u(0.05, 0.2)
                continue
            base = hz + r.u(0.0, 0.035)
            k = self.scale_at(base)
            bw = k * r.u(8, 26)
            bh = k * r.u(7, 32)
            self._building(x, base, bw, bh, k)
            x += bw + r.u(-0.02, 0.05)

    def _building(self, x0: float, base: float, bw: float, bh: float, k: float) -> None:
        r = self.rng
        wall = r.jitter(r.choice(_WALL), 0.06)
        top = base - bh
        depth = min(0.98, self.depth_at(base) * 0.92)
        side = r.choice((-1.0, 1.0))
        sw = bw * r.u(0.08, 0.3)
        # side face (a parallelogram receding towards the horizon)
        if side > 0:
            pts = [(x0 + bw, top), (x0 + bw + sw, top + 0.15 * sw), (x0 + bw + sw, base - 0.05 * sw), (x0 + bw, base)]
        else:
            pts = [(x0, top), (x0 - sw, top + 0.15 * sw), (x0 - sw, base - 0.05 * sw), (x0, base)]
        bx0, bx1 = min(p[0] for p in pts), max(p[0] for p in pts)
        self.c.draw(
            lambda xs, ys: sdf_polygon(xs, ys, pts),
            (bx0, top, bx1, base),
            self.textured(wall * 0.95, 0.12),
            normal=(side * 0.85, 0.0, 0.5),
            depth=depth,
        )
        # front face with a window grid
        nx_w = max(1, int(bw / (k * r.u(2.6, 4.0))))
        ny_w = max(1, int(bh / (k * r.u(3.0, 3.8))))
        cell_w, cell_h = bw / nx_w, bh / ny_w
        win_fx, win_fy = r.u(0.35, 0.65), r.u(0.35, 0.6)
        glass = r.jitter((0.12, 0.14, 0.17), 0.04)
        lit_frac = r.u(0.2, 0.7)
        seed = r.u(0, 100)
        warm = torch.tensor([1.0, 0.72, 0.38]) * r.u(0.6, 1.0)
        wall_tex = self.textured(wall, 0.1)
        ground_floor = base - cell_h * 1.0

        def window_mask(xs: torch.Tensor, ys: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            u = (xs - x0) / cell_w
            v = (ys - top) / cell_h
            fu, fv = u - u.floor(), v - v.floor()
            du = (fu - 0.5).abs() - win_fx / 2
            dv = (fv - 0.5).abs() - win_fy / 2
            d = torch.maximum(du * cell_w, dv * cell_h)
            m = (0.5 - d / self.c.px).clamp(0, 1) * (ys < ground_floor + cell_h * 0.2).float()
            cell_id = u.floor() * 17.0 + v.floor() * 131.0 + seed
            rnd = torch.frac(torch.sin(cell_id * 12.9898) * 43758.5453).abs()
            return m, (rnd < lit_frac).float()

        def albedo(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            m, _ = window_mask(xs, ys)
            return wall_tex(xs, ys) * (1 - m) + glass[:, None, None] * m

        def emission(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            m, lit = window_mask(xs, ys)
            return warm[:, None, None] * (m * lit)

        self.c.draw(
            lambda xs, ys: sdf_box(xs, ys, x0 + bw / 2, top + bh / 2, bw / 2, bh / 2),
            (x0, top, x0 + bw, base),
            albedo,
            emission=emission,
            normal=(0.0, 0.0, 1.0),
            spec=0.15,
            depth=depth,
        )
        if r.p(0.35):  # a pitched roof
            rh = bw * r.u(0.15, 0.35)
            pts2 = [(x0 - bw * 0.02, top), (x0 + bw / 2, top - rh), (x0 + bw * 1.02, top)]
            roof = r.jitter((0.45, 0.22, 0.16) if r.p(0.6) else (0.3, 0.3, 0.33), 0.05)
            self.c.draw(
                lambda xs, ys: sdf_polygon(xs, ys, pts2), (x0 - bw * 0.03, top - rh, x0 + bw * 1.03, top), roof,
                normal=(0.0, 0.75, 0.66), depth=depth,
            )
        elif r.p(0.6):  # a parapet
            self.c.draw(
                lambda xs, ys: sdf_box(xs, ys, x0 + bw / 2, top, bw / 2 * 1.02, k * 0.25),
                (x0 - bw * 0.02, top - k * 0.3, x0 + bw * 1.02, top + k * 0.3),
                wall * 0.8,
                normal=(0.0, 0.6, 0.8),
                depth=depth,
            )

    def ground(self) -> str:
        r = self.rng
        hz = self.horizon
        kind = r.choice(tuple(_GROUND), weights=(0.3, 0.25, 0.25, 0.1, 0.1))
        col = r.jitter(_GROUND[kind], 0.05)
        amt = {"grass": 0.35, "asphalt": 0.12, "paving": 0.18, "sand": 0.12, "dirt": 0.25}[kind]
        tex = self.textured(col, amt, ground=True)
        depth = lambda xs, ys: (1.0 - (ys - hz) / (1.0 - hz)).clamp(0, 1)  # noqa: E731
        full = (0.0, hz - 0.01, self.aspect, 1.0)
        self.c.draw(lambda xs, ys: hz - ys, full, tex, normal=(0, 1, 0), receive=1.0, depth=depth)
        if kind in ("asphalt", "paving") or r.p(0.25):  # a road to the vanishing point
            vx = r.u(0.2, 0.8) * self.aspect
            half_far = r.u(0.002, 0.01)
            lo = r.u(-0.6, 0.4) * self.aspect
            hi = lo + r.u(0.6, 1.4) * self.aspect
            pts = [(vx - half_far, hz), (vx + half_far, hz), (hi, 1.2), (lo, 1.2)]
            road = self.textured(r.jitter((0.25, 0.25, 0.27), 0.03), 0.1, ground=True)
            self.c.draw(lambda xs, ys: sdf_polygon(xs, ys, pts), (min(lo, vx), hz, max(hi, vx), 1.0), road,
                        normal=(0, 1, 0), receive=1.0, depth=depth, spec=0.05)
            mid = (lo + hi) / 2
            line = srgb_to_linear((0.85, 0.82, 0.7) if r.p(0.5) else (0.85, 0.7, 0.2))

            def dash(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
                t = ((ys - hz) / (1.2 - hz)).clamp_min(1e-4)
                cx = vx + (mid - vx) * t
                wdt = 0.004 + 0.012 * t
                d_line = (xs - cx).abs() - wdt
                phase = torch.frac(3.0 / t)  # dashes shrink with distance
                d_dash = ((phase - 0.5).abs() - 0.25) * 0.08 * t
                return torch.maximum(d_line, d_dash)

            self.c.draw(dash, (min(vx, mid) - 0.05, hz + 0.02, max(vx, mid) + 0.05, 1.0), line,
                        normal=(0, 1, 0), receive=1.0, depth=depth)
        return kind

    # -- objects --------------------------------------------------------------------------------
    def human(self, cx: float, base: float, k: float, fg: float = 0.0) -> None:
        r = self.rng
        c = self.c
        H = k * r.u(1.55, 1.9)
        d = self.depth_at(base)
        skin = r.jitter(r.choice(_SKIN), 0.03)
        hair = r.jitter(r.choice(_HAIR), 0.03)
        shirt = r.hsv((0, 1), (0.2, 0.85), (0.3, 0.95))
        pants = r.hsv((0, 1), (0.1, 0.6), (0.12, 0.6)) if r.p(0.7) else r.hsv((0.55, 0.65), (0.4, 0.7), (0.3, 0.6))
        shoes = r.jitter((0.12, 0.1, 0.1) if r.p(0.6) else (0.85, 0.85, 0.85), 0.04)
        long_sleeves, shorts, dress = r.p(0.5), r.p(0.25), r.p(0.15)
        y = lambda f: base - f * H  # noqa: E731  (fraction of height above the ground -> row)
        common = dict(fg=fg, depth=d)
        s = r.choice((-1.0, 1.0))  # facing
        stride = r.u(0.0, 0.12) * H
        hip_w, sh_w = 0.07 * H, 0.105 * H
        # legs: far leg first
        hip_y, knee_y, ank_y = y(0.49), y(0.27), y(0.045)
        for side in (-1.0, 1.0):
            off = side * stride
            hx = cx + side * hip_w * 0.55
            kx = hx + off * 0.5 + s * r.u(-0.01, 0.02) * H
            ax = hx + off
            lower = skin if shorts else pants
            c.draw(lambda xs, ys, a=(hx, hip_y, kx, knee_y): sdf_capsule(xs, ys, *a, 0.042 * H, 0.034 * H),
                   (min(hx, kx) - 0.05 * H, hip_y - 0.05 * H, max(hx, kx) + 0.05 * H, knee_y + 0.05 * H),
                   self.textured(pants, 0.08), thick=0.04 * H, **common)
            c.draw(lambda xs, ys, a=(kx, knee_y, ax, ank_y): sdf_capsule(xs, ys, *a, 0.033 * H, 0.026 * H),
                   (min(kx, ax) - 0.04 * H, knee_y - 0.04 * H, max(kx, ax) + 0.04 * H, ank_y + 0.04 * H),
                   lower, thick=0.03 * H, **common)
            c.draw(lambda xs, ys, a=(ax + s * 0.025 * H, base - 0.022 * H): sdf_ellipse(xs, ys, *a, 0.05 * H, 0.024 * H),
                   (ax - 0.08 * H, base - 0.05 * H, ax + 0.08 * H, base + 0.01 * H), shoes, thick=0.02 * H,
                   spec=0.2, **common)
        # torso (+ skirt)
        if dress:
            pts = [(cx - 0.09 * H, y(0.6)), (cx + 0.09 * H, y(0.6)), (cx + 0.15 * H, y(0.33)), (cx - 0.15 * H, y(0.33))]
            c.draw(lambda xs, ys: sdf_polygon(xs, ys, pts) - 0.01 * H, (cx - 0.17 * H, y(0.62), cx + 0.17 * H, y(0.31)),
                   self.textured(shirt, 0.06), thick=0.06 * H, **common)
        c.draw(lambda xs, ys: sdf_box(xs, ys, cx, y(0.50), hip_w * 1.35, 0.05 * H, 0.03 * H),
               (cx - 0.12 * H, y(0.56), cx + 0.12 * H, y(0.44)), pants, thick=0.05 * H, **common)
        torso_pts = [(cx - sh_w, y(0.82)), (cx + sh_w, y(0.82)), (cx + hip_w * 1.2, y(0.5)), (cx - hip_w * 1.2, y(0.5))]
        c.draw(lambda xs, ys: sdf_polygon(xs, ys, torso_pts) - 0.025 * H,
               (cx - sh_w - 0.03 * H, y(0.85), cx + sh_w + 0.03 * H, y(0.47)),
               self.textured(shirt, 0.07), thick=0.09 * H, **common)
        # neck, head, hair
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, cx, y(0.83), cx, y(0.88), 0.028 * H),
               (cx - 0.04 * H, y(0.9), cx + 0.04 * H, y(0.8)), skin, thick=0.025 * H, **common)
        hy, hrx, hry = y(0.925), 0.052 * H, 0.066 * H
        long_hair = r.p(0.35)
        if long_hair:
            c.draw(lambda xs, ys: sdf_box(xs, ys, cx - s * 0.01 * H, hy + 0.04 * H, hrx * 1.15, 0.07 * H, 0.04 * H),
                   (cx - 0.08 * H, hy - 0.04 * H, cx + 0.08 * H, hy + 0.12 * H), hair, thick=0.03 * H, **common)
        c.draw(lambda xs, ys: sdf_ellipse(xs, ys, cx + s * 0.006 * H, hy, hrx, hry),
               (cx - 0.07 * H, hy - 0.08 * H, cx + 0.07 * H, hy + 0.08 * H), skin, thick=hrx, **common)
        c.draw(lambda xs, ys: torch.maximum(sdf_ellipse(xs, ys, cx - s * 0.004 * H, hy - 0.008 * H, hrx * 1.08, hry * 1.05),
                                            ys - (hy - 0.025 * H + s * 0.0 * xs)),
               (cx - 0.07 * H, hy - 0.09 * H, cx + 0.07 * H, hy), hair, thick=hrx * 0.8, **common)
        # arms: upper arm, forearm, hand
        for side in (-1.0, 1.0):
            shx, shy = cx + side * (sh_w - 0.01 * H), y(0.8)
            raise_arm = r.p(0.15)
            a1 = math.radians(r.u(-8, 25) if not raise_arm else r.u(100, 150))
            a2 = a1 + math.radians(r.u(0, 40))
            ex = shx + side * math.sin(a1) * 0.16 * H
            ey = shy + math.cos(a1) * 0.16 * H
            wx = ex + side * math.sin(a2) * 0.15 * H
            wy = ey + math.cos(a2) * 0.15 * H
            c.draw(lambda xs, ys, a=(shx, shy, ex, ey): sdf_capsule(xs, ys, *a, 0.032 * H, 0.026 * H),
                   (min(shx, ex) - 0.04 * H, min(shy, ey) - 0.04 * H, max(shx, ex) + 0.04 * H, max(shy, ey) + 0.04 * H),
                   self.textured(shirt, 0.07), thick=0.03 * H, **common)
            c.draw(lambda xs, ys, a=(ex, ey, wx, wy): sdf_capsule(xs, ys, *a, 0.026 * H, 0.021 * H),
                   (min(ex, wx) - 0.04 * H, min(ey, wy) - 0.04 * H, max(ex, wx) + 0.04 * H, max(ey, wy) + 0.04 * H),
                   shirt if long_sleeves else skin, thick=0.025 * H, **common)
            hx2, hy2 = wx + side * math.sin(a2) * 0.025 * H, wy + math.cos(a2) * 0.025 * H
            c.draw(lambda xs, ys, a=(hx2, hy2): sdf_circle(xs, ys, *a, 0.026 * H),
                   (hx2 - 0.03 * H, hy2 - 0.03 * H, hx2 + 0.03 * H, hy2 + 0.03 * H), skin, thick=0.025 * H, **common)

    def car(self, cx: float, base: float, k: float, fg: float = 0.0) -> None:
        r = self.rng
        c = self.c
        L, H = k * r.u(3.9, 4.7), k * r.u(1.35, 1.6)
        d = self.depth_at(base)
        if r.p(0.6):
            paint = r.hsv((0, 1), (0.0, 0.85), (0.25, 0.9))
        else:  # white, black or silver
            paint = r.jitter(r.choice(((0.85,) * 3, (0.1,) * 3, (0.55,) * 3)), 0.03)
        glass = srgb_to_linear((0.12, 0.15, 0.2))
        s = r.choice((-1.0, 1.0))  # front direction
        common = dict(fg=fg, depth=d)
        bh_top, bh_bot = base - 0.62 * H, base - 0.17 * H
        cab = [
            (cx - s * 0.32 * L, bh_top + 0.02 * H), (cx - s * 0.22 * L, base - 0.98 * H),
            (cx + s * 0.08 * L, base - 0.98 * H), (cx + s * 0.24 * L, bh_top + 0.02 * H),
        ]
        c.draw(lambda xs, ys: sdf_polygon(xs, ys, cab) - 0.015 * H, (cx - 0.36 * L, base - H, cx + 0.36 * L, bh_top + 0.05 * H),
               paint, thick=0.05 * H, normal=(0, 0.35, 1), spec=0.7, **common)
        win = [
            (cx - s * 0.28 * L, bh_top), (cx - s * 0.2 * L, base - 0.92 * H),
            (cx + s * 0.06 * L, base - 0.92 * H), (cx + s * 0.19 * L, bh_top),
        ]
        c.draw(lambda xs, ys: sdf_polygon(xs, ys, win), (cx - 0.32 * L, base - H, cx + 0.32 * L, bh_top + 0.02 * H), glass,
               normal=(0, 0.4, 1), spec=1.0, **common)
        c.draw(lambda xs, ys: sdf_box(xs, ys, cx - s * 0.075 * L, (bh_top + base - 0.92 * H) / 2, 0.012 * L, 0.16 * H),
               (cx - 0.12 * L, base - H, cx + 0.12 * L, bh_top), paint, normal=(0, 0.2, 1), **common)
        c.draw(lambda xs, ys: sdf_box(xs, ys, cx, (bh_top + bh_bot) / 2, L / 2, (bh_bot - bh_top) / 2, 0.12 * H),
               (cx - L / 2, bh_top, cx + L / 2, bh_bot), paint, thick=0.12 * H, normal=(0, 0.25, 1), spec=0.6, **common)
        lamp_front = torch.tensor([1.0, 0.95, 0.8])
        c.draw(lambda xs, ys: sdf_box(xs, ys, cx + s * 0.48 * L, bh_top + 0.12 * H, 0.025 * L, 0.05 * H, 0.02 * H),
               (cx - 0.52 * L, bh_top, cx + 0.52 * L, bh_top + 0.2 * H), srgb_to_linear((0.9, 0.9, 0.85)),
               emission=lamp_front * 1.5, **common)
        c.draw(lambda xs, ys: sdf_box(xs, ys, cx - s * 0.49 * L, bh_top + 0.12 * H, 0.015 * L, 0.05 * H, 0.01 * H),
               (cx - 0.52 * L, bh_top, cx + 0.52 * L, bh_top + 0.2 * H), srgb_to_linear((0.7, 0.05, 0.05)),
               emission=torch.tensor([0.8, 0.02, 0.02]), **common)
        for wxf in (-0.31, 0.31):
            wx, wy, wr = cx + wxf * L, base - 0.17 * H, 0.17 * H
            c.draw(lambda xs, ys, a=(wx, wy): sdf_circle(xs, ys, *a, wr), (wx - wr, wy - wr, wx + wr, wy + wr),
                   srgb_to_linear((0.05, 0.05, 0.05)), thick=wr * 0.5, **common)
            c.draw(lambda xs, ys, a=(wx, wy): sdf_circle(xs, ys, *a, wr * 0.5), (wx - wr, wy - wr, wx + wr, wy + wr),
                   srgb_to_linear((0.6, 0.6, 0.62)), thick=wr * 0.3, spec=0.8, **common)

    def animal(self, cx: float, base: float, k: float, fg: float = 0.0) -> None:
        r = self.rng
        c = self.c
        L, H = k * r.u(1.9, 2.5), k * r.u(1.25, 1.5)
        d = self.depth_at(base)
        common = dict(fg=fg, depth=d)
        s = r.choice((-1.0, 1.0))
        spotted = r.p(0.5)
        coat = r.jitter(r.choice(((0.9, 0.88, 0.84), (0.45, 0.3, 0.2), (0.2, 0.15, 0.12), (0.7, 0.5, 0.3))), 0.04)
        spot_col = r.jitter((0.12, 0.1, 0.09), 0.03)
        ph = [r.u(0, 6.28) for _ in range(3)]
        fq = 9.0 / L

        def fur(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            base_c = self.textured(coat, 0.08)(xs, ys)
            if not spotted:
                return base_c
            p = torch.sin(fq * xs + ph[0]) * torch.sin(fq * 1.3 * ys + ph[1]) + 0.6 * torch.sin(fq * 0.7 * (xs + ys) + ph[2])
            m = torch.sigmoid((p - 0.35) * 12)
            return base_c * (1 - m) + spot_col[:, None, None] * m

        body_y = base - 0.62 * H
        leg_top = body_y + 0.05 * H
        for lx in (-0.3, 0.3, -0.22, 0.38):  # far legs first
            x = cx + lx * L * s
            dark = 0.8 if abs(lx) in (0.22, 0.38) else 1.0
            c.draw(lambda xs, ys, a=(x, leg_top, x + s * 0.02 * L, base - 0.03 * H): sdf_capsule(xs, ys, *a, 0.055 * L, 0.038 * L),
                   (x - 0.08 * L, leg_top - 0.05 * L, x + 0.1 * L, base), coat * dark, thick=0.04 * L, **common)
            c.draw(lambda xs, ys, a=(x + s * 0.02 * L, base - 0.03 * H): sdf_ellipse(xs, ys, *a, 0.04 * L, 0.03 * H),
                   (x - 0.06 * L, base - 0.07 * H, x + 0.1 * L, base), srgb_to_linear((0.1, 0.08, 0.07)), **common)
        c.draw(lambda xs, ys: sdf_ellipse(xs, ys, cx, body_y, 0.4 * L, 0.22 * H),
               (cx - 0.42 * L, body_y - 0.25 * H, cx + 0.42 * L, body_y + 0.25 * H), fur, thick=0.2 * H, **common)
        tx = cx - s * 0.4 * L
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, tx, body_y - 0.12 * H, tx - s * 0.06 * L, body_y + 0.3 * H, 0.015 * L, 0.01 * L),
               (tx - 0.1 * L, body_y - 0.15 * H, tx + 0.1 * L, body_y + 0.35 * H), coat * 0.8, **common)
        # neck from the shoulder up/forward to the poll, then a head pointing forward-down
        grazing = r.p(0.3)
        sx_, sy_ = cx + s * 0.3 * L, body_y - 0.02 * H
        px, py = cx + s * 0.46 * L, body_y + (0.12 * H if grazing else -r.u(0.2, 0.32) * H)
        ang = math.radians(r.u(50, 80) if grazing else r.u(25, 60))
        mx, my = px + s * math.cos(ang) * 0.16 * L, py + math.sin(ang) * 0.16 * L
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, sx_, sy_, px, py, 0.16 * H, 0.08 * H),
               (min(sx_, px) - 0.17 * H, min(sy_, py) - 0.17 * H, max(sx_, px) + 0.17 * H, max(sy_, py) + 0.17 * H),
               fur, thick=0.1 * H, **common)
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, px, py, mx, my, 0.075 * H, 0.05 * H),
               (min(px, mx) - 0.09 * H, min(py, my) - 0.09 * H, max(px, mx) + 0.09 * H, max(py, my) + 0.09 * H),
               coat, thick=0.06 * H, **common)
        c.draw(lambda xs, ys: sdf_circle(xs, ys, mx, my, 0.045 * H),
               (mx - 0.06 * H, my - 0.06 * H, mx + 0.06 * H, my + 0.06 * H), coat * 0.55, thick=0.04 * H, **common)
        ex, ey = px - s * 0.03 * L, py - 0.05 * H
        c.draw(lambda xs, ys: sdf_ellipse(xs, ys, ex, ey, 0.035 * L, 0.02 * H, angle=-s * 0.5),
               (ex - 0.05 * L, ey - 0.05 * L, ex + 0.05 * L, ey + 0.05 * L), coat * 0.8, thick=0.015 * H, **common)

    def motorcycle(self, cx: float, base: float, k: float, fg: float = 0.0) -> None:
        r = self.rng
        c = self.c
        L, H = k * r.u(1.9, 2.2), k * r.u(1.05, 1.2)
        d = self.depth_at(base)
        common = dict(fg=fg, depth=d)
        s = r.choice((-1.0, 1.0))  # front direction
        paint = r.hsv((0, 1), (0.5, 0.95), (0.3, 0.9)) if r.p(0.7) else r.jitter((0.1, 0.1, 0.1), 0.03)
        metal = r.jitter((0.6, 0.6, 0.62), 0.04)
        dark = srgb_to_linear((0.06, 0.06, 0.06))
        wr = 0.3 * H
        fx, rx = cx + s * 0.36 * L, cx - s * 0.36 * L  # front / rear wheel centres
        wy = base - wr
        seat_y = base - 0.72 * H
        # rear frame and swing arm, exhaust
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, rx, wy, cx, base - 0.4 * H, 0.03 * H),
               (min(rx, cx) - 0.05 * H, base - 0.5 * H, max(rx, cx) + 0.05 * H, wy + 0.05 * H), metal, spec=0.6, **common)
        ex0, ex1 = cx + s * 0.05 * L, rx - s * 0.08 * L
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, ex0, base - 0.25 * H, ex1, base - 0.33 * H, 0.035 * H, 0.045 * H),
               (min(ex0, ex1) - 0.06 * H, base - 0.4 * H, max(ex0, ex1) + 0.06 * H, base - 0.18 * H), metal,
               thick=0.04 * H, spec=0.9, **common)
        for wx in (rx, fx):
            c.draw(lambda xs, ys, x=wx: sdf_circle(xs, ys, x, wy, wr), (wx - wr, wy - wr, wx + wr, wy + wr),
                   dark, thick=wr * 0.35, **common)
            c.draw(lambda xs, ys, x=wx: torch.maximum(sdf_circle(xs, ys, x, wy, wr * 0.68), -sdf_circle(xs, ys, x, wy, wr * 0.55)),
                   (wx - wr, wy - wr, wx + wr, wy + wr), metal, spec=0.8, **common)
            c.draw(lambda xs, ys, x=wx: sdf_circle(xs, ys, x, wy, wr * 0.15), (wx - wr, wy - wr, wx + wr, wy + wr),
                   metal, thick=wr * 0.1, spec=0.8, **common)
        # engine, tank, seat, fork, handlebar, headlight
        c.draw(lambda xs, ys: sdf_box(xs, ys, cx, base - 0.38 * H, 0.13 * L, 0.15 * H, 0.04 * H),
               (cx - 0.15 * L, base - 0.55 * H, cx + 0.15 * L, base - 0.2 * H), self.textured(metal * 0.6, 0.1),
               thick=0.05 * H, spec=0.5, **common)
        tx = cx + s * 0.08 * L
        c.draw(lambda xs, ys: sdf_ellipse(xs, ys, tx, base - 0.7 * H, 0.17 * L, 0.11 * H, angle=-s * 0.12),
               (tx - 0.2 * L, base - 0.85 * H, tx + 0.2 * L, base - 0.55 * H), paint, thick=0.1 * H, spec=0.8, **common)
        sx0 = cx - s * 0.16 * L
        c.draw(lambda xs, ys: sdf_box(xs, ys, sx0, seat_y, 0.14 * L, 0.04 * H, 0.03 * H),
               (sx0 - 0.16 * L, seat_y - 0.06 * H, sx0 + 0.16 * L, seat_y + 0.06 * H), dark * 2.0,
               thick=0.03 * H, normal=(0, 0.8, 0.6), **common)
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, rx + s * 0.05 * L, base - 0.62 * H, sx0 - s * 0.12 * L, seat_y, 0.035 * H),
               (min(rx, sx0) - 0.1 * L, base - 0.8 * H, max(rx, sx0) + 0.1 * L, base - 0.5 * H), paint, spec=0.7, **common)
        hx, hy = fx - s * 0.1 * L, base - 1.0 * H
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, fx, wy, hx, hy, 0.03 * H),
               (min(fx, hx) - 0.05 * H, hy - 0.05 * H, max(fx, hx) + 0.05 * H, wy + 0.05 * H), metal, spec=0.8, **common)
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, hx, hy, hx - s * 0.1 * L, hy - 0.03 * H, 0.022 * H),
               (hx - 0.13 * L, hy - 0.08 * H, hx + 0.13 * L, hy + 0.05 * H), dark, **common)
        lx, ly = hx + s * 0.05 * L, hy + 0.12 * H
        c.draw(lambda xs, ys: sdf_circle(xs, ys, lx, ly, 0.06 * H), (lx - 0.07 * H, ly - 0.07 * H, lx + 0.07 * H, ly + 0.07 * H),
               srgb_to_linear((0.9, 0.9, 0.85)), emission=torch.tensor([1.0, 0.95, 0.8]) * 1.5, spec=0.8, **common)

    def bench(self, cx: float, base: float, k: float, fg: float = 0.0) -> None:
        r = self.rng
        c = self.c
        L, H = k * r.u(1.5, 2.1), k * r.u(0.8, 1.0)
        d = self.depth_at(base)
        common = dict(fg=fg, depth=d)
        wood = r.jitter(r.choice(((0.55, 0.36, 0.2), (0.4, 0.26, 0.15), (0.3, 0.45, 0.3), (0.6, 0.6, 0.62))), 0.05)
        metal = r.jitter((0.15, 0.15, 0.16), 0.03)
        seat_y = base - 0.47 * H
        for lx in (-0.42, 0.42):
            x = cx + lx * L
            c.draw(lambda xs, ys, x=x: sdf_box(xs, ys, x, (seat_y + base) / 2, 0.025 * L, (base - seat_y) / 2, 0.005 * L),
                   (x - 0.03 * L, seat_y, x + 0.03 * L, base), metal, spec=0.5, **common)
            c.draw(lambda xs, ys, x=x: sdf_capsule(xs, ys, x, seat_y, x - 0.02 * L, base - H, 0.015 * L),
                   (x - 0.06 * L, base - H - 0.02 * L, x + 0.03 * L, seat_y), metal, spec=0.5, **common)
        for j, yy in enumerate((base - 0.6 * H, base - 0.78 * H, base - 0.95 * H)):
            c.draw(lambda xs, ys, yy=yy: sdf_box(xs, ys, cx, yy, 0.5 * L, 0.06 * H, 0.02 * H),
                   (cx - 0.5 * L, yy - 0.07 * H, cx + 0.5 * L, yy + 0.07 * H), self.textured(wood * 0.9, 0.15),
                   thick=0.04 * H, normal=(0, 0.2, 1), **common)
        c.draw(lambda xs, ys: sdf_box(xs, ys, cx, seat_y, 0.52 * L, 0.05 * H, 0.02 * H),
               (cx - 0.53 * L, seat_y - 0.06 * H, cx + 0.53 * L, seat_y + 0.06 * H), self.textured(wood, 0.15),
               thick=0.04 * H, normal=(0, 0.9, 0.45), **common)

    def tree(self, cx: float, base: float, k: float, fg: float = 0.0) -> None:
        r = self.rng
        c = self.c
        H = k * (r.u(5, 10) if not fg else r.u(3.2, 4.5))
        d = self.depth_at(base)
        common = dict(fg=fg, depth=d)
        bark = r.jitter((0.35, 0.25, 0.18), 0.05)
        leaf = r.jitter(r.choice(_FOLIAGE), 0.05)
        tw = H * r.u(0.035, 0.06)
        top = base - H * r.u(0.45, 0.6)
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, cx, base, cx, top, tw, tw * 0.6),
               (cx - tw * 2, top - tw, cx + tw * 2, base), self.textured(bark, 0.2), thick=tw, **common)
        crown_y = base - H * 0.7
        cr = H * r.u(0.26, 0.34)
        n = r.i(3, 6)
        blobs = [(cx + r.u(-0.6, 0.6) * cr, crown_y + r.u(-0.5, 0.4) * cr, cr * r.u(0.5, 0.8)) for _ in range(n)]
        blobs.sort(key=lambda b: -b[1])
        for bx, by, br in blobs:
            c.draw(lambda xs, ys, a=(bx, by, br): sdf_circle(xs, ys, *a), (bx - br, by - br, bx + br, by + br),
                   self.textured(leaf * r.u(0.8, 1.1), 0.35), thick=br, **common)

    def lamp_post(self, cx: float, base: float, k: float) -> None:
        r = self.rng
        c = self.c
        H = k * r.u(3.8, 5.0)
        d = self.depth_at(base)
        metal = r.jitter((0.12, 0.13, 0.14), 0.03)
        pw = max(0.06 * k, self.c.px * 0.6)
        top = base - H
        s = r.choice((-1.0, 1.0))
        hx = cx + s * 0.35 * k
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, cx, base, cx, top, pw * 1.4, pw),
               (cx - 0.2 * k, top - 0.1 * k, cx + 0.2 * k, base), metal, thick=pw, spec=0.4, depth=d)
        c.draw(lambda xs, ys: sdf_capsule(xs, ys, cx, top, hx, top + 0.05 * k, pw * 0.8),
               (min(cx, hx) - 0.1 * k, top - 0.1 * k, max(cx, hx) + 0.1 * k, top + 0.2 * k), metal, depth=d)
        c.draw(lambda xs, ys: sdf_ellipse(xs, ys, hx, top + 0.12 * k, 0.16 * k, 0.08 * k),
               (hx - 0.2 * k, top, hx + 0.2 * k, top + 0.25 * k), srgb_to_linear((0.85, 0.85, 0.8)), emission=torch.tensor([1.0, 0.75, 0.45]) * 4.0, depth=d)
        self.lamps.append((hx, top + 0.12 * k, base, k))

    def bush(self, cx: float, base: float, k: float) -> None:
        r = self.rng
        leaf = r.jitter(r.choice(_FOLIAGE), 0.05)
        br = k * r.u(0.5, 1.0)
        for _ in range(r.i(2, 4)):
            bx, by, rr = cx + r.u(-1, 1) * br, base - br * r.u(0.5, 0.9), br * r.u(0.6, 1.0)
            self.c.draw(lambda xs, ys, a=(bx, by, rr): sdf_circle(xs, ys, *a), (bx - rr, by - rr, bx + rr, base),
                        self.textured(leaf, 0.3), thick=rr, depth=self.depth_at(base))


def _draw_object(b: _Builder, kind: str, cx: float, base: float, fg: float) -> None:
    k = b.scale_at(base)
    b.c.begin_caster(base)
    getattr(b, kind)(cx, base, k, fg=fg) if kind in CATEGORIES else getattr(b, kind)(cx, base, k)
    b.c.end_caster()


def sample_scene(generator: torch.Generator, height: int = 256, width: Optional[int] = None) -> Scene:
    """Sample and rasterise one random scene of ``height x width`` pixels (width defaults to height).

    Raises:
        ValueError: if a side is below 64 pixels.
    """
    width = height if width is None else width
    if int(height) < 64 or int(width) < 64:
        raise ValueError(f"render size must be at least 64x64 pixels, got {height}x{width}")
    rng = _Rng(generator)
    b = _Builder(rng, int(height), int(width))
    hz = b.horizon
    category = rng.choice(CATEGORIES, weights=_CATEGORY_WEIGHTS)
    sun_side = rng.choice((-1.0, 1.0))

    if rng.p(0.45):
        b.hills()
    if rng.p(0.8):
        b.buildings()
    ground = b.ground()

    # foreground placement: choose its image height, derive the ground row from the camera model
    world_h = {"human": 1.72, "car": 1.48, "animal": 1.38, "bench": 0.9, "tree": 3.8, "motorcycle": 1.15}[category]
    target = {
        "human": (0.38, 0.62), "car": (0.2, 0.3), "animal": (0.22, 0.36), "bench": (0.16, 0.26), "tree": (0.45, 0.7),
        "motorcycle": (0.2, 0.32),
    }[category]
    img_h = rng.u(*target)
    fg_base = min(hz + img_h * b.cam_h / world_h, 0.985)
    fg_x = rng.u(0.3, 0.7) * b.aspect

    objects: List[Tuple[float, str, float]] = []
    n_props = rng.i(2, 7)
    for _ in range(n_props):
        kind = rng.choice(("tree", "lamp_post", "bush", "human", "bench"), weights=(0.3, 0.2, 0.2, 0.2, 0.1))
        far = 0.45 if kind == "tree" else 0.75  # big trees stay in the background
        base = hz + (fg_base - hz) * rng.u(0.05, far)
        objects.append((base, kind, rng.u(-0.05, 1.05) * b.aspect))
    if rng.p(0.5):  # a street lamp near the foreground (warm light on it at night)
        lamp_base = hz + (fg_base - hz) * rng.u(0.6, 0.85)
        objects.append((lamp_base, "lamp_post", fg_x + rng.choice((-1, 1)) * rng.u(0.1, 0.3) * b.aspect))
    elif not any(o[1] == "lamp_post" for o in objects):
        objects.append((hz + (fg_base - hz) * rng.u(0.2, 0.7), "lamp_post", rng.u(0.05, 0.95) * b.aspect))
    objects.sort(key=lambda o: o[0])
    for base, kind, x in objects:
        _draw_object(b, kind, x, base, fg=0.0)
    _draw_object(b, category, fg_x, fg_base, fg=1.0)

    c = b.c
    h, w = c.h, c.w
    coverage = c.buf[CH_FG : CH_FG + 1].clamp(0, 1).clone()
    mask = (coverage >= 0.5).float()
    if c.casters:
        casters = torch.stack([ca.mask for ca in c.casters])
        bases = torch.tensor([ca.base_y for ca in c.casters], dtype=torch.float32)
    else:
        casters = torch.zeros(0, h, w)
        bases = torch.zeros(0)
    lamps = torch.tensor(b.lamps, dtype=torch.float32).reshape(-1, 4)

    # sky: a perspective cloud plane and a star field
    xs, ys = c.grid()
    above = (hz - ys).clamp_min(0.0)
    v = 1.0 / (above + 0.06)
    u = (xs - b.aspect / 2) * v
    tex = torch.randn(1, 1, 48, 48, generator=generator)
    clouds = torch.zeros(h, w)
    off = torch.rand(2, generator=generator) * 2 - 1
    stretch = rng.u(1.0, 2.2)
    for o, amp in enumerate((1.0, 0.5, 0.25, 0.12)):
        f = 2.0**o
        grid = torch.stack([u * 0.3 * f / stretch + off[0], v * 0.2 * f + off[1]], dim=-1)[None]
        clouds += amp * F.grid_sample(tex, grid, mode="bicubic", padding_mode="reflection", align_corners=False)[0, 0]
    sky_region = ys < hz
    if bool(sky_region.any()):
        cm = clouds[sky_region]
        clouds = (clouds - cm.mean()) / cm.std().clamp_min(1e-6)
    # a fixed number of stars (the random stream does not depend on the image size)
    star_pos = torch.rand(160, 2, generator=generator)
    star_val = torch.rand(160, generator=generator) ** 2
    si = (star_pos[:, 1] * hz * h).long().clamp(0, h - 1)
    sj = (star_pos[:, 0] * w).long().clamp(0, w - 1)
    stars = torch.zeros(h, w)
    stars[si, sj] = star_val
    stars = stars * (ys < hz - 0.03).float()

    info = {"category": category, "ground": ground, "horizon": round(hz, 4), "camera_height": round(b.cam_h, 4),
            "num_props": len(objects), "num_lamps": int(lamps.shape[0])}
    return Scene(
        gbuf=c.buf,
        mask=mask,
        coverage=coverage,
        casters=casters,
        caster_base=bases,
        lamps=lamps,
        clouds=clouds,
        stars=stars,
        horizon=hz,
        camera_height=b.cam_h,
        category=category,
        sun_side=sun_side,
        info=info,
    )
