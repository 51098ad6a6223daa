"""The exit statuses of `tfcheckpointer`, for schedulers to branch on (README: "Exit codes")."""

from __future__ import annotations

TRAINED = 0
"""Success: trained (and promoted, or there is no promotion gate); any other command: done."""
USAGE_ERROR = 2
"""A bad job file, option or argument, a factory that raised, or a run refused before its first step; nothing written."""
NOT_PROMOTED = 3
"""Trained and exported, but `export.promote_if` kept the new version out: LATEST still names the
champion, and the manifest and `runs.jsonl` hold both figures."""
TRAINING_FAILED = 4
"""Training raised; the checkpoints saved before stay, and `runs.jsonl` says why."""
STOPPED_BY_SIGNAL = 5
"""One of `checkpoint.save_on_signals` stopped training after saving its step (or came before it began)."""
