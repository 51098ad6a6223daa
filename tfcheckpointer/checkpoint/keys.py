"""Stable, readable checkpoint keys for a Keras model's variables.

Keras numbers auto-named layers and optimizers per process (`dense_2/kernel`,
`adam_4/...`), so `variable.path` changes when a second model is built in the
same process. Keys here are derived from the model's structure instead: each
layer is named by its position among its siblings when its name is one Keras
made up, and by its own name when the user chose one. The same model rebuilt
anywhere gets the same keys, and they read like TF1 names (`dense_1/kernel`).

Model variables are keyed `<layer>/<sublayer>/.../<variable>`. A variable
Keras named itself (`add_weight` without `name=`: `variable`, `variable_2`,
numbered per process) is keyed by the layer attribute that holds it
(`affine/scale` for `self.scale = self.add_weight(...)`), else by its position
among the layer's own variables (`affine/variable_1`). Optimizer state is
`optimizer/<model key>/<slot>` (e.g. `optimizer/dense/kernel/momentum`); the
optimizer's step counter is `global_step`, as in TF1. An optimizer wrapping
another (`LossScaleOptimizer`, which mixed_float16 adds) has the inner one's
state keyed as that of a plain optimizer, and its own under
`optimizer/<wrapper>/` (`optimizer/loss_scale/dynamic_scale`).
"""

from __future__ import annotations

import collections
import re
from typing import Any

from tfcheckpointer.errors import KeyCollisionError
from tfcheckpointer.checkpoint.naming import GLOBAL_STEP_KEY, OPTIMIZER_SCOPE


def to_snake_case(name: str) -> str:
    """Keras's own rule (`keras.src.utils.naming.to_snake_case`) for auto names."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _auto_base(layer: Any) -> str | None:
    """The class-derived base if `layer.name` looks made up by Keras, else None."""
    base = to_snake_case(type(layer).__name__)
    return base if re.fullmatch(re.escape(base) + r"(_\d+)?", layer.name) else None


def _child_names(children: list[Any]) -> list[str]:
    """Stable names for sibling layers, in order."""
    seen: collections.Counter[str] = collections.Counter()
    names = []
    for child in children:
        base = _auto_base(child)
        if base is None:
            names.append(child.name)
            continue
        names.append(base if seen[base] == 0 else f"{base}_{seen[base]}")
        seen[base] += 1
    return names


def _children(layer: Any) -> list[Any]:
    return list(layer._flatten_layers(include_self=False, recursive=False))


def stable_layer_names(model: Any) -> dict[int, str]:
    """`{id(layer): stable name}` for the model's direct layers, input layers included."""
    children = _children(model)
    return {id(child): name for child, name in zip(children, _child_names(children))}


def _own_variables(layer: Any) -> list[Any]:
    """The variables a layer creates itself, not those of its sublayers."""
    if hasattr(layer, "_trainable_variables"):  # Keras 3
        own = list(layer._trainable_variables) + list(layer._non_trainable_variables)
        return own + [generator.state for generator in getattr(layer, "_seed_generators", [])]
    return list(layer._trainable_weights) + list(layer._non_trainable_weights)  # tf_keras


def variable_path(variable: Any) -> str:
    """Keras's own path of a variable: `dense_2/kernel` (Keras 3) or its TF name without `:0`."""
    return getattr(variable, "path", None) or variable.name.split(":")[0]


def _short_name(variable: Any) -> str:
    """`kernel` for Keras 3's `kernel` and tf_keras's `dense_2/kernel:0` alike."""
    return variable.name.split(":")[0].rsplit("/", 1)[-1]


# What Keras 3 (`auto_name("Variable")`) and TensorFlow name a variable given no name.
_MADE_UP_VARIABLE_NAME = re.compile(r"(variable|Variable)(_\d+)?")


def _own_variable_names(layer: Any, variables: list[Any]) -> list[str]:
    """Stable names for a layer's own variables, in order.

    A name the user gave is kept. A made-up one is numbered by how many
    variables the process created before, so it is replaced by the name of the
    layer attribute holding the variable, else by the variable's position.
    """
    holders: dict[int, str] = {}
    wanted = {id(v) for v in variables}
    for attribute, value in vars(layer).items():
        # A leading `_` would make an invalid graph node name at the top of a key.
        if id(value) in wanted and attribute.lstrip("_"):
            holders.setdefault(id(value), attribute.lstrip("_"))
    names = []
    for position, variable in enumerate(variables):
        name = _short_name(variable)
        if _MADE_UP_VARIABLE_NAME.fullmatch(name):
            name = holders.get(id(variable), f"variable_{position}")
        names.append(name)
    return names


def model_variable_keys(model: Any) -> dict[str, Any]:
    """Map stable keys to the model's Keras variables, in `model.variables` order."""
    pairs: list[tuple[str, Any]] = []

    def visit(layer: Any, scope: str) -> None:
        own = _own_variables(layer)
        for variable, name in zip(own, _own_variable_names(layer, own)):
            pairs.append((f"{scope}{name}", variable))
        children = _children(layer)
        for child, name in zip(children, _child_names(children)):
            visit(child, f"{scope}{name}/")

    visit(model, "")
    collisions = _collisions(pairs)
    if collisions:
        raise KeyCollisionError(collisions)
    keys = {id(variable): key for key, variable in pairs}
    unreached = [variable_path(v) for v in model.variables if id(v) not in keys]
    if unreached:
        raise KeyCollisionError({"<not found by walking the layers>": unreached})
    return {keys[id(v)]: v for v in model.variables}


