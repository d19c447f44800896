"""``legato run``: outputs on stdout, exit codes, params typed by the workflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from legato import Client, RunStatus

from .helpers import Invoke, assert_usage_error, stored_runs, target


def test_run_prints_the_outputs_as_json_and_exits_0(legato: Invoke, db_url: str) -> None:
    result = legato("run", target("etl"), "-p", "source=s3://x", "--url", db_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"count": 3, "source": "s3://x"}
    assert "completed" in result.stderr
    [run] = stored_runs(db_url)
    assert run.status is RunStatus.COMPLETED
    assert run.params == {"source": "s3://x"}
    assert run.id in result.stderr


def test_a_failed_run_exits_1_naming_the_step_and_its_error(
    legato: Invoke, sqlite_url: str
) -> None:
    result = legato("run", target("failing"), "-p", "message=disk full", "--url", sqlite_url)
    assert result.exit_code == 1
    assert result.stdout == ""
    [run] = stored_runs(sqlite_url)
    assert run.status is RunStatus.FAILED
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert error == (
        f"error: run {run.id} failed at step 'explode' (task flows.explode, attempt 2/2): "
        "ValueError: disk full"
    )
    assert "Traceback" not in result.stderr


def test_verbose_adds_the_failed_steps_traceback(legato: Invoke, sqlite_url: str) -> None:
    result = legato("run", target("failing"), "-v", "--url", sqlite_url)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "raise ValueError(message)" in result.stderr
    assert "ValueError: kaput" in result.stderr


def test_params_are_typed_as_the_workflow_declares_them(legato: Invoke, sqlite_url: str) -> None:
    result = legato(
        "run",
        target("typed"),
        *("-p", "n=3", "-p", "x=2.5", "-p", "flag=yes", "-p", "items=[1, 2]"),
        *("-p", 'opts={"a": {"b": null}}', "-p", "name=007", "-p", "anything=42"),
        "--url",
        sqlite_url,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "values": {
            "n": 3,
            "x": 2.5,
            "flag": True,
            "items": [1, 2],
            "opts": {"a": {"b": None}},
            "name": "007",
            "anything": "42",
        }
    }


def test_dates_times_and_choices_are_read_as_declared(legato: Invoke, sqlite_url: str) -> None:
    result = legato(
        "run",
        target("dated"),
        *("-p", "day=2024-02-29", "-p", "at=2024-03-01T09:30:00Z", "-p", "level=2"),
        "--url",
        sqlite_url,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "values": {"day": "2024-02-29", "at": "2024-03-01T09:30:00+00:00", "level": 2}
    }
    words = legato(
        "run", target("dated"), "-p", "day=2024-02-29", "-p", "level=max", "--url", sqlite_url
    )
    assert words.exit_code == 0, words.output
    assert json.loads(words.stdout)["values"]["level"] == "max"


def test_params_json_gives_values_and_p_overrides_them(legato: Invoke, sqlite_url: str) -> None:
    given = json.dumps({"n": 1, "flag": True, "anything": [1, "two"], "name": "json"})
    result = legato(
        "run", target("typed"), "--params-json", given, "-p", "name=flag", "--url", sqlite_url
    )
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)["values"]
    assert values == {
        "n": 1,
        "x": 0.5,
        "flag": True,
        "items": [],
        "opts": {},
        "name": "flag",
        "anything": [1, "two"],
    }


def test_tags_creator_and_idempotency_key_are_stored(legato: Invoke, sqlite_url: str) -> None:
    args = [
        *("run", target("etl"), "-p", "source=x", "--url", sqlite_url),
        *("--tag", "env=test", "--tag", "team=data", "--created-by", "ci"),
        *("--idempotency-key", "nightly-1"),
    ]
    assert legato(*args).exit_code == 0
    again = legato(*args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == {"count": 3, "source": "x"}
    [run] = stored_runs(sqlite_url)
    assert run.tags == {"env": "test", "team": "data"}
    assert run.created_by == "ci"
    assert run.idempotency_key == "nightly-1"


@pytest.mark.parametrize("name", ["sequence", "spec"])
def test_sequences_and_specs_run_too(legato: Invoke, sqlite_url: str, name: str) -> None:
    result = legato("run", target(name), "-p", "source=s", "--url", sqlite_url)
    assert result.exit_code == 0, result.output
    expected = {"sequence": {"result": 3}, "spec": {"rows": [1, 2, 3]}}[name]
    assert json.loads(result.stdout) == expected


def test_a_file_with_one_workflow_needs_no_name(
    legato: Invoke, tmp_path: Path, sqlite_url: str
) -> None:
    (tmp_path / "single_flow.py").write_text(
        "import legato\n"
        "@legato.task\n"
        "def hello(who: str) -> str:\n"
        "    return f'hello {who}'\n"
        "wf = legato.Workflow('single')\n"
        "wf.outputs(greeting=wf.step('hello', hello, who=wf.param('who')).output)\n"
    )
    result = legato("run", "single_flow.py", "-p", "who=you", "--url", sqlite_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"greeting": "hello you"}
    with Client(sqlite_url) as client:
        [run] = client.list_runs()
        assert client.get(run.id).steps["hello"].task == "single_flow.hello"


def test_a_module_path_is_imported_from_the_working_directory(
    legato: Invoke, tmp_path: Path
) -> None:
    package = tmp_path / "cli_app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "flows.py").write_text(
        "import legato\n"
        "@legato.task\n"
        "def double(n: int) -> int:\n"
        "    return n * 2\n"
        "etl = legato.Workflow('cli_module')\n"
        "etl.outputs(doubled=etl.step('double', double, n=etl.param('n', type='int')).output)\n"
    )
    result = legato("run", "cli_app.flows:etl", "-p", "n=21")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"doubled": 42}
    assert (tmp_path / "legato.db").exists()  # the default database: legato.db, right here


def test_stdout_holds_only_the_outputs_when_tasks_print(legato: Invoke, sqlite_url: str) -> None:
    result = legato("run", target("printing"), "--url", sqlite_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"said": "hello"}
    assert "a task printing to stdout" in result.stderr


def test_quiet_prints_only_the_outputs(legato: Invoke, sqlite_url: str) -> None:
    result = legato("run", target("etl"), "-p", "source=q", "--quiet", "--url", sqlite_url)
    assert result.exit_code == 0
    assert result.stderr == ""
    assert json.loads(result.stdout) == {"count": 3, "source": "q"}


# -- bad input: exit 2, one line, nothing stored ---------------------------------------------

BAD_FILES = {
    "syntax": ("import legato\nwf = legato.Workflow('x'\n", ["SyntaxError", "line 2"]),
    "imports": (
        "import legato\nimport no_such_module_anywhere\n",
        ["ModuleNotFoundError", "line 2", "no_such_module_anywhere"],
    ),
    "raises": (
        "import legato\nwf = legato.Workflow('x')\n\n\nraise RuntimeError('not today')\n",
        ["RuntimeError: not today", "line 5"],
    ),
    "unregistered": (
        "import legato\nwf = legato.Workflow('x')\nwf.step('a', 'nowhere.task')\n",
        ["step 'a' calls task 'nowhere.task', which is not registered"],
    ),
    "cycle": (
        "import legato\n"
        "@legato.task\n"
        "def t() -> None: ...\n"
        "wf = legato.Workflow('x')\n"
        "wf.step('a', t, needs=['b'])\n"
        "wf.step('b', t, needs=['a'])\n",
        ["cycle"],
    ),
    "definition": (
        "import legato\n"
        "@legato.task\n"
        "def t() -> None: ...\n"
        "wf = legato.Workflow('x')\n"
        "wf.step('a', t)\n"
        "wf.step('a', t)\n",
        ["duplicate step id 'a'", "line 6"],
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_a_broken_file_is_one_error_line_and_stores_nothing(
    legato: Invoke, tmp_path: Path, sqlite_url: str, kind: str
) -> None:
    source, expected = BAD_FILES[kind]
    path = tmp_path / f"broken_{kind}.py"
    path.write_text(source)
    result = legato("run", f"{path}:wf", "--url", sqlite_url)
    assert_usage_error(result, *expected)
    assert stored_runs(sqlite_url) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["etl"], ["workflow cli_etl@1.0.0: missing required param 'source'"]),
        (["etl", "-p", "source=x", "-p", "bogus=1"], ["unknown param 'bogus'"]),
        (["typed", "-p", "n=three"], ["-p n=three: param 'n' is int: 'three' is not a whole"]),
        (["typed", "-p", "n=1", "-p", "flag=maybe"], ["'maybe' is not true or false"]),
        (
            ["typed", "-p", "n=1", "-p", "items={}"],
            ["param 'items' is list: expected a JSON array"],
        ),
        (["typed", "-p", "n"], ["-p 'n': expected key=value"]),
        (
            ["dated", "-p", "day=2023-02-29"],
            ["-p day=2023-02-29: param 'day' must be a date, ISO text YYYY-MM-DD"],
        ),
        (
            ["dated", "-p", "day=2024-01-01", "-p", "at=9:30"],
            ["param 'at' must be a datetime, ISO 8601 text", "got str '9:30'"],
        ),
        (
            ["dated", "-p", "day=2024-01-01", "-p", "level=3"],
            ["-p level=3: param 'level' must be one of 1, 2, \"max\", got str '3'"],
        ),
        (["typed", "--params-json", "{nope"], ["--params-json is not valid JSON"]),
        (["typed", "--params-json", '{"n": "1"}'], ["param 'n' must be int, got str '1'"]),
        (["etl", "-p", "source=x", "--tag", "env"], ["--tag 'env': expected key=value"]),
        (["etl", "-p", "source=x", "--timeout", "soon"], ["--timeout: expected a duration"]),
        (
            ["etl", "-p", "source=x", "--timeout", "nan"],
            ["--timeout: a duration must be a finite number of seconds, got 'nan'"],
        ),
        (
            ["etl", "-p", "source=x", "--timeout", "inf"],
            ["--timeout: a duration must be a finite number of seconds, got 'inf'"],
        ),
        (
            ["etl", "-p", "source=x", "--timeout", "0"],
            ["--timeout: a duration must be more than zero, got '0'"],
        ),
        (
            ["etl", "-p", "source=x", "--timeout", "-1s"],
            ["--timeout: expected a duration such as '30s'"],
        ),
        (["nope"], ["has no attribute 'nope' (workflows in it: etl, typed, failing"]),
        (["extract"], [":extract is a Task, not a workflow"]),
    ],
)
def test_bad_params_and_names_are_one_error_line_and_store_nothing(
    legato: Invoke, sqlite_url: str, args: list[str], expected: list[str]
) -> None:
    result = legato("run", target(args[0]), *args[1:], "--url", sqlite_url)
    assert_usage_error(result, *expected)
    assert stored_runs(sqlite_url) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing.py:wf", "missing.py: no such file"),
        ("no_such_package.flows:wf", "no module named 'no_such_package'"),
        (":wf", "expected path/to/file.py:workflow or package.module:workflow"),
    ],
)
def test_a_target_that_cannot_be_found_is_one_error_line(
    legato: Invoke, sqlite_url: str, name: str, expected: str
) -> None:
    result = legato("run", name, "--url", sqlite_url)
    assert_usage_error(result, expected)
    assert stored_runs(sqlite_url) == []


def test_a_file_named_like_an_imported_module_is_refused(
    legato: Invoke, tmp_path: Path, sqlite_url: str
) -> None:
    (tmp_path / "json.py").write_text("import legato\nwf = legato.Workflow('shadow')\n")
    result = legato("run", "json.py:wf", "--url", sqlite_url)
    assert_usage_error(result, "json.py would be imported as module 'json'", "rename the file")


def test_bad_input_does_not_even_create_the_database(legato: Invoke, tmp_path: Path) -> None:
    result = legato("run", target("etl"))
    assert_usage_error(result, "missing required param 'source'")
    assert not (tmp_path / "legato.db").exists()


def test_a_failed_run_names_the_failure_handler_run_it_started(
    legato: Invoke, sqlite_url: str
) -> None:
    result = legato("run", target("handled"), "--url", sqlite_url)
    assert result.exit_code == 1
    failed = next(r for r in stored_runs(sqlite_url) if r.workflow == "cli_handled")
    handler = next(r for r in stored_runs(sqlite_url) if r.workflow == "cli_cleanup")
    assert handler.params == {"run_id": failed.id}
    assert f"failure handler: run {handler.id} started" in result.stderr


def test_a_bad_log_limit_is_one_error_before_anything_is_written(
    legato: Invoke, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert legato("run", target("etl"), "-p", "source=q", "--url", sqlite_url).exit_code == 0
    monkeypatch.setenv("LEGATO_LOG_LINES", "-3")
    result = legato("run", target("etl"), "-p", "source=q", "--url", sqlite_url)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: LEGATO_LOG_LINES must be 0 or more, got '-3'"
    monkeypatch.delenv("LEGATO_LOG_LINES")
    assert len(stored_runs(sqlite_url)) == 1  # no second run left waiting for a worker
