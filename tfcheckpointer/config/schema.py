"""The validated shape of a job file: one frozen dataclass per section.

`loading` builds these from YAML or mappings; every other layer reads them.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESTORE_LATEST = "latest"
"""`checkpoint.restore: latest`: resume from the newest checkpoint of this run's directory."""
RESTORE_NONE = "none"
"""`checkpoint.restore: none`: start fresh."""
ON_EXISTING_CHOICES = ("error", "keep", "set_aside")
"""`checkpoint.on_existing`: what `restore: none` does with checkpoints already in the directory."""
BEST_MODES = ("min", "max")
"""`checkpoint.keep_best.mode`: whether the lowest or the highest score is best."""
EXPORT_FORMATS = ("pb", "pbtxt")
"""`export.format`: the frozen graph in a version directory as `model.pb` or `model.pbtxt`."""
WARM_START_PROMOTED = "promoted"
WARM_START_LATEST = "latest"
WARM_START_CHOICES = (WARM_START_PROMOTED, WARM_START_LATEST)
"""`export.warm_start`: where a run after a finished one starts (see `export.warm_start`)."""


@dataclass(frozen=True)
class KeepBestConfig:
    """`checkpoint.keep_best`: the `k` checkpoints with the best `monitor` outlive the recency rules.

    A checkpoint's score is the value of the epoch-end metric `monitor`
    (`val_loss`, `accuracy`, ...) at the first epoch end after it was saved.
    """

    monitor: str
    mode: str
    """`min` or `max`; always resolved (the YAML may leave it to the monitor's name)."""
    k: int = 1


@dataclass(frozen=True)
class CheckpointConfig:
    """Where, when and how many checkpoints to write (the `checkpoint:` section)."""

    directory: str
    basename: str = "model.ckpt"
    every_n_steps: int | None = None
    every_n_seconds: float | None = None
    max_to_keep: int | None = 5
    keep_checkpoint_every_n_hours: float | None = None
    include_optimizer: bool = True
    restore: str = "latest"
    restore_optimizer: bool = False
    on_existing: str = "error"
    save_at_train_end: bool = True
    async_save: bool = False
    on_error: str = "raise"
    max_total_bytes: int | None = None
    spare_data_file: bool = True
    """Keep the last deleted checkpoint's data file for the next save to overwrite (see `CheckpointSaver`)."""
    save_on_signals: tuple[str, ...] = ("SIGTERM", "SIGINT")
    lock: bool = True
    save_meta_graph: bool = True
    save_graph_def: str | None = "pbtxt"
    keep_best: KeepBestConfig | None = None


@dataclass(frozen=True)
class FreezeConfig:
    """How to freeze the trained model into a GraphDef (`.pb` or `.pbtxt`)."""

    output: str
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    verify: bool = True
    verify_tolerance: float | None = None
    """Largest accepted absolute difference; None: by the model's compute dtype (1e-5 for float32)."""
    verify_batch_size: int = 4
    at_train_end: bool = True
    optimize: bool = False
    required: bool = True
    probe: FactoryConfig | None = None
    """A factory whose result is the verification batch (see `graph.probe`)."""
    constants: dict[str, bool | int | float] = field(default_factory=dict)
    """TF1 graphs: placeholders bound to a value before freezing (`{is_training: false}`)."""


@dataclass(frozen=True)
class PromoteIfConfig:
    """`export.promote_if`: when a new version beats the promoted one (the champion) and moves LATEST.

    Both are measured on this run's validation data by the model's compiled
    loss and metrics (`monitor`, with or without `val_`). Like Keras's
    EarlyStopping, the new figure must improve on the champion's by more
    than `min_delta` and by more than `min_relative_delta` times the
    champion's magnitude, and lie within `at_most` / `at_least`.
    """

    monitor: str
    mode: str
    """`min` or `max`; always resolved (the YAML may leave it to the monitor's name)."""
    min_delta: float = 0.0
    min_relative_delta: float = 0.0
    at_most: float | None = None
    at_least: float | None = None


@dataclass(frozen=True)
class ExportConfig:
    """Numbered versions of the train-end frozen graph for TF Serving (the `export:` section).

    It needs a `freeze:` section with `at_train_end: true`: a version is that
    verified frozen graph, a SavedModel of it and a manifest.
    """

    directory: str
    keep: int | None = None
    """Keep the newest this many versions, and always the promoted one; None keeps all."""
    format: str = "pb"
    promote_if: PromoteIfConfig | None = None
    """The champion/challenger gate; None promotes every new version."""
    warm_start: str = WARM_START_PROMOTED
    """With `checkpoint.restore: latest`, a run after one whose version was not promoted starts
    from the promoted version's checkpoint (`promoted`) or from the newest checkpoint (`latest`)."""


@dataclass(frozen=True)
class FactoryConfig:
    """A `package.module:function` to call with `kwargs` to build a model or data."""

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobConfig:
    """A whole validated job file. `source` is the file path or a label for messages."""

    checkpoint: CheckpointConfig
    freeze: FreezeConfig | None = None
    export: ExportConfig | None = None
    model: FactoryConfig | None = None
    data: FactoryConfig | None = None
    fit: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    listeners: tuple[FactoryConfig, ...] = ()
    """Factories of the objects told about each checkpoint and frozen graph (`listeners:`)."""
    run_directory: str | None = None
    """Where `runs.jsonl` (one line per `tfcheckpointer train`) is kept; see `run_directory_of`."""
    source: str = "<dict>"


def run_directory_of(config: JobConfig) -> str:
    """`run_directory:`, else the parent of `checkpoint.directory` (`.` for a bare `ckpt` or a URL)."""
    if config.run_directory is not None:
        return config.run_directory
    if "://" in config.checkpoint.directory:
        return "."  # the history is appended to, which object stores cannot do
    return config.checkpoint.directory.rstrip("/").rpartition("/")[0] or "."

