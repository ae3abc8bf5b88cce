"""Synthetic composites from real photo + mask pairs, the way iHarmony4 was built.

The foreground's colour statistics are changed and the background is kept **bit-exact**:
``composite = where(mask >= 0.5, edit(real), real)``. Edits (one per sample, drawn at random
from ``methods``):

* ``lab_transfer``: Reinhard statistics transfer in CIE Lab (kornia): the foreground's
  per-channel mean / std are moved to those of a reference region (another sample's
  foreground, or a given reference image), like HCOCO / HFlickr;
* ``histogram``: per-channel RGB histogram matching of the foreground to the reference;
* ``exposure``: ``x * 2**ev``; ``gamma``: ``x ** g``;
* ``white_balance``: random per-channel gains; ``planckian``: a black-body illuminant shift
  (kornia's Planckian coefficients, scaling R and B);
* ``hue_saturation``: hue rotation and saturation scaling (kornia ``adjust_hue`` /
  ``adjust_saturation``).

A sample whose foreground changed by less than ``min_change`` (mean absolute difference in
[0, 1] units) is edited again (with another reference), up to ``max_tries`` times; if it is
still too close, an exposure change of at least one stop is added (``last_methods`` then says
``"<method>+exposure"``). An empty mask is allowed: the
composite then equals the photo (no division by zero anywhere: moments use
``max(area, 1)``).

:class:`SyntheticComposite` is the online (GPU) form, registered as the augmentation
``"synthetic_composite"``; ``harmonykit synthesize`` writes the same composites to a folder
dataset offline.
"""
from __future__ import annotations

import logging

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from kornia.augmentation import RandomPlanckianJitter
from kornia.color import lab_to_rgb, rgb_to_lab
from kornia.enhance import adjust_hue, adjust_saturation
from torch import Tensor, nn

from ..registry import AUGMENTATIONS

__all__ = [
    "METHODS",
    "masked_moments",
    "lab_transfer",
    "histogram_match",
    "SyntheticComposite",
    "find_photo_pairs",
    "synthesize_folder",
]

_logger = logging.getLogger(__name__)

METHODS: Tuple[str, ...] = (
    "lab_transfer",
    "histogram",
    "exposure",
    "gamma",
    "white_balance",
    "planckian",
    "hue_saturation",
)
_NEEDS_REFERENCE = ("lab_transfer", "histogram")


def masked_moments(x: Tensor, mask: Tensor, eps: float = 1e-6) -> Tuple[Tensor, Tensor]:
    """Per-channel mean and std of ``x`` ``(C, H, W)`` where ``mask`` ``(1, H, W)`` >= 0.5.

    An empty mask gives mean 0 and std ``eps`` (never NaN). Returns two ``(C,)`` tensors.
    """
    m = (mask >= 0.5).to(x.dtype)
    n = m.sum().clamp_min(1.0)
    mean = (x * m).sum(dim=(-2, -1)) / n
    var = (((x - mean[:, None, None]) ** 2) * m).sum(dim=(-2, -1)) / n
    return mean, var.clamp_min(0).sqrt().clamp_min(eps)


def _region(ref: Tensor, ref_mask: Optional[Tensor]) -> Tensor:
    """A ``(1, H, W)`` selection of ``ref``: its mask if it has a foreground, else everything."""
    if ref_mask is not None and bool((ref_mask >= 0.5).any()):
        return ref_mask
    return torch.ones_like(ref[:1])


def lab_transfer(
    img: Tensor, mask: Tensor, ref: Tensor, ref_mask: Optional[Tensor] = None, strength: float = 1.0
) -> Tensor:
    """Reinhard colour transfer in Lab.

    Args:
        img: ``(3, H, W)`` in [0, 1]; its region ``mask`` ``(1, H, W)`` is recoloured.
        ref: ``(3, h, w)`` in [0, 1], any size; statistics come from ``ref_mask`` (or all of it).
        strength: blend between the input (0) and the full transfer (1) in Lab.
    Returns:
        ``(3, H, W)`` in [0, 1]; the whole image is edited (blend it with the mask yourself).
    """
    lab = rgb_to_lab(img[None])[0]
    rlab = rgb_to_lab(ref[None])[0]
    mu_s, sd_s = masked_moments(lab, mask)
    mu_r, sd_r = masked_moments(rlab, _region(ref, ref_mask))
    out = (lab - mu_s[:, None, None]) * (sd_r / sd_s)[:, None, None] + mu_r[:, None, None]
    out = lab + strength * (out - lab)
    out[0].clamp_(0, 100)
    return lab_to_rgb(out[None], clip=True)[0]


