"""Every error legato raises, under one root so callers can catch them all.

::

    LegatoError
    ├── DefinitionError          a workflow or task definition is invalid
    │   ├── CycleError           the steps depend on each other in a circle
    │   ├── UnknownTaskError     a step calls a task that is not registered
    │   └── WorkflowNotFoundError  no workflow of that name (and version) is found
    ├── TemplateError            a ${{ ... }} expression cannot be parsed or evaluated
    ├── ParamError               run params are missing, unknown or of the wrong type
    ├── PayloadError             a value cannot cross a process boundary as JSON
    ├── ConfigError              a setting or URL is not understood
    │   └── SecretError          a step reads a secret its worker does not lend it
    ├── StoreError               the database refused or could not be reached
    │   ├── DatabaseUnavailableError  the database could not be reached (may pass by itself)
    │   ├── SchemaVersionError   the database schema is not the one this code expects
    │   ├── RunNotFoundError     no run has that id
    │   └── ConflictError        a transition lost a race (state was not what was expected)
    │       ├── StaleAttemptError        a result arrived for an attempt no longer current
    │       ├── IdempotencyConflictError an idempotency key already started another run
    │       ├── DefinitionConflictError  a deployed name and version already hold other content
    │       └── OperationRefusedError    an operation is not legal from the run's status
    ├── RunFailedError           the run whose result was asked for failed or was cancelled
    ├── WaitTimeout              waiting for a run took longer than asked (also a TimeoutError)
    ├── StepTimeoutError         a step ran longer than its timeout (also a TimeoutError)
    │   ├── ScheduleToStartTimeout   an attempt stayed queued, unclaimed, past its limit
    │   └── HeartbeatTimeout         a running task went silent past its heartbeat timeout
    └── ShellError               a shell step's script exited with a non-zero code
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "ConfigError",
    "ConflictError",
    "CycleError",
    "DatabaseUnavailableError",
    "DefinitionConflictError",
    "DefinitionError",
    "HeartbeatTimeout",
    "IdempotencyConflictError",
    "LegatoError",
    "OperationRefusedError",
    "ParamError",
    "PayloadError",
    "RunFailedError",
    "RunNotFoundError",
    "ScheduleToStartTimeout",
    "SchemaVersionError",
    "SecretError",
    "ShellError",
    "StaleAttemptError",
    "StepTimeoutError",
    "StoreError",
    "TemplateError",
    "UnknownTaskError",
    "WaitTimeout",
    "WorkflowNotFoundError",
]


class LegatoError(Exception):
    """Root of every error legato raises."""


class DefinitionError(LegatoError):
    """A workflow definition is invalid; ``problems`` lists every problem found."""

    def __init__(self, message: str, problems: Iterable[str] | None = None) -> None:
        self.problems = list(problems) if problems is not None else [message]
        super().__init__(message)

    @classmethod
    def from_problems(cls, where: str, problems: list[str]) -> DefinitionError:
        if len(problems) == 1:
            return cls(f"{where}: {problems[0]}", problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        return cls(f"{where} has {len(problems)} problems:\n{lines}", problems)


class CycleError(DefinitionError):
    """Steps depend on each other in a circle; ``cycle`` names the steps in order."""

    def __init__(self, message: str, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(message)


class UnknownTaskError(DefinitionError):
    """A step calls a task that is not in the registry."""


class WorkflowNotFoundError(DefinitionError):
    """No workflow of the name (and version) asked for is in the conf path or deployed."""


class TemplateError(LegatoError):
    """A ``${{ ... }}`` expression is malformed, unsafe, or failed to evaluate."""


class ParamError(LegatoError):
    """Run params do not match what the workflow declares."""


class PayloadError(LegatoError):
    """A value cannot be carried faithfully as JSON, or is over the size limit."""


class ConfigError(LegatoError):
    """A setting, URL or option is not understood."""


class SecretError(ConfigError):
    """A step reads a secret that its worker's ``LEGATO_SECRETS`` does not allow, or that
    is not set in the worker's environment. The message names the secret, never a value."""


class StoreError(LegatoError):
    """The database refused an operation or could not be reached."""


class DatabaseUnavailableError(StoreError):
    """The database could not be reached, or the connection broke or timed out.

    The same operation may succeed later; anything else a store raises means
    the database refused this operation and will refuse it again.
    """


class SchemaVersionError(StoreError):
    """The database schema is older or newer than this version of legato expects."""


class RunNotFoundError(StoreError):
    """No run has the given id."""


class ConflictError(StoreError):
    """A guarded write found a different state than it expected (a lost race)."""


class StaleAttemptError(ConflictError):
    """A result was reported with an attempt number that is no longer current."""


class IdempotencyConflictError(ConflictError):
    """An idempotency key already started a run of another workflow or with other params."""


class OperationRefusedError(ConflictError):
    """An operation on a run (pause, retry, skip...) is not legal from its status, or its
    step's: the message names the run, its status and what the operation needs."""


class DefinitionConflictError(ConflictError):
    """A deployed workflow version already holds other content: versions never change."""

    def __init__(self, message: str, *, name: str, version: str, existing: str, new: str) -> None:
        self.name = name
        self.version = version
        #: the content hashes of the deployed definition and of the one refused
        self.existing_hash = existing
        self.new_hash = new
        super().__init__(message)


class RunFailedError(LegatoError):
    """The run whose result was asked for failed or was cancelled.

    ``run_id`` and ``status`` say which and how; ``error`` is the run's error (a
    :class:`~legato.StepError`: type, message, traceback, the step it came from).
    """

    def __init__(self, message: str, *, run_id: str, status: str, error: Any = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.error = error


class WaitTimeout(LegatoError, TimeoutError):
    """Waiting for a run to finish took longer than the given timeout."""


class StepTimeoutError(LegatoError, TimeoutError):
    """A step ran longer than its timeout and was failed."""


class ScheduleToStartTimeout(StepTimeoutError):
    """An attempt stayed queued longer than its ``schedule_to_start_timeout``: no worker
    serving its queue and task claimed it. Retried as its retry policy says."""


class HeartbeatTimeout(StepTimeoutError):
    """A running task called ``ctx.heartbeat()`` (or reported progress) less often than its
    ``heartbeat_timeout``: the attempt fails as timed out, retried as its policy says."""


class ShellError(LegatoError):
    """A shell step's script exited with a non-zero code.

    ``returncode`` is the code; ``stderr`` the end of what the script wrote to
    standard error (the message ends with it too).
    """

    def __init__(self, message: str, *, returncode: int, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr
