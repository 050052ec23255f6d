"""Token mixers compared by the five studies, one file per mechanism.

    build(name, dim, heads, **options) -> module;  NAMES lists the valid names (the one list of them:
    SEQUENCE_NAMES and PAPER_NAMES are its subsets, and the CLI, bench and results import them from here).
    modes(name) -> the values of that mechanism's `mode` switch (its class's MODES; see base).

Sequence mixers (all but `area`): forward(x [B, T, D], mask [B, T] bool, True = real) -> [B, T, D] and
attention_matrix(x, mask) -> [B, H, T, T]. `area` mixes a 2-D feature map (see sercore.attention.area).
"""

from __future__ import annotations

import importlib
import inspect

# name -> (module, class, how build()'s dim/heads map onto the class's own argument names)
_REGISTRY = {
    "softmax": ("sercore.attention.softmax", "SoftmaxAttention", {"dim": "dim", "heads": "heads"}),
    "retnet": ("sercore.attention.retnet", "MultiScaleRetention", {"dim": "hidden_size", "heads": "num_heads"}),
    "lightnet": ("sercore.attention.lightnet", "LightNetAttention", {"dim": "hidden_size", "heads": "num_heads"}),
    "gsa": ("sercore.attention.gsa", "GatedSlotAttention", {"dim": "hidden_size", "heads": "num_heads"}),
    # The paper called ForgettingAttention(hidden_size, num_kv_heads=4): heads are the kv heads there.
    "fox": ("sercore.attention.fox", "ForgettingAttention", {"dim": "hidden_size", "heads": "num_kv_heads"}),
    "kda": ("sercore.attention.kda", "KimiDeltaAttention", {"dim": "hidden_size", "heads": "num_heads"}),
    "keysparse": ("sercore.attention.keysparse", "KeySparseAttention", {"dim": "dim", "heads": "heads"}),
    "area": ("sercore.attention.area", "AreaAttention", {"dim": "dim", "heads": "heads"}),
}
NAMES = tuple(_REGISTRY)
SEQUENCE_NAMES = tuple(name for name in NAMES if name != "area")  # forward(x [B, T, D], mask)
# The six the fusion paper compared (softmax against the five fla mechanisms); key-sparse is its own study's.
PAPER_NAMES = ("softmax", "retnet", "lightnet", "gsa", "fox", "kda")
_LAZY = {"MODES", "SequenceMixer"}  # from base, which imports torch: loaded on first use, so NAMES stays light


def __getattr__(name: str):
    if name in _LAZY:
        from sercore.attention import base

        return getattr(base, name)
    raise AttributeError(f"module 'sercore.attention' has no attribute {name!r}")


def mechanism_class(name: str) -> type:
    if name not in _REGISTRY:
        raise ValueError(f"unknown attention mechanism {name!r}; valid names: {', '.join(NAMES)}")
    module, cls, _ = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def modes(name: str) -> tuple[str, ...]:
    """The values mechanism `name`'s `mode` accepts (its class's MODES): auto, reference, fused, and its own."""
    return mechanism_class(name).MODES


def build(name: str, dim: int, heads: int, **options):
    """Build mechanism `name` with model width `dim` and `heads` heads; options go to its constructor.

    An unknown name or option fails with the list of valid ones."""
    cls = mechanism_class(name)
    arg_names = _REGISTRY[name][2]
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = sorted(p for p in params if p != "self" and p not in arg_names.values()
                   and params[p].kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL))
    unknown = sorted(set(options) - set(valid))
    if unknown and not accepts_any:
        raise TypeError(f"{name}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
    kwargs = {arg_names["dim"]: dim, arg_names["heads"]: heads, **options}
    return cls(**kwargs)


__all__ = ["NAMES", "MODES", "PAPER_NAMES", "SEQUENCE_NAMES", "SequenceMixer", "build", "mechanism_class",
           "modes"]
