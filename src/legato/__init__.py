"""legato: durable workflows for Python on SQLite and PostgreSQL."""

from legato.client import Client
from legato.context import Context
from legato.define.builder import Sequence, Workflow
from legato.define.filters import filter
from legato.define.refs import index, item, iteration, var
from legato.define.steps import Scope
from legato.define.tasks import Task, TaskRegistry, task
from legato.embedded import run
from legato.errors import (
    ConfigError,
    ConflictError,
    CycleError,
    DatabaseUnavailableError,
    DefinitionConflictError,
    DefinitionError,
    HeartbeatTimeout,
    IdempotencyConflictError,
    LegatoError,
    OperationRefusedError,
    ParamError,
    PayloadError,
    RunFailedError,
    RunNotFoundError,
    ScheduleToStartTimeout,
    SchemaVersionError,
    SecretError,
    ShellError,
    StaleAttemptError,
    StepTimeoutError,
    StoreError,
    TemplateError,
    UnknownTaskError,
    WaitTimeout,
    WorkflowNotFoundError,
)
from legato.model.definitions import Definition, DeployResult
from legato.model.logs import LogLine
from legato.model.operations import BulkResult
from legato.model.runs import Attempt, Event, Run, StepError, StepRun
from legato.model.search import RunFilter, RunPage
from legato.model.spec import RetryPolicy, WorkflowSpec
from legato.model.states import RunStatus, StepStatus
from legato.worker.worker import Worker

__version__ = "0.1.0"

__all__ = [
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
