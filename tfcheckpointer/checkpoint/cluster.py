"""One worker's part in a `MultiWorkerMirroredStrategy` job: who writes, and what all agree on.

Only the chief writes files. Every other step of the manager that touches
the variables is a *collective*: reading a variable synchronised on read
(BatchNormalization's moving statistics) sums it over the workers, so every
worker must read it at the same point, in the same order, or they wait for
each other forever. The rule the manager follows:

- the variables are read (`snapshot`) by every worker, or by none;
- whether they are read is decided by `agree`, a collective sum every
  worker calls at the same steps, never by a worker's own clock or files;
- after the read, only the chief does file I/O, which needs no agreement.

`agree` and `broadcast` are all-reduce sums in which each worker's first
replica alone contributes, so a worker with several devices counts once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import tensorflow as tf
from tensorflow.python.saved_model import save_context

from tfcheckpointer.checkpoint.tf_utils import quiet_tensorflow, tf_variable


class Cluster:
    """This worker's view of a multi-worker strategy.

    Args:
        strategy: A `tf.distribute.MultiWorkerMirroredStrategy` whose cluster
            has more than one worker (see `cluster_of`).
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        self.strategy = strategy
        # TF's own rule: the `chief` task, or worker 0 when the cluster has none.
        self.is_chief = bool(strategy.extended.should_checkpoint)
        resolver = strategy.cluster_resolver
        self.task = f"{resolver.task_type}:{resolver.task_id}"

    def agree(self, values: Sequence[int]) -> list[int]:
        """The sum over the workers of each worker's `values`; every worker must call it."""
        summed = self._sum([tf.constant(list(values), tf.int64)])
        return [int(v) for v in summed[0].numpy()]

    def chief_decides(self, decision: int) -> int:
        """The chief's `decision` (a non-negative int) on every worker."""
        return self.agree([decision if self.is_chief else 0])[0]

    def broadcast(self, tensors: Sequence[Any]) -> list[tf.Tensor]:
        """The chief's `tensors` on every worker; every worker passes tensors of the same shapes."""
        return self._sum([t if self.is_chief else tf.zeros_like(t) for t in tensors])

    def _sum(self, tensors: list[Any]) -> list[tf.Tensor]:
        contributed: list[bool] = []

        def local_values(context: Any) -> list[Any]:
            first = not contributed
            contributed.append(True)
            return tensors if first else [tf.zeros_like(t) for t in tensors]

        def all_reduce(values: list[Any]) -> list[Any]:
            return tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, values
            )

        # "Using CollectiveAllReduceStrategy eagerly has significant overhead": a tf.function
        # around `run` would be cheaper but fails here ("destinations can not be empty").
        with quiet_tensorflow():
            per_replica = self.strategy.experimental_distribute_values_from_function(local_values)
            result = self.strategy.run(all_reduce, args=(per_replica,))
        return list(self.strategy.experimental_local_results(result)[0])


def cluster_of(strategy: tf.distribute.Strategy | None) -> Cluster | None:
    """The `Cluster` of a multi-worker strategy of more than one worker, else None."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if sum(len(tasks) for job, tasks in spec.items() if job in ("chief", "worker")) < 2:
        return None
    return Cluster(strategy)


def is_distributed(variable: Any) -> bool:
    """Whether `variable` is a `tf.distribute` variable (one copy per replica)."""
    return isinstance(variable, tf.distribute.DistributedValues)


def is_synced_on_read(variable: Any) -> bool:
    """Whether reading `variable` outside a replica aggregates its copies (a collective)."""
    return is_distributed(variable) and variable.synchronization == tf.VariableSynchronization.ON_READ


@contextlib.contextmanager
def primary_copies() -> Iterator[None]:
    """Let distributed variables act as their first copy, as TensorFlow does saving a SavedModel.

    Tracing a model outside a replica context otherwise fails ("DistributedVariable.handle
    is not available outside the replica context"), and eagerly reading a variable
    synchronised on read would start a collective that only this worker joins.
    """
    if save_context.in_save_context():
        yield
        return
    with save_context.save_context(tf.saved_model.SaveOptions()):
        yield


def settle_synced_on_read(variables: Mapping[str, Any]) -> None:
    """Set every copy of each variable synced on read to the aggregate (a collective).

    Each worker keeps its own BatchNormalization statistics; a checkpoint holds
    their mean. Afterwards every copy holds that mean, so freezing the chief's
    copies (`primary_copies`) gives the checkpoint's values. Every worker must
    call it, with the same keys.
    """
    for key in sorted(variables):
        variable = tf_variable(variables[key])
        if is_synced_on_read(variable):
            variable.assign(variable.read_value(), read_value=False)


def tf_config_workers(environ: Mapping[str, str]) -> int:
    """How many `chief` and `worker` tasks `TF_CONFIG` names (0 without it, or unreadable)."""
    try:
        cluster = json.loads(environ.get("TF_CONFIG") or "{}").get("cluster", {})
        return sum(len(cluster.get(job, ())) for job in ("chief", "worker"))
    except (ValueError, AttributeError, TypeError):
        return 0  # TensorFlow's own resolver reports a malformed TF_CONFIG
