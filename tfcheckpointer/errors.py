"""The one error family of tfcheckpointer.

Every error the package raises on purpose is a `TfCheckpointerError`, so a
caller (or the CLI) can catch the family and show one clear message instead of
a traceback. Subclasses carry structured fields and format them in `__str__`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class TfCheckpointerError(Exception):
    """Base class of every error tfcheckpointer raises deliberately."""


class ConfigError(TfCheckpointerError, ValueError):
    """A configuration value, key or file is not acceptable.

    Attributes:
        message: What is wrong and what was expected.
        file: The config file's path, or a label such as `<arguments>`.
        key: The dotted key, e.g. `checkpoint.every_n_steps`.
        line: 1-based line in `file` where the problem is, when known.
        hint: What to do about it, e.g. a "did you mean" suggestion.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ):
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        text = f"{where}: "
        if self.key:
            text += f"{self.key}: "
        text += self.message
        if self.hint:
            text += f" HINT: {self.hint}"
        return text


class BackendError(TfCheckpointerError, RuntimeError):
    """Keras runs on a backend other than TensorFlow."""


class CheckpointError(TfCheckpointerError, RuntimeError):
    """A checkpoint could not be written, found or read."""


class KeyCollisionError(CheckpointError):
    """Two variables would be saved under the same checkpoint key.

    Attributes:
        collisions: `{key: [Keras paths of the variables that map to it]}`.
        hint: What to do about it; it depends on where the variables are
            (the model's layers or the optimizer).
    """

    def __init__(
        self,
        collisions: Mapping[str, Sequence[str]],
        *,
        hint: str = "give the layers distinct `name=` arguments.",
    ):
        self.collisions = {key: list(paths) for key, paths in collisions.items()}
        self.hint = hint
        lines = [
            f"  {key!r} <- {', '.join(paths)}" for key, paths in sorted(self.collisions.items())
        ]
        super().__init__(
            "Two or more variables map to the same checkpoint key:\n"
            + "\n".join(lines)
            + f"\nHINT: {hint}"
        )


class RestoreMismatchError(CheckpointError):
    """A checkpoint's variables do not match the model's."""

    def __init__(
        self,
        checkpoint: str,
        *,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        mismatched: dict[str, tuple[Sequence[int], Sequence[int]]] | None = None,
        hint: str = (
            "restore a checkpoint of this model, or set `checkpoint.restore: none` "
            "(or another directory) to start fresh."
        ),
    ):
        self.checkpoint = checkpoint
        self.hint = hint
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = dict(sorted((mismatched or {}).items()))
        parts = [f"Checkpoint {checkpoint} does not match the model."]
        if self.missing:
            parts.append("Missing from the checkpoint: " + ", ".join(self.missing))
        if self.unexpected:
            parts.append("Not in the model: " + ", ".join(self.unexpected))
        for key, (model_shape, ckpt_shape) in self.mismatched.items():
            parts.append(
                f"Shape of {key}: model {list(model_shape)}, checkpoint {list(ckpt_shape)}"
            )
        parts.append(f"HINT: {hint}")
        super().__init__("\n".join(parts))

    def with_hint(self, hint: str) -> RestoreMismatchError:
        """The same mismatch with the HINT of another context (freezing rather than resuming)."""
        return RestoreMismatchError(
            self.checkpoint,
            missing=self.missing,
            unexpected=self.unexpected,
            mismatched=self.mismatched,
            hint=hint,
        )


class OptimizerMismatchError(RestoreMismatchError):
    """A checkpoint holds the state of another kind of optimizer than the model's."""

    def __init__(
        self,
        checkpoint: str,
        *,
        stored: Sequence[str],
        model: Sequence[str],
        optimizer_name: str | None = None,
        warm_start: bool = False,
    ):
        self.checkpoint = checkpoint
        self.stored = list(stored)
        self.model = list(model)
        self.missing, self.unexpected, self.mismatched = [], [], {}
        if warm_start:
            self.hint = (
                "set checkpoint.restore_optimizer: false to take the weights only and keep "
                "the optimizer compile set, or compile with the optimizer that wrote it."
            )
        else:
            self.hint = (
                "compile with the optimizer this run was trained with; to change optimizer, "
                "start a new directory from this checkpoint (checkpoint.restore: <its prefix>), "
                "which takes the weights only."
            )
        ours = f"the model's optimizer ({optimizer_name})" if optimizer_name else "the model's optimizer"
        CheckpointError.__init__(
            self,
            f"Checkpoint {checkpoint} holds the state of another optimizer: its slots are "
            f"{', '.join(self.stored)}; {ours} has {', '.join(self.model)}. Restoring would "
            f"drop or invent optimizer state.\nHINT: {self.hint}",
        )


class FreezeError(TfCheckpointerError, RuntimeError):
    """A model could not be frozen into a self-contained GraphDef."""


class ExportError(TfCheckpointerError, RuntimeError):
    """A version could not be exported into, or promoted in, the export directory."""


class VerificationError(FreezeError):
    """A frozen graph's outputs differ from the live model's.

    Attributes:
        output: The output's node name.
        max_abs_diff: The largest absolute difference (inf where only one side
            is NaN or infinite).
        tolerance: The largest accepted difference.
        index: Where in the output the largest difference is, when known.
        expected: The live model's value there.
        actual: The frozen graph's value there.
    """

    def __init__(
        self,
        output: str,
        max_abs_diff: float,
        tolerance: float,
        *,
        index: Sequence[int] | None = None,
        expected: float | None = None,
        actual: float | None = None,
    ):
        self.output = output
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        self.index = None if index is None else tuple(index)
        self.expected = expected
        self.actual = actual
        where = ""
        if self.index is not None:
            where = f" at index {list(self.index)}: graph {actual:.6g}, model {expected:.6g}"
        super().__init__(
            f"Frozen graph output {output!r} differs from the live model by up to "
            f"{max_abs_diff:.3g} (tolerance {tolerance:g}){where}; nothing was published."
        )


def tensorflow_error_line(error: BaseException) -> str:
    """One line for a TensorFlow error: its first line that says something, and its node.

    A session's errors start with a bare "Graph execution error:" line; what
    went wrong, and where, is in the lines after it.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if not line.endswith("execution error:")] or lines
    text = telling[0] if telling else type(error).__name__
    node = getattr(getattr(error, "op", None), "name", None)
    if node and node not in text:
        text += f" (node {node})"
    return text


def first_line(error: BaseException) -> str:
    """The first line of an error's text, or its type's name: enough for a one-line message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
