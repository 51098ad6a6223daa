"""`tfcheckpointer train CONFIG`: build the model and data from the job file and fit with checkpointing.

Each run that gets past the job file appends a line to the run directory's
`runs.jsonl` (`integrations.run_history`); the exit status says how it ended
(`exit_codes`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from tfcheckpointer.cli import exit_codes
from tfcheckpointer.cli.common import (
    add_import_option,
    add_set_option,
    import_modules,
    load_job,
    log_to_stderr,
)
from tfcheckpointer.cli.startup import import_tensorflow
from tfcheckpointer.cli.validate import describe
from tfcheckpointer.config.factories import resolve_factory
from tfcheckpointer.config.loading import require_job
from tfcheckpointer.config.schema import JobConfig, run_directory_of
from tfcheckpointer.errors import TfCheckpointerError, first_line
from tfcheckpointer.integrations import run_history

logger = logging.getLogger("tfcheckpointer")


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    text = "build the model and data from CONFIG and train with checkpointing"
    train = commands.add_parser("train", help=text, description=text, parents=[parent])
    train.add_argument("config", help="path to the YAML job file")
    add_set_option(train, "checkpoint.every_n_steps=50")
    train.add_argument(
        "-q", "--quiet", action="store_true",
        help="no Keras progress output, whatever fit.verbose says (saves are still reported)",
    )
    train.add_argument(
        "--dry-run", action="store_true",
        help="check CONFIG and import its factories without calling them; write nothing",
    )
    add_import_option(train, "before the factories run, e.g. to register the custom Keras "
                      "classes of a model a generic factory loads")
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = require_job(load_job(args))
    # Each save and the freeze are reported once, by the `tfcheckpointer` logger's records.
    log_to_stderr(logging.INFO, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    import_tensorflow(verbose=args.verbose)
    import_modules(args)
    if args.dry_run:
        return _dry_run(args.config, config)
    from tfcheckpointer.integrations.job import run_job

    record = run_history.RunRecord(config=os.path.abspath(args.config), start=run_history.now())
    try:
        with _stop_on(config.checkpoint.save_on_signals):
            result = run_job(config, quiet=args.quiet, record=record)
    except TfCheckpointerError as error:
        if record.started_from is not None:
            return _failed(config, record, error)
        # Refused before the first step (the job file, a refused restore, an unfreezable
        # model), with nothing written: exit 2, and no run to record.
        raise
    except _Stopped as stop:
        name = stop.signal.name
        where = "before training began" if record.end_step is None else f"at step {record.end_step}"
        print(f"tfcheckpointer: stopped by {name} {where}; latest checkpoint {record.checkpoint}",
              file=sys.stderr)
        _record(config, record, run_history.STOPPED_BY + name, exit_codes.STOPPED_BY_SIGNAL)
        _exit_now(exit_codes.STOPPED_BY_SIGNAL)
    except Exception as error:
        traceback.print_exc()
        return _failed(config, record, error)
    print(f"Trained to step {result.step}; latest checkpoint {result.checkpoint}")
    if result.frozen:
        print(f"Frozen graph: {result.frozen}")
    if result.exported:
        print(f"Exported version: {result.exported}" + ("" if result.promoted else " (not promoted)"))
    code = exit_codes.NOT_PROMOTED if result.promoted is False else exit_codes.TRAINED
    return _record(config, record, run_history.OUTCOME_TRAINED, code)


def _failed(config: JobConfig, record: run_history.RunRecord, error: Exception) -> int:
    if isinstance(error, TfCheckpointerError):
        print(f"tfcheckpointer: error: {error}", file=sys.stderr)
    return _record(config, record, run_history.OUTCOME_FAILED, exit_codes.TRAINING_FAILED,
                   error=f"{type(error).__name__}: {first_line(error)}")


def _record(
    config: JobConfig, record: run_history.RunRecord, outcome: str, exit_code: int,
    error: str | None = None,
) -> int:
    """Append the run's line to its history; return `exit_code`."""
    run_history.finish(record, outcome=outcome, exit_code=exit_code, error=error)
    directory = run_directory_of(config)
    if "://" in directory:
        logger.warning(
            "The run history is kept in local directories only; this run's is not recorded "
            "(the parent of checkpoint.directory is %s). HINT: set run_directory: to a local "
            "directory.", directory,
        )
        return exit_code
    try:
        run_history.append_run(directory, record)
    except OSError as problem:
        # Losing the line must not turn a trained run into a failed one.
        logger.warning("Could not append to %s/%s: %s", directory, run_history.RUNS_FILE, problem)
    return exit_code


def _exit_now(code: int) -> NoReturn:
    """End the process without Python's shutdown, once the checkpoint and the history are written.

    A generator's batches come from a tf.data thread that calls back into
    Python; stopped mid-iteration, that thread blocks the interpreter's
    shutdown forever (seen with TensorFlow 2.21).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


class _Stopped(BaseException):
    """Raised by the CLI's handler of a stop signal: after the checkpoint manager saved, or before it ran.

    A BaseException, so that no `except Exception` in a factory or callback swallows it.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal = signal.Signals(signum)


@contextlib.contextmanager
def _stop_on(names: Sequence[str]) -> Iterator[None]:
    """Turn the stop signals into `_Stopped` while training.

    The checkpoint manager records a signal, saves at the end of the step and
    then raises it again to the handler it found -- this one -- so the command
    ends with its own exit status instead of being killed by the signal.
    """

    def stop(signum: int, frame: Any) -> None:
        raise _Stopped(signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; the manager's own behaviour stays
        return
    previous = {name: signal.signal(signal.Signals[name], stop) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(signal.Signals[name], handler)


def _dry_run(path: str, config: JobConfig) -> int:
    """Import every factory the job names, without calling any; write nothing."""
    assert config.model is not None and config.data is not None  # checked by require_job
    factories = [("model.factory", config.model), ("data.factory", config.data)]
    factories += [(f"listeners[{i}].factory", f) for i, f in enumerate(config.listeners)]
    if config.freeze is not None and config.freeze.probe is not None:
        factories.append(("freeze.probe.factory", config.freeze.probe))
    for key, factory in factories:
        resolve_factory(factory, key=key, source=config.source)
    history = os.path.join(run_directory_of(config), run_history.RUNS_FILE)
    print(f"{path}: OK (dry run): would train {config.model.factory} on {config.data.factory}; "
          f"{describe(config)}; run history in {history}")
    return exit_codes.TRAINED
