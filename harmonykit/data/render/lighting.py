"""The 10 RdHarmony lighting styles, their jittered parameters and a blackbody light colour.

CharmNet (BMVC 2022, Sec. 3) defines 10 rendered "styles": Night, and the 9 combinations of
weather {Clear, Partly Cloudy, Cloudy} x time of day {Sunrise&Sunset, Noon, Other times}. Each
style is a *range* of illumination (intensity and direction), not a fixed value, so every
parameter below is drawn uniformly from a per-style interval each time a scene is rendered.

Style index order (1-based, fixed, also written to ``styles.json``)::

    1 Night
    2 Sunrise&Sunset Clear    3 Sunrise&Sunset Partly Cloudy    4 Sunrise&Sunset Cloudy
    5 Noon Clear              6 Noon Partly Cloudy              7 Noon Cloudy
    8 Other times Clear       9 Other times Partly Cloudy      10 Other times Cloudy

Tensors use 0-based style ids (0..9, as in the batch dict's ``style``); names and files use
1-based indices. Light colours come from :func:`blackbody_rgb` (Planck's law integrated against
an analytic fit of the CIE 1931 colour-matching functions, white-balanced at 6500 K).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Sequence, Tuple

import torch

__all__ = [
    "NUM_STYLES",
    "STYLE_NAMES",
    "StyleSpec",
    "STYLE_SPECS",
    "StyleParams",
    "blackbody_rgb",
    "style_name",
    "style_table",
    "sample_style_params",
]

_logger = logging.getLogger(__name__)

NUM_STYLES = 10

Range = Tuple[float, float]


@dataclass(frozen=True)
class StyleSpec:
    """Uniform jitter ranges ``(lo, hi)`` of one style's lighting parameters.

    Angles in degrees, temperatures in kelvin, intensities in linear HDR units (a white surface
    facing the light reflects ``intensity``), ``cloud_cover`` / ``haze`` / ``horizon_warmth`` in
    [0, 1]. ``exposure`` scales HDR before the ``1 - exp(-x)`` tone curve.
    """

    name: str
    time: str
    weather: str
    sun_elevation: Range
    sun_temperature: Range
    sun_intensity: Range
    sky_temperature: Range
    ambient_intensity: Range
    cloud_cover: Range
    horizon_warmth: Range
    sky_intensity: Range
    haze: Range
    exposure: Range
    lamp_intensity: Range = (0.0, 0.0)
    window_emission: Range = (0.0, 0.0)
    star_intensity: Range = (0.0, 0.0)


_TIMES = {
    # time: (sun elevation, sun temperature, sun intensity, ambient, horizon warmth, sky I, exposure)
    "Sunrise&Sunset": ((3.0, 14.0), (1900.0, 2900.0), (2.0, 2.8), (0.2, 0.3), (0.55, 0.9), (0.45, 0.7), (1.0, 1.3)),
    "Noon": ((58.0, 82.0), (5600.0, 6600.0), (3.2, 4.0), (0.45, 0.6), (0.0, 0.08), (0.95, 1.2), (0.8, 1.0)),
    "Other times": ((20.0, 42.0), (3900.0, 4900.0), (2.6, 3.3), (0.35, 0.47), (0.12, 0.3), (0.75, 0.95), (0.9, 1.1)),
}
_WEATHERS = {
    # weather: (cloud cover, sky temperature, haze)
    "Clear": ((0.0, 0.12), (11000.0, 16000.0), (0.02, 0.1)),
    "Partly Cloudy": ((0.38, 0.6), (8500.0, 11000.0), (0.06, 0.16)),
    "Cloudy": ((0.86, 1.0), (6600.0, 7600.0), (0.14, 0.28)),
}


def _build_specs() -> Tuple[StyleSpec, ...]:
    specs: List[StyleSpec] = [
        StyleSpec(
            name="Night",
            time="Night",
            weather="Any",
            sun_elevation=(25.0, 65.0),  # the moon
            sun_temperature=(7500.0, 10000.0),
            sun_intensity=(0.12, 0.22),
            sky_temperature=(12000.0, 25000.0),
            ambient_intensity=(0.05, 0.08),
            cloud_cover=(0.0, 0.6),
            horizon_warmth=(0.0, 0.0),
            sky_intensity=(0.035, 0.06),
            haze=(0.05, 0.25),
            exposure=(1.1, 1.5),
            lamp_intensity=(0.45, 0.8),
            window_emission=(0.7, 1.2),
            star_intensity=(0.5, 1.0),
        )
    ]
    for time, (elev, temp, inten, amb, warm, sky_i, expo) in _TIMES.items():
        for weather, (cover, sky_t, haze) in _WEATHERS.items():
            specs.append(
                StyleSpec(
                    name=f"{time} {weather}",
                    time=time,
                    weather=weather,
                    sun_elevation=elev,
                    sun_temperature=temp,
                    sun_intensity=inten,
                    sky_temperature=sky_t,
                    ambient_intensity=amb,
                    cloud_cover=cover,
                    horizon_warmth=warm,
                    sky_intensity=sky_i,
                    haze=haze,
                    exposure=expo,
                    # dusk: a few windows are lit at sunset
                    window_emission=(0.0, 0.25) if time == "Sunrise&Sunset" else (0.0, 0.0),
                )
            )
    return tuple(specs)


STYLE_SPECS: Tuple[StyleSpec, ...] = _build_specs()
STYLE_NAMES: Tuple[str, ...] = tuple(s.name for s in STYLE_SPECS)
assert len(STYLE_NAMES) == NUM_STYLES


def style_name(index: int) -> str:
    """Name of the 1-based style ``index`` (1..10)."""
    if not 1 <= int(index) <= NUM_STYLES:
        raise ValueError(f"style index must be in 1..{NUM_STYLES}, got {index}")
    return STYLE_NAMES[int(index) - 1]


def style_table() -> Dict[str, str]:
    """``{"1": "Night", ..., "10": "Other times Cloudy"}`` (what ``styles.json`` holds)."""
    return {str(i + 1): n for i, n in enumerate(STYLE_NAMES)}


# ---------------------------------------------------------------------------------------------
# Blackbody colour
# ---------------------------------------------------------------------------------------------
_XYZ_TO_LINEAR_SRGB = torch.tensor(
    [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]], dtype=torch.float64
)


def _piecewise_gauss(lam: torch.Tensor, mu: float, s1: float, s2: float) -> torch.Tensor:
    s = torch.where(lam < mu, torch.full_like(lam, s1), torch.full_like(lam, s2))
    return torch.exp(-0.5 * ((lam - mu) / s) ** 2)


def _cie_cmf(lam: torch.Tensor) -> torch.Tensor:
    """CIE 1931 2-degree colour-matching functions (Wyman, Sloan & Shirley 2013 fit), (N, 3)."""
    g = _piecewise_gauss
    x = 1.056 * g(lam, 599.8, 37.9, 31.0) + 0.362 * g(lam, 442.0, 16.0, 26.7) - 0.065 * g(lam, 501.1, 20.4, 26.2)
    y = 0.821 * g(lam, 568.8, 46.9, 40.5) + 0.286 * g(lam, 530.9, 16.3, 31.1)
    z = 1.217 * g(lam, 437.0, 11.8, 36.0) + 0.681 * g(lam, 459.0, 26.0, 13.8)
    return torch.stack([x, y, z], dim=-1)


def _planck_xyz(kelvin: torch.Tensor) -> torch.Tensor:
    lam_nm = torch.arange(380.0, 781.0, 5.0, dtype=torch.float64)
    lam = lam_nm * 1e-9
    h, c, k = 6.62607015e-34, 2.99792458e8, 1.380649e-23
    t = kelvin.to(torch.float64).reshape(-1, 1)
    # spectral radiance up to a constant factor (normalised per temperature below)
    radiance = 1.0 / (lam**5 * torch.expm1((h * c) / (lam * k * t)))
    xyz = radiance @ _cie_cmf(lam_nm)  # (N, 3)
    return xyz / xyz[:, 1:2]


def blackbody_rgb(kelvin: torch.Tensor | float, white_point: float = 6500.0) -> torch.Tensor:
    """Linear-sRGB colour of a blackbody at ``kelvin``, shape ``(*kelvin.shape, 3)``.

    Planck's law is integrated over 380-780 nm against the CIE 1931 colour-matching functions,
    converted XYZ -> linear sRGB, clipped at 0, divided channel-wise by the colour at
    ``white_point`` (a camera white-balanced for daylight: 6500 K -> (1, 1, 1)) and scaled to unit
    luminance. 2000 K is deep orange, 10000 K pale blue. Float32 output.
    """
    k = torch.as_tensor(kelvin, dtype=torch.float64)
    if bool((k < 500).any()) or bool((k > 100000).any()):
        raise ValueError(f"blackbody temperature must be in [500, 100000] K, got {k.tolist()}")
    flat = k.reshape(-1)
    rgb = (_planck_xyz(flat) @ _XYZ_TO_LINEAR_SRGB.T).clamp_min(0.0)
    white = (_planck_xyz(torch.tensor([white_point], dtype=torch.float64)) @ _XYZ_TO_LINEAR_SRGB.T).clamp_min(1e-9)
    rgb = rgb / white
    lum = rgb @ torch.tensor([0.2126, 0.7152, 0.0722], dtype=torch.float64)
    rgb = rgb / lum.clamp_min(1e-9).unsqueeze(-1)
    return rgb.reshape(*k.shape, 3).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# Sampled parameters
# ---------------------------------------------------------------------------------------------
@dataclass
class StyleParams:
    """Lighting of ``S`` renders, all tensors float32 with leading dim ``S``.

    ``style`` (S,) int64 0-based ids; ``sun_dir`` (S, 3) unit vector towards the sun/moon in camera
    space (x right, y up, z towards the viewer); ``sun_rgb`` / ``ambient_rgb`` / ``zenith_rgb`` /
    ``horizon_rgb`` / ``lamp_rgb`` (S, 3) linear HDR colours already scaled by intensity;
    ``cloud_cover``, ``haze``, ``exposure``, ``window_emission``, ``star_intensity``,
    ``sun_temperature``, ``sun_elevation`` (degrees), ``shadow_softness``, ``cloud_brightness`` (S,).
    """

    style: torch.Tensor
    sun_dir: torch.Tensor
    sun_rgb: torch.Tensor
    ambient_rgb: torch.Tensor
    zenith_rgb: torch.Tensor
    horizon_rgb: torch.Tensor
    lamp_rgb: torch.Tensor
    cloud_cover: torch.Tensor
    haze: torch.Tensor
    exposure: torch.Tensor
    window_emission: torch.Tensor
    star_intensity: torch.Tensor
    sun_temperature: torch.Tensor
    sun_elevation: torch.Tensor
    shadow_softness: torch.Tensor
    cloud_brightness: torch.Tensor

    def __len__(self) -> int:
        return int(self.style.shape[0])

    def select(self, index: slice) -> "StyleParams":
        """The renders ``index`` (a slice) of these parameters."""
        return StyleParams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to_dict(self, index: int) -> Dict[str, object]:
        """Plain-Python view of render ``index`` (for metadata files)."""
        out: Dict[str, object] = {}
        for f in fields(self):
            v = getattr(self, f.name)[index]
            if v.ndim:
                out[f.name] = [round(float(x), 5) for x in v.tolist()]
            else:
                out[f.name] = int(v) if f.name == "style" else round(float(v), 5)
        out["style_index"] = int(self.style[index]) + 1
        out["style_name"] = STYLE_NAMES[int(self.style[index])]
        return out


def _uniform(gen: torch.Generator, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(lo.shape, generator=gen, dtype=torch.float32)


_CLEAR_BLUE = torch.tensor([0.16, 0.34, 0.85])  # linear sRGB of a deep clear-sky zenith
_PALE_BLUE = torch.tensor([0.55, 0.68, 0.9])
_OVERCAST = torch.tensor([0.62, 0.64, 0.68])
_NIGHT_ZENITH = torch.tensor([0.012, 0.02, 0.06])
_NIGHT_HORIZON = torch.tensor([0.06, 0.055, 0.07])  # faint city glow


def sample_style_params(
    styles: Optional[Sequence[int]], generator: torch.Generator, sun_side: Optional[float] = None
) -> StyleParams:
    """Draw jittered lighting for 0-based ``styles`` (default: all 10, in order).

    ``sun_side`` (+1 / -1) biases the sun azimuth to one side for the whole scene (morning vs
    evening); if None it is drawn per render.
    """
    ids = list(range(NUM_STYLES)) if styles is None else [int(s) for s in styles]
    for s in ids:
        if not 0 <= s < NUM_STYLES:
            raise ValueError(f"style id must be in 0..{NUM_STYLES - 1} (0-based), got {s}")
    n = len(ids)
    if n == 0:
        raise ValueError("styles must name at least one style")
    specs = [STYLE_SPECS[s] for s in ids]

    def draw(attr: str) -> torch.Tensor:
        lo = torch.tensor([getattr(sp, attr)[0] for sp in specs], dtype=torch.float32)
        hi = torch.tensor([getattr(sp, attr)[1] for sp in specs], dtype=torch.float32)
        return _uniform(generator, lo, hi)

    elev = draw("sun_elevation")
    sun_t = draw("sun_temperature")
    sun_i = draw("sun_intensity")
    sky_t = draw("sky_temperature")
    amb_i = draw("ambient_intensity")
    cover = draw("cloud_cover")
    warmth = draw("horizon_warmth")
    sky_i = draw("sky_intensity")
    haze = draw("haze")
    exposure = draw("exposure")
    lamp_i = draw("lamp_intensity")
    window = draw("window_emission")
    stars = draw("star_intensity")

    # azimuth: 0 = sun behind the camera (front lit), +-90 = from the side, +-180 = back lit
    # azimuth magnitude: half back-lit (long shadows towards the camera), some side, some front lit
    pick = torch.rand(n, generator=generator)
    lo = torch.where(pick < 0.5, 110.0, torch.where(pick < 0.8, 60.0, 15.0))
    hi = torch.where(pick < 0.5, 170.0, torch.where(pick < 0.8, 110.0, 60.0))
    az_mag = lo + (hi - lo) * torch.rand(n, generator=generator)
    if sun_side is None:
        side = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    else:
        side = torch.full((n,), 1.0 if sun_side >= 0 else -1.0)
        torch.rand(n, generator=generator)  # keep the stream length independent of sun_side
    az = torch.deg2rad(az_mag * side)
    el = torch.deg2rad(elev)
    sun_dir = torch.stack([torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], dim=-1)

    is_night = torch.tensor([sp.time == "Night" for sp in specs])
    sun_col = blackbody_rgb(sun_t)
    sky_col = blackbody_rgb(sky_t)
    # clouds block the direct light and brighten / grey the ambient
    direct = sun_i * (1.0 - 0.93 * cover**1.2)
    # a low sun is dimmer (longer air path) beyond the per-style range
    direct = direct * (0.55 + 0.45 * torch.sin(el).clamp_min(0.0) ** 0.35)
    sun_rgb = sun_col * direct[:, None]
    grey = torch.ones(3)
    amb_col = sky_col * (1.0 - cover[:, None]) + grey * cover[:, None]
    amb_col = amb_col * (1.0 - 0.3 * warmth[:, None]) + sun_col * 0.3 * warmth[:, None]  # warm dusk light
    ambient_rgb = amb_col * (amb_i * (1.0 + 0.6 * cover))[:, None]

    # sky: clear blue zenith -> overcast grey; horizon pale -> warm at sunrise / sunset
    zenith = _CLEAR_BLUE * (1 - cover[:, None]) + _OVERCAST * 0.85 * cover[:, None]
    horizon_day = _PALE_BLUE * (1 - warmth[:, None]) + sun_col * 0.9 * warmth[:, None]
    horizon = horizon_day * (1 - cover[:, None] * 0.8) + _OVERCAST * cover[:, None] * 0.8
    zenith = zenith * sky_i[:, None] * 1.6
    horizon = horizon * sky_i[:, None] * 1.9
    night_sky_scale = (1.0 - 0.5 * cover)[:, None]
    zenith = torch.where(is_night[:, None], _NIGHT_ZENITH * night_sky_scale * sky_i[:, None] / 0.05, zenith)
    horizon = torch.where(is_night[:, None], _NIGHT_HORIZON * sky_i[:, None] / 0.05, horizon)

    lamp_rgb = blackbody_rgb(torch.full((n,), 2700.0)) * lamp_i[:, None]
    softness = (0.15 + 0.85 * cover).clamp(0, 1)
    return StyleParams(
        style=torch.tensor(ids, dtype=torch.int64),
        sun_dir=sun_dir.float(),
        sun_rgb=sun_rgb.float(),
        ambient_rgb=ambient_rgb.float(),
        zenith_rgb=zenith.float(),
        horizon_rgb=horizon.float(),
        lamp_rgb=lamp_rgb.float(),
        cloud_cover=cover,
        haze=haze,
        exposure=exposure,
        window_emission=window,
        star_intensity=stars * (1 - cover),
        sun_temperature=sun_t,
        sun_elevation=elev,
        shadow_softness=softness,
        cloud_brightness=torch.where(is_night, 0.45, 1.0).float(),
    )
