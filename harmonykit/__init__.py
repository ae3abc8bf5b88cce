"""harmonykit: deep image harmonization (CharmNet, iDIH) as a plugin library.

>>> import harmonykit
>>> net = harmonykit.create_model("charmnet_idih")          # the paper's generator
>>> harmonykit.list_models("charmnet*")[:2]
['charmnet_idih', 'charmnet_idih_shared']
"""
from harmonykit.version import __version__  # noqa: F401

from harmonykit import models  # noqa: E402,F401  (registers the built-in components)
from harmonykit.factory import (  # noqa: E402
    create_model,
    from_pretrained,
    get_pretrained_cfg,
    is_model,
    list_models,
    register_pretrained,
)
from harmonykit.hub import save_pretrained  # noqa: E402
from harmonykit.registry import (  # noqa: E402
    ADAPTERS,
    AUGMENTATIONS,
    BACKBONES,
    DATASETS,
    DISCRIMINATORS,
    LOSSES,
    METRICS,
    MODELS,
    STYLE_HEADS,
    Registry,
)

__all__ = [
    "__version__",
    "create_model",
    "list_models",
    "is_model",
    "get_pretrained_cfg",
    "register_pretrained",
    "save_pretrained",
    "from_pretrained",
    "Registry",
    "BACKBONES",
    "ADAPTERS",
    "DISCRIMINATORS",
    "STYLE_HEADS",
    "LOSSES",
    "MODELS",
    "DATASETS",
    "METRICS",
    "AUGMENTATIONS",
]


def __getattr__(name: str):  # lazy: inference pulls in PIL/numpy paths only when used
    if name == "harmonize":
        from harmonykit.inference import harmonize

        return harmonize
    if name == "push_to_hub":
        from harmonykit.publish import push_to_hub

        return push_to_hub
    raise AttributeError(f"module 'harmonykit' has no attribute {name!r}")