def histogram_match(img: Tensor, mask: Tensor, ref: Tensor, ref_mask: Optional[Tensor] = None) -> Tensor:
    """Per-channel histogram matching of the masked pixels of ``img`` to ``ref``'s region.

    Shapes as :func:`lab_transfer`. Pixels outside ``mask`` are returned unchanged.
    """
    sel = (mask[0] >= 0.5)
    out = img.clone()
    n = int(sel.sum())
    if n == 0:
        return out
    rsel = _region(ref, ref_mask)[0] >= 0.5
    for c in range(img.shape[0]):
        src = img[c][sel]
        tgt = torch.sort(ref[c][rsel]).values
        ranks = torch.empty_like(src)
        ranks[torch.argsort(src)] = torch.arange(n, device=img.device, dtype=img.dtype)
        q = ranks / max(n - 1, 1) * (tgt.numel() - 1)
        lo = q.floor().long()
        hi = q.ceil().long()
        w = q - lo.to(q.dtype)
        out[c][sel] = tgt[lo] * (1 - w) + tgt[hi] * w
    return out


def _signed(g: torch.Generator, lo: float, hi: float) -> float:
    """A magnitude in [lo, hi] with a random sign."""
    mag = lo + (hi - lo) * float(torch.rand((), generator=g))
    return mag if float(torch.rand((), generator=g)) < 0.5 else -mag


