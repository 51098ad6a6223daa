"""What every training-loop adapter shares: its options, and being built from them, a dict or YAML."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from tfcheckpointer.checkpoint.listeners import Listeners, configured_listeners, given_listeners
from tfcheckpointer.config.loading import (
    load_config,
    parse_checkpoint_section,
    parse_config,
    parse_export_section,
    parse_freeze_section,
)
from tfcheckpointer.config.schema import (
    CheckpointConfig,
    ExportConfig,
    FreezeConfig,
    JobConfig,
    KeepBestConfig,
)
from tfcheckpointer.errors import ConfigError
from tfcheckpointer.graph.probe import Probe, ProbeLike, configured_probe

CHECKPOINT_OPTIONS = tuple(field.name for field in dataclasses.fields(CheckpointConfig))
"""The keyword arguments that are the YAML `checkpoint:` keys (`async` is `async_save`)."""

_Adapter = TypeVar("_Adapter", bound="ConfiguredAdapter")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def creation_site() -> str:
    """`file:line` of the user code that is building an adapter, to tell two adapters apart."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "<unknown>"


class ConfiguredAdapter:
    """The options and constructors of `CheckpointCallback` and `CheckpointSessionHook`.

    The options are documented once, on `__init__`, which both adapters use.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        basename: str = "model.ckpt",
        every_n_steps: int | None = None,
        every_n_seconds: float | None = None,
        max_to_keep: int | None = 5,
        keep_checkpoint_every_n_hours: float | None = None,
        include_optimizer: bool = True,
        restore: str = "latest",
        restore_optimizer: bool = False,
        on_existing: str = "error",
        save_at_train_end: bool = True,
        async_save: bool = False,
        on_error: str = "raise",
        max_total_bytes: int | None = None,
        spare_data_file: bool = True,
        save_on_signals: Sequence[str] = ("SIGTERM", "SIGINT"),
        lock: bool = True,
        save_meta_graph: bool = True,
        save_graph_def: str | None = "pbtxt",
        keep_best: Mapping[str, Any] | KeepBestConfig | None = None,
        freeze: Mapping[str, Any] | FreezeConfig | None = None,
        export: Mapping[str, Any] | ExportConfig | None = None,
        probe: ProbeLike = None,
        listeners: Sequence[Any] | None = None,
        validation_data: Any = None,
        verbose: int = 0,
    ) -> None:
        """Check the options, as the YAML keys are checked, and set up the adapter.

        Every option is a key of the YAML `checkpoint:` section, with the same
        meaning and default; `freeze` is the `freeze:` section.

        Args:
            directory: Where checkpoints go (`~` and `$VARS` are expanded).
            basename: Checkpoints are `<directory>/<basename>-<step>`.
            every_n_steps: Save when the global step reaches a multiple of this.
            every_n_seconds: Save when this many seconds passed since the last
                save (and the step moved). At least one trigger must be given;
                with both, either one saves.
            max_to_keep: Keep the newest this many checkpoints, whichever run
                wrote them; None keeps all.
            keep_checkpoint_every_n_hours: Of the older ones, also keep one
                every this many hours.
            include_optimizer: Save the optimizer state (slots, learning rate)
                too; `global_step` is always saved.
            restore: `latest` resumes from this directory's newest checkpoint,
                `none` starts fresh, a prefix or directory elsewhere starts
                from it (a warm start).
            restore_optimizer: In a warm start, also take the optimizer's state
                (slots and step) from the checkpoint; by default only the
                model's weights are taken, the step starts at 0 and the
                optimizer (and its learning rate) is the one `compile` set.
                Resuming this directory's own checkpoints always restores
                everything.
            on_existing: What `restore: none` does when the directory already
                holds checkpoints: `error` (refuse), `set_aside` (move them
                into a `set-aside-<time>` subdirectory), `keep` (mix with
                them: retention counts them and this run replaces those at
                the steps it saves, with a warning).
            save_at_train_end: Save the final step unless it is saved already.
            async_save: Write in a background thread (the YAML key `async`).
                It pays only where training leaves cores idle (a GPU box); on a
                CPU-only machine a sync save costs less (README, Performance).
            on_error: `raise` stops training on a failed save; `warn` logs it
                and trains on.
            max_total_bytes: Delete the oldest checkpoints beyond this total size.
            spare_data_file: Keep the data file of the checkpoint retention
                deleted last (as `<basename>.tfcheckpointer-spare`) until the
                next save, which overwrites it in place where nothing else can
                see it (else removes it just before writing), so that the
                write lands in memory already in place: several times cheaper
                on a VM that returns freed memory to its host (README,
                Performance). Costs one data file of disk while training;
                removed at the end. Off under `max_total_bytes`.
            save_on_signals: Save at the end of the step on these signals, then
                stop as the signal asked.
            lock: Refuse a second live process writing to the same directory.
            save_meta_graph: Write `<prefix>.meta` beside every checkpoint.
            save_graph_def: Write the value-less graph once per run as `pbtxt`
                or `pb`; None writes none.
            keep_best: `{"k": 3, "monitor": "val_loss", "mode": "min"}`: the k
                checkpoints with the best epoch-end `monitor` (taken at the
                first epoch end after each save, recorded in `scores.json`)
                are never deleted by `max_to_keep`,
                `keep_checkpoint_every_n_hours` or `max_total_bytes`. `k`
                defaults to 1; `mode` to `min` for names ending in `loss` or
                `error`, `max` for `accuracy`, `acc` or `auc`, and must be
                given for other names.
            freeze: The `freeze:` section as a mapping (or a `FreezeConfig`);
                None writes no frozen graph.
            export: The `export:` section as a mapping (or an `ExportConfig`):
                at train end the verified frozen graph is published as the
                next numbered version of `export["directory"]` (with a
                SavedModel, its source checkpoint and `manifest.json`) and
                promoted; it needs `freeze`. With `export["promote_if"]`
                (`{"monitor": "val_loss", "min_delta": 0.01}`, the YAML
                `export.promote_if`) it is promoted only if it beats the
                promoted version on `validation_data`. Its `warm_start`
                (`promoted`, the default, or `latest`) says where a run after
                a non-promoted version starts. `CheckpointCallback` only.
            probe: The inputs the frozen graph is verified on: one array per
                model input (a single array for one input), a dict keyed by
                input name, a `tf.data.Dataset` (its first batch), or a
                zero-argument callable returning one of these. It takes
                precedence over `freeze.probe`; without either, a random batch
                of `freeze.verify_batch_size` rows.
            listeners: Objects told about each published checkpoint
                (`after_save(step, prefix)`) and the frozen graph
                (`after_freeze(path, sidecar)`): see `CheckpointListener`.
                One that raises is logged by name; what it was told about stays.
            validation_data: This run's validation data, which
                `export.promote_if` scores the new model and the champion on:
                `(x, y)` or `(x, y, sample_weight)` arrays, or a finite
                `tf.data.Dataset` of such batches (what `fit` takes); read
                at train begin. `CheckpointCallback` only.
            verbose: 1 prints a line for each save and restore; every save is
                also logged on the `tfcheckpointer` logger whatever `verbose` is.

        Raises:
            ConfigError: An option has a value its YAML key would refuse.
        """
        given = locals()
        checkpoint = parse_checkpoint_section({name: given[name] for name in CHECKPOINT_OPTIONS})
        if not isinstance(freeze, (FreezeConfig, type(None))):
            freeze = parse_freeze_section(freeze)
        if not isinstance(export, ExportConfig):
            export = parse_export_section(export, freeze)
        job = JobConfig(checkpoint=checkpoint, freeze=freeze, export=export, source="<arguments>")
        self._configure(
            job, verbose, configured_probe(probe, freeze, source="<arguments>"),
            given_listeners(listeners), validation_data,
        )

    supports_export = False
    """Whether the adapter can publish versions (the `export:` section)."""

    def _configure(
        self,
        job: JobConfig,
        verbose: int,
        probe: Probe | None,
        listeners: Listeners,
        validation_data: Any = None,
    ) -> None:
        if not self.supports_export:
            given = "export" if job.export is not None else (
                "validation_data" if validation_data is not None else None
            )
            if given is not None:
                raise ConfigError(
                    f"is not supported by {type(self).__name__}; use CheckpointCallback",
                    file=job.source, key=given,
                )
        # The whole validated config: its hash goes into each exported version's manifest.
        self.job_config = job
        self.export_config = job.export
        self._setup(job.checkpoint, job.freeze, verbose, listeners)
        # `probe=`, else `freeze.probe`; None leaves the choice to the next source (`graph.probe`).
        self.probe = probe
        self.validation_data = validation_data
        """What `export.promote_if` scores on; `tfcheckpointer train` sets fit's `validation_data`."""

    def _setup(
        self,
        checkpoint: CheckpointConfig,
        freeze: FreezeConfig | None,
        verbose: int,
        listeners: Listeners,
    ) -> None:
        raise NotImplementedError

    @classmethod
    def from_config_object(
        cls: type[_Adapter],
        config: JobConfig,
        *,
        verbose: int = 0,
        probe: ProbeLike = None,
        listeners: Sequence[Any] | None = None,
        validation_data: Any = None,
    ) -> _Adapter:
        """The adapter for an already validated config; the keywords as in `__init__`.

        The job file's `listeners:` are built now (their factories called) and
        told first, then `listeners`.
        """
        given = given_listeners(listeners)  # checked before any factory of the file runs
        adapter = cls.__new__(cls)
        adapter._configure(
            config, verbose,
            configured_probe(probe, config.freeze, source=config.source),
            configured_listeners(config.listeners, source=config.source) + given,
            validation_data,
        )
        return adapter

    @classmethod
    def from_yaml(
        cls: type[_Adapter],
        path: str | os.PathLike[str],
        overrides: Mapping[str, Any] | None = None,
        *,
        verbose: int = 0,
        probe: ProbeLike = None,
        listeners: Sequence[Any] | None = None,
        validation_data: Any = None,
    ) -> _Adapter:
        """The adapter for a YAML file's `checkpoint:`, `freeze:`, `export:` and `listeners:` sections.

        `overrides` maps dotted keys to values, e.g. `{"checkpoint.every_n_steps": 10}`.
        """
        return cls.from_config_object(
            load_config(path, overrides), verbose=verbose, probe=probe, listeners=listeners,
            validation_data=validation_data,
        )

    @classmethod
    def from_dict(
        cls: type[_Adapter],
        data: Mapping[str, Any],
        *,
        verbose: int = 0,
        probe: ProbeLike = None,
        listeners: Sequence[Any] | None = None,
        validation_data: Any = None,
    ) -> _Adapter:
        """The adapter for a mapping shaped like the YAML file."""
        return cls.from_config_object(
            parse_config(data), verbose=verbose, probe=probe, listeners=listeners,
            validation_data=validation_data,
        )
