"""Evaluation: metrics under named protocols and evaluation tables.

>>> from harmonykit.eval import compute_metrics, evaluate
>>> recs = compute_metrics(pred, target, mask, protocol="idih")  # doctest: +SKIP
>>> res = evaluate(["composite", model], "data/iHarmony4", protocol="harmonykit")  # doctest: +SKIP
"""
from harmonykit.eval.metrics import (
    METRIC_NAMES,
    CharmNetProtocol,
    HarmonykitProtocol,
    IDIHProtocol,
    MetricProtocol,
    compute_metrics,
    get_protocol,
    list_protocols,
    mean_metrics,
    ssim_map,
)
from harmonykit.eval.triplets import Triplet, find_pairs, find_triplets, read_list_file
from harmonykit.eval.evaluate import COMPOSITE, FG_BUCKETS, MODEL_MODES, EvalResult, TrainModeNetwork, evaluate, fg_bucket, resolve_model_mode

__all__ = [
    "METRIC_NAMES",
    "MetricProtocol",
    "CharmNetProtocol",
    "IDIHProtocol",
    "HarmonykitProtocol",
    "compute_metrics",
    "get_protocol",
    "list_protocols",
    "mean_metrics",
    "ssim_map",
    "Triplet",
    "find_triplets",
    "find_pairs",
    "read_list_file",
    "evaluate",
    "MODEL_MODES",
    "TrainModeNetwork",
    "resolve_model_mode",
    "EvalResult",
    "COMPOSITE",
    "FG_BUCKETS",
    "fg_bucket",
]
