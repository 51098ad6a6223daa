"""The job file: its schema, its checks, YAML loading and factory references.

This layer imports no TensorFlow, so `tfcheckpointer validate` is quick.
"""

from tfcheckpointer.config.factories import resolve_factory
from tfcheckpointer.config.loading import (
    apply_overrides,
    load_config,
    parse_checkpoint_section,
    parse_config,
    parse_freeze_section,
    parse_override,
    require_job,
)
from tfcheckpointer.config.schema import (
    RESTORE_LATEST,
    RESTORE_NONE,
    CheckpointConfig,
    FactoryConfig,
    FreezeConfig,
    JobConfig,
    KeepBestConfig,
)

__all__ = [
    "RESTORE_LATEST",
    "RESTORE_NONE",
    "CheckpointConfig",
    "FactoryConfig",
    "FreezeConfig",
    "JobConfig",
    "KeepBestConfig",
    "apply_overrides",
    "load_config",
    "parse_checkpoint_section",
    "parse_config",
    "parse_freeze_section",
    "parse_override",
    "require_job",
    "resolve_factory",
]
