"""Derived layer state: what a layer computes from its variables, redone after a restore.

Some layers call with tensors derived from their variables rather than with
the variables: Keras's `Normalization` computes `mean` and `variance` from
its `adapt_mean` / `adapt_variance` variables in `finalize_state`. A Saver
restore assigns the variables and leaves those tensors as they were, so the
model goes on computing with the state it was built with. Keras's own
loaders redo them, and `finalize_derived_state` does what they do:

- a layer with a `finalize_state` method gets it called, as tf_keras's
  `load_weights` / `set_weights` and Keras's legacy h5 loader do for every
  layer that holds weights;
- a layer whose `load_own_variables` hook its author wrote (not one of
  Keras's own) gets its variables back through it, in the store its own
  `save_own_variables` writes, as Keras 3's `load_weights` would call it.

Keras's own load hooks of `Dense`, `Conv`, `EinsumDense` and `Embedding`
only lay out quantized and LoRA weights; running them would merge the LoRA
factors into the kernel, so they are left alone. Normalization's hook only
calls `finalize_state`, which the first rule covers.

`stale_derived_state` is the check a freeze runs: which layers compute with
state their variables no longer give, found by redoing it and comparing
what was replaced; the model is left as it was found.

Duck-typed, no Keras import (the checkpoint layer must not import Keras),
so it serves Keras 3 and tf_keras alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_KERAS_PACKAGES = ("keras", "tf_keras")


def _has_authors_load_hook(layer: Any) -> bool:
    """Whether the `load_own_variables` the layer runs is defined outside Keras's own packages."""
    for klass in type(layer).__mro__:
        if "load_own_variables" in vars(klass):
            return klass.__module__.split(".")[0] not in _KERAS_PACKAGES
    return False


def _has_derived_state(layer: Any) -> bool:
    if not getattr(layer, "weights", None):  # nothing restored into it
        return False
    return callable(getattr(layer, "finalize_state", None)) or _has_authors_load_hook(layer)


def derived_state_layers(model: Any) -> list[Any]:
    """The model's layers (itself included) whose state a restore must redo beyond assigning variables."""
    return [layer for layer in model._flatten_layers() if _has_derived_state(layer)]


def _rederive(layer: Any) -> None:
    if _has_authors_load_hook(layer):
        store: dict[str, Any] = {}
        layer.save_own_variables(store)
        layer.load_own_variables(store)
    finalize = getattr(layer, "finalize_state", None)
    if callable(finalize):
        finalize()


def finalize_derived_state(model: Any) -> list[str]:
    """Recompute every layer's derived state from its variables, as Keras's loading does.

    Call it after assigning restored values to the model's variables.
    Returns the names of the layers it ran a hook of.
    """
    layers = derived_state_layers(model)
    for layer in layers:
        _rederive(layer)
    return [layer.name for layer in layers]


def stale_derived_state(model: Any) -> list[str]:
    """The layers whose derived state differs from what their variables give, as `name (attr, ...)`.

    Each layer with derived state has it redone; attributes the redo
    replaced with a different value were stale. The replaced attributes are
    put back, so the model is left as it was found. Costs what one restore's
    `finalize_derived_state` costs: the hooks run once, and only derived
    values (not variables) are held twice, one layer at a time.
    """
    stale = []
    for layer in derived_state_layers(model):
        state = vars(layer)
        before = dict(state)
        _rederive(layer)
        replaced = [name for name, value in state.items() if before.get(name, value) is not value]
        differing = [name for name in replaced if not _same_value(before[name], state[name])]
        for name in [name for name in state if name not in before]:
            del state[name]
        state.update({name: before[name] for name in replaced})
        if differing:
            stale.append(f"{layer.name} ({', '.join(differing)})")
    return stale


def _same_value(a: Any, b: Any) -> bool:
    """Equal values (tensors, arrays, numbers, strings); other objects cannot be judged: equal."""
    try:
        a, b = np.asarray(a), np.asarray(b)
    except Exception:  # noqa: BLE001 -- an attribute of any type may be replaced
        return True
    if a.dtype == object or b.dtype == object:
        return True
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc" and b.dtype.kind in "fc"))
