"""Cropping in the DataLoader workers (``data.crop_in_workers``): uint8 crops cross the process
boundary, crops are drawn per sample from (seed, epoch, index), so the number of workers and
resuming change nothing, and the official cv2 arithmetic is bit-identical to cropping the same
box in the main process."""
from __future__ import annotations

import pytest
import torch

from harmonykit.data import IHarmony4Dataset
from harmonykit.data.augment import AlignedRandomResizedCrop, harmonization_train
from harmonykit.data.collate import images_to_float
from harmonykit.data.worker_crop import WorkerCropDataset, sample_seed, split_crop
from harmonykit.train.data import TrainData

SIZE = 32


@pytest.fixture
def ds(tmp_path, dbuild):
    root = tmp_path / "ih4"
    stems = [f"a{i}_{i}_1" for i in range(6)]
    dbuild.write_ih4_subset(root, "HCOCO", stems, "train", size=(48, 56))
    return IHarmony4Dataset(root, split="train", mask_rule="truncate")


def _crop(backend: str, mask_dtype: str = "uint8") -> AlignedRandomResizedCrop:
    return AlignedRandomResizedCrop(SIZE, backend=backend, mask_dtype=mask_dtype, seed=123)


def _epochs(data: TrainData, dom: str, epochs=(0, 1)):
    return [b for e in epochs for b in data.batches(dom, e)]


def test_batches_do_not_depend_on_worker_count(ds):
    """0 and 2 workers (persistent, re-iterated over two epochs) give identical uint8 batches."""
    got = []
    for workers in (0, 2):
        data = TrainData({"real": ds}, batch_size=2, seed=5, num_workers=workers, crop=_crop("cv2"))
        got.append(_epochs(data, "real"))
    a, b = got
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert x["name"] == y["name"]
        for k in ("composite", "real", "mask"):
            assert x[k].dtype == torch.uint8 and x[k].shape[-2:] == (SIZE, SIZE), (k, x[k].dtype, x[k].shape)
            assert torch.equal(x[k], y[k]), k
    # the two epochs draw different crops of the same samples
    e0 = {n: c for bt in a[:3] for n, c in zip(bt["name"], bt["composite"])}
    e1 = {n: c for bt in a[3:] for n, c in zip(bt["name"], bt["composite"])}
    assert set(e0) == set(e1) and any(not torch.equal(e0[n], e1[n]) for n in e0)


def test_resume_mid_epoch_sees_the_same_batches(ds):
    data = TrainData({"real": ds}, batch_size=2, seed=5, num_workers=0, crop=_crop("cv2"))
    full = list(data.batches("real", 3))
    tail = list(data.batches("real", 3, start_batch=1))
    assert len(tail) == len(full) - 1
    for x, y in zip(full[1:], tail):
        assert x["name"] == y["name"] and torch.equal(x["composite"], y["composite"]) and torch.equal(x["mask"], y["mask"])


@pytest.mark.parametrize("mask_dtype", ["uint8", "float32"])
def test_cv2_worker_crop_is_bit_identical_to_the_main_process_path(ds, mask_dtype):
    """Same box: the worker's uint8 crop, made float on the device, equals the main-process
    cv2 crop of the full-size float sample bit for bit (image and mask)."""
    crop = _crop("cv2", mask_dtype)
    wds = WorkerCropDataset(ds, crop, seed=9, salt=1)
    for epoch, i in [(0, 0), (0, 3), (7, 5)]:
        s = wds[(epoch, i)]
        assert s["mask"].dtype == (torch.uint8 if mask_dtype == "uint8" else torch.float32)
        dev = images_to_float({k: s[k][None] for k in ("composite", "real", "mask")})
        full = ds[i]
        ref = crop({k: [full[k]] for k in ("composite", "real", "mask")}, params=[wds.crop_params(epoch, i)])
        for k in ("composite", "real", "mask"):
            assert dev[k].dtype == torch.float32
            assert torch.equal(dev[k], ref[k]), f"{k} epoch {epoch} index {i}"


def test_kornia_worker_crop_is_the_float_path_rounded_to_8_bits(ds):
    crop = _crop("kornia")
    wds = WorkerCropDataset(ds, crop, seed=9, salt=1)
    s = wds[(2, 4)]
    dev = images_to_float({k: s[k][None] for k in ("composite", "real", "mask")})
    full = ds[4]
    ref = crop({k: [full[k]] for k in ("composite", "real", "mask")}, params=[wds.crop_params(2, 4)])
    for k in ("composite", "real"):
        d = (dev[k] - ref[k]).abs().max().item()
        assert d <= 0.5 / 255 + 1e-6, f"{k}: max |diff| {d}"
    assert s["mask"].dtype == torch.float32 and torch.equal(dev["mask"], ref["mask"])  # soft masks stay float


def test_sample_seed_depends_on_every_part():
    base = sample_seed(0, 1, 2, 3)
    assert base == sample_seed(0, 1, 2, 3)
    assert len({base, sample_seed(1, 1, 2, 3), sample_seed(0, 2, 2, 3), sample_seed(0, 1, 3, 3), sample_seed(0, 1, 2, 4)}) == 5
    assert 0 <= base < 2**63


def test_split_crop():
    crop, rest = split_crop(harmonization_train(SIZE, color_jitter={"brightness": 0.1}, seed=0))
    assert isinstance(crop, AlignedRandomResizedCrop) and rest is not None and len(rest.steps) == 1
    crop, rest = split_crop(harmonization_train(SIZE, seed=0))
    assert rest is None
    with pytest.raises(ValueError, match="crop_in_workers"):
        split_crop(torch.nn.Identity())
