"""The public names of ``legato``, pinned."""

from __future__ import annotations

import legato
from legato import errors

PUBLIC = [
    "Attempt",
    "BulkResult",
    "Client",
    "ConfigError",
    "ConflictError",
    "Context",
    "CycleError",
    "DatabaseUnavailableError",
    "Definition",
    "DefinitionConflictError",
    "DefinitionError",
    "DeployResult",
    "Event",
    "HeartbeatTimeout",
    "IdempotencyConflictError",
    "LegatoError",
    "LogLine",
    "OperationRefusedError",
    "ParamError",
    "PayloadError",
    "RetryPolicy",
    "Run",
    "RunFailedError",
    "RunFilter",
    "RunNotFoundError",
    "RunPage",
    "RunStatus",
    "ScheduleToStartTimeout",
    "SchemaVersionError",
    "Scope",
    "SecretError",
    "Sequence",
    "ShellError",
    "StaleAttemptError",
    "StepError",
    "StepRun",
    "StepStatus",
    "StepTimeoutError",
    "StoreError",
    "Task",
    "TaskRegistry",
    "TemplateError",
    "UnknownTaskError",
    "WaitTimeout",
    "Worker",
    "Workflow",
    "WorkflowNotFoundError",
    "WorkflowSpec",
    "__version__",
    "filter",
    "index",
    "item",
    "iteration",
    "run",
    "task",
    "var",
]


def test_all_is_sorted_and_pinned() -> None:
    assert legato.__all__ == sorted(legato.__all__)
    assert legato.__all__ == PUBLIC


def test_every_public_name_exists() -> None:
    for name in legato.__all__:
        assert getattr(legato, name) is not None


def test_every_error_is_exported_and_a_legato_error() -> None:
    for name in errors.__all__:
        exc = getattr(errors, name)
        assert name in legato.__all__
        assert issubclass(exc, errors.LegatoError)
    assert issubclass(errors.StaleAttemptError, errors.ConflictError)
    assert issubclass(errors.IdempotencyConflictError, errors.ConflictError)
    assert issubclass(errors.DefinitionConflictError, errors.ConflictError)
    assert issubclass(errors.OperationRefusedError, errors.ConflictError)
    assert issubclass(errors.WorkflowNotFoundError, errors.DefinitionError)
    assert issubclass(errors.DatabaseUnavailableError, errors.StoreError)
    assert issubclass(errors.RunNotFoundError, errors.StoreError)
    assert issubclass(errors.CycleError, errors.DefinitionError)
    assert issubclass(errors.SecretError, errors.ConfigError)
    assert issubclass(errors.WaitTimeout, TimeoutError)
    assert issubclass(errors.StepTimeoutError, TimeoutError)
