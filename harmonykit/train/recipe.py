"""Training recipes: YAML files that name registry entries and their arguments.

A recipe is validated against :data:`SCHEMA` before anything runs: unknown keys, wrong types and
unknown registry names are rejected with the full key path and the allowed values. ``extends:``
(a path relative to the recipe, or the name of a shipped recipe) deep-merges a base recipe under
the file; ``overrides`` (``["optim.lr=2e-4", ...]``, YAML-parsed values) apply last. The result
is a plain nested dict with every default filled in (:func:`load_recipe`).
"""
from __future__ import annotations

import copy
import inspect
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

__all__ = [
    "RecipeError",
    "SCHEMA",
    "load_recipe",
    "resolve_recipe",
    "apply_overrides",
    "find_recipe",
    "recipe_dirs",
    "dump_recipe",
    "get_key",
]

_logger = logging.getLogger(__name__)

_MISSING = object()


class RecipeError(ValueError):
    """A malformed recipe; the message names the file and the key path."""


# --- schema ----------------------------------------------------------------------------------
@dataclass
class Field:
    """A leaf value. ``kind`` is one of int, float, bool, str, floats (list of float), ints, dict."""

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


def _loss(name: Optional[str], weight: float = 1.0, **kw: Any) -> Component:
    default = None if name is None else {"name": name, "weight": weight, **kw}
    return Component("LOSSES", default, extra={"weight": Field("float", 1.0)})


