"""``data.crop_in_workers``: the trainer takes uint8 crops made in the DataLoader workers, turns
them into float on its device, and the run does not depend on the number of workers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from harmonykit.train.data import TrainData
from harmonykit.train.recipe import load_recipe
from harmonykit.train.trainer import Trainer


@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    yield
    torch.use_deterministic_algorithms(False)


def _ih4(root, n=4, size=(72, 80)):
    d = root / "HCOCO"
    for sub in ("composite_images", "masks", "real_images"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, w = size
    names = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / "composite_images" / f"c{i}_{i}_1.jpg")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / "real_images" / f"c{i}.jpg")
        m = np.zeros((h, w), np.uint8)
        m[10 + i : 50, 8 : 60 - i] = 255
        Image.fromarray(m).save(d / "masks" / f"c{i}_{i}.png")
        names.append(f"c{i}_{i}_1.jpg")
    (d / "HCOCO_train.txt").write_text("\n".join(names) + "\n")
    return root


def _recipe(root, workers, extra=()):
    return load_recipe("idih_real_only", overrides=[
        "model.ch=8", "model.max_channels=64", "model.depth=4", "deterministic=true", "train.batch_size=2", "train.iterations=3",
        "train.epochs=null", "train.device=cpu", "val.interval=0", "data.val=null", f"data.num_workers={workers}",
        f"data.real.root={root}", "data.real.split=train", "data.real.list_file=null", "data.augmentation.size=64",
        "data.crop_in_workers=true", *extra])


def test_trainer_runs_on_worker_crops_independent_of_workers(tmp_path):
    root = _ih4(tmp_path / "ih4")
    states = []
    for workers in (0, 2):
        r = _recipe(root, workers)
        data = TrainData.from_recipe(r)
        b = next(data.batches("real", 0))
        assert b["composite"].dtype == torch.uint8 and tuple(b["composite"].shape) == (2, 3, 64, 64)
        tr = Trainer(r, run_dir=None)
        assert tr.augment is None  # the crop moved to the workers; nothing left for the device
        assert tr.fit(data, progress=False) == "done" and tr.iteration == 3
        states.append({k: v.clone() for k, v in tr.model.state_dict().items()})
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_crop_in_workers_needs_a_crop(tmp_path):
    root = _ih4(tmp_path / "ih4", n=2)
    r = _recipe(root, 0, ["data.augmentation={name: paired_color_jitter}"])
    with pytest.raises(ValueError, match="crop_in_workers"):
        TrainData.from_recipe(r)


def test_crop_in_workers_is_the_default_and_idle_without_augmentation(tmp_path):
    """The schema default is true (the crop runs in the workers for every shipped recipe that
    crops); with ``data.augmentation: null`` there is nothing to move and no error."""
    from harmonykit.data.worker_crop import WorkerCropDataset
    from harmonykit.train.recipe import SCHEMA

    assert SCHEMA["data"]["crop_in_workers"].default is True
    root = _ih4(tmp_path / "ih4", n=2)
    r = load_recipe("idih_real_only", overrides=[f"data.real.root={root}", "data.real.split=train",
                                                 "data.real.list_file=null", "data.val=null", "data.num_workers=0",
                                                 "train.batch_size=2"])
    assert r["data"]["crop_in_workers"] is True
    assert isinstance(TrainData.from_recipe(r).datasets["real"], WorkerCropDataset)
    r = load_recipe("idih_real_only", overrides=[f"data.real.root={root}", "data.real.split=train",
                                                 "data.real.list_file=null", "data.val=null", "data.augmentation=null",
                                                 "train.batch_size=2"])
    assert not isinstance(TrainData.from_recipe(r).datasets["real"], WorkerCropDataset)
