"""Workflows started by name: the conf path's files first, then deployed definitions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import legato
from legato import (
    Client,
    DefinitionConflictError,
    DefinitionError,
    DeployResult,
    ParamError,
    RunStatus,
    TaskRegistry,
    UnknownTaskError,
    Workflow,
    WorkflowNotFoundError,
    WorkflowSpec,
)
from legato.catalog import find_in_conf, natural_key, split_name
from legato.client import task_defaults
from legato.files import to_json_text, to_yaml

from .helpers import claim, table_counts
from .tasks import echo


def etl(version: str = "1", label: str = "a", name: str = "etl") -> WorkflowSpec:
    wf = Workflow(name, version=version)
    out = wf.step("load", echo, x=label)
    wf.outputs(label=out.output)
    return wf.spec


def write(folder: Path, filename: str, *specs: WorkflowSpec) -> Path:
    """A definition file holding these workflows (YAML documents, or one JSON)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    if filename.endswith(".json"):
        [spec] = specs
        path.write_text(to_json_text(spec))
    else:
        path.write_text("---\n".join(to_yaml(s) for s in specs))
    return path


def started_label(client: Client, run_id: str) -> str:
    """The label the run's one step says: which definition was started."""
    [step] = claim(client)
    assert step.run_id == run_id
    return str(step.kwargs["x"])


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    return tmp_path / "flows"


@pytest.fixture
def named(db_url: str, conf: Path) -> Iterator[Client]:
    with Client(db_url, conf_path=str(conf)) as client:
        yield client


# -- from the conf path -------------------------------------------------------------------------


def test_a_workflow_in_the_conf_path_is_started_by_name(named: Client, conf: Path) -> None:
    write(conf, "etl.json", etl(label="from the file"))
    run_id = named.start("etl")
    run = named.get(run_id)
    assert (run.workflow, run.version) == ("etl", "1")
    assert started_label(named, run_id) == "from the file"


def test_the_newest_version_in_files_is_the_highest_in_natural_order(
    named: Client, conf: Path
) -> None:
    write(conf, "a.yaml", etl(version="1.9", label="1.9"), etl(version="1.10", label="1.10"))
    write(conf / "older", "b.yml", etl(version="1.2", label="1.2"))
    write(conf, "unrelated.json", etl(name="unrelated", version="99"))
    assert started_label(named, named.start("etl")) == "1.10"
    assert started_label(named, named.start("etl", version="1.2")) == "1.2"


def test_natural_order_compares_digits_as_numbers() -> None:
    versions = ["10", "1.10", "2", "1.9", "1.9.1", "1", "v2", "v10", "1.0-rc1", "1.0"]
    assert sorted(versions, key=natural_key) == [
        "1",
        "1.0",
        "1.0-rc1",
        "1.9",
        "1.9.1",
        "1.10",
        "2",
        "10",
        "v2",
        "v10",
    ]


def test_names_and_versions_as_text() -> None:
    assert split_name("etl") == ("etl", None)
    assert split_name("etl@1.2") == ("etl", "1.2")
    for text in ("Etl", "etl.py", "pkg.mod", "etl@", "etl@1/2", "a__b", "etl@1__2", "x:y"):
        assert split_name(text) is None


def test_the_conf_path_comes_before_deployed_definitions(named: Client, conf: Path) -> None:
    named.deploy(etl(label="deployed"))
    named.deploy(etl(version="2", label="deployed 2"))
    write(conf, "etl.json", etl(label="file"))
    assert started_label(named, named.start("etl")) == "file"  # the file's, though older
    assert started_label(named, named.start("etl", version="2")) == "deployed 2"


def test_several_folders_are_searched(db_url: str, tmp_path: Path) -> None:
    write(tmp_path / "one", "x.json", etl(name="first"))
    write(tmp_path / "two", "y.json", etl(name="second"))
    joined = os.pathsep.join(
        [str(tmp_path / "one"), str(tmp_path / "missing"), str(tmp_path / "two")]
    )
    with Client(db_url, conf_path=joined) as client:
        assert client.find_workflow("second").name == "second"
        assert client.settings.conf_path == (
            str(tmp_path / "one"),
            str(tmp_path / "missing"),
            str(tmp_path / "two"),
        )


def test_one_version_with_two_contents_in_the_conf_path_is_an_error(conf: Path) -> None:
    first = write(conf, "a.json", etl(label="a"))
    second = write(conf, "b.json", etl(label="b"))
    with pytest.raises(DefinitionError) as info:
        find_in_conf("etl", None, [str(conf)])
    assert str(info.value) == (
        f"workflow etl@1 is defined in both {first} and {second}, with different content; "
        "keep one, or give one another version"
    )
    write(conf, "b.json", etl(label="a"))  # the same content twice is one workflow
    found = find_in_conf("etl", None, [str(conf)])
    assert found is not None and found.source == str(first)


