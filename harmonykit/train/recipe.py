"""Training recipes: YAML files that name registry entries and their arguments.

A recipe is validated against :data:`SCHEMA` before anything runs: unknown keys, wrong types and
unknown registry names are rejected with the full key path and the allowed values. ``extends:``
(a path relative to the recipe, or the name of a shipped recipe) deep-merges a base recipe under
the file; ``overrides`` (``["optim.lr=2e-4", ...]``, YAML-parsed values) apply last. The result
is a plain nested dict with every default filled in (:func:`load_recipe`).

Domains: ``train.domains`` (default :data:`harmonykit.models.base.CHARMNET_DOMAINS`) and
``train.domain`` name the data domains; the schema has one ``data.<domain>`` dataset and one
``loss.<term>_<domain>`` slot per domain (:func:`build_schema`; the loss slots come from
:data:`harmonykit.train.loss_terms.LOSS_TERMS`). Model arguments are checked against the
entrypoint's backbone / adapter signature without building the model
(:func:`harmonykit.models._builder.model_arguments`). When a file's ``extends:`` base names a
different component (``model.name``, ``loss.X.name``, ...) the base's arguments for it are dropped.

Environment variables: every string value may hold ``${NAME}`` or ``${NAME:-default}``
(:func:`expand_env`, applied after ``extends`` and overrides), so a recipe can be parameterised
by dataset roots only: ``root: ${IHARMONY4_ROOT:-data/iHarmony4}``.
"""
from __future__ import annotations

import copy
import inspect
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from harmonykit.models.base import CHARMNET_DOMAINS, DEFAULT_DOMAIN, check_domains
from harmonykit.train.loss_terms import check_loss_components, expand_slots

__all__ = [
    "RecipeError",
    "SCHEMA",
    "build_schema",
    "load_recipe",
    "resolve_recipe",
    "apply_overrides",
    "find_recipe",
    "recipe_dirs",
    "dump_recipe",
    "get_key",
    "expand_env",
]

_logger = logging.getLogger(__name__)

_MISSING = object()


class RecipeError(ValueError):
    """A malformed recipe; the message names the file and the key path."""


# --- schema ----------------------------------------------------------------------------------
@dataclass
class Field:
    """A leaf value. ``kind`` is one of int, float, bool, str, floats (list of float), ints, strs, dict."""

    kind: str
    default: Any = None
    choices: Optional[Sequence[Any]] = None
    nullable: bool = False
    help: str = ""


@dataclass
class Component:
    """``{name: <registry entry>, **kwargs}`` (or null when ``nullable``).

    ``extra`` are keys handled by the trainer (e.g. ``weight``), ``provided`` kwargs the trainer
    passes itself (e.g. ``in_channels``) and that a recipe may not set.
    """

    registry: str
    default: Optional[Dict[str, Any]]
    nullable: bool = True
    extra: Dict[str, Field] = field(default_factory=dict)
    provided: Tuple[str, ...] = ()
    help: str = ""


def _loss_section(domains: Sequence[str]) -> Dict[str, Component]:
    """``loss:``: one slot per :data:`LOSS_TERMS` entry (per-domain terms once per domain)."""
    return {
        slot: Component(
            "LOSSES",
            {"name": t.loss, "weight": t.weight, **dict(t.kwargs)} if t.default_on else None,
            extra={"weight": Field("float", 1.0)},
            help=t.help.format(domain=d) if d else t.help,
        )
        for slot, t, d in expand_slots(domains)
    }


