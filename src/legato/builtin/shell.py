"""``legato.shell``: run a script with ``bash -c`` (or another shell), as a step.

Off unless the worker's process allows it (``LEGATO_ALLOW_SHELL=1``): a
definition can name the task anywhere, and a worker that does not allow it
fails the step saying so. The script is one argument of ``<shell> -c``, never
pasted into a command line, and its environment is the worker's plus ``env``.
The call is ``async``, so the step's ``timeout`` cancels it and the script's
whole process group is killed. What the script prints is kept up to a bound,
its end (where errors are) rather than its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from typing import Any

from legato.config import Settings
from legato.errors import ConfigError, ShellError

__all__ = ["MAX_STREAM_BYTES", "SHELL_TASK", "run_shell"]

#: the name a definition calls it by
SHELL_TASK = "legato.shell"
#: what is kept of each of stdout and stderr: the last this many bytes
MAX_STREAM_BYTES = 64 * 1024
#: how much of stderr's end a failure's message quotes
_ERROR_TAIL_CHARS = 2_000
_CHUNK = 64 * 1024


async def run_shell(
    script: str,
    env: Mapping[str, Any] | None = None,
    cwd: str | None = None,
    shell: str = "bash",
) -> dict[str, Any]:
    """Run ``script`` with ``<shell> -c``; return its ``returncode``, ``stdout`` and ``stderr``.

    A non-zero exit raises :class:`~legato.errors.ShellError` with the end of
    stderr. ``env`` adds to (``None`` removes from) the worker's environment.
    """
    if not Settings.load().allow_shell:
        raise ConfigError(
            "shell steps are off in this worker: start it with LEGATO_ALLOW_SHELL=1 in its "
            "environment to let it run scripts"
        )
    if not isinstance(script, str):
        raise TypeError(f"script must be text, got {type(script).__name__}")
    program = _program(shell)
    environment = _environment(env)
    if cwd is not None and not (isinstance(cwd, str) and os.path.isdir(cwd)):
        raise ValueError(f"cwd {cwd!r} is not a directory on this worker")
    process = await asyncio.create_subprocess_exec(
        program,
        "-c",
        script,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
        cwd=cwd,
        start_new_session=True,  # its own process group: a timeout ends its children too
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        stdout, stderr = await asyncio.gather(_tail(process.stdout), _tail(process.stderr))
        code = await process.wait()
    except BaseException:  # cancelled (the step's timeout, the worker stopping): end it
        _kill(process)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), timeout=5)  # reap it
        raise
    if code != 0:
        raise ShellError(_failure(shell, code, stderr), returncode=code, stderr=stderr)
    return {"returncode": code, "stdout": stdout, "stderr": stderr}


def _program(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"shell must name a program such as 'bash' or 'sh', got {name!r}")
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"shell {name!r} is not found on this worker's PATH")
    return found


def _environment(env: Mapping[str, Any] | None) -> dict[str, str]:
    environment = dict(os.environ)
    if env is None:
        return environment
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of names to values, got {type(env).__name__}")
    for name, value in env.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ValueError(f"env: {name!r} is not an environment variable name")
        if value is None:
            environment.pop(name, None)
        elif isinstance(value, bool):
            environment[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            environment[name] = str(value)
        else:
            raise TypeError(
                f"env {name}: a variable holds text or a number, got {type(value).__name__}"
            )
    return environment


async def _tail(stream: asyncio.StreamReader) -> str:
    """What ``stream`` carries, as text: the last ``MAX_STREAM_BYTES``, marked if cut."""
    kept = bytearray()
    total = 0
    while chunk := await stream.read(_CHUNK):
        total += len(chunk)
        kept += chunk
        if len(kept) > MAX_STREAM_BYTES:
            del kept[: len(kept) - MAX_STREAM_BYTES]
    text = kept.decode("utf-8", errors="replace")
    if total > len(kept):
        text = f"[... {total - len(kept):,} earlier bytes cut ...]\n{text}"
    return text


def _failure(shell: str, code: int, stderr: str) -> str:
    what = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    message = f"{shell} script {what}"
    tail = stderr.rstrip()
    if not tail:
        return message
    if len(tail) > _ERROR_TAIL_CHARS:
        tail = "..." + tail[-_ERROR_TAIL_CHARS:]
    return f"{message}; stderr ends:\n{tail}"


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
