"""RdHarmony rendered triplets with soft style labels (the CharmNet list format).

Layout (one folder per category, ``SHuman`` for the human category)::

    <root>/<Cat>/composite_images/<X>-<Y>_<Z>.jpg   composite: background of style Y, foreground of Z
    <root>/<Cat>/real_images/<X>-<Y>.jpg            ground truth (drop the last "_..." part)
    <root>/<Cat>/masks/<X>.png                      one mask per scene X (drop from the last "-")
    <root>/<Cat>/<Cat>_all_labeled.txt              the list

List lines are tab-separated: ``<composite path relative to root>`` TAB ``<10 floats joined by
"_">`` (the soft style label) TAB ``<hard style 1..10>`` (the ground truth's style; stored
here as 0..9)::

    SHuman/composite_images/s001-3_7.jpg	0.8_0_0_0_0_0_0.2_0_0_0	3

Paths are tried relative to ``root`` first, then to the list file's folder.
"""
from __future__ import annotations

import logging

import math
from pathlib import Path
from typing import List, Optional, Tuple, Union

from ..registry import DATASETS
from .base import HarmonizationDataset, Problem, SampleRecord, resolve_list_path
from .prepared import find_prepared
from .io import DataFileNotFoundError, ListFormatError, ListLine, find_image, read_list

__all__ = ["RdHarmonyDataset", "parse_rdharmony_name", "parse_rdharmony_line", "format_rdharmony_line"]

_logger = logging.getLogger(__name__)

_EXTS = (".jpg", ".png", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_MASK_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def parse_rdharmony_name(filename: str) -> Optional[Tuple[str, str]]:
    """``"<X>-<Y>_<Z>.jpg"`` -> ``(real stem "<X>-<Y>", mask stem "<X>")``, or None."""
    stem = Path(filename).stem
    if "_" not in stem:
        return None
    real = stem.rsplit("_", 1)[0]
    if "-" not in real:
        return None
    mask = real.rsplit("-", 1)[0]
    if not mask or not real.rsplit("-", 1)[1]:
        return None
    return real, mask


def parse_rdharmony_line(ln: ListLine, num_styles: int = 10) -> Tuple[str, Tuple[float, ...], int]:
    """One list line -> ``(relative composite path, soft label (K,), hard style 0..K-1)``.

    Raises:
        ListFormatError: naming the file, the line and what was expected.
    """
    fields = ln.text.split("\t")
    if len(fields) != 3:
        fields = ln.text.split()
    if len(fields) != 3:
        raise ListFormatError(
            f"expected 3 tab-separated fields (path, {num_styles} soft-label floats joined by '_', "
            f"hard style 1..{num_styles}), got {len(fields)}: {ln.text!r}",
            ln.path, ln.lineno,
        )
    rel, soft_s, hard_s = (f.strip() for f in fields)
    parts = soft_s.split("_")
    try:
        soft = tuple(float(v) for v in parts)
    except ValueError:
        raise ListFormatError(
            f"soft label {soft_s!r} is not {num_styles} numbers joined by '_'", ln.path, ln.lineno
        ) from None
    if len(soft) != num_styles:
        raise ListFormatError(
            f"soft label has {len(soft)} values, expected {num_styles}: {soft_s!r}", ln.path, ln.lineno
        )
    if any(not math.isfinite(v) or v < 0 for v in soft) or abs(sum(soft) - 1.0) > 1e-2:
        raise ListFormatError(
            f"soft label {soft_s!r} is not a distribution "
            f"(expected non-negative values summing to 1, sum={sum(soft):.4g})",
            ln.path, ln.lineno,
        )
    try:
        hard = int(hard_s)
    except ValueError:
        raise ListFormatError(f"hard style {hard_s!r} is not an integer 1..{num_styles}", ln.path, ln.lineno) from None
    if not 1 <= hard <= num_styles:
        raise ListFormatError(f"hard style {hard} is out of range (expected 1..{num_styles})", ln.path, ln.lineno)
    return rel, soft, hard - 1


def format_rdharmony_line(rel_path: str, soft: Tuple[float, ...], style: int, digits: int = 6) -> str:
    """The list line for a composite: ``style`` is 0-based here and written 1-based."""
    vals = "_".join(f"{v:.{digits}f}".rstrip("0").rstrip(".") if v else "0" for v in soft)
    return f"{rel_path}\t{vals}\t{style + 1}"


@DATASETS.register("rdharmony")
class RdHarmonyDataset(HarmonizationDataset):
    """RdHarmony composites with ``style_soft`` ``(K,)`` and ``style`` (0-based) labels.

    Args:
        root: the dataset root (the folder the list's paths are relative to).
        list_file: the labelled list, relative to ``root`` or absolute
            (default ``SHuman/SHuman_all_labeled.txt``).
        num_styles: K, the number of styles (10 in RdHarmony).
        domain: sample domain, ``"rendered"`` by default.
        **kwargs: :class:`~harmonykit.data.base.HarmonizationDataset` options.
    """

    def __init__(
        self,
        root: Union[str, Path],
        list_file: Union[str, Path] = "SHuman/SHuman_all_labeled.txt",
        num_styles: int = 10,
        domain: str = "rendered",
        **kwargs,
    ) -> None:
        self.root = Path(root).expanduser()
        self.prepared = find_prepared(self.root)  # None for raw roots
        if not self.root.is_dir():
            raise DataFileNotFoundError("RdHarmony root folder not found", self.root)
        self.list_file = lf = resolve_list_path(self.root, list_file)
        self.num_styles = num_styles
        records: List[SampleRecord] = []
        problems: List[Problem] = []
        for ln in read_list(lf, "RdHarmony list file"):
            try:
                records.append(self._record(ln))
            except (ListFormatError, DataFileNotFoundError) as e:
                problems.append(Problem(e, ln.text.split("\t")[0], ""))
        super().__init__(records, problems, domain=domain, description=f"RdHarmony {lf.name}", **kwargs)

    def _record(self, ln: ListLine) -> SampleRecord:
        rel, soft, style = parse_rdharmony_line(ln, self.num_styles)
        rel = rel.replace("\\", "/")
        comp = Path(rel)
        if not comp.is_absolute():
            comp = self.root / rel
            if not comp.is_file() and (self.list_file.parent / rel).is_file():
                comp = self.list_file.parent / rel
        if not comp.is_file():
            raise DataFileNotFoundError(
                f"composite {rel!r} named by this line does not exist (looked for {comp})", ln.path, ln.lineno
            )
        parsed = parse_rdharmony_name(comp.name)
        if parsed is None:
            raise ListFormatError(
                f"{comp.name!r} does not follow the RdHarmony name pattern <scene>-<style>_<fgstyle>.jpg",
                ln.path, ln.lineno,
            )
        real_stem, mask_stem = parsed
        d = comp.parent.parent
        real = find_image(d / "real_images", real_stem, _EXTS) or d / "real_images" / f"{real_stem}.jpg"
        mask = find_image(d / "masks", mask_stem, _MASK_EXTS) or d / "masks" / f"{mask_stem}.png"
        return SampleRecord(comp.stem, comp, real, mask, d.name, ln.path, ln.lineno, soft, style)
