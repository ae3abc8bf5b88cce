"""``harmonykit prepare``: a training-ready copy of a dataset root, its manifest and reruns."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harmonykit.cli import main as cli_main
from harmonykit.data import IHarmony4Dataset, RdHarmonyDataset, check_dataset, format_report, fit_size
from harmonykit.data import prepare as prep
from harmonykit.data.io import DataError
from harmonykit.data.prepare import MANIFEST_NAME, TMP_MARK, PrepareError, find_prepared, prepare_dataset

MAX = 64
BIG = (150, 100)  # (W, H) > MAX: resized to 64x43
SMALL = (40, 30)


def _rgb(w: int, h: int, seed: int) -> np.ndarray:
    """A smooth image (JPEG-friendly) with some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w, y / h, (x + y) / (w + h)], axis=2) * 200 + 20
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def _mask(w: int, h: int, one: int = 255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 4: 3 * h // 4, w // 5: 3 * w // 5] = one
    return m


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """An iHarmony4 root, subset ``HSyn``:

    * ``a_1_1.jpg``: big JPEG triplet (resized), 0/255 PNG mask;
    * ``b_1_1.png``: RGBA composite PNG, RGB PNG real, 0/1 mask;
    * ``c_1_1.jpg``: small JPEG triplet (copied as is), mask stored as an RGB JPEG.
    """
    root = tmp_path / "raw"
    d = root / "HSyn"
    for sub in ("composite_images", "masks", "real_images"):
        (d / sub).mkdir(parents=True)
    Image.fromarray(_rgb(*BIG, 1)).save(d / "composite_images" / "a_1_1.jpg", quality=90)
    Image.fromarray(_rgb(*BIG, 2)).save(d / "real_images" / "a.jpg", quality=90)
    Image.fromarray(_mask(*BIG)).save(d / "masks" / "a_1.png")
    rgba = np.concatenate([_rgb(*SMALL, 3), np.full((SMALL[1], SMALL[0], 1), 90, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(d / "composite_images" / "b_1_1.png")
    Image.fromarray(_rgb(*SMALL, 4)).save(d / "real_images" / "b.png")
    Image.fromarray(_mask(*SMALL, one=1), "L").save(d / "masks" / "b_1.png")
    Image.fromarray(_rgb(*SMALL, 5)).save(d / "composite_images" / "c_1_1.jpg")
    Image.fromarray(_rgb(*SMALL, 6)).save(d / "real_images" / "c.jpg")
    Image.fromarray(np.repeat(_mask(*SMALL)[..., None], 3, axis=2)).save(d / "masks" / "c_1.jpg", quality=100)
    (d / "HSyn_train.txt").write_text("a_1_1.jpg\nb_1_1.png\nc_1_1.jpg\n")
    return root


def _files(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _manifest(dst: Path) -> dict:
    return json.loads((dst / MANIFEST_NAME).read_text())


def _prep(src: Path, dst: Path, **kw):
    kw.setdefault("max_size", MAX)
    kw.setdefault("progress", False)
    return prepare_dataset(src, dst, **kw)


# --------------------------------------------------------------------------------------
def test_outputs_sizes_formats_and_manifest(src: Path, tmp_path: Path):
    dst = tmp_path / "prep"
    res = _prep(src, dst)
    d, s = dst / "HSyn", src / "HSyn"
    # same layout; the JPEG mask became <stem>.png; nothing else appeared
    want = sorted([MANIFEST_NAME] + [f.replace("masks/c_1.jpg", "masks/c_1.png") for f in _files(src)])
    assert _files(dst) == want
    assert sorted(res.done) == sorted(f for f in want if f != MANIFEST_NAME) and not res.skipped

    # big triplet: longer side == MAX, aspect kept, same size for all three
    target = fit_size(BIG, MAX)
    assert max(target) == MAX and target != BIG
    for rel in ("composite_images/a_1_1.jpg", "real_images/a.jpg", "masks/a_1.png"):
        with Image.open(d / rel) as im:
            assert im.size == target, rel
    with Image.open(d / "composite_images/a_1_1.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB"
    # masks: single-channel 8-bit PNG, 0/1 mask scaled to 0/255
    for rel in ("masks/a_1.png", "masks/b_1.png", "masks/c_1.png"):
        with Image.open(d / rel) as im:
            assert (im.format, im.mode) == ("PNG", "L"), rel
    b = np.asarray(Image.open(d / "masks/b_1.png"))
    assert set(np.unique(b)) == {0, 255}
    assert np.array_equal(b == 255, _mask(*SMALL, one=1) == 1)
    # RGBA composite: alpha dropped by the decoding rule, colours kept losslessly
    with Image.open(d / "composite_images/b_1_1.png") as im:
        assert im.mode == "RGB"
        src_rgba = np.asarray(Image.open(s / "composite_images/b_1_1.png"))
        assert np.array_equal(np.asarray(im), src_rgba[..., :3])
    # small plain JPEG: copied byte for byte (no second JPEG generation); list copied
    assert (d / "composite_images/c_1_1.jpg").read_bytes() == (s / "composite_images/c_1_1.jpg").read_bytes()
    assert (d / "HSyn_train.txt").read_bytes() == (s / "HSyn_train.txt").read_bytes()

    m = _manifest(dst)
    assert m["complete"] is True and m["settings"]["max_size"] == MAX and m["format"] == "iharmony4"
    assert sorted(m["files"]) == sorted(f for f in want if f != MANIFEST_NAME)
    for rel, e in m["files"].items():
        data = (dst / rel).read_bytes()
        st = (src / e["source"]).stat()
        assert e["sha256"] == hashlib.sha256(data).hexdigest() and e["bytes"] == len(data), rel
        assert (e["source_bytes"], e["source_mtime_ns"]) == (st.st_size, st.st_mtime_ns), rel
        if e["kind"] != "copy":
            with Image.open(dst / rel) as im:
                assert tuple(e["size"]) == im.size, rel
    assert m["files"]["HSyn/masks/c_1.png"]["source"] == "HSyn/masks/c_1.jpg"


def test_datasets_read_prepared_root(src: Path, tmp_path: Path):
    dst = tmp_path / "prep"
    _prep(src, dst)
    raw = IHarmony4Dataset(src, split="train", max_size=MAX)
    ready = IHarmony4Dataset(dst, split="train")
    assert raw.prepared is None and "prepared" not in repr(raw)
    assert ready.prepared is not None and ready.prepared.max_size == MAX and ready.prepared.complete
    assert "prepared" in repr(ready) and "prepared: max_size=64" in ready.description
    assert find_prepared(dst / "HSyn") is not None  # a subset folder of a prepared root
    assert [r.name for r in raw.records] == [r.name for r in ready.records]
    for i in range(len(raw)):
        a, b = raw[i], ready[i]
        for k in ("composite", "real", "mask"):
            assert a[k].shape == b[k].shape, (a["name"], k)
        assert torch.equal(a["mask"], b["mask"]), a["name"]  # same 8-bit values, same threshold
        if a["name"] == "a_1_1":  # re-encoded JPEG (quality 95): close
            assert (a["composite"] - b["composite"]).abs().mean() < 0.01
        else:  # PNG lossless / JPEG copied: identical
            assert torch.equal(a["composite"], b["composite"]) and torch.equal(a["real"], b["real"])
    rep = check_dataset(dst, progress=False)
    assert rep.ok and rep.prepared.startswith("prepared: max_size=64")
    assert "prepared: max_size=64" in format_report(rep)
    assert check_dataset(src, progress=False).prepared is None


def test_rerun_redoes_only_what_changed(src: Path, tmp_path: Path):
    dst = tmp_path / "prep"
    first = _prep(src, dst)
    stamp = {f: (dst / f).stat().st_mtime_ns for f in first.done}
    again = _prep(src, dst)
    assert again.done == [] and sorted(again.skipped) == sorted(first.done)
    assert {f: (dst / f).stat().st_mtime_ns for f in first.done} == stamp

    # touch one source (new mtime, new content): only its output is redone
    comp = src / "HSyn/composite_images/a_1_1.jpg"
    Image.fromarray(_rgb(*BIG, 99)).save(comp, quality=90)
    st = comp.stat()
    os.utime(comp, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = _prep(src, dst)
    assert third.done == ["HSyn/composite_images/a_1_1.jpg"]
    e = _manifest(dst)["files"]["HSyn/composite_images/a_1_1.jpg"]
    assert e["source_mtime_ns"] == comp.stat().st_mtime_ns
    assert e["sha256"] == hashlib.sha256((dst / "HSyn/composite_images/a_1_1.jpg").read_bytes()).hexdigest()

    # an output altered or deleted behind the manifest's back is redone
    (dst / "HSyn/real_images/b.png").unlink()
    assert _prep(src, dst).done == ["HSyn/real_images/b.png"]
    # a source removed: its output is removed too
    (src / "HSyn/real_images/c.jpg").unlink()
    fourth = _prep(src, dst)
    assert fourth.removed == ["HSyn/real_images/c.jpg"] and not (dst / "HSyn/real_images/c.jpg").exists()
    # other settings: everything is redone
    assert sorted(_prep(src, dst, max_size=32).done) == sorted(_manifest(dst)["files"])


def test_corrupt_file_is_named_and_the_rest_done(src: Path, tmp_path: Path):
    bad = src / "HSyn/real_images/a.jpg"
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[: len(good_bytes) // 2])  # truncated JPEG
    dst = tmp_path / "prep"
    with pytest.raises(PrepareError) as ei:
        _prep(src, dst)
    assert str(bad) in str(ei.value) and len(ei.value.errors) == 1
    assert isinstance(ei.value, DataError)
    assert not (dst / "HSyn/real_images/a.jpg").exists()
    m = _manifest(dst)
    assert m["complete"] is False and "HSyn/real_images/a.jpg" not in m["files"]
    assert len(m["files"]) == len(_files(src)) - 1
    rep = check_dataset(dst, progress=False)
    assert "INCOMPLETE" in rep.prepared and any("did not finish" in p for p in rep.problems)
    # fixed: the rerun redoes only that file
    bad.write_bytes(good_bytes)
    assert _prep(src, dst).done == ["HSyn/real_images/a.jpg"]
    assert _manifest(dst)["complete"] is True
    # an image that is not an image at all
    (src / "HSyn/masks/a_1.png").write_bytes(b"not a png")
    with pytest.raises(PrepareError, match="a_1.png"):
        _prep(src, dst)


def test_cli(src: Path, tmp_path: Path, capsys):
    dst = tmp_path / "prep"
    assert cli_main(["prepare", str(src), str(dst), "--max-size", str(MAX)]) == 0
    assert "written" in capsys.readouterr().out
    assert find_prepared(dst).max_size == MAX
    # not a dataset root / output == source: one clear error line, exit 2
    (tmp_path / "empty").mkdir()
    assert cli_main(["prepare", str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    assert "unrecognised layout" in capsys.readouterr().err
    assert cli_main(["prepare", str(src), str(src)]) == 2
    assert "source folder" in capsys.readouterr().err
    (src / "HSyn/composite_images/b_1_1.png").write_bytes(b"")
    assert cli_main(["prepare", str(src), str(dst), "--max-size", str(MAX)]) == 2
    assert "b_1_1.png" in capsys.readouterr().err


def test_interrupted_run_leaves_no_partial_files(src: Path, tmp_path: Path, monkeypatch):
    dst = tmp_path / "prep"
    calls = {"n": 0}
    real_write = prep._write_bytes

    def dying_write(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 4:  # half of the 4th file reaches the disk, then Ctrl-C
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(prep, "_write_bytes", dying_write)
    with pytest.raises(KeyboardInterrupt):
        _prep(src, dst)
    monkeypatch.setattr(prep, "_write_bytes", real_write)
    assert not [p for p in dst.rglob("*") if TMP_MARK in p.name or p.name.endswith(".tmp")]
    m = _manifest(dst)
    assert m["complete"] is False and len(m["files"]) == 3
    on_disk = [f for f in _files(dst) if f != MANIFEST_NAME]
    assert sorted(on_disk) == sorted(m["files"])  # every file present is complete and recorded
    for rel, e in m["files"].items():
        assert hashlib.sha256((dst / rel).read_bytes()).hexdigest() == e["sha256"]
    # a stale temporary of a hard kill is cleaned up; the rerun does only the rest
    (dst / "HSyn" / f".x.jpg.1{TMP_MARK}").write_bytes(b"partial")
    res = _prep(src, dst)
    assert len(res.done) == len(_files(src)) - 3 and len(res.skipped) == 3
    assert not list(dst.rglob(f"*{TMP_MARK}")) and _manifest(dst)["complete"] is True


def test_workers_match_single_process(src: Path, tmp_path: Path):
    _prep(src, tmp_path / "p0", workers=0)
    _prep(src, tmp_path / "p2", workers=2)
    a, b = _manifest(tmp_path / "p0")["files"], _manifest(tmp_path / "p2")["files"]
    assert {k: v["sha256"] for k, v in a.items()} == {k: v["sha256"] for k, v in b.items()}


def test_rdharmony_soft_labels_carried(tmp_path: Path):
    root = tmp_path / "rd"
    d = root / "SHuman"
    for sub in ("composite_images", "masks", "real_images"):
        (d / sub).mkdir(parents=True)
    Image.fromarray(_mask(*BIG)).save(d / "masks" / "s1.png")
    lines = []
    for y, z, soft in ((1, 2, "0.7_0.3_0_0_0_0_0_0_0_0"), (2, 1, "0.4_0.6_0_0_0_0_0_0_0_0")):
        Image.fromarray(_rgb(*BIG, 10 * y + z)).save(d / "composite_images" / f"s1-{y}_{z}.jpg")
        Image.fromarray(_rgb(*BIG, y)).save(d / "real_images" / f"s1-{y}.jpg")
        lines.append(f"SHuman/composite_images/s1-{y}_{z}.jpg\t{soft}\t{y}")
    (d / "SHuman_all_labeled.txt").write_text("\n".join(lines) + "\n")
    dst = tmp_path / "prep"
    _prep(root, dst)
    assert _manifest(dst)["format"] == "rdharmony"
    raw, ready = RdHarmonyDataset(root, max_size=MAX), RdHarmonyDataset(dst)
    assert ready.prepared is not None and raw.prepared is None
    for i in range(len(raw)):
        a, b = raw[i], ready[i]
        assert torch.equal(a["style_soft"], b["style_soft"]) and int(a["style"]) == int(b["style"])
        assert b["composite"].shape[-2:] == (fit_size(BIG, MAX)[1], fit_size(BIG, MAX)[0])


# --------------------------------------------------------------------------------------
REAL = os.environ.get("HARMONYKIT_REAL_DATA")


@pytest.mark.skipif(not REAL, reason="HARMONYKIT_REAL_DATA not set")
def test_real_hadobe5k(tmp_path: Path):
    src = Path(REAL) / "iharmony4_mini" / "HAdobe5k"
    assert src.is_dir(), f"{src} missing"
    dst = tmp_path / "HAdobe5k"
    res = prepare_dataset(src, dst, max_size=1024, progress=False)
    assert res.done and not res.errors
    raw = IHarmony4Dataset(src, split="test", max_size=1024)
    ready = IHarmony4Dataset(dst, split="test")
    assert ready.prepared is not None and ready.prepared.max_size == 1024
    for r in ready.records:
        for p in (r.composite, r.real, r.mask):
            with Image.open(p) as im:
                assert max(im.size) == 1024, p
    with Image.open(ready.records[0].mask) as im:
        assert im.mode == "L" and im.format == "PNG"
    src_size = raw.records[0].size
    assert max(src_size) > 1024
    for i in range(len(raw)):
        a, b = raw[i], ready[i]
        assert a["composite"].shape == b["composite"].shape == (3, *fit_size(src_size, 1024)[::-1])
        assert torch.equal(a["mask"], b["mask"])
        for k in ("composite", "real"):
            assert (a[k] - b[k]).abs().mean() < 0.01, k  # JPEG quality 95 re-encode of the same pixels


# --------------------------------------------------------------------------------------
def test_shards_match_files_and_rebuild_on_change(src: Path, tmp_path: Path):
    import tarfile

    from harmonykit.data.shards import ShardDataset
    from harmonykit.registry import DATASETS

    dst = tmp_path / "prep"
    _prep(src, dst, format="shards", shard_samples=2)
    vdir = dst / "shards" / "HSyn_train"
    tars = sorted(vdir.glob("shard-*.tar"))
    assert [t.name for t in tars] == ["shard-00000.tar", "shard-00001.tar"]  # 3 samples, 2 per shard
    with tarfile.open(tars[0]) as tar:
        names = tar.getnames()
    assert names[:4] == ["00000000.composite.jpg", "00000000.real.jpg", "00000000.mask.png", "00000000.json"]
    assert _manifest(dst)["shards"] == ["HSyn_train"]
    files = IHarmony4Dataset(dst, split="train")
    sh = DATASETS.create("prepared_shards", root=dst)
    assert isinstance(sh, ShardDataset) and len(sh) == len(files) == 3
    for i in range(len(sh)):
        a, b = files[i], sh[i]
        assert a["name"] == b["name"] and a["domain"] == b["domain"]
        for k in ("composite", "real", "mask"):
            assert torch.equal(a[k], b[k]), (a["name"], k)
    # the shards are read from a worker process too (per-process file handles)
    loader = torch.utils.data.DataLoader(sh, batch_size=None, num_workers=1)
    assert [s["name"] for s in loader] == [r.name for r in files.records]

    stamp = (vdir / "index.json").stat().st_mtime_ns
    assert _prep(src, dst, format="shards", shard_samples=2).done == []
    assert (vdir / "index.json").stat().st_mtime_ns == stamp
    comp = src / "HSyn/composite_images/b_1_1.png"
    st = comp.stat()
    os.utime(comp, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert _prep(src, dst, format="shards", shard_samples=2).done == ["HSyn/composite_images/b_1_1.png",
                                                                      "shards/HSyn_train/"]
    with pytest.raises(FileNotFoundError, match="shard"):
        ShardDataset(tmp_path / "nowhere")


def test_shards_rdharmony_labels(tmp_path: Path):
    from harmonykit.data.shards import ShardDataset

    root = tmp_path / "rd"
    d = root / "SHuman"
    for sub in ("composite_images", "masks", "real_images"):
        (d / sub).mkdir(parents=True)
    Image.fromarray(_mask(*SMALL)).save(d / "masks" / "s1.png")
    Image.fromarray(_rgb(*SMALL, 1)).save(d / "composite_images" / "s1-3_7.png")
    Image.fromarray(_rgb(*SMALL, 2)).save(d / "real_images" / "s1-3.png")
    (d / "SHuman_all_labeled.txt").write_text("SHuman/composite_images/s1-3_7.png\t0.25_0_0.75_0_0_0_0_0_0_0\t3\n")
    dst = tmp_path / "prep"
    _prep(root, dst, format="shards")
    a, b = RdHarmonyDataset(dst)[0], ShardDataset(dst, view="SHuman_all_labeled")[0]
    assert b["domain"] == "rendered" and int(b["style"]) == 2
    assert torch.equal(a["style_soft"], b["style_soft"]) and b["style_soft"].dtype == torch.float64
    assert torch.equal(a["composite"], b["composite"]) and torch.equal(a["mask"], b["mask"])