SCHEMA: Dict[str, Any] = {
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
    "loss": {
        "recon_rendered": _loss("fn_mse", 10.0, min_area=100.0),
        "recon_real": _loss("fn_mse", 10.0, min_area=100.0),
        "discriminator": _loss("hinge_d", 1.0),
        "adversarial": _loss("hinge_g", 1.0),
        "style_in": _loss("soft_ce", 1.0),
        "style_out": _loss("hard_ce", 1.0),
        "consistency": _loss("style_consistency", 0.5),
        "entropy": _loss("entropy_reduction", 0.5, margin=1.0),
    },
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
        "name": Field("str", "none", help="'none' (constant lr), 'multistep' (lr x decay_rate AT each milestone, as torch MultiStepLR) or another timm scheduler (create_scheduler_v2)"),
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
            "fusion: one network on the union; two_stage: rendered then real",
        ),
        "domain": Field("str", "real", choices=("rendered", "real"), help="the domain of mode=single"),
        "stage1_epochs": Field("int", None, nullable=True, help="two_stage: epochs on rendered data"),
        "stage1_iterations": Field("int", None, nullable=True, help="two_stage: iterations on rendered data"),
        "batch_size": Field("int", 8, help="per domain and per process"),
        "epochs": Field("int", None, nullable=True),
        "iterations": Field("int", None, nullable=True, help="wins over epochs"),
        "precision": Field("str", "fp32", choices=("fp32", "bf16", "fp16")),
        "channels_last": Field("bool", True),  # the default path: ~1.5x eager NCHW on CPU (benchmarks/bench_train.py)
        "compile": Field("bool", False),
        "freeze_bn": Field("bool", False, help="keep every BatchNorm in eval mode"),
        "sync_bn": Field("bool", False, help="SyncBatchNorm under torchrun (GPU only)"),
        "device": Field("str", "auto", help="auto, cpu, cuda, cuda:1, ..."),
        "ema": {
            "enabled": Field("bool", False),
            "decay": Field("float", 0.9998),
            "warmup": Field("bool", False),
        },
    },
    "data": {
        "kind": Field("str", "synthetic", choices=("synthetic", "datasets")),
        "rendered": Component("DATASETS", None, help="kind=datasets: rendered training set"),
        "real": Component("DATASETS", None, help="kind=datasets: real training set"),
        "val": Component("DATASETS", None, help="kind=datasets: validation set (real domain)"),
        "augmentation": Component("AUGMENTATIONS", None, help="batch augmentation: aug(batch dict) -> batch dict"),
        "num_workers": Field("int", 2),
        "synthetic": {
            "length": Field("int", 64, help="samples per domain"),
            "val_length": Field("int", 8),
            "image_size": Field("int", 256),
            "num_styles": Field("int", 10),
        },
    },
    "val": {
        "interval": Field("int", 0, help="iterations between validations; 0: only at the end"),
        "batch_size": Field("int", 8),
        "image_size": Field("int", 256, help="validation images are resized (bilinear) to this square size"),
        "max_batches": Field("int", None, nullable=True),
        "metric": Field("str", "fmse", choices=("mse", "fmse", "psnr")),
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
    elif kind in ("floats", "ints"):
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
    if "name" not in value or not isinstance(value["name"], str):
        raise RecipeError(f"{where}.name: missing (a {spec.registry.lower()[:-1]} name is required)")
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
    params, var_kw = _signature_kwargs(reg.get(out["name"]))
    for key, val in value.items():
        kpath = f"{where}.{key}"
        if params is not None and key not in params and not var_kw:
            allowed = [k for k in params if k not in spec.provided] + list(spec.extra)
            raise RecipeError(f"{kpath}: unknown argument of {reg.kind} {out['name']!r}; allowed keys: {', '.join(['name'] + allowed)}")
        out[key] = _check_kwarg_type(params[key], val, kpath) if params and key in params else val
    return out


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
    L = r["loss"]
    active = {k for k, v in L.items() if v is not None and v.get("weight", 0) != 0}
    if mode == "charmnet":
        needs_d = {"adversarial"} & active
        if needs_d and r["discriminator"] is None:
            raise RecipeError("loss.adversarial: active (weight != 0) but discriminator is null; set loss.adversarial: null")
        if L["discriminator"] is None and r["discriminator"] is not None:
            raise RecipeError("loss.discriminator: null but a discriminator is configured; set discriminator: null")
        heads = {"style_in", "style_out", "consistency", "entropy"} & active
        if heads and r["style_heads"] is None:
            raise RecipeError(f"loss.{sorted(heads)[0]}: active but style_heads is null; set the style losses to null")
    t = r["train"]
    if t["iterations"] is None and t["epochs"] is None:
        raise RecipeError("train: give train.iterations or train.epochs")
    for key in ("iterations", "epochs", "batch_size"):
        if t[key] is not None and t[key] <= 0:
            raise RecipeError(f"train.{key}: must be > 0, got {t[key]}")
    if mode == "two_stage" and t["stage1_iterations"] is None and t["stage1_epochs"] is None:
        raise RecipeError("train.stage1_iterations: two_stage needs train.stage1_iterations or train.stage1_epochs")
    if check_data and r["data"]["kind"] == "datasets":
        needed = {"charmnet": ("rendered", "real"), "fusion": ("rendered", "real"), "two_stage": ("rendered", "real")}
        needed_d = needed.get(mode, (t["domain"],))
        for d in needed_d:
            if r["data"][d] is None:
                raise RecipeError(f"data.{d}: train.mode={mode} needs a {d} dataset ({{name: ..., ...}})")


def resolve_recipe(raw: Mapping[str, Any], source: str = "", check_registry: bool = True, check_data: bool = True) -> Dict[str, Any]:
    """Validate ``raw`` (after ``extends`` / overrides) and fill every default.

    ``check_data=False`` skips the DATASETS names (for ``--dry-run`` on synthetic tensors).
    """
    raw = {k: v for k, v in raw.items() if k != "extends"}
    _CHECK_DATA[0] = bool(check_data) and (raw.get("data") or {}).get("kind", "synthetic") == "datasets"
    try:
        out = _validate_section(SCHEMA, raw, "", check_registry)
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


def _deep_merge(base: Dict[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


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
        merged = _deep_merge(merged, base)
    return _deep_merge(merged, data)


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
