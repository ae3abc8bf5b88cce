"""Decoding rules: formats, EXIF, modes, masks, reduced decode, bad files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from harmonykit.data.io import (
    CorruptFileError,
    DataError,
    DataFileNotFoundError,
    ListFormatError,
    fit_size,
    load_image,
    load_mask,
    probe_image,
    read_list,
)



def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32).transpose(2, 0, 1) / 255.0)


@pytest.mark.parametrize("fmt,kw", [("png", {}), ("webp", {"lossless": True}), ("bmp", {})])
def test_lossless_formats_match_pil_exactly(tmp_path, fmt, kw):
    a = _rgb(17, 23, 1)
    p = tmp_path / f"x.{fmt}"
    Image.fromarray(a).save(p, **kw)
    x = load_image(p)
    assert x.shape == (3, 17, 23) and x.dtype == torch.float32
    assert torch.equal(x, _chw(a))


def test_jpeg_matches_pil_decode(tmp_path):
    p = tmp_path / "x.jpg"
    Image.fromarray(_rgb(31, 29, 2)).save(p, quality=90)
    assert torch.equal(load_image(p), _chw(np.asarray(Image.open(p).convert("RGB"))))


def test_exif_orientation_is_applied(tmp_path):
    a = _rgb(20, 40, 3)  # stored 40 wide, 20 high
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = tmp_path / "o.jpg"
    img.save(p, exif=exif, quality=95)
    assert probe_image(p).size == (20, 40)
    x = load_image(p)
    assert x.shape == (3, 40, 20)
    ref = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
    assert torch.equal(x, _chw(ref))
    # reduced decode keeps the orientation too
    assert load_image(p, size=(10, 20)).shape == (3, 20, 10)


def test_mode_conversion_rules(tmp_path):
    g = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.shape == (3, 12, 10)
    assert torch.equal(x[0], x[2]) and torch.allclose(x[1], torch.from_numpy(g / 255.0).float())

    rgba = np.dstack([_rgb(8, 9, 4), np.full((8, 9), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert torch.equal(load_image(tmp_path / "a.png"), _chw(rgba[..., :3]))  # alpha dropped, colour kept

    g16 = (np.arange(6 * 5, dtype=np.uint16).reshape(6, 5) * 2000).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    x16 = load_image(tmp_path / "g16.png")
    assert torch.allclose(x16[0], torch.from_numpy(g16 / 65535.0).float(), atol=1e-6)

    pal = Image.fromarray(_rgb(6, 6, 5)).convert("P")
    pal.save(tmp_path / "p.png")
    assert torch.equal(load_image(tmp_path / "p.png"), _chw(np.asarray(pal.convert("RGB"))))


def test_mask_encodings(tmp_path):
    m255 = np.zeros((10, 12), np.uint8)
    m255[2:6, 3:9] = 255
    expect = torch.from_numpy(m255 / 255.0).float()[None]
    Image.fromarray(m255).save(tmp_path / "m255.png")
    Image.fromarray((m255 // 255).astype(np.uint8)).save(tmp_path / "m01.png")
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[2:6, 3:9, 0] = 200  # painted red
    Image.fromarray(rgb).save(tmp_path / "mrgb.png")
    alpha = np.zeros((10, 12, 4), np.uint8)
    alpha[..., :3] = 90  # constant colour, foreground in alpha
    alpha[2:6, 3:9, 3] = 255
    Image.fromarray(alpha, "RGBA").save(tmp_path / "malpha.png")
    for name in ("m255", "m01", "mrgb", "malpha"):
        m = load_mask(tmp_path / f"{name}.png")
        assert m.shape == (1, 10, 12), name
        assert torch.equal(m, expect), name

    soft = np.tile(np.linspace(0, 255, 12).round().astype(np.uint8), (10, 1))
    Image.fromarray(soft).save(tmp_path / "soft.png")
    ms = load_mask(tmp_path / "soft.png", threshold=None)
    assert torch.allclose(ms[0], torch.from_numpy(soft / 255.0).float())
    mb = load_mask(tmp_path / "soft.png")
    assert torch.equal(mb[0], (torch.from_numpy(soft / 255.0).float() >= 0.5).float())


def test_reduced_jpeg_decode_is_close_to_full_decode(tmp_path):
    yy, xx = np.mgrid[0:800, 0:1200]
    a = np.dstack([xx % 256, yy % 256, (xx + yy) // 8 % 256]).astype(np.uint8)
    p = tmp_path / "big.jpg"
    Image.fromarray(a).save(p, quality=95)
    size = fit_size((1200, 800), 300)
    assert size == (300, 200)
    fast = load_image(p, size=size)
    slow = _chw(np.asarray(Image.open(p).convert("RGB").resize(size, Image.BILINEAR)))
    assert fast.shape == (3, 200, 300)
    assert (fast - slow).abs().mean() < 0.03


def test_missing_file_names_path(tmp_path):
    p = tmp_path / "nope.jpg"
    with pytest.raises(DataFileNotFoundError, match="nope.jpg") as ei:
        load_image(p, what="composite")
    assert isinstance(ei.value, FileNotFoundError) and isinstance(ei.value, ValueError)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        probe_image(p)


def test_truncated_and_garbage_files(tmp_path):
    good = tmp_path / "g.jpg"
    Image.fromarray(_rgb(64, 64, 7)).save(good, quality=95)
    data = good.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"cut\.jpg.*truncated"):
        probe_image(cut)
    with pytest.raises(CorruptFileError, match=r"cut\.jpg"):
        load_image(cut)

    png = tmp_path / "g.png"
    Image.fromarray(_rgb(64, 64, 8)).save(png)
    cutp = tmp_path / "cut.png"
    cutp.write_bytes(png.read_bytes()[:-40])
    with pytest.raises(CorruptFileError, match=r"cut\.png.*IEND"):
        probe_image(cutp)

    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image at all")
    with pytest.raises(CorruptFileError, match=r"junk\.png"):
        probe_image(junk)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(CorruptFileError, match=r"empty\.jpg.*empty"):
        probe_image(empty)


def test_read_list(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("a.jpg\n\n  b.jpg \r\n# comment\n")
    lines = read_list(p)
    assert [(ln.lineno, ln.text) for ln in lines] == [(1, "a.jpg"), (3, "b.jpg")]
    e = tmp_path / "e.txt"
    e.write_text("\n\n")
    with pytest.raises(ListFormatError, match=r"e\.txt.*empty"):
        read_list(e)
    with pytest.raises(DataError, match="missing.txt"):
        read_list(tmp_path / "missing.txt")