def _optimizer_variables(optimizer: Any) -> list[Any]:
    """`optimizer.variables`: a property in Keras 3, a method in tf_keras."""
    variables = optimizer.variables() if callable(optimizer.variables) else optimizer.variables
    return list(variables)


def _wrapper_scope(optimizer: Any) -> str:
    """`optimizer/loss_scale` for a `LossScaleOptimizer`: its class name less `Optimizer`."""
    name = to_snake_case(type(optimizer).__name__).removesuffix("_optimizer")
    return f"{OPTIMIZER_SCOPE}/{name}"


def optimizer_variable_keys(optimizer: Any, model_keys: dict[str, Any]) -> dict[str, Any]:
    """Map stable keys to the optimizer's variables.

    A slot variable is filed under its reference variable's stable key. Keras 3
    names it `<reference path with '/' as '_'>_<slot>`; tf_keras
    `[<optimizer>/]<slot>/<reference path>`. A wrapper's (`inner_optimizer`)
    inner state gets the keys a plain optimizer's would, `global_step`
    included (the wrapper's `iterations` is the inner one's), and the
    wrapper's own state (a loss scale) `optimizer/<wrapper>/<name>`.
    """
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        inner_keys = optimizer_variable_keys(inner, model_keys)
        # The wrapper's `iterations` and `learning_rate` are the inner optimizer's; the
        # copies it inherits from the base class are never read or updated, so not saved.
        skipped = {id(v) for v in inner_keys.values()} | {
            id(getattr(optimizer, name, None)) for name in ("_iterations", "_learning_rate")
        }
        scope = _wrapper_scope(optimizer)
        own = [
            (f"{scope}/{_short_name(v)}", v)
            for v in _optimizer_variables(optimizer)
            if id(v) not in skipped
        ]
        pairs = own + list(inner_keys.items())
    else:
        pairs = _plain_optimizer_keys(optimizer, model_keys)
    collisions = _collisions(pairs)
    if collisions:
        raise KeyCollisionError(collisions, hint=_optimizer_hint(optimizer))
    return dict(pairs)


def _plain_optimizer_keys(optimizer: Any, model_keys: dict[str, Any]) -> list[tuple[str, Any]]:
    flat_paths = {variable_path(v).replace("/", "_"): key for key, v in model_keys.items()}
    paths = {variable_path(v): key for key, v in model_keys.items()}
    pairs = []
    for variable in _optimizer_variables(optimizer):
        if variable is optimizer.iterations:
            pairs.append((GLOBAL_STEP_KEY, variable))
            continue
        name = variable.name.split(":")[0]
        owners = [flat for flat in flat_paths if name.startswith(flat + "_")]
        legacy = [path for path in paths if name.endswith("/" + path)]
        if owners:
            owner = max(owners, key=len)
            pairs.append((f"{OPTIMIZER_SCOPE}/{flat_paths[owner]}/{name[len(owner) + 1 :]}", variable))
        elif legacy:
            owner = max(legacy, key=len)
            slot = name[: -len(owner) - 1].rsplit("/", 1)[-1]
            pairs.append((f"{OPTIMIZER_SCOPE}/{paths[owner]}/{slot}", variable))
        else:
            pairs.append((f"{OPTIMIZER_SCOPE}/{name.split('/', 1)[-1]}", variable))
    return pairs


def _optimizer_hint(optimizer: Any) -> str:
    return (
        f"the {type(optimizer).__name__} optimizer's variables are named in a way the package "
        "cannot key apart; set `include_optimizer: false` to save the model and `global_step` "
        "only (the optimizer then starts afresh on resume)."
    )


def _collisions(pairs: list[tuple[str, Any]]) -> dict[str, list[str]]:
    """`{key: Keras paths}` for every key more than one variable maps to."""
    by_key: dict[str, list[str]] = collections.defaultdict(list)
    for key, variable in pairs:
        by_key[key].append(variable_path(variable))
    return {key: paths for key, paths in by_key.items() if len(paths) > 1}


def checkpoint_variables(model: Any, *, include_optimizer: bool) -> dict[str, Any]:
    """All Keras variables to save, by stable key.

    The optimizer must be built. `global_step` is always included so that a
    restored run continues its step count even without optimizer state.
    """
    model_keys = model_variable_keys(model)
    optimizer = model.optimizer
    if include_optimizer:
        optimizer_keys = optimizer_variable_keys(optimizer, model_keys)
    else:
        optimizer_keys = {GLOBAL_STEP_KEY: optimizer.iterations}
    clash = sorted(set(model_keys) & set(optimizer_keys))
    if clash:
        raise KeyCollisionError(
            {key: [variable_path(model_keys[key]), variable_path(optimizer_keys[key])] for key in clash},
            hint=f"rename the layer named {clash[0].split('/')[0]!r}: `{OPTIMIZER_SCOPE}` and "
            f"`{GLOBAL_STEP_KEY}` are the keys of the optimizer's state.",
        )
    return {**model_keys, **optimizer_keys}
