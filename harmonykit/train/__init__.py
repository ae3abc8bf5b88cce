"""Training: recipes (schema, ``extends:``, ``--set``), the CharmNet / iDIH trainer (data and
domain routing, loss terms, step, validation, logging in their own modules), atomic
checkpoints, torchrun helpers and deterministic synthetic data.

>>> from harmonykit.train import load_recipe, Trainer, TrainData
>>> recipe = load_recipe("tiny", overrides=["train.iterations=2"])
>>> trainer = Trainer(recipe, run_dir="runs/tiny")              # doctest: +SKIP
>>> trainer.fit(TrainData.from_recipe(recipe))                  # doctest: +SKIP
'done'
"""
from .checkpoint import CHECKPOINT_FORMAT, get_rng_state, load_training_checkpoint, save_checkpoint, set_rng_state
from .distributed import DistInfo, ShardedBatchSampler, all_reduce_grads, init_distributed
from .recipe import RecipeError, SCHEMA, apply_overrides, build_schema, dump_recipe, find_recipe, get_key, load_recipe, resolve_recipe
from .synthetic import SyntheticHarmonizationDataset, synthetic_batch
from .data import DomainPlan, TrainData
from .loss_terms import LOSS_TERMS, LossTerm
from .step import NonFiniteLossError
from .trainer import Trainer

__all__ = [
    "CHECKPOINT_FORMAT",
    "save_checkpoint",
    "load_training_checkpoint",
    "get_rng_state",
    "set_rng_state",
    "DistInfo",
    "ShardedBatchSampler",
    "all_reduce_grads",
    "init_distributed",
    "RecipeError",
    "SCHEMA",
    "build_schema",
    "apply_overrides",
    "dump_recipe",
    "find_recipe",
    "get_key",
    "load_recipe",
    "resolve_recipe",
    "SyntheticHarmonizationDataset",
    "synthetic_batch",
    "NonFiniteLossError",
    "DomainPlan",
    "LOSS_TERMS",
    "LossTerm",
    "TrainData",
    "Trainer",
]
