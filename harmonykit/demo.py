"""The paper in one command: CharmNet vs dataset fusion on a rendered + a real domain.

:func:`run_demo` (behind ``harmonykit demo``) needs no download:

1. **data** (``<out>/data``, reused when ``manifest.json`` matches): renders ``scenes`` scenes x
   10 styles with the procedural renderer and turns them into an RdHarmony-format dataset
   (:func:`harmonykit.data.composites.make_composites`); writes the held-back real triplets of
   the bundled ``eval`` photos (:func:`harmonykit.data.bundled.write_eval_triplets`). The real
   training domain (``bundled_photos``) is generated online from the bundled ``train`` photos.
2. **train** ``recipes/demo_charmnet.yaml`` for ``minutes`` (or ``iterations``), then
   ``recipes/demo_fusion.yaml`` for exactly as many iterations, same batch sizes and constant lr
   (``<out>/runs/<name>``: logs, ``last.pth``, ``pretrained/`` with the EMA weights).
3. **evaluate** the input composite, fusion and CharmNet on the eval triplets (protocol
   ``harmonykit``, 256 x 256), with per-image spread, bootstrap intervals and a paired
   CharmNet - fusion comparison, and draw ``comparison.png``.

Everything it measured goes to ``<out>/results.json``; :attr:`DemoResult.summary` is the
printed report, which says plainly when CharmNet did not beat the baseline.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from harmonykit.utils import resolve_device

__all__ = ["DemoResult", "run_demo", "demo_recipe_path", "DEFAULTS", "QUICK"]

_logger = logging.getLogger(__name__)

DATA_FORMAT = 1
RENDER_SIZE = 256
# full demo: 4-8 min on 2 CPU cores (CharmNet 2.5 min, fusion as many iterations, data, eval)
DEFAULTS: Dict[str, Any] = dict(minutes=2.5, scenes=30, pairs_per_scene=16, eval_per_photo=8, batch_size=4, picture_rows=8)
# --quick: the end-to-end smoke version used by the tests (~30-60 s on 2 cores)
QUICK: Dict[str, Any] = dict(iterations=3, scenes=4, pairs_per_scene=4, eval_per_photo=2, batch_size=2, picture_rows=4)
MODELS = ("composite", "fusion", "charmnet")
LABELS = {"composite": "composite (input)", "fusion": "fusion baseline", "charmnet": "CharmNet"}
METRICS = ("mse", "fmse", "psnr")
LOWER_IS_BETTER = {"mse": True, "fmse": True, "psnr": False}


@dataclass
class DemoResult:
    """What :func:`run_demo` did: ``results`` is the content of ``results.json``."""

    out: Path
    results: Dict[str, Any]
    summary: str
    picture: Path
    results_path: Path
    wall_s: float
    paths: Dict[str, str] = field(default_factory=dict)


def demo_recipe_path(name: str) -> Path:
    """``demo_charmnet`` / ``demo_fusion``: the shipped recipe file (checkout ``recipes/`` or
    packaged ``harmonykit/recipes``)."""
    from harmonykit.train.recipe import find_recipe

    return find_recipe(name)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def _photos_digest() -> str:
    from harmonykit.data.bundled import PHOTOS_DIR

    return hashlib.sha256((PHOTOS_DIR / "photos.json").read_bytes()).hexdigest()[:16]


def _prepare_data(out: Path, scenes: int, pairs: int, eval_per_photo: int, seed: int, progress: Optional[bool]) -> Dict[str, Any]:
    """Render + make composites + eval triplets under ``out/data`` (reused if the manifest matches)."""
    from harmonykit.version import __version__
    from harmonykit.data.bundled import write_eval_triplets
    from harmonykit.data.composites import make_composites
    from harmonykit.data.render import render_dataset

    data = out / "data"
    manifest_path = data / "manifest.json"
    want = {
        "format": DATA_FORMAT,
        "scenes": int(scenes),
        "render_size": RENDER_SIZE,
        "pairs_per_scene": int(pairs),
        "eval_per_photo": int(eval_per_photo),
        "seed": int(seed),
        "photos_json": _photos_digest(),
    }
    paths = {
        "renders": data / "renders",
        "rdharmony": data / "rdharmony",
        "rdharmony_list": data / "rdharmony" / "SRendered" / "SRendered_all_labeled.txt",
        "eval": data / "eval_triplets",
    }
    if manifest_path.is_file():
        try:
            have = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            have = {}
        if {k: have.get(k) for k in want} == want and paths["rdharmony_list"].is_file() and (paths["eval"] / "triplets.json").is_file():
            _logger.info("data: reusing %s (manifest matches)", data)
            return {"reused": True, "seconds": 0.0, "paths": paths, "manifest": have}
        _logger.info("data: %s does not match this run's settings; regenerating", manifest_path)
    t0 = time.perf_counter()
    for key in ("renders", "rdharmony", "eval"):
        if paths[key].exists():
            shutil.rmtree(paths[key])
    if manifest_path.exists():
        manifest_path.unlink()
    data.mkdir(parents=True, exist_ok=True)
    _logger.info("data: rendering %d scenes x 10 styles at %dx%d", scenes, RENDER_SIZE, RENDER_SIZE)
    render_dataset(paths["renders"], int(scenes), size=RENDER_SIZE, seed=int(seed), progress=progress)
    _logger.info("data: making RdHarmony-format composites (%d style pairs per scene)", pairs)
    make_composites(
        paths["renders"], paths["rdharmony"], category="SRendered", pairs_per_scene=int(pairs), ext="jpg",
        quality=95, seed=int(seed), overwrite=True, progress=progress if progress is not None else True,
    )
    _logger.info("data: writing held-back real triplets (%d per eval photo)", eval_per_photo)
    trip = write_eval_triplets(paths["eval"], per_photo=int(eval_per_photo), seed=int(seed), progress=progress)
    n_rendered = sum(1 for _ in paths["rdharmony_list"].read_text().splitlines() if _.strip())
    manifest = dict(want, harmonykit=__version__, rendered_composites=n_rendered, eval_triplets=len(trip))
    manifest_path.write_text(json.dumps(manifest, indent=2))  # written last: a crash above regenerates
    return {"reused": False, "seconds": time.perf_counter() - t0, "paths": paths, "manifest": manifest}


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _recipe(name: str, overrides: Sequence[str]) -> Dict[str, Any]:
    import harmonykit.data.bundled  # noqa: F401  (registers the bundled_photos dataset)
    from harmonykit.train.recipe import load_recipe

    return load_recipe(demo_recipe_path(name), overrides=list(overrides))


def _recipe_digest(recipe: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _clock_bar(trainer: Any, budget_s: float, desc: str) -> Iterator[None]:
    """A tqdm bar over the time budget (seconds) instead of the trainer's iteration bar, whose
    total is only an upper bound in a timed run. Honours ``HARMONYKIT_DISABLE_PROGRESS``."""
    from harmonykit.utils import progress, progress_enabled

    if not progress_enabled():
        yield
        return
    bar = progress(total=int(round(budget_s)), desc=f"{desc} ({budget_s / 60:.1f} min)", unit="s")
    stop = threading.Event()

    def tick() -> None:
        t0 = time.perf_counter()
        while not stop.wait(1.0):
            bar.n = min(int(time.perf_counter() - t0), bar.total)
            bar.set_postfix(iterations=int(trainer.iteration), refresh=False)
            bar.refresh()

    th = threading.Thread(target=tick, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()
        bar.n = bar.total
        bar.set_postfix(iterations=int(trainer.iteration))
        bar.close()


def _train(
    recipe: Dict[str, Any],
    run_dir: Path,
    device: str,
    time_budget_s: Optional[float] = None,
    hard_limit_s: Optional[float] = None,
    data_key: Optional[Mapping[str, Any]] = None,
) -> Tuple[Any, Dict[str, Any]]:
    """Train ``recipe`` into ``run_dir`` (or reuse a finished run of the same recipe).

    ``time_budget_s``: stop after this many seconds (the normal end of a ``--minutes`` run; the
    lr is constant, so stopping early is the same as having asked for that many iterations).
    ``hard_limit_s``: stop a run that is far slower than expected (reported as such).
    ``data_key``: the settings the data were made with (part of what must match for reuse).
    Returns the trainer and ``{status, iterations, seconds, reused, ...}``.
    """
    from harmonykit.train import TrainData, Trainer

    digest = _recipe_digest({"recipe": recipe, "data": dict(data_key or {}), "time_budget_s": time_budget_s})
    done_path = run_dir / "done.json"
    if done_path.is_file() and (run_dir / "last.pth").is_file():
        done = json.loads(done_path.read_text())
        if done.get("recipe_digest") == digest and done.get("status") in ("done", "time_budget"):
            trainer = Trainer(recipe, run_dir=None, device=device)
            trainer.load(run_dir / "last.pth")
            _logger.info("%s: reusing the finished run in %s (delete it to retrain)", recipe["name"], run_dir)
            return trainer, dict(done, reused=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    trainer = Trainer(recipe, run_dir=run_dir, device=device)
    data = TrainData.from_recipe(recipe)
    limit = time_budget_s if time_budget_s is not None else hard_limit_s
    if time_budget_s is not None:
        _logger.info("%s: training for %.1f min (at most %d iterations) -> %s", recipe["name"], time_budget_s / 60,
                     recipe["train"]["iterations"], run_dir)
    else:
        _logger.info("%s: training %d iterations -> %s", recipe["name"], recipe["train"]["iterations"], run_dir)
    t0 = time.perf_counter()
    if time_budget_s is not None:  # the demo's bar shows the clock; the trainer's would show iterations
        with _clock_bar(trainer, time_budget_s, recipe["name"]):
            status = trainer.fit(data, max_seconds=limit, progress=False)
    else:
        status = trainer.fit(data, max_seconds=limit)
    seconds = time.perf_counter() - t0
    if status == "interrupted":
        raise KeyboardInterrupt  # Ctrl-C / SIGTERM: the trainer saved last.pth
    if status == "time_budget" and time_budget_s is None:
        _logger.warning("%s: stopped at its time limit (%.0f s)", recipe["name"], limit)
        status = "stopped_at_time_limit"
    info = {
        "recipe_digest": digest,
        "status": status,
        "iterations": int(trainer.iteration),
        "max_iterations": int(recipe["train"]["iterations"]),
        "seconds": round(seconds, 2),
        "seconds_per_iteration": round(seconds / max(trainer.iteration, 1), 4),
    }
    done_path.write_text(json.dumps(info, indent=2))
    return trainer, dict(info, reused=False)


def _eval_net(trainer: Any) -> torch.nn.Module:
    net = trainer.ema.module if getattr(trainer, "ema", None) is not None else trainer.model
    return net.eval()


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------
def _bootstrap_mean(x: np.ndarray, rng: np.random.Generator, n: int = 2000) -> Tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``x``."""
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    idx = rng.integers(0, len(x), size=(n, len(x)))
    means = x[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _statistics(records: Sequence[Mapping[str, Any]], seed: int) -> Dict[str, Any]:
    """Per-model mean / std / bootstrap CI per metric, and paired comparisons."""
    by: Dict[str, Dict[str, Dict[str, float]]] = {}
    for r in records:
        by.setdefault(r["model"], {})[r["name"]] = {m: float(r[m]) for m in METRICS}
    names = sorted(by["composite"])
    rng = np.random.default_rng(seed)
    per_model: Dict[str, Any] = {}
    for model, recs in by.items():
        per_model[model] = {}
        for m in METRICS:
            x = np.array([recs[n][m] for n in names], dtype=np.float64)
            x = x[np.isfinite(x)]
            lo, hi = _bootstrap_mean(x, rng)
            per_model[model][m] = {
                "mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                "min": float(x.min()), "max": float(x.max()), "ci95": [lo, hi], "n": int(len(x)),
            }

    def paired(a: str, b: str) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for m in METRICS:
            xa = np.array([by[a][n][m] for n in names], dtype=np.float64)
            xb = np.array([by[b][n][m] for n in names], dtype=np.float64)
            ok = np.isfinite(xa) & np.isfinite(xb)
            d = xa[ok] - xb[ok]
            lo, hi = _bootstrap_mean(d, rng)
            better = (d < 0) if LOWER_IS_BETTER[m] else (d > 0)
            sig = (hi < 0) if LOWER_IS_BETTER[m] else (lo > 0)
            worse_sig = (lo > 0) if LOWER_IS_BETTER[m] else (hi < 0)
            out[m] = {
                "mean_difference": float(d.mean()), "ci95": [lo, hi],
                "better_on": int(better.sum()), "n": int(len(d)),
                "verdict": "better" if sig else ("worse" if worse_sig else "no clear difference"),
            }
        return out

    return {
        "per_model": per_model,
        "charmnet_minus_fusion": paired("charmnet", "fusion"),
        "charmnet_minus_composite": paired("charmnet", "composite"),
        "fusion_minus_composite": paired("fusion", "composite"),
        "bootstrap": {"resamples": 2000, "interval": "95% percentile, resampling eval triplets", "seed": int(seed)},
    }


def _versus_composite(stats: Mapping[str, Any]) -> Tuple[Dict[str, bool], str]:
    """Whether each trained model's mean fMSE is below the input composite's (doing nothing),
    and one sentence that also says whether the paired difference is outside the noise."""
    pm = stats["per_model"]
    comp = pm["composite"]["fmse"]["mean"]
    better = {m: pm[m]["fmse"]["mean"] < comp for m in ("fusion", "charmnet")}
    names = {"fusion": "fusion", "charmnet": "CharmNet"}
    parts = []
    for m in ("charmnet", "fusion"):
        p = stats[f"{m}_minus_composite"]["fmse"]
        lo, hi = p["ci95"]
        word = {"better": "better, outside the noise", "worse": "worse, outside the noise"}.get(p["verdict"], "within the noise")
        parts.append(f"{names[m]} {pm[m]['fmse']['mean']:.1f} ({word}: paired difference {p['mean_difference']:+.1f}, "
                     f"95% CI [{lo:+.1f}, {hi:+.1f}])")
    if all(better.values()):
        head = "both trained models have a lower mean fMSE than the input composite"
    elif not any(better.values()):
        head = "neither trained model is better than the input composite yet (train longer: --minutes, or a GPU)"
    else:
        head = f"only {'CharmNet' if better['charmnet'] else 'the fusion baseline'} has a lower mean fMSE than the input composite"
    return better, f"{head}; composite {comp:.1f} vs " + ", ".join(parts) + "."


def _verdict(stats: Mapping[str, Any]) -> Tuple[bool, str]:
    """(CharmNet beat fusion on fMSE?, one plain sentence)."""
    c = stats["charmnet_minus_fusion"]["fmse"]
    mean_c = stats["per_model"]["charmnet"]["fmse"]["mean"]
    mean_f = stats["per_model"]["fusion"]["fmse"]["mean"]
    lo, hi = c["ci95"]
    beat = mean_c < mean_f
    if c["verdict"] == "better":
        s = (f"CharmNet beat the fusion baseline on fMSE ({mean_c:.1f} vs {mean_f:.1f}; paired difference "
             f"{c['mean_difference']:+.1f}, 95% CI [{lo:+.1f}, {hi:+.1f}], better on {c['better_on']}/{c['n']} images).")
    elif beat:
        s = (f"CharmNet's mean fMSE is lower than the fusion baseline's ({mean_c:.1f} vs {mean_f:.1f}), but the "
             f"difference is within the noise of this run (paired difference {c['mean_difference']:+.1f}, 95% CI "
             f"[{lo:+.1f}, {hi:+.1f}], better on {c['better_on']}/{c['n']} images): no clear win on this budget.")
    else:
        s = (f"CharmNet did NOT beat the fusion baseline on this budget: fMSE {mean_c:.1f} vs {mean_f:.1f} (paired "
             f"difference {c['mean_difference']:+.1f}, 95% CI [{lo:+.1f}, {hi:+.1f}], better on {c['better_on']}/{c['n']} "
             f"images{'; the gap is outside the noise' if c['verdict'] == 'worse' else '; within the noise'}).")
    return beat, s


# --------------------------------------------------------------------------------------------
# picture
# --------------------------------------------------------------------------------------------
def _load_rgb(path: Path, size: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)


def _load_gray(path: Path, size: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L").resize((size, size), Image.BILINEAR)
        return torch.from_numpy((np.asarray(im, dtype=np.float32) / 255.0 >= 0.5).astype(np.float32))[None]


def _comparison_picture(
    eval_dir: Path,
    nets: Mapping[str, torch.nn.Module],
    fmse: Mapping[Tuple[str, str], float],
    path: Path,
    rows: int,
    tile: int = 192,
) -> List[str]:
    """Rows = eval triplets (evenly chosen, at most ``rows``); columns composite | fusion |
    CharmNet | ground truth | mask; predictions at 256 x 256, shown as harmonize() returns them
    (pasted through the mask: background untouched) and labelled with their fMSE (computed on
    the raw network output, as in the metrics files)."""
    from PIL import Image, ImageDraw

    from harmonykit.eval.triplets import find_triplets
    from harmonykit.inference import predict_lowres

    trips = sorted(find_triplets(eval_dir, split=None), key=lambda t: t.name)
    if len(trips) > rows:
        idx = np.linspace(0, len(trips) - 1, rows).round().astype(int)
        trips = [trips[i] for i in sorted(set(idx.tolist()))]
    cols = ["composite", "fusion", "CharmNet", "ground truth", "mask"]
    head = 24
    canvas = Image.new("RGB", (tile * len(cols), head + tile * len(trips)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(cols):
        draw.text((c * tile + 6, 6), name, fill=(0, 0, 0))

    def to_img(x: torch.Tensor) -> Image.Image:
        a = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(a).resize((tile, tile), Image.BILINEAR)

    for r, t in enumerate(trips):
        comp, real, mask = _load_rgb(t.composite, 256), _load_rgb(t.real, 256), _load_gray(t.mask, 256)
        # what harmonize() returns: the prediction pasted through the mask (background untouched)
        preds = {
            k: (predict_lowres(net, comp[None], mask[None])[0].float().cpu().clamp(0, 1) * mask + comp * (1 - mask))
            for k, net in nets.items()
        }
        panels = [
            ("composite", comp), ("fusion", preds["fusion"]), ("charmnet", preds["charmnet"]),
            (None, real), (None, mask.expand(3, -1, -1)),
        ]
        y = head + r * tile
        for c, (key, img) in enumerate(panels):
            canvas.paste(to_img(img), (c * tile, y))
            if key is not None and (key, t.name) in fmse:
                label = f"fMSE {fmse[(key, t.name)]:.0f}"
                x0, y0 = c * tile + 4, y + tile - 18
                draw.rectangle([x0 - 2, y0 - 2, x0 + 7 * len(label), y0 + 13], fill=(0, 0, 0))
                draw.text((x0, y0), label, fill=(255, 255, 255))
        draw.rectangle([3 * tile + 2, y + 2, 3 * tile + 8 + 6 * len(t.name), y + 16], fill=(0, 0, 0))
        draw.text((3 * tile + 5, y + 3), t.name, fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return [t.name for t in trips]


def _default_model_section(eval_dir: Path, out: Path, seed: int, rows: int, tile: int = 256) -> Dict[str, Any]:
    """Harmonize the held-back real triplets with :data:`harmonykit.inference.DEFAULT_MODEL`
    (what ``harmonize(composite, mask)`` uses) at their full size; fMSE per image against the
    input composite (harmonykit protocol at full resolution) with a paired bootstrap interval;
    a labelled picture composite | default model | ground truth (final results as harmonize()
    returns them)."""
    from PIL import Image, ImageDraw

    from harmonykit.data.io import load_image_u8, load_mask_u8
    from harmonykit.eval import compute_metrics
    from harmonykit.eval.triplets import find_triplets
    from harmonykit.inference import DEFAULT_MODEL, default_model, harmonize

    net = default_model()
    trips = sorted(find_triplets(eval_dir, split=None), key=lambda t: t.name)
    recs = []
    for t in trips:
        comp, mask, real = load_image_u8(t.composite), load_mask_u8(t.mask), load_image_u8(t.real)
        res = harmonize(comp, mask, net)
        m_comp = compute_metrics(comp[None], real[None], mask[None], "harmonykit", ssim=False)[0]
        m_res = compute_metrics(res[None], real[None], mask[None], "harmonykit", ssim=False)[0]
        recs.append({"name": t.name, "composite_fmse": float(m_comp["fmse"]), "model_fmse": float(m_res["fmse"]),
                     "arrays": (comp, res, real)})
    diff = np.array([r["model_fmse"] - r["composite_fmse"] for r in recs])
    lo, hi = _bootstrap_mean(diff, np.random.default_rng(seed))
    comp_mean = float(np.mean([r["composite_fmse"] for r in recs]))
    model_mean = float(np.mean([r["model_fmse"] for r in recs]))
    pick = recs if len(recs) <= rows else [recs[i] for i in sorted(set(np.linspace(0, len(recs) - 1, rows).round().astype(int).tolist()))]
    cols = ["composite (input)", f"{DEFAULT_MODEL} (harmonize default)", "ground truth"]
    head = 24
    canvas = Image.new("RGB", (tile * 3, head + tile * len(pick)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(cols):
        draw.text((c * tile + 6, 6), name, fill=(0, 0, 0))
    for r, rec in enumerate(pick):
        y = head + r * tile
        labels = [f"fMSE {rec['composite_fmse']:.0f}", f"fMSE {rec['model_fmse']:.0f}", rec["name"]]
        for c, (arr, label) in enumerate(zip(rec["arrays"], labels)):
            im = Image.fromarray(arr)
            w = max(1, round(im.width * tile / im.height))
            im = im.resize((min(w, tile), tile), Image.BILINEAR)
            canvas.paste(im, (c * tile, y))
            x0, y0 = c * tile + 4, y + tile - 18
            draw.rectangle([x0 - 2, y0 - 2, x0 + 7 * len(label), y0 + 13], fill=(0, 0, 0))
            draw.text((x0, y0), label, fill=(255, 255, 255))
    picture = out / "default_model.png"
    canvas.save(picture, optimize=True)
    return {
        "model": DEFAULT_MODEL,
        "triplets": len(recs),
        "protocol": "harmonykit, full resolution (fMSE on 0..255)",
        "composite_fmse": comp_mean,
        "model_fmse": model_mean,
        "model_minus_composite": {"mean": float(diff.mean()), "ci95": [lo, hi], "better_on": int((diff < 0).sum())},
        "per_image": [{k: v for k, v in r.items() if k != "arrays"} for r in recs],
        "picture": str(picture),
    }


def _default_verdict(diff: Mapping[str, Any]) -> str:
    """Plain words for the default model's paired fMSE difference against the input composite."""
    lo, hi = diff["ci95"]
    if hi < 0:
        return "the default model lowered fMSE (95% interval below zero)"
    if lo > 0:
        return ("the default model made these triplets WORSE than the input (95% interval above zero). Their "
                "foregrounds were recoloured by synthetic edits of the photo itself (hue, white balance, another "
                "object's colours), which a statistics transfer towards the background cannot undo; on real "
                "iHarmony4 composites it lowers fMSE (docs/models.md, benchmarks/bench_quality.py)")
    return "no clear difference from the input composite (the 95% interval includes zero)"


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
def _format_table(stats: Mapping[str, Any]) -> str:
    """Mean +- per-image std and the 95 % bootstrap interval of the mean, per model."""
    pm = stats["per_model"]
    lines = [f"{'model':<18} {'MSE':>26} {'fMSE':>28} {'PSNR (dB)':>24}"]
    lines.append("-" * len(lines[0]))
    for model in MODELS:
        cells = []
        for m, w, d in (("mse", 26, 1), ("fmse", 28, 1), ("psnr", 24, 2)):
            s = pm[model][m]
            cells.append(f"{s['mean']:.{d}f} ±{s['std']:.{d}f} [{s['ci95'][0]:.{d}f}, {s['ci95'][1]:.{d}f}]".rjust(w))
        lines.append(f"{LABELS[model]:<18} " + " ".join(cells))
    return "\n".join(lines)


def _markdown_table(stats: Mapping[str, Any]) -> str:
    pm = stats["per_model"]
    out = ["| model | MSE ↓ | fMSE ↓ | PSNR ↑ (dB) |", "|---|---:|---:|---:|"]
    for model in MODELS:
        cells = []
        for m, d in (("mse", 1), ("fmse", 1), ("psnr", 2)):
            s = pm[model][m]
            cells.append(f"{s['mean']:.{d}f} ± {s['std']:.{d}f} [{s['ci95'][0]:.{d}f}, {s['ci95'][1]:.{d}f}]")
        out.append(f"| {LABELS[model]} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def run_demo(
    out: Union[str, Path] = "harmonykit-demo",
    *,
    minutes: Optional[float] = None,
    iterations: Optional[int] = None,
    scenes: Optional[int] = None,
    device: str = "auto",
    seed: int = 0,
    quick: bool = False,
    progress: Optional[bool] = None,
) -> DemoResult:
    """Run the whole demo into ``out`` (see the module docstring).

    Args:
        out: output folder (data, runs, results, picture).
        minutes: CharmNet trains for this many minutes; the fusion baseline then trains for
            the same number of iterations. Default 2.5.
        iterations: training iterations per model (wins over ``minutes``; exactly reproducible).
        scenes: rendered scenes (x 10 styles; 16 style pairs each become composites). Default 30.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1`` ...
        seed: seeds data generation, training and the bootstrap.
        quick: the ~30-60 s smoke version (4 scenes, 3 iterations of batch 2, 4 eval triplets).
        progress: tqdm bars (default: unless ``HARMONYKIT_DISABLE_PROGRESS=1``).

    Returns:
        :class:`DemoResult`; ``results.json`` holds the same numbers.

    Raises:
        ValueError: a non-positive budget or scene count, or an unavailable device.
    """
    t_start = time.perf_counter()
    cfg = dict(QUICK if quick else DEFAULTS)
    if iterations is not None:
        if int(iterations) < 1:
            raise ValueError(f"iterations={iterations!r}; expected >= 1")
        cfg["iterations"], cfg["minutes"] = int(iterations), None
    elif minutes is not None:
        if not float(minutes) > 0:
            raise ValueError(f"minutes={minutes!r}; expected > 0")
        cfg["minutes"], cfg["iterations"] = float(minutes), None
    if scenes is not None:
        if int(scenes) < 1:
            raise ValueError(f"scenes={scenes!r}; expected >= 1")
        cfg["scenes"] = int(scenes)
    dev = resolve_device(device)
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    timings: Dict[str, float] = {}

    # 1. data
    data = _prepare_data(out, cfg["scenes"], cfg["pairs_per_scene"], cfg["eval_per_photo"], seed, progress)
    timings["data"] = round(data["seconds"], 2)
    paths = data["paths"]
    n_rendered = data["manifest"]["rendered_composites"]
    data_key = {k: data["manifest"].get(k) for k in ("format", "scenes", "render_size", "pairs_per_scene", "eval_per_photo", "seed", "photos_json")}
    bs = int(cfg["batch_size"])
    base = [
        f"seed={seed}",
        f"train.batch_size={bs}",
        f"train.device={dev}",
        f"data.rendered.root={paths['rdharmony']}",
        "data.rendered.list_file=SRendered/SRendered_all_labeled.txt",
        f"data.real.seed={seed}",
        f"output_dir={out / 'runs'}",
        f"data.num_workers={2 if dev.startswith('cuda') else 0}",
    ]

    # 1b. the model harmonize() uses by default, on the held-back real triplets (no training)
    t = time.perf_counter()
    default_section = _default_model_section(paths["eval"], out, seed, int(cfg["picture_rows"]))
    timings["default_model"] = round(time.perf_counter() - t, 2)

    # 2.-3. budget and training: CharmNet for --minutes (or --iterations), then fusion for
    # exactly as many iterations (constant lr, so the two runs see the same schedule)
    if cfg.get("iterations") is None:
        budget_s = float(cfg["minutes"]) * 60.0
        max_iter = max(100, int(budget_s / 0.05))
        charm_recipe = _recipe("demo_charmnet", base + [f"train.iterations={max_iter}"])
        charm, charm_info = _train(charm_recipe, out / "runs" / "charmnet", dev, time_budget_s=budget_s, data_key=data_key)
    else:
        n = int(cfg["iterations"])
        charm_recipe = _recipe("demo_charmnet", base + [f"train.iterations={n}"])
        charm, charm_info = _train(charm_recipe, out / "runs" / "charmnet", dev, data_key=data_key)
    if charm_info["iterations"] < 1:
        raise RuntimeError(f"CharmNet made no training step within {cfg['minutes']} min; give more --minutes")
    timings["train_charmnet"] = charm_info["seconds"] if not charm_info["reused"] else 0.0
    n_done = charm_info["iterations"]
    fusion_recipe = _recipe("demo_fusion", base + [f"train.iterations={n_done}"])
    hard = None if charm_info["reused"] or cfg.get("iterations") is not None else 1.3 * charm_info["seconds"] + 20.0
    fusion, fusion_info = _train(fusion_recipe, out / "runs" / "fusion", dev, hard_limit_s=hard, data_key=data_key)
    timings["train_fusion"] = fusion_info["seconds"] if not fusion_info["reused"] else 0.0
    equal_budget = fusion_info["iterations"] == n_done
    if not equal_budget:
        _logger.warning("fusion stopped at its time limit after %d of %d iterations: the budgets differ", fusion_info["iterations"], n_done)

    # 4. evaluate
    from harmonykit.eval import evaluate

    t = time.perf_counter()
    nets = {"fusion": _eval_net(fusion), "charmnet": _eval_net(charm)}
    res = evaluate({"composite": "composite", **nets}, paths["eval"], protocol="harmonykit", split=None, ssim=False, progress=progress)
    res.to_csv(out / "eval_records.csv")
    stats = _statistics(res.records, seed)
    fmse = {(r["model"], r["name"]): float(r["fmse"]) for r in res.records}
    picture = out / "comparison.png"
    rows = _comparison_picture(paths["eval"], nets, fmse, picture, int(cfg["picture_rows"]))
    timings["evaluate"] = round(time.perf_counter() - t, 2)
    beat, verdict = _verdict(stats)
    vs_comp, vs_comp_text = _versus_composite(stats)
    wall = time.perf_counter() - t_start
    timings["total"] = round(wall, 2)

    trip_meta = json.loads((paths["eval"] / "triplets.json").read_text())
    photos = sorted({t["photo"] for t in trip_meta["triplets"]})
    charm_params = sum(p.numel() for p in charm.model.parameters())
    fusion_params = sum(p.numel() for p in fusion.model.parameters())
    table = _format_table(stats)
    results: Dict[str, Any] = {
        "charmnet_beats_fusion_fmse": bool(beat),
        "verdict": verdict,
        "beats_input_composite_fmse": vs_comp,
        "versus_composite": vs_comp_text,
        "protocol": "harmonykit",
        "eval": {
            "triplets": len(trip_meta["triplets"]), "photos": photos, "per_photo": trip_meta["per_photo"],
            "size": [256, 256], "folder": str(paths["eval"]),
            "note": "triplets of the same photo share content and mask, so they are not independent samples",
        },
        "default_model": default_section,
        "metrics": stats,
        "table_markdown": _markdown_table(stats),
        "training": {
            "iterations_per_model": n_done,
            "batch_size_per_domain": bs,
            "images_per_iteration": 2 * bs,
            "equal_budget": bool(equal_budget),
            "reproduce_with": f"harmonykit demo --iterations {n_done} --seed {seed}" + (" --quick" if quick else ""),
            "budget": {"minutes_per_model": cfg.get("minutes"), "iterations": cfg.get("iterations")},
            "charmnet": dict(charm_info, recipe=str(demo_recipe_path("demo_charmnet")), parameters_generator=charm_params),
            "fusion": dict(fusion_info, recipe=str(demo_recipe_path("demo_fusion")), parameters_generator=fusion_params),
            "width": {"ch": charm_recipe["model"].get("ch"), "max_channels": charm_recipe["model"].get("max_channels")},
            "precision": charm_recipe["train"]["precision"],
            "lr": charm_recipe["optim"]["lr"], "schedule": charm_recipe["sched"]["name"],
        },
        "data": {
            "reused": data["reused"], "rendered_scenes": cfg["scenes"], "rendered_composites": n_rendered,
            "real_train_photos": "bundled train photos, synthetic composites generated online (bundled_photos)",
            "folder": str(out / "data"),
        },
        "device": dev,
        "torch_threads": torch.get_num_threads(),
        "seed": int(seed),
        "quick": bool(quick),
        "timings_s": timings,
        "picture": {"path": str(picture), "rows": rows, "columns": ["composite", "fusion", "CharmNet", "ground truth", "mask"]},
    }
    results_path = out / "results.json"
    results_path.write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(results["table_markdown"] + "\n")

    cmf = stats["charmnet_minus_fusion"]
    noise = "; ".join(
        f"{m.upper() if m != 'fmse' else 'fMSE'} {cmf[m]['mean_difference']:+.{2 if m == 'psnr' else 1}f} "
        f"[{cmf[m]['ci95'][0]:+.{2 if m == 'psnr' else 1}f}, {cmf[m]['ci95'][1]:+.{2 if m == 'psnr' else 1}f}], "
        f"CharmNet better on {cmf[m]['better_on']}/{cmf[m]['n']}"
        for m in METRICS
    )
    iters_text = (
        f"{n_done} iterations each" if equal_budget else f"CharmNet {n_done} / fusion {fusion_info['iterations']} iterations"
    )
    dm = default_section["model_minus_composite"]
    summary = "\n".join([
        f"harmonize(composite, mask) with the default model ({default_section['model']}) on the "
        f"{default_section['triplets']} held-back triplets (real photos, synthetic foreground edits), full resolution: fMSE "
        f"{default_section['composite_fmse']:.1f} (input composite) -> {default_section['model_fmse']:.1f}; "
        f"difference {dm['mean']:+.1f} [95% CI {dm['ci95'][0]:+.1f}, {dm['ci95'][1]:+.1f}], better on "
        f"{dm['better_on']}/{default_section['triplets']}",
        f"verdict: {_default_verdict(dm)}",
        f"picture:  {default_section['picture']} (composite | default model | ground truth; final results as "
        f"harmonize() returns them, background untouched)",
        "",
        f"harmonykit demo{' (--quick)' if quick else ''}: CharmNet vs dataset fusion, "
        f"{iters_text} "
        f"({bs} rendered + {bs} real images per iteration), reduced width ch={results['training']['width']['ch']}, "
        f"max_channels={results['training']['width']['max_channels']} ({charm_params / 1e6:.2f} M / {fusion_params / 1e6:.2f} M "
        f"generator parameters), {results['training']['precision']}, device {dev}",
        f"training data: {n_rendered} rendered composites from {cfg['scenes']} scenes + synthetic composites of "
        f"the bundled train photos",
        f"evaluation: {results['eval']['triplets']} held-back real triplets ({len(photos)} bundled photos x "
        f"{trip_meta['per_photo']} colour perturbations), protocol harmonykit, 256x256",
        "",
        "mean ± per-image std [95% bootstrap CI of the mean]",
        table,
        "",
        f"CharmNet - fusion, paired per image [95% CI]: {noise}",
        f"verdict: {verdict}",
        f"versus doing nothing: {vs_comp_text}",
        *([] if equal_budget else [f"WARNING: fusion stopped at its time limit after {fusion_info['iterations']} of {n_done} iterations; the budgets are not equal."]),
        f"noise: the eval set is small and its triplets share {len(photos)} photos; read a difference whose CI crosses 0 as a tie.",
        "",
        f"results:  {results_path}",
        f"table:    {out / 'table.md'} (per image: {out / 'eval_records.csv'})",
        f"picture:  {picture} (rows = eval triplets; composite | fusion | CharmNet | ground truth | mask; "
        f"predictions pasted through the mask as harmonize() returns them)",
        f"runs:     {out / 'runs' / 'charmnet'}, {out / 'runs' / 'fusion'} (last.pth, pretrained/, train.csv)",
        f"data:     {out / 'data'} (renders/, rdharmony/, eval_triplets/; reused when manifest.json matches)",
        f"time:     {wall:.0f} s total (data {timings['data']:.0f} s, CharmNet "
        f"{timings['train_charmnet']:.0f} s, fusion {timings['train_fusion']:.0f} s, eval {timings['evaluate']:.0f} s)",
    ])
    (out / "summary.txt").write_text(summary + "\n")
    return DemoResult(
        out=out, results=results, summary=summary, picture=picture, results_path=results_path, wall_s=wall,
        paths={"results": str(results_path), "picture": str(picture), "default_model_picture": default_section["picture"],
               "data": str(out / "data"), "runs": str(out / "runs")},
    )
