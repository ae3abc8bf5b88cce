"""Data: decoding, datasets, collation, kornia augmentation, composite makers.

Importing this package registers the datasets (``iharmony4``, ``rdharmony``, ``folder``,
``prepared_shards``,
and ``bundled_photos`` from :mod:`harmonykit.data.bundled`) in
:data:`harmonykit.registry.DATASETS` and the batch augmentations (``aligned_crop``,
``paired_color_jitter``, ``harmonization_train``, ``synthetic_composite``) in
:data:`harmonykit.registry.AUGMENTATIONS`. See ``docs/data.md``.
"""
from .io import (
    fit_size,
    IMAGE_EXTENSIONS,
    CorruptFileError,
    DataError,
    DataFileNotFoundError,
    ListFormatError,
    SizeMismatchError,
    load_image,
    load_mask,
    probe_image,
    read_list,
    save_image,
    save_mask,
)
from .base import HarmonizationDataset, Problem, SampleRecord
from .iharmony4 import IHARMONY4_SUBSETS, IHarmony4Dataset, parse_iharmony4_name
from .rdharmony import RdHarmonyDataset, format_rdharmony_line, parse_rdharmony_line, parse_rdharmony_name
from .folder import FolderDataset
from .collate import batch_to_device, collate_samples, images_to_float
from .augment import (
    AlignedRandomResizedCrop,
    Compose,
    PairedColorJitter,
    RandomResizedCropSample,
    harmonization_train,
    resized_crop,
    sample_crop,
)
from .synthetic import METHODS as SYNTHESIS_METHODS
from .synthetic import SyntheticComposite, histogram_match, lab_transfer, masked_moments
from .composites import exchange_foreground, make_composites, scan_renders, soft_style_label
from .check import CheckReport, check_dataset, detect_format, format_report
from .prepare import prepare_dataset
from .prepared import PreparedInfo, read_prepared
from .shards import ShardDataset, write_shards
from .worker_crop import EpochBatchSampler, WorkerCropDataset, sample_seed  # noqa: E402
from .bundled import BundledPhotosDataset, load_bundled_photos, load_photo_index, write_eval_triplets  # noqa: E402

__all__ = [
    "BundledPhotosDataset",
    "load_bundled_photos",
    "load_photo_index",
    "write_eval_triplets",
    "IMAGE_EXTENSIONS",
    "fit_size",
    "CorruptFileError",
    "DataError",
    "DataFileNotFoundError",
    "ListFormatError",
    "SizeMismatchError",
    "load_image",
    "load_mask",
    "probe_image",
    "read_list",
    "save_image",
    "save_mask",
    "HarmonizationDataset",
    "Problem",
    "SampleRecord",
    "IHARMONY4_SUBSETS",
    "IHarmony4Dataset",
    "parse_iharmony4_name",
    "RdHarmonyDataset",
    "format_rdharmony_line",
    "parse_rdharmony_line",
    "parse_rdharmony_name",
    "FolderDataset",
    "batch_to_device",
    "collate_samples",
    "images_to_float",
    "WorkerCropDataset",
    "EpochBatchSampler",
    "sample_seed",
    "AlignedRandomResizedCrop",
    "Compose",
    "PairedColorJitter",
    "RandomResizedCropSample",
    "harmonization_train",
    "resized_crop",
    "sample_crop",
    "SYNTHESIS_METHODS",
    "SyntheticComposite",
    "histogram_match",
    "lab_transfer",
    "masked_moments",
    "exchange_foreground",
    "make_composites",
    "scan_renders",
    "soft_style_label",
    "CheckReport",
    "check_dataset",
    "detect_format",
    "format_report",
    "PreparedInfo",
    "prepare_dataset",
    "read_prepared",
    "ShardDataset",
    "write_shards",
]