def test_a_broken_file_in_the_conf_path_is_an_error_naming_it(named: Client, conf: Path) -> None:
    write(conf, "etl.json", etl())
    (conf / "broken.yaml").write_text("name: broken\nsteps: [\n")
    before = table_counts(named.store)
    with pytest.raises(DefinitionError, match=r"broken\.yaml:"):
        named.start("etl")
    assert table_counts(named.store) == before


# -- deployed -----------------------------------------------------------------------------------


def test_a_deployed_workflow_starts_by_name_without_its_task_code(db_url: str, conf: Path) -> None:
    with Client(db_url) as deployer:
        result = deployer.deploy(etl(label="deployed"), source="etl.yaml", deployed_by="ci")
        assert result == DeployResult("etl", "1", etl(label="deployed").content_hash, "created")
        assert result.label == "etl@1"
        deployer.store.register_task_defaults({"store_suite.echo": task_defaults(echo)})
    # a process that has neither the file nor any task
    with Client(db_url, registry=TaskRegistry(), conf_path=str(conf)) as bare:
        run_id = bare.start("etl", {}, tags={"by": "name"})
        assert bare.get(run_id).tags == {"by": "name"}
        assert started_label(bare, run_id) == "deployed"


def test_a_deployed_workflow_whose_tasks_no_one_registered_is_refused(
    db_url: str, conf: Path
) -> None:
    with Client(db_url) as deployer:
        deployer.deploy(etl())
    with Client(db_url, registry=TaskRegistry(), conf_path=str(conf)) as bare:
        before = table_counts(bare.store)
        with pytest.raises(UnknownTaskError, match="no worker has registered it"):
            bare.start("etl")
        assert table_counts(bare.store) == before


def test_client_deploy_reports_and_refuses_as_the_store_does(named: Client) -> None:
    assert named.deploy(etl()).status == "created"
    assert named.deploy(etl().to_dict()).status == "unchanged"  # a spec dict works too
    with pytest.raises(DefinitionConflictError, match="bump the version"):
        named.deploy(etl(label="changed"))
    results = named.deploy_all([(etl(), None), (etl(version="2"), "v2.yaml")], deployed_by="me")
    assert [(r.label, r.status) for r in results] == [("etl@1", "unchanged"), ("etl@2", "created")]
    assert [(d.label, d.source, d.deployed_by) for d in named.definitions("etl")] == [
        ("etl@2", "v2.yaml", "me"),
        ("etl@1", None, None),
    ]
    with pytest.raises(DefinitionError, match="deploy takes a workflow, not a name"):
        named.deploy("etl")  # type: ignore[arg-type]


def test_a_definition_is_checked_before_anything_is_deployed(named: Client) -> None:
    broken = etl().to_dict()
    broken["steps"][0]["needs"] = ["nowhere"]
    with pytest.raises(DefinitionError, match="nowhere"):
        named.deploy_all([(etl(version="2"), None), (broken, None)])
    assert named.definitions() == []


# -- not found, and how names are given ---------------------------------------------------------


def test_not_found_anywhere_names_the_folders_and_the_database(named: Client, conf: Path) -> None:
    with pytest.raises(WorkflowNotFoundError) as info:
        named.start("etl")
    assert str(info.value) == (
        f"no workflow 'etl': no definition file in {conf} (no such folder) holds it, and none "
        f"is deployed in {named.url}; put its file in a folder of LEGATO_CONF_PATH or deploy "
        "it (legato deploy FILE)"
    )
    write(conf, "etl.yaml", etl(version="1"))
    named.deploy(etl(version="2"))
    with pytest.raises(WorkflowNotFoundError) as info:
        named.start("etl", version="3")
    assert str(info.value) == (
        f"no workflow 'etl@3': no definition file in {conf} holds it (they hold version 1), "
        f"and {named.url} has version 2 deployed; put its file in a folder of "
        "LEGATO_CONF_PATH or deploy it (legato deploy FILE)"
    )


def test_a_version_is_only_for_a_workflow_given_by_name(named: Client) -> None:
    with pytest.raises(ParamError, match="version='1' picks a version of a workflow given"):
        named.start(etl(), version="1")


def test_legato_run_takes_a_name_found_in_workflows_by_default(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEGATO_CONF_PATH", raising=False)
    write(tmp_path / "workflows", "etl.json", etl(label="by default from ./workflows"))
    run = legato.run("etl", url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"label": "by default from ./workflows"}
