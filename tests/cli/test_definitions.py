"""``legato deploy``, ``legato definitions list`` and ``legato run NAME``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from legato import Client, RunStatus

from .helpers import FLOWS, Invoke, assert_usage_error, stored_runs, target


def etl_yaml(
    label: str = "a", version: str = "1", name: str = "etl", task: str = "flows.echo"
) -> str:
    return (
        f'name: {name}\nversion: "{version}"\nsteps:\n'
        f"  - id: say\n    uses: {task}\n    with: {{label: {label}}}\n"
        "outputs:\n  said: ${{ steps.say.output.label }}\n"
    )


def write(path: str, text: str) -> Path:
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    return file


def deployed(url: str) -> list[tuple[str, str | None]]:
    with Client(url) as client:
        return [(d.label, d.source) for d in client.definitions()]


# -- legato deploy ------------------------------------------------------------------------------


def test_deploy_prints_each_version_created_then_unchanged(legato: Invoke, db_url: str) -> None:
    write("flows/etl.yaml", etl_yaml())
    write(
        "flows/more/report.json",
        json.dumps(
            {
                "name": "report",
                "version": "3",
                "steps": [{"id": "say", "uses": "flows.echo", "with": {"label": "r"}}],
            }
        ),
    )
    result = legato("deploy", "flows", "--by", "ci", "--url", db_url)
    assert result.exit_code == 0, result.output
    with Client(db_url) as client:
        hashes = {d.label: d.hash for d in client.definitions()}
        assert {d.deployed_by for d in client.definitions()} == {"ci"}
    assert result.stdout.splitlines() == [
        f"created etl@1 (hash {hashes['etl@1'][:12]})",
        f"created report@3 (hash {hashes['report@3'][:12]})",
    ]
    again = legato("deploy", "flows/etl.yaml", "--url", db_url)
    assert again.exit_code == 0, again.output
    assert again.stdout == f"unchanged etl@1 (hash {hashes['etl@1'][:12]})\n"
    assert deployed(db_url) == [("etl@1", "flows/etl.yaml"), ("report@3", "flows/more/report.json")]


def test_deploy_as_json(legato: Invoke, sqlite_url: str) -> None:
    write("etl.yaml", etl_yaml())
    result = legato("deploy", "etl.yaml", "--json", "--url", sqlite_url)
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)
    assert {k: entry[k] for k in ("name", "version", "status", "source")} == {
        "name": "etl",
        "version": "1",
        "status": "created",
        "source": "etl.yaml",
    }
    assert len(entry["hash"]) == 64


def test_a_python_workflow_deploys_too(legato: Invoke, sqlite_url: str) -> None:
    result = legato("deploy", target("etl"), "--url", sqlite_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("created cli_etl@1.0.0 (hash ")
    assert deployed(sqlite_url) == [("cli_etl@1.0.0", target("etl"))]


def test_a_conflict_exits_1_naming_the_file_and_stores_nothing(legato: Invoke, db_url: str) -> None:
    write("v1/etl.yaml", etl_yaml("a"))
    assert legato("deploy", "v1", "--url", db_url).exit_code == 0
    write("v2/new.yaml", etl_yaml("n", version="2"))
    write("v2/etl.yaml", etl_yaml("changed"))
    result = legato("deploy", "v2", "--url", db_url)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: v2/etl.yaml: workflow etl@1 is already deployed with other ")
    assert line.endswith("bump the version to deploy this one; nothing was deployed")
    assert deployed(db_url) == [("etl@1", "v1/etl.yaml")]  # not etl@2 either


def test_bad_input_exits_2_and_opens_no_database(legato: Invoke, sqlite_url: str) -> None:
    write("flows/good.yaml", etl_yaml())
    write("flows/bad.yaml", "name: bad\nsteps:\n  - id: x\n    uses: flows.echo\n    wiht: {}\n")
    result = legato("deploy", "flows", "--url", sqlite_url)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "error: flows/bad.yaml:5:5: " in result.stderr
    assert "did you mean 'with'?" in result.stderr
    assert "nothing was deployed" in result.stderr
    assert "Traceback" not in result.output
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_one_version_with_two_contents_in_one_deploy_is_bad_input(
    legato: Invoke, db_url: str
) -> None:
    write("a.yaml", etl_yaml("a"))
    write("b.yaml", etl_yaml("b"))
    result = legato("deploy", "a.yaml", "b.yaml", "--url", db_url)
    assert result.exit_code == 2, result.output
    assert "error: b.yaml: workflow etl@1 is also in a.yaml, with other content" in result.stderr
    assert deployed(db_url) == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("empty", "empty: the folder holds no definition files (.yaml, .yml, .json)"),
        ("nowhere.yaml", "nowhere.yaml: no such file"),
    ],
)
def test_nothing_to_deploy_is_bad_input(
    legato: Invoke, sqlite_url: str, path: str, expected: str
) -> None:
    Path("empty").mkdir()
    result = legato("deploy", path, "--url", sqlite_url)
    assert result.exit_code == 2, result.output
    assert f"error: {expected}" in result.stderr
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


# -- legato definitions list --------------------------------------------------------------------


def test_definitions_list_shows_a_table_and_json(legato: Invoke, db_url: str) -> None:
    write("etl.yaml", etl_yaml())
    write("etl2.yaml", etl_yaml("b", version="2"))
    write("other.yaml", etl_yaml(name="other"))
    for path in ("etl.yaml", "etl2.yaml", "other.yaml"):
        assert legato("deploy", path, "--by", "ana", "--url", db_url).exit_code == 0
    result = legato("definitions", "list", "--url", db_url)
    assert result.exit_code == 0, result.output
    for header in ("name", "version", "hash", "deployed at", "deployed by", "source"):
        assert header in result.stdout
    rows = [line.replace("│", " ").split() for line in result.stdout.splitlines() if "ana" in line]
    with Client(db_url) as client:
        hashes = {d.label: d.hash[:12] for d in client.definitions()}
    # by name, the one deployed last first
    assert [(r[0], r[1], r[2], r[5], r[6]) for r in rows] == [
        ("etl", "2", hashes["etl@2"], "ana", "etl2.yaml"),
        ("etl", "1", hashes["etl@1"], "ana", "etl.yaml"),
        ("other", "1", hashes["other@1"], "ana", "other.yaml"),
    ]

    listed = json.loads(
        legato("definitions", "list", "--name", "etl", "--json", "--url", db_url).stdout
    )
    assert [(d["name"], d["version"], d["source"], d["deployed_by"]) for d in listed] == [
        ("etl", "2", "etl2.yaml", "ana"),
        ("etl", "1", "etl.yaml", "ana"),
    ]
    assert len(listed[0]["hash"]) == 64 and listed[0]["deployed_at"].endswith("+00:00")


def test_definitions_list_on_an_empty_database(legato: Invoke, db_url: str) -> None:
    Client(db_url).close()
    result = legato("definitions", "list", "--url", db_url)
    assert result.exit_code == 0
    assert "no definitions deployed" in result.stdout
    assert json.loads(legato("definitions", "list", "--json", "--url", db_url).stdout) == []


def test_definitions_list_creates_no_database(legato: Invoke, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nothing.db'}"
    assert_usage_error(
        legato("definitions", "list", "--url", url),
        f"no legato database at {url} (no such file); create it with: legato db upgrade",
    )
    assert not (tmp_path / "nothing.db").exists()


# -- legato run NAME ----------------------------------------------------------------------------


def test_run_a_name_from_the_workflows_folder(legato: Invoke, db_url: str) -> None:
    write("workflows/etl.yaml", etl_yaml("from the folder"))
    result = legato("run", "etl", "--import", str(FLOWS), "--url", db_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"said": "from the folder"}
    assert "(etl@1 from workflows/etl.yaml)" in result.stderr


def test_run_a_deployed_name_its_tasks_imported(
    legato: Invoke, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("elsewhere/etl.yaml", etl_yaml("deployed"))
    assert legato("deploy", "elsewhere", "--url", db_url).exit_code == 0
    Path("elsewhere/etl.yaml").unlink()  # the file is not needed any more
    monkeypatch.setenv("LEGATO_IMPORTS", str(FLOWS))
    result = legato("run", "etl@1", "--url", db_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"said": "deployed"}
    assert ", deployed in " in result.stderr
    [run] = stored_runs(db_url)
    assert (run.workflow, run.status) == ("etl", RunStatus.COMPLETED)


def test_the_workflows_folder_comes_before_deployed_definitions(
    legato: Invoke, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("old/etl.yaml", etl_yaml("deployed"))
    assert legato("deploy", "old", "--url", sqlite_url).exit_code == 0
    write("conf/etl.yaml", etl_yaml("in the conf folder"))
    monkeypatch.setenv("LEGATO_CONF_PATH", "conf")
    result = legato("run", "etl", "-i", str(FLOWS), "--url", sqlite_url)
    assert json.loads(result.stdout) == {"said": "in the conf folder"}


def test_run_a_deployed_name_without_its_tasks_says_to_import_them(
    legato: Invoke, sqlite_url: str
) -> None:
    write("x/etl.yaml", etl_yaml(task="elsewhere.echo"))  # a task no test ever imports
    assert legato("deploy", "x", "--url", sqlite_url).exit_code == 0
    assert_usage_error(
        legato("run", "etl", "--url", sqlite_url),
        "step 'say' calls task 'elsewhere.echo', which is not registered",
        "--import MODULE (or LEGATO_IMPORTS)",
    )
    assert stored_runs(sqlite_url) == []


def test_a_name_found_nowhere_names_every_place_looked(legato: Invoke, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert_usage_error(
        legato("run", "nothing_here", "--url", url),
        "no workflow 'nothing_here': no definition file in ./workflows (no such folder) holds it",
        f"nothing is deployed in {url} (no legato database there)",
        "and no module named 'nothing_here' can be imported",
    )
    assert not (tmp_path / "none.db").exists()  # looking created no database


def test_a_name_that_is_a_module_is_imported_as_before(legato: Invoke, sqlite_url: str) -> None:
    write("mymodule.py", "from flows import etl\n")
    Path("flows.py").write_text(FLOWS.read_text())
    result = legato("run", "mymodule", "-p", "source=m", "--url", sqlite_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"count": 3, "source": "m"}


def test_a_definition_file_runs_with_its_tasks_imported(legato: Invoke, sqlite_url: str) -> None:
    write("etl.yaml", etl_yaml("file"))
    result = legato("run", "etl.yaml", "--import", str(FLOWS), "--url", sqlite_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"said": "file"}


def test_run_help_says_where_names_are_looked_for(legato: Invoke) -> None:
    result = legato("run", "--help")
    text = " ".join(result.stdout.replace("│", " ").split())
    assert (
        "or a workflow's name (etl, or etl@2 for a version), looked for in the files of "
        "LEGATO_CONF_PATH (default ./workflows) first, then among the definitions deployed in "
        "the database, then imported as a module."
    ) in text
    assert "--import" in text


def test_runs_show_gives_a_logical_date_that_is_not_the_created_time(
    legato: Invoke, sqlite_url: str, flows: ModuleType
) -> None:
    with Client(sqlite_url) as client:
        dated = client.start(flows.etl, {"source": "s"}, logical_date="2024-05-01")
        plain = client.start(flows.etl, {"source": "s"})
    shown = legato("runs", "show", dated, "--url", sqlite_url).stdout
    assert re.search(r"logical date\s+2024-05-01T00:00:00\+00:00", shown), shown
    assert "logical date" not in legato("runs", "show", plain, "--url", sqlite_url).stdout
    document = json.loads(legato("runs", "show", dated, "--json", "--url", sqlite_url).stdout)
    assert document["logical_date"] == "2024-05-01T00:00:00+00:00"
