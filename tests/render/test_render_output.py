"""render_dataset layout (the make-composites input), style grid and the `harmonykit render` CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harmonykit.cli import main
from harmonykit.data.render import make_style_grid, render_dataset, render_scene, scene_name, scene_seed
from harmonykit.data.render.writer import to_uint8, torch_threads


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The renderer's tensors are small: one torch thread is fastest (and robust on busy CPUs)."""
    with torch_threads(1):
        yield


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_render_dataset_layout(tmp_path: Path):
    out = tmp_path / "renders"
    folders = render_dataset(out, 2, size=(64, 96), seed=5, progress=False)
    assert [f.name for f in folders] == ["scene000000", "scene000001"]
    styles = json.loads((out / "styles.json").read_text())
    assert styles == {str(k): v for k, v in zip(range(1, 11), (
        "Night", "Sunrise&Sunset Clear", "Sunrise&Sunset Partly Cloudy", "Sunrise&Sunset Cloudy", "Noon Clear",
        "Noon Partly Cloudy", "Noon Cloudy", "Other times Clear", "Other times Partly Cloudy", "Other times Cloudy"))}
    info = json.loads((out / "render.json").read_text())
    assert info["seed"] == 5 and info["size"] == [64, 96] and info["num_scenes"] == 2
    for i, d in enumerate(folders):
        names = sorted(p.name for p in d.iterdir())
        assert names == sorted([f"{k}.png" for k in range(1, 11)] + ["mask.png", "meta.json"])
        with Image.open(d / "mask.png") as m:
            assert m.mode == "L" and m.size == (96, 64)
        mask = _load(d / "mask.png")
        assert set(np.unique(mask).tolist()) <= {0, 255} and mask.max() == 255
        # the files are exactly the tensors of render_scene for that scene's seed
        r = render_scene(seed=scene_seed(5, i), size=(64, 96))
        for k in range(1, 11):
            with Image.open(d / f"{k}.png") as im:
                assert im.mode == "RGB" and im.size == (96, 64)
            assert np.array_equal(_load(d / f"{k}.png"), to_uint8(r.images[k - 1]))
        assert np.array_equal(mask, to_uint8(r.mask))
        meta = json.loads((d / "meta.json").read_text())
        assert meta["category"] == r.category and meta["styles"]["1"]["style_name"] == "Night"


def test_start_extends_a_dataset_with_the_same_scenes(tmp_path: Path):
    render_dataset(tmp_path / "a", 2, size=64, seed=1, progress=False)
    render_dataset(tmp_path / "b", 1, size=64, seed=1, start=1, progress=False)
    assert not (tmp_path / "b" / scene_name(0)).exists()
    for k in (1, 5, 10):
        f = f"{scene_name(1)}/{k}.png"
        assert np.array_equal(_load(tmp_path / "a" / f), _load(tmp_path / "b" / f))


def test_make_composites_reads_the_layout(tmp_path: Path):
    composites = pytest.importorskip("harmonykit.data.composites")
    render_dataset(tmp_path / "r", 2, size=64, seed=0, progress=False)
    scenes = composites.scan_renders(tmp_path / "r")
    assert [s.name for s in scenes] == ["scene000000", "scene000001"]
    assert all(sorted(s.styles) == list(range(1, 11)) for s in scenes)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_scenes=0), "num_scenes"),
    (dict(num_scenes=-3), "-3"),
    (dict(num_scenes=1, size=32), "32"),
    (dict(num_scenes=1, start=-1), "start"),
    (dict(num_scenes=1, threads=0), "threads"),
])
def test_render_dataset_bad_arguments(tmp_path: Path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_dataset(tmp_path / "x", progress=False, **kwargs)


def test_render_dataset_unwritable_output(tmp_path: Path):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="a_file"):
        render_dataset(f, 1, size=64, progress=False)
    with pytest.raises(PermissionError, match="a_file"):
        render_dataset(f / "below", 1, size=64, progress=False)


def test_style_grid_shape():
    img = make_style_grid(2, 64, seed=0)
    assert img.mode == "RGB"
    assert img.size == (11 * 64 + 10 * 2, 26 + 2 * 64 + 2)
    bare = make_style_grid(1, 64, seed=0, labels=False, with_mask=False)
    assert bare.size == (10 * 64 + 9 * 2, 64)
    # tile (row 0, style 1) is scene 0's night render
    tile = np.asarray(bare)[:, :64]
    assert np.array_equal(tile, to_uint8(render_scene(seed=scene_seed(0, 0), size=64).images[0]))


def test_cli_render(tmp_path: Path, capsys):
    out, grid = tmp_path / "out", tmp_path / "g" / "grid.png"
    rc = main(["render", str(out), "--num-scenes", "1", "--size", "64x80", "--seed", "2",
               "--grid", str(grid), "--grid-scenes", "1", "--grid-size", "64"])
    assert rc == 0
    assert (out / "scene000000" / "10.png").is_file() and (out / "styles.json").is_file()
    with Image.open(out / "scene000000" / "3.png") as im:
        assert im.size == (80, 64)
    with Image.open(grid) as g:
        assert g.size == (11 * 64 + 20, 26 + 64)
    assert "wrote 1 scenes" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["--num-scenes", "0"], "num_scenes"),
    (["--size", "16"], "16"),
    (["--size", "abc"], "abc"),
])
def test_cli_render_errors(tmp_path: Path, capsys, argv, match):
    try:
        rc = main(["render", str(tmp_path / "o"), *argv])
    except SystemExit as e:  # argparse rejects the value itself
        rc = e.code
    assert rc == 2
    assert match in capsys.readouterr().err


def test_cli_render_unwritable(tmp_path: Path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert main(["render", str(f), "-n", "1", "--size", "64"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_worker_processes_write_the_same_files(tmp_path: Path):
    render_dataset(tmp_path / "a", 1, size=64, seed=9, start=3, progress=False)
    render_dataset(tmp_path / "b", 1, size=64, seed=9, start=3, progress=False, workers=1)
    for name in ["mask.png"] + [f"{k}.png" for k in range(1, 11)]:
        f = f"{scene_name(3)}/{name}"
        assert np.array_equal(_load(tmp_path / "a" / f), _load(tmp_path / "b" / f)), f
    with pytest.raises(ValueError, match="workers"):
        render_dataset(tmp_path / "c", 1, size=64, progress=False, workers=-1)


@pytest.mark.parametrize("env, shown", [("1", False), ("0", True)])
def test_progress_bar_follows_the_environment(tmp_path: Path, capsys, monkeypatch, env, shown):
    monkeypatch.setenv("HARMONYKIT_DISABLE_PROGRESS", env)
    render_dataset(tmp_path / "p", 1, size=64)
    assert ("render:" in capsys.readouterr().err) is shown