def _data_section(domains: Sequence[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"kind": Field("str", "synthetic", choices=("synthetic", "datasets"))}
    for d in domains:
        out[d] = Component("DATASETS", None, help=f"kind=datasets: the {d} training set (its domain tag must be {d!r})")
    out.update(_DATA_FIXED)
    return out


_DATA_FIXED: Dict[str, Any] = {
    "val": Component("DATASETS", None, help="kind=datasets: validation set (the model's default domain)"),
    "augmentation": Component("AUGMENTATIONS", None, help="batch augmentation: aug(batch dict) -> batch dict"),
    "num_workers": Field("int", 2),
    "crop_in_workers": Field(
        "bool", True,
        help="run the augmentation's aligned crop in the DataLoader workers on each sample (uint8 crops cross "
        "the process boundary; per-sample crop RNG from (seed, epoch, index), independent of num_workers); "
        "false: crop the collated full-size batch in the main process with the augmentation's own generator. "
        "No effect without data.augmentation or with kind: synthetic",
    ),
    "persistent_workers": Field("bool", True, help="keep DataLoader workers alive between epochs (num_workers > 0)"),
    "prefetch_factor": Field("int", 2, help="batches each worker loads ahead (num_workers > 0)"),
    "pin_memory": Field("bool", None, nullable=True, help="page-locked batches for fast host->GPU copies (null: when training on CUDA)"),
    "synthetic": {
        "length": Field("int", 64, help="samples per domain"),
        "val_length": Field("int", 8),
        "image_size": Field("int", 256),
        "num_styles": Field("int", 10),
    },
}

_BASE_SCHEMA: Dict[str, Any] = {
    "name": Field("str", "run", help="run name; the run folder is output_dir/name"),
    "description": Field("str", "", help="free text"),
    "official": Field(
        "str", None, nullable=True, choices=("charmnet", "idih"),
        help="the official configuration this recipe reproduces (pinned by tests/train/test_train_official.py); "
        "not inherited through extends",
    ),
    "seed": Field("int", 0),
    "deterministic": Field("bool", False, help="torch deterministic algorithms (exact resume on CPU)"),
    "output_dir": Field("str", "runs"),
    "model": Component(
        "MODELS",
        {"name": "charmnet_idih"},
        nullable=False,
        extra={"checkpoint_path": Field("str", None, nullable=True)},
        help="harmonykit.create_model(name, **kwargs)",
    ),
    "discriminator": Component(
        "DISCRIMINATORS", {"name": "fc", "width": 64}, provided=("in_channels",), help="null: no adversarial branch"
    ),
    "style_heads": Component(
        "STYLE_HEADS",
        {"name": "style_classifier", "width": 64, "num_styles": 10},
        provided=("in_channels",),
        help="P_in and P_out (same architecture); null: no style heads",
    ),
    "loss": None,  # build_schema: from LOSS_TERMS and the domains
    "optim": {
        "opt": Field("str", "adam", help="timm optimizer name (create_optimizer_v2)"),
        "lr": Field("float", 1e-4),
        "d_lr": Field("float", None, nullable=True, help="discriminator lr (default: lr)"),
        "head_lr": Field("float", None, nullable=True, help="style heads lr (default: lr)"),
        "betas": Field("floats", [0.9, 0.999]),
        "eps": Field("float", 1e-8),
        "weight_decay": Field("float", 0.0),
        "momentum": Field("float", 0.9),
        "clip_grad": Field("float", None, nullable=True),
        "clip_mode": Field("str", "norm", choices=("norm", "value", "agc")),
    },
    "sched": {
        "name": Field("str", "none", help="'none' (constant lr), 'multistep' (lr x decay_rate AT each milestone, as torch MultiStepLR), "
                      "'linear_decay' (pix2pix: constant for decay_epochs, then linearly to 0 at the last epoch) or another timm scheduler (create_scheduler_v2)"),
        "step_on_epochs": Field("bool", True),
        "decay_epochs": Field("float", 100.0),
        "decay_milestones": Field("ints", [90, 180, 270]),
        "decay_rate": Field("float", 0.1),
        "warmup_epochs": Field("int", 0),
        "warmup_lr": Field("float", 1e-5),
        "min_lr": Field("float", 0.0),
    },
    "train": {
        "mode": Field(
            "str",
            "charmnet",
            choices=("charmnet", "single", "fusion", "two_stage"),
            help="charmnet: two domains + D + style heads; single: one domain (train.domain); "
            "fusion: one network on the union; two_stage: the first domain, then the last",
        ),
        "domains": Field(
            "strs",
            list(CHARMNET_DOMAINS),
            help="data domains of charmnet / fusion / two_stage, in order: source (style labels) first, "
            "target last; charmnet runs each on the model branch of the same name",
        ),
        "domain": Field("str", DEFAULT_DOMAIN, help="the data domain of mode=single"),
        "stage1_epochs": Field("int", None, nullable=True, help="two_stage: epochs on the first domain"),
        "stage1_iterations": Field("int", None, nullable=True, help="two_stage: iterations on the first domain"),
        "batch_size": Field("int", 8, help="per domain and per process"),
        "epochs": Field("int", None, nullable=True),
        "iterations": Field("int", None, nullable=True, help="wins over epochs"),
        "precision": Field("str", "fp32", choices=("fp32", "bf16", "fp16")),
        "channels_last": Field("bool", True),  # the default path: ~1.5x eager NCHW on CPU (benchmarks/bench_train.py)
        "compile": Field("bool", False),
        "freeze_bn": Field("bool", False, help="keep every BatchNorm in eval mode"),
        "composite_output": Field(
            "bool", False,
            help="losses and the image discriminator see output * mask + composite * (1 - mask) in the model's output "
            "space (RainNet's official 'attentioned' image) instead of the raw output",
        ),
        "sync_bn": Field("bool", False, help="SyncBatchNorm under torchrun (GPU only)"),
        "device": Field("str", "auto", help="auto, cpu, cuda, cuda:1, ..."),
        "ema": {
            "enabled": Field("bool", False),
            "decay": Field("float", 0.9998),
            "warmup": Field("bool", False),
        },
    },
    "data": None,  # build_schema: one dataset per domain
    "val": {
        "interval": Field("int", 0, help="iterations between validations; 0: only at the end"),
        "batch_size": Field("int", 8),
        "image_size": Field("int", 256, help="validation images are resized (bilinear) to this square size"),
        "max_batches": Field("int", None, nullable=True),
        "protocol": Field("str", "idih", choices=("idih", "harmonykit", "charmnet"),
                          help="harmonykit.eval.metrics protocol of the validation metrics"),
        "metric": Field("str", "fmse", choices=("mse", "fmse", "psnr", "fpsnr"), help="selects best.pth"),
    },
    "log": {
        "interval": Field("int", 10),
        "tensorboard": Field("bool", True),
        "csv": Field("bool", True),
    },
    "checkpoint": {
        "interval": Field("int", 1000, help="iterations between 'last' checkpoints; 0: only at the end"),
        "keep_every": Field("int", 0, help="also keep ckpt_<iter>.pth every N iterations (0: never)"),
    },
}




def build_schema(domains: Sequence[str] = CHARMNET_DOMAINS) -> Dict[str, Any]:
    """The recipe schema for the data domains ``domains`` (``SCHEMA``: the default domains)."""
    schema = dict(_BASE_SCHEMA)
    schema["loss"] = _loss_section(domains)
    schema["data"] = _data_section(domains)
    return schema


SCHEMA: Dict[str, Any] = build_schema(CHARMNET_DOMAINS)
"""The schema of a recipe with the default domains."""


def _raw_domains(raw: Mapping[str, Any]) -> Tuple[str, ...]:
    """The data domains a raw recipe names: ``train.domains`` (default) then ``train.domain``."""
    t = raw.get("train") if isinstance(raw.get("train"), Mapping) else {}
    doms = t.get("domains", list(CHARMNET_DOMAINS))
    if not isinstance(doms, (list, tuple)) or not all(isinstance(d, str) for d in doms):
        raise RecipeError(f"train.domains: expected a list of domain names, got {_type_name(doms)} {doms!r}")
    out = list(doms)
    one = t.get("domain", DEFAULT_DOMAIN)
    if isinstance(one, str) and one not in out:
        out.append(one)
    try:
        out = list(check_domains(out))
    except ValueError as e:
        raise RecipeError(f"train.domains: {e}") from None
    clash = [d for d in out if d in ("kind", *_DATA_FIXED)]
    if clash:
        raise RecipeError(f"train.domains: {clash[0]!r} is reserved (data.{clash[0]} is not a dataset slot); rename the domain")
    return tuple(out)


def _drop_other_default_domains(raw: Dict[str, Any], domains: Sequence[str], source: str) -> Dict[str, Any]:
    """Remove the ``data.<d>`` / ``loss.<term>_<d>`` keys of the default domains that this recipe
    does not use (inherited from a recipe with the default domains), with a log line."""
    others = [d for d in CHARMNET_DOMAINS if d not in domains]
    if not others:
        return raw
    raw = dict(raw)
    drop = {"data": set(others), "loss": {s for s, _, d in expand_slots(others)}}
    for section, keys in drop.items():
        sec = raw.get(section)
        if isinstance(sec, Mapping) and keys & set(sec):
            gone = sorted(keys & set(sec))
            _logger.info("%s: %s not used with train.domains %s; ignored", source or "recipe",
                         ", ".join(f"{section}.{k}" for k in gone), list(domains))
            raw[section] = {k: v for k, v in sec.items() if k not in keys}
    return raw


# --- helpers ---------------------------------------------------------------------------------
def _ctx(src: str, path: str) -> str:
    return f"{src}: {path}" if src else path


def _type_name(v: Any) -> str:
    return type(v).__name__ if v is not None else "null"


def _coerce(kind: str, value: Any, where: str, choices: Optional[Sequence[Any]] = None) -> Any:
    def bad(expected: str) -> RecipeError:
        return RecipeError(f"{where}: expected {expected}, got {_type_name(value)} {value!r}")

    if kind == "bool":
        if isinstance(value, bool):
            out: Any = value
        else:
            raise bad("bool (true/false)")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                out = int(value)
            else:
                raise bad("int")
        else:
            out = value
    elif kind == "float":
        if isinstance(value, bool):
            raise bad("float")
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                out = float(value)
            except ValueError:
                raise bad("float") from None
        else:
            raise bad("float")
        if not math.isfinite(out):
            raise RecipeError(f"{where}: expected a finite float, got {value!r}")
    elif kind == "str":
        if not isinstance(value, str):
            raise bad("str")
        out = value
    elif kind in ("floats", "ints", "strs"):
        if not isinstance(value, (list, tuple)):
            raise bad(f"a list of {kind[:-1]}")
        out = [_coerce(kind[:-1], v, f"{where}[{i}]") for i, v in enumerate(value)]
    elif kind == "dict":
        if not isinstance(value, Mapping):
            raise bad("a mapping")
        out = dict(value)
    else:  # pragma: no cover
        raise AssertionError(kind)
    if choices is not None and out not in choices:
        raise RecipeError(f"{where}: {out!r} is not allowed; allowed values: {', '.join(map(str, choices))}")
    return out


def _registry(name: str):
    from harmonykit import registry as reg

    _import_components()
    return getattr(reg, name)


_IMPORTED = False
_CHECK_DATA = [True]  # set by resolve_recipe: validate DATASETS names or not (dry runs)


def _import_components() -> None:
    """Import the modules that register models, losses and datasets (those that exist yet)."""
    global _IMPORTED
    if _IMPORTED:
        return
    _IMPORTED = True
    import importlib

    for mod in ("harmonykit.losses", "harmonykit.models", "harmonykit.data"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and (e.name == mod or mod.startswith(e.name + ".") or e.name.startswith(mod)):
                _logger.debug("%s not available: %s", mod, e)
            else:
                raise


def _signature_kwargs(builder: Any) -> Tuple[Optional[Dict[str, inspect.Parameter]], bool]:
    """Keyword parameters of a builder (for classes: ``__init__``) and whether it takes ``**kwargs``."""
    try:
        sig = inspect.signature(builder)
    except (TypeError, ValueError):
        return None, True
    params = {}
    var_kw = False
    for p in sig.parameters.values():
        if p.kind == p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
            params[p.name] = p
    return params, var_kw


def _check_kwarg_type(param: inspect.Parameter, value: Any, where: str) -> Any:
    d = param.default
    if d is inspect.Parameter.empty or d is None or value is None:
        return value
    if isinstance(d, bool):
        return _coerce("bool", value, where)
    if isinstance(d, int):
        if isinstance(value, float) and not value.is_integer():
            raise RecipeError(f"{where}: expected int, got float {value!r}")
        return _coerce("int", value, where)
    if isinstance(d, float):
        return _coerce("float", value, where)
    if isinstance(d, str):
        return _coerce("str", value, where)
    if isinstance(d, (list, tuple)) and not isinstance(value, (list, tuple)):
        raise RecipeError(f"{where}: expected a list, got {_type_name(value)} {value!r}")
    return value


def _validate_component(spec: Component, value: Any, where: str, check_registry: bool) -> Any:
    if spec.registry == "DATASETS" and not _CHECK_DATA[0]:
        check_registry = False
    if value is None:
        if not spec.nullable:
            raise RecipeError(f"{where}: may not be null")
        return None
    if isinstance(value, str):  # shorthand: just a name
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise RecipeError(f"{where}: expected a mapping {{name: ..., ...}} or null, got {_type_name(value)} {value!r}")
    value = dict(value)
    if "name" not in value and spec.default is not None:
        value = {**spec.default, **value}  # arguments of the default component
    if "name" not in value or not isinstance(value["name"], str):
        kind = {"LOSSES": "loss", "DATASETS": "dataset", "AUGMENTATIONS": "augmentation"}.get(spec.registry, spec.registry.lower()[:-1])
        raise RecipeError(f"{where}.name: missing (a {kind} name is required)")
    out: Dict[str, Any] = {"name": value.pop("name")}
    for key, fspec in spec.extra.items():
        out[key] = _validate_field(fspec, value.pop(key, _MISSING), f"{where}.{key}")
    for key in spec.provided:
        if key in value:
            raise RecipeError(f"{where}.{key}: set by the trainer, remove it from the recipe")
    if not check_registry:
        out.update(value)
        return out
    reg = _registry(spec.registry)
    if out["name"] not in reg:
        raise RecipeError(
            f"{where}.name: unknown {reg.kind} {out['name']!r}; allowed values: {', '.join(reg.list()) or '(none registered)'}"
        )
    if spec.registry == "MODELS":
        params, var_kw = _model_parameters(out["name"])
    else:
        params, var_kw = _signature_kwargs(reg.get(out["name"]))
    for key, val in value.items():
        kpath = f"{where}.{key}"
        if params is not None and key not in params and not var_kw:
            allowed = [k for k in params if k not in spec.provided] + list(spec.extra)
            raise RecipeError(f"{kpath}: unknown argument of {reg.kind} {out['name']!r}; allowed keys: {', '.join(['name'] + allowed)}")
        out[key] = _check_kwarg_type(params[key], val, kpath) if params and key in params else val
    return out


# create_model's own keyword arguments a recipe may set next to the model's (checkpoint_path is an extra)
_CREATE_MODEL_KEYS = ("pretrained", "pretrained_cfg_overlay", "cache_dir", "strict")


def _model_parameters(name: str) -> Tuple[Optional[Dict[str, inspect.Parameter]], bool]:
    """(parameters, takes **kwargs) of model ``name``, found without building it."""
    from harmonykit.models._builder import model_arguments

    params = model_arguments(name)
    if params is None:
        return None, True  # checked by the model builder at the start of the run
    from harmonykit.factory import create_model

    cm, _ = _signature_kwargs(create_model)
    extra = {k: cm[k] for k in _CREATE_MODEL_KEYS if cm and k in cm}
    return {**extra, **params}, False


def _validate_field(spec: Field, value: Any, where: str) -> Any:
    if value is _MISSING:
        return copy.deepcopy(spec.default)
    if value is None:
        if spec.nullable:
            return None
        raise RecipeError(f"{where}: may not be null (expected {spec.kind})")
    return _coerce(spec.kind, value, where, spec.choices)


def _validate_section(schema: Mapping[str, Any], value: Any, where: str, check_registry: bool) -> Dict[str, Any]:
    if value is _MISSING or value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise RecipeError(f"{where or 'recipe'}: expected a mapping, got {_type_name(value)} {value!r}")
    unknown = [k for k in value if k not in schema]
    if unknown:
        k = unknown[0]
        path = f"{where}.{k}" if where else str(k)
        raise RecipeError(f"{path}: unknown key; allowed keys{' of ' + where if where else ''}: {', '.join(schema)}")
    out: Dict[str, Any] = {}
    for key, spec in schema.items():
        path = f"{where}.{key}" if where else key
        v = value.get(key, _MISSING)
        if isinstance(spec, Field):
            out[key] = _validate_field(spec, v, path)
        elif isinstance(spec, Component):
            v = copy.deepcopy(spec.default) if v is _MISSING else v
            out[key] = _validate_component(spec, v, path, check_registry)
        else:
            out[key] = _validate_section(spec, v, path, check_registry)
    return out


def _check_consistency(r: Dict[str, Any], check_data: bool) -> None:
    mode = r["train"]["mode"]
    t = r["train"]
    if mode in ("charmnet", "single"):
        try:
            check_loss_components(mode, r["loss"], r)
        except ValueError as e:
            raise RecipeError(str(e)) from None
    n = len(t["domains"])
    if mode in ("charmnet", "two_stage") and n != 2:
        raise RecipeError(f"train.domains: train.mode={mode} needs two domains (source, target), got {t['domains']}")
    if mode == "fusion" and n < 2:
        raise RecipeError(f"train.domains: train.mode=fusion needs at least two domains, got {t['domains']}")
    if t["iterations"] is None and t["epochs"] is None:
        raise RecipeError("train: give train.iterations or train.epochs")
    for key in ("iterations", "epochs", "batch_size"):
        if t[key] is not None and t[key] <= 0:
            raise RecipeError(f"train.{key}: must be > 0, got {t[key]}")
    if mode == "two_stage" and t["stage1_iterations"] is None and t["stage1_epochs"] is None:
        raise RecipeError("train.stage1_iterations: two_stage needs train.stage1_iterations or train.stage1_epochs")
    if check_data and r["data"]["kind"] == "datasets":
        for d in ((t["domain"],) if mode == "single" else t["domains"]):
            if r["data"][d] is None:
                raise RecipeError(f"data.{d}: train.mode={mode} needs a {d} dataset ({{name: ..., ...}})")


def resolve_recipe(raw: Mapping[str, Any], source: str = "", check_registry: bool = True, check_data: bool = True) -> Dict[str, Any]:
    """Validate ``raw`` (after ``extends`` / overrides) and fill every default.

    ``check_data=False`` skips the DATASETS names (for ``--dry-run`` on synthetic tensors).
    """
    raw = {k: v for k, v in raw.items() if k != "extends"}
    _CHECK_DATA[0] = bool(check_data) and (raw.get("data") or {}).get("kind", "synthetic") == "datasets"
    try:
        domains = _raw_domains(raw)
        raw = _drop_other_default_domains(raw, domains, source)
        out = _validate_section(build_schema(domains), raw, "", check_registry)
        _check_consistency(out, check_data)
    except RecipeError as e:
        if source:
            raise RecipeError(f"{source}: {e}") from None
        raise
    finally:
        _CHECK_DATA[0] = True
    return out


# --- files, extends, overrides ---------------------------------------------------------------
def recipe_dirs() -> List[Path]:
    """Folders searched for recipe names: the checkout's ``recipes/`` and the packaged ones."""
    here = Path(__file__).resolve().parents[1]
    return [p for p in (here.parent / "recipes", here / "recipes") if p.is_dir()]


def find_recipe(name_or_path: Union[str, Path], base: Optional[Path] = None) -> Path:
    """A recipe file from a path (relative to ``base`` first) or the name of a shipped recipe."""
    p = Path(name_or_path).expanduser()
    cands = [base / p] if base is not None and not p.is_absolute() else []
    cands.append(p)
    for d in recipe_dirs():
        cands += [d / p, d / f"{p}.yaml"]
    for c in cands:
        if c.is_file():
            return c.resolve()
    shipped = sorted({f.stem for d in recipe_dirs() for f in d.glob("*.yaml")})
    raise FileNotFoundError(f"recipe {str(name_or_path)!r} not found; shipped recipes: {', '.join(shipped) or '(none)'}")


def _deep_merge(base: Dict[str, Any], over: Mapping[str, Any], path: Tuple[str, ...] = (), src: str = "") -> Dict[str, Any]:
    """``over`` merged into ``base`` key by key; a component (``{name: ..., **kwargs}``) whose
    ``name`` changes is replaced whole: the base's kwargs belong to the old component."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        p = path + (str(k),)
        b = out.get(k)
        if _is_component_path(p) and isinstance(b, Mapping) and isinstance(v, Mapping) and "name" in v and v["name"] != b.get("name"):
            dropped = sorted(set(b) - set(v) - {"name"})
            if dropped:
                _logger.info("%s: %s.name %r replaces %r of the extended recipe; its %s are not inherited",
                             src or "recipe", ".".join(p), v["name"], b.get("name"), ", ".join(dropped))
            out[k] = copy.deepcopy(dict(v))
        elif isinstance(v, Mapping) and isinstance(b, Mapping):
            out[k] = _deep_merge(b, v, p, src)
        else:
            out[k] = copy.deepcopy(v)
    return out


_DATA_SETTINGS = ("kind", "num_workers", "crop_in_workers", "persistent_workers", "prefetch_factor", "pin_memory", "synthetic")


def _is_component_path(path: Tuple[str, ...]) -> bool:
    """Whether ``path`` (e.g. ``("loss", "recon_real")``) holds a registry component."""
    if len(path) == 1:
        return isinstance(_BASE_SCHEMA.get(path[0]), Component)
    if len(path) == 2 and path[0] == "loss":
        return True
    return len(path) == 2 and path[0] == "data" and path[1] not in _DATA_SETTINGS


def _read_yaml(path: Path) -> Dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping at the top level, got {_type_name(data)}")
    return data


def load_raw(path: Union[str, Path], _seen: Tuple[Path, ...] = ()) -> Dict[str, Any]:
    """Read a recipe file and merge its ``extends:`` chain (base first); not validated."""
    path = find_recipe(path)
    if path in _seen:
        raise RecipeError(f"{path}: extends cycle: {' -> '.join(map(str, _seen + (path,)))}")
    data = _read_yaml(path)
    ext = data.pop("extends", None)
    if ext is None:
        return data
    bases = [ext] if isinstance(ext, str) else ext
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise RecipeError(f"{path}: extends: expected a recipe name/path or a list of them, got {ext!r}")
    merged: Dict[str, Any] = {}
    for b in bases:
        try:
            bpath = find_recipe(b, base=path.parent)
        except FileNotFoundError as e:
            raise RecipeError(f"{path}: extends: {e}") from None
        base = load_raw(bpath, _seen + (path,))
        base.pop("official", None)  # a derived recipe claims an official configuration only itself
        merged = _deep_merge(merged, base, src=str(path))
    return _deep_merge(merged, data, src=str(path))


def _set_key(d: Dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = d
    for k in keys[:-1]:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            nxt = {} if nxt is None or k not in cur else nxt
            if not isinstance(nxt, dict):
                raise RecipeError(f"--set {dotted}: {k!r} holds {nxt!r}, not a mapping")
            cur[k] = nxt
        cur = nxt
    cur[keys[-1]] = value


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a raw recipe dict."""
    out = copy.deepcopy(raw)
    for ov in overrides or ():
        if "=" not in ov:
            raise RecipeError(f"--set {ov!r}: expected KEY.PATH=VALUE")
        key, val = ov.split("=", 1)
        key = key.strip()
        if not key or any(not k for k in key.split(".")):
            raise RecipeError(f"--set {ov!r}: bad key path {key!r}")
        try:
            parsed = yaml.safe_load(val) if val.strip() else ""
        except yaml.YAMLError:
            parsed = val
        _set_key(out, key, parsed)
    return out


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(raw: Any, where: str = "", environ: Optional[Mapping[str, str]] = None) -> Any:
    """``${NAME}`` / ``${NAME:-default}`` in every string of ``raw`` replaced by the environment
    variable (or the default when it is unset or empty). An unset variable without a default
    raises :class:`RecipeError` naming the key and the variable."""
    env = os.environ if environ is None else environ
    if isinstance(raw, Mapping):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k), env) for k, v in raw.items()}
    if isinstance(raw, list):
        return [expand_env(v, f"{where}[{i}]", env) for i, v in enumerate(raw)]
    if not isinstance(raw, str) or "${" not in raw:
        return raw

    def sub(m: "re.Match[str]") -> str:
        val = env.get(m.group(1))
        if val:
            return val
        if m.group(2) is not None:
            return m.group(2)
        raise RecipeError(f"{where}: environment variable {m.group(1)} is not set (in {raw!r}); "
                          f"export it or give a default as ${{{m.group(1)}:-value}}")

    return _ENV_REF.sub(sub, raw)


def load_recipe(
    path: Union[str, Path, Mapping[str, Any]],
    overrides: Sequence[str] = (),
    check_data: bool = True,
) -> Dict[str, Any]:
    """Read, merge ``extends``, apply overrides, validate: the resolved recipe (a nested dict)."""
    if isinstance(path, Mapping):
        raw, src = dict(path), "<recipe>"
    else:
        p = find_recipe(path)
        raw, src = load_raw(p), str(p)
    raw = apply_overrides(raw, overrides)
    try:
        raw = expand_env(raw)
    except RecipeError as e:
        raise RecipeError(f"{src}: {e}") from None
    return resolve_recipe(raw, source=src, check_data=check_data)


def dump_recipe(recipe: Mapping[str, Any], path: Union[str, Path]) -> None:
    """Write a resolved recipe as YAML (key order kept)."""
    Path(path).write_text(yaml.safe_dump(dict(recipe), sort_keys=False))


def get_key(recipe: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """``get_key(r, "optim.lr")``."""
    cur: Any = recipe
    for k in dotted.split("."):
        if not isinstance(cur, Mapping) or k not in cur:
            return default
        cur = cur[k]
    return cur