@AUGMENTATIONS.register("synthetic_composite")
class SyntheticComposite(nn.Module):
    """Make composites from real photos: edit the foreground's colours, keep the background.

    Args:
        methods: edits to draw from (see :data:`METHODS`).
        exposure_ev: ``(lo, hi)`` magnitude range of the exposure change in stops.
        gamma: ``(lo, hi)`` magnitude range of ``|log2 gamma|``.
        wb_gain: ``(lo, hi)`` magnitude range of ``|log2 gain|`` per channel.
        hue: ``(lo, hi)`` magnitude range of the hue shift in turns.
        saturation: ``(lo, hi)`` range of the saturation factor.
        lab_strength: ``(lo, hi)`` range of the Lab transfer strength.
        min_change: minimum mean absolute foreground change (in [0, 1] units).
        max_tries: edits tried per sample to reach ``min_change``.
        seed: seed of the module's generator.

    Forward:
        ``forward(batch)`` with a dict holding ``real`` ``(B, 3, H, W)`` and ``mask``
        ``(B, 1, H, W)`` in [0, 1] returns a copy with ``composite`` set and ``mask``
        binarised at 0.5; ``forward(real, mask)`` returns the composite tensor.
        ``reference`` / ``reference_mask`` (a list of ``(3, h, w)`` / ``(1, h, w)``, one per
        sample) give the statistics for ``lab_transfer`` and ``histogram``; by default each
        sample uses another sample of the batch (a batch of one falls back to the other
        edits). ``self.last_methods`` lists the edit used per sample.
    """

    def __init__(
        self,
        methods: Sequence[str] = METHODS,
        exposure_ev: Tuple[float, float] = (0.3, 1.0),
        gamma: Tuple[float, float] = (0.3, 1.0),
        wb_gain: Tuple[float, float] = (0.1, 0.5),
        hue: Tuple[float, float] = (0.03, 0.15),
        saturation: Tuple[float, float] = (0.4, 1.6),
        lab_strength: Tuple[float, float] = (0.6, 1.0),
        min_change: float = 0.01,
        max_tries: int = 3,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"unknown synthesis method(s) {unknown or methods!r}; expected some of {METHODS}")
        self.methods = tuple(methods)
        self.exposure_ev, self.gamma, self.wb_gain = exposure_ev, gamma, wb_gain
        self.hue, self.saturation, self.lab_strength = hue, saturation, lab_strength
        self.min_change, self.max_tries = min_change, max_tries
        self.register_buffer("planckian", RandomPlanckianJitter(mode="blackbody", p=1.0).pl.clone(), persistent=False)
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.last_methods: List[str] = []

    def extra_repr(self) -> str:
        return f"methods={self.methods}, min_change={self.min_change}"

    # --- one edit on one image ---------------------------------------------------------
    def edit(
        self,
        method: str,
        img: Tensor,
        mask: Tensor,
        ref: Optional[Tensor],
        ref_mask: Optional[Tensor],
        g: torch.Generator,
    ) -> Tensor:
        """Apply ``method`` to ``img`` ``(3, H, W)``; returns the edited image (whole frame)."""
        if method == "lab_transfer":
            lo, hi = self.lab_strength
            s = lo + (hi - lo) * float(torch.rand((), generator=g))
            return lab_transfer(img, mask, ref, ref_mask, s)
        if method == "histogram":
            return histogram_match(img, mask, ref, ref_mask)
        if method == "exposure":
            return img * 2.0 ** _signed(g, *self.exposure_ev)
        if method == "gamma":
            return img.clamp_min(0) ** (2.0 ** _signed(g, *self.gamma))
        if method == "white_balance":
            gains = torch.tensor([2.0 ** _signed(g, *self.wb_gain) for _ in range(3)]).to(img)
            gains = gains / gains.mean()
            return img * gains[:, None, None]
        if method == "planckian":
            idx = int(torch.randint(0, self.planckian.shape[0], (), generator=g))
            rb = self.planckian[idx].to(img)
            return torch.stack([img[0] * rb[0], img[1], img[2] * rb[1]])
        if method == "hue_saturation":
            h = _signed(g, *self.hue) * 2 * math.pi
            s = self.saturation[0] + (self.saturation[1] - self.saturation[0]) * float(torch.rand((), generator=g))
            return adjust_saturation(adjust_hue(img[None], h), s)[0]
        raise ValueError(f"unknown synthesis method {method!r}; expected one of {METHODS}")

    # --- batch -------------------------------------------------------------------------
    def forward(
        self,
        batch_or_real: Union[Dict[str, Any], Tensor],
        mask: Optional[Tensor] = None,
        reference: Optional[Sequence[Tensor]] = None,
        reference_mask: Optional[Sequence[Optional[Tensor]]] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Union[Dict[str, Any], Tensor]:
        is_dict = isinstance(batch_or_real, dict)
        real = batch_or_real["real"] if is_dict else batch_or_real
        mask = batch_or_real["mask"] if is_dict else mask
        if mask is None:
            raise ValueError("SyntheticComposite needs a mask (B, 1, H, W)")
        shapes_ok = real.dim() == 4 and real.shape[1] == 3 and mask.dim() == 4 and mask.shape[1] == 1
        if not shapes_ok or real.shape[-2:] != mask.shape[-2:]:
            raise ValueError(
                f"expected real (B, 3, H, W) and mask (B, 1, H, W) of equal size, "
                f"got {tuple(real.shape)} and {tuple(mask.shape)}"
            )
        if not real.is_floating_point():
            raise TypeError(f"real has dtype {real.dtype}; expected float values in [0, 1]")
        g = generator or self.generator
        b = real.shape[0]
        fg = mask >= 0.5
        from_batch = reference is None
        if not from_batch and len(reference) != b:
            raise ValueError(f"{len(reference)} reference images for a batch of {b}; expected one per sample")
        has_ref = b > 1 or not from_batch
        usable = [m for m in self.methods if has_ref or m not in _NEEDS_REFERENCE] or ["exposure"]
        shift = int(torch.randint(1, b, (), generator=g)) if (from_batch and b > 1) else 0
        comps, used = [], []
        for i in range(b):
            img, m = real[i], mask[i]
            sel = fg[i]
            n = sel.sum().clamp_min(1)
            out, method = img, "none"
            for t in range(max(1, self.max_tries)):
                if from_batch and b > 1:  # another sample of the batch; a new one at each retry
                    j = (i + (shift + t - 1) % (b - 1) + 1) % b
                    ref, rmask = real[j], mask[j]
                else:
                    ref = reference[i] if reference is not None else None
                    rmask = reference_mask[i] if reference_mask is not None else None
                method = usable[int(torch.randint(0, len(usable), (), generator=g))]
                edited = self.edit(method, img, m, ref, rmask, g).clamp(0, 1)
                out = torch.where(sel, edited, img)
                change = float((out - img).abs().sum() / (3 * n))
                if change >= self.min_change or not bool(sel.any()):
                    break
            else:  # still too close to the photo: add an exposure change on top
                ev = _signed(g, max(1.0, self.exposure_ev[0]), max(1.0, self.exposure_ev[1]))
                out = torch.where(sel, (out * 2.0**ev).clamp(0, 1), img)
                method = f"{method}+exposure"
            comps.append(out)
            used.append(method)
        self.last_methods = used
        composite = torch.stack(comps)
        if not is_dict:
            return composite
        res = dict(batch_or_real)
        res["composite"] = composite
        res["mask"] = fg.to(real.dtype)
        return res


# --------------------------------------------------------------------------------------
# offline: harmonykit synthesize
# --------------------------------------------------------------------------------------
def find_photo_pairs(input_dir: Union[str, os.PathLike]) -> List[Tuple[str, Path, Path]]:
    """``(id, photo, mask)`` triples from ``real_images/`` + ``masks/`` (same stems), or from a
    flat folder of ``<id>_photo.<ext>`` + ``<id>_mask.<ext>``.

    Raises:
        DataFileNotFoundError: no folder, or a photo without its mask (naming the expected path).
        DataError: no photo found.
    """
    from .folder import find_partner
    from .io import IMAGE_EXTENSIONS, DataError, DataFileNotFoundError, find_image

    root = Path(input_dir)
    if not root.is_dir():
        raise DataFileNotFoundError("photo folder not found", root)
    pairs: List[Tuple[str, Path, Path]] = []
    if (root / "real_images").is_dir() and (root / "masks").is_dir():
        for p in sorted((root / "real_images").iterdir()):
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            m = find_partner(root / "masks", p.stem)
            if m is None:
                raise DataFileNotFoundError(
                    f"photo {p.name} has no mask (expected masks/{p.stem}.png)", root / "masks" / f"{p.stem}.png"
                )
            pairs.append((p.stem, p, m))
    else:
        for p in sorted(root.iterdir()):
            if p.suffix.lower() not in IMAGE_EXTENSIONS or not p.stem.endswith("_photo"):
                continue
            pid = p.stem[: -len("_photo")]
            m = find_image(root, f"{pid}_mask")
            if m is None:
                raise DataFileNotFoundError(
                    f"photo {p.name} has no mask (expected {pid}_mask.png)", root / f"{pid}_mask.png"
                )
            pairs.append((pid, p, m))
    if not pairs:
        raise DataError("no photos found (expected real_images/ + masks/, or <id>_photo.* + <id>_mask.png)", root)
    return pairs


def synthesize_folder(
    input_dir: Union[str, os.PathLike],
    output_dir: Union[str, os.PathLike],
    per_image: int = 1,
    methods: Sequence[str] = METHODS,
    ext: str = "png",
    quality: int = 95,
    max_size: Optional[int] = None,
    min_change: float = 0.01,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
) -> int:
    """Write synthetic composites of every photo as a folder dataset; returns how many.

    Output: ``real_images/<id>.png`` (the decoded photo, lossless), ``masks/<id>.png``
    (binarised) and ``composite_images/<id>_<k>.<ext>`` for ``k = 1..per_image``. The reference
    of ``lab_transfer`` / ``histogram`` is another photo (its foreground), drawn with the seed.
    With ``ext="png"`` the composite's background is bit-identical to the written real image.
    """
    from .base import progress_disabled
    from .io import SizeMismatchError, fit_size, load_image, load_mask, probe_image, save_image, save_mask

    if per_image < 1:
        raise ValueError(f"per_image={per_image}; expected >= 1")
    pairs = find_photo_pairs(input_dir)
    out = Path(output_dir)
    for sub in ("composite_images", "masks", "real_images"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    synth = SyntheticComposite(methods=methods, min_change=min_change, seed=seed).to(device)
    g = torch.Generator().manual_seed(int(seed) + 1)
    it = pairs
    if progress:
        from tqdm import tqdm

        it = tqdm(pairs, desc="synthesize", unit="photo", disable=progress_disabled())
    index = {q[0]: i for i, q in enumerate(pairs)}
    n = 0
    for pid, photo, mpath in it:
        pi, mi = probe_image(photo, "photo"), probe_image(mpath, "mask")
        if pi.size != mi.size:
            raise SizeMismatchError(
                f"mask is {mi.width}x{mi.height} but photo {photo} is {pi.width}x{pi.height} (expected equal sizes)",
                mpath,
            )
        size = fit_size(pi.size, max_size)
        ls = None if size == pi.size else size
        real = load_image(photo, ls, "photo").to(device)
        mask = load_mask(mpath, ls, 0.5, "mask").to(device)
        ref = ref_mask = None
        if len(pairs) > 1:
            j = int(torch.randint(0, len(pairs) - 1, (), generator=g))
            j = j + 1 if j >= index[pid] else j  # any photo but this one
            _, rp, rm = pairs[j]
            rs = fit_size(probe_image(rp, "photo").size, 256)
            ref = load_image(rp, rs, "photo").to(device)
            ref_mask = load_mask(rm, rs, 0.5, "mask").to(device)
        save_image(real, out / "real_images" / f"{pid}.png")
        save_mask(mask, out / "masks" / f"{pid}.png")
        for k in range(1, per_image + 1):
            comp = synth(
                real[None], mask[None],
                reference=[ref] if ref is not None else None,
                reference_mask=[ref_mask] if ref is not None else None,
            )[0]
            save_image(comp, out / "composite_images" / f"{pid}_{k}.{ext}", quality)
            n += 1
    return n
