"""Crop in the DataLoader workers: what crosses the process boundary is the uint8 training crop.

:class:`WorkerCropDataset` wraps a dataset of full-size samples and crops each one with an
:class:`~harmonykit.data.augment.AlignedRandomResizedCrop` **inside the worker process**; the
sample it returns holds ``composite`` / ``real`` as ``(3, h, w)`` **uint8** and ``mask`` as
``(1, h, w)`` uint8 (``mask * 255``, when the crop leaves it binary) or float32 (soft masks),
so a batch of 8 at 256² is 3.5 MiB instead of the 100+ MiB of full-size float images.
:func:`~harmonykit.data.collate.images_to_float` turns it back into float in [0, 1] on the
model's device (``u8.float() / 255``).

Randomness: sample ``index`` of epoch ``epoch`` draws its crop from its own generator, seeded
by :func:`sample_seed` ``(seed, salt, epoch, index)``: the crops depend neither on the number
of workers nor on which worker loads a sample, and a resumed run re-draws exactly the crops of
an uninterrupted one. The index the dataset receives is the pair ``(epoch, index)``
(:class:`EpochBatchSampler` makes those from any batch sampler with an ``epoch`` attribute).

Arithmetic: the crop is the module's own (``backend="cv2"``: the official OpenCV
``INTER_LINEAR`` on the uint8 bytes, whose float output is exactly ``k / 255``, so the uint8
round trip is lossless and the result is bit-identical to cropping the same box in the main
process; ``backend="kornia"``: the antialiased float resize, then rounded to 8 bits, within
0.5 / 255 of the float path).
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from .augment import AlignedRandomResizedCrop, CropParams

__all__ = ["sample_seed", "sample_generator", "WorkerCropDataset", "EpochBatchSampler", "split_crop", "to_uint8", "IMAGE_KEYS"]

IMAGE_KEYS = ("composite", "real", "mask")


def sample_seed(seed: int, salt: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample's crop, mixed from ``(seed, salt, epoch, index)``
    (numpy ``SeedSequence``: well spread, stable across platforms and versions)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(salt) & 0xFFFFFFFF, int(epoch), int(index)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def sample_generator(seed: int, salt: int, epoch: int, index: int) -> torch.Generator:
    """The CPU generator sample ``index`` of ``epoch`` draws its crop from."""
    return torch.Generator().manual_seed(sample_seed(seed, salt, epoch, index))


def _mask_is_binary(crop: AlignedRandomResizedCrop) -> bool:
    """Whether the crop's output masks are exactly {0, 1} (then shipped as uint8)."""
    if crop.mask_threshold is not None:
        return True
    return crop.backend == "cv2" and crop.mask_dtype == "uint8"  # a 0/1 mask resized as uint8 stays {0, 1}


class WorkerCropDataset(Dataset):
    """A dataset whose samples are cropped (and flipped) to the training size in the worker.

    Args:
        dataset: yields full-size sample dicts (``composite`` / ``real`` ``(3, H, W)``, ``mask``
            ``(1, H, W)``, float in [0, 1]).
        crop: the crop (its own generator is not used: see :func:`sample_seed`).
        seed, salt: the crop seeds (``salt`` tells apart datasets trained together).

    ``dataset[(epoch, index)]`` -> the sample with ``composite`` / ``real`` ``(3, h, w)`` uint8,
    ``mask`` ``(1, h, w)`` uint8 holding 0 / 255 when the crop gives a binary mask, else float32
    in [0, 1]; other keys unchanged. ``dataset[index]`` means epoch 0.
    """

    def __init__(self, dataset: Dataset, crop: AlignedRandomResizedCrop, seed: int = 0, salt: int = 0) -> None:
        if not isinstance(crop, AlignedRandomResizedCrop):
            raise TypeError(f"crop: expected an AlignedRandomResizedCrop, got {type(crop).__name__}")
        self.dataset, self.crop, self.seed, self.salt = dataset, crop, int(seed), int(salt)
        self.mask_u8 = _mask_is_binary(crop)
        for attr in ("domain", "description", "prepared"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def crop_params(self, epoch: int, index: int) -> CropParams:
        """The crop box sample ``index`` of ``epoch`` gets (decodes the sample; for tests and debugging)."""
        m = self.dataset[index]["mask"]
        return self.crop._draw(m, sample_generator(self.seed, self.salt, epoch, index))

    def __getitem__(self, key: Any) -> Dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        sample = self.dataset[int(index)]
        g = sample_generator(self.seed, self.salt, epoch, int(index))
        out = self.crop({k: [sample[k]] for k in IMAGE_KEYS}, generator=g)
        res = dict(sample)
        for k in ("composite", "real"):
            res[k] = to_uint8(out[k][0])
        m = out["mask"][0]
        res["mask"] = to_uint8(m) if self.mask_u8 else m.to(torch.float32).contiguous()
        return res


def to_uint8(x: Tensor) -> Tensor:
    """``(C, H, W)`` float in [0, 1] -> uint8 ``rint(255 x)`` (lossless for ``k / 255`` values)."""
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).contiguous()


class EpochBatchSampler(Sampler[List[Tuple[int, int]]]):
    """Wraps a batch sampler: yields ``[(epoch, i), ...]`` with the wrapped sampler's current
    ``epoch`` (read when iteration starts, in the main process, so persistent workers see it)."""

    def __init__(self, batch_sampler: Any) -> None:
        self.batch_sampler = batch_sampler

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        epoch = int(getattr(self.batch_sampler, "epoch", 0))
        for batch in self.batch_sampler:
            yield [(epoch, int(i)) for i in batch]


def split_crop(aug: Any) -> Tuple[AlignedRandomResizedCrop, Any]:
    """Split an augmentation into (the crop, what runs after it on the device or None).

    Accepts an :class:`AlignedRandomResizedCrop` or a :class:`~harmonykit.data.augment.Compose`
    whose first step is one (``harmonization_train``). Raises ``ValueError`` otherwise."""
    from .augment import Compose

    if isinstance(aug, AlignedRandomResizedCrop):
        return aug, None
    if isinstance(aug, Compose) and len(aug.steps) and isinstance(aug.steps[0], AlignedRandomResizedCrop):
        rest: Sequence[Any] = list(aug.steps)[1:]
        return aug.steps[0], (Compose(*rest) if rest else None)
    raise ValueError(
        f"data.crop_in_workers: the augmentation must start with an aligned crop (aligned_crop or "
        f"harmonization_train) to crop in the workers; got {type(aug).__name__}. Set data.crop_in_workers: false"
    )
