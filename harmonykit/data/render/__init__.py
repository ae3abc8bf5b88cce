"""Procedural multi-style renderer: the "rendered" domain of CharmNet without Unity.

Random 2D street / park scenes (sky, buildings, ground, props) with one foreground object
(human, car, animal, motorcycle, bench or tree) whose mask is free, each rendered under the 10
RdHarmony styles (1 Night, 2-4 Sunrise&Sunset, 5-7 Noon, 8-10 Other times; each x Clear /
Partly Cloudy / Cloudy), in pure PyTorch and deterministic by seed. See ``docs/renderer.md``.

Example::

    from harmonykit.data.render import render_scene, render_dataset
    r = render_scene(seed=0, size=128)
    r.images   # (10, 3, 128, 128) float32 sRGB in [0, 1]; style k (1-based) at index k - 1
    r.mask     # (1, 128, 128) float32 in {0, 1}
    render_dataset("out", num_scenes=100)   # out/<scene>/<k>.png + mask.png (make-composites input)
"""
from .lighting import (
    NUM_STYLES,
    STYLE_NAMES,
    STYLE_SPECS,
    StyleParams,
    StyleSpec,
    blackbody_rgb,
    sample_style_params,
    style_name,
    style_table,
)
from .renderer import MultiStyleRender, cast_shadows, parse_size, render_scene, scene_seed, shade
from .scene import CATEGORIES, Scene, sample_scene
from .writer import make_style_grid, render_dataset, scene_name

__all__ = [
    "NUM_STYLES",
    "STYLE_NAMES",
    "STYLE_SPECS",
    "StyleSpec",
    "StyleParams",
    "blackbody_rgb",
    "sample_style_params",
    "style_name",
    "style_table",
    "CATEGORIES",
    "Scene",
    "sample_scene",
    "MultiStyleRender",
    "render_scene",
    "shade",
    "cast_shadows",
    "scene_seed",
    "parse_size",
    "render_dataset",
    "make_style_grid",
    "scene_name",
]
