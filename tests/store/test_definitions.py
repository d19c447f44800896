"""Deployed definitions on each backend: a name and version hold one spec for good."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import legato
from legato import (
    Client,
    DefinitionConflictError,
    RunStatus,
    Workflow,
    WorkflowNotFoundError,
    WorkflowSpec,
)
from legato.store.base import NewDefinition

from .helpers import claim, count, ok, report
from .tasks import echo
from .test_races import SECOND, Held, Second


def etl(version: str = "1", label: str = "a") -> WorkflowSpec:
    """A one-step workflow whose content differs with ``label``."""
    wf = Workflow("etl", version=version)
    out = wf.step("load", echo, x=label)
    wf.outputs(label=out.output)
    return wf.spec


def deployed(client: Client) -> list[tuple[str, str, str]]:
    return [(d.name, d.version, d.hash) for d in client.store.definitions()]


# -- deploy: created, unchanged, refused --------------------------------------------------------


def test_deploy_stores_a_version_once_and_again_changes_nothing(client: Client) -> None:
    spec = etl()
    assert client.store.deploy(spec, source="flows/etl.yaml", deployed_by="ci") == "created"
    [definition] = client.store.definitions()
    assert (definition.label, definition.hash) == ("etl@1", spec.content_hash)
    assert (definition.source, definition.deployed_by) == ("flows/etl.yaml", "ci")
    assert definition.deployed_at.tzinfo is not None
    assert client.store.definition("etl") == spec
    assert client.store.get_spec(spec.content_hash) == spec

    client.store.clock.advance(60)
    again = client.store.deploy(spec, source="elsewhere.yaml", deployed_by="someone else")
    assert again == "unchanged"
    assert client.store.definitions() == [definition]  # not even who or when was rewritten


def test_other_content_under_a_deployed_version_is_refused_naming_both_hashes(
    client: Client,
) -> None:
    first, changed = etl(label="a"), etl(label="b")
    client.store.deploy(first)
    with pytest.raises(DefinitionConflictError) as info:
        client.store.deploy(changed)
    assert str(info.value) == (
        f"workflow etl@1 is already deployed with other content (deployed: hash "
        f"{first.content_hash[:12]}, this one: hash {changed.content_hash[:12]}); a deployed "
        "version never changes: bump the version to deploy this one"
    )
    error = info.value
    assert (error.name, error.version) == ("etl", "1")
    assert (error.existing_hash, error.new_hash) == (first.content_hash, changed.content_hash)
    assert deployed(client) == [("etl", "1", first.content_hash)]
    assert count(client.store, "workflow_specs") == 1  # the refused spec was not kept either
    assert client.store.deploy(etl(version="2", label="b")) == "created"


def test_a_conflict_anywhere_in_a_deploy_stores_nothing_of_it(client: Client) -> None:
    client.store.deploy(etl(label="a"))
    batch = [
        NewDefinition(etl(version="2", label="x")),
        NewDefinition(etl(version="1", label="a")),  # unchanged
        NewDefinition(etl(version="1", label="changed")),
    ]
    with pytest.raises(DefinitionConflictError):
        client.store.deploy_all(batch)
    assert [d.label for d in client.store.definitions()] == ["etl@1"]
    assert count(client.store, "workflow_specs") == 1


def test_one_deploy_of_several_reports_each(client: Client) -> None:
    client.store.deploy(etl(version="1"))
    statuses = client.store.deploy_all(
        [NewDefinition(etl(version="1")), NewDefinition(etl(version="2"), source="b.yaml")]
    )
    assert statuses == ["unchanged", "created"]


# -- reading deployed definitions ---------------------------------------------------------------


def test_the_newest_is_the_version_deployed_last_not_the_highest(client: Client) -> None:
    client.store.deploy(etl(version="2", label="two"))
    client.store.clock.advance(1)
    client.store.deploy(etl(version="10", label="ten"))
    client.store.clock.advance(1)
    client.store.deploy(etl(version="1.5", label="one and a half"))
    assert client.store.definition("etl").version == "1.5"
    assert client.store.definition("etl", "2").version == "2"
    assert [d.version for d in client.store.definitions("etl")] == ["1.5", "10", "2"]


def test_versions_deployed_in_one_transaction_are_newest_in_the_order_given(
    client: Client,
) -> None:
    client.store.deploy_all([NewDefinition(etl(version="3")), NewDefinition(etl(version="2"))])
    assert client.store.definition("etl").version == "2"
    assert [d.version for d in client.store.definitions()] == ["2", "3"]


def test_definitions_are_listed_by_name_and_filtered(client: Client) -> None:
    other = Workflow("another", version="7")
    other.step("s", echo, x=1)
    client.store.deploy(etl())
    client.store.deploy(other.spec)
    assert [d.label for d in client.store.definitions()] == ["another@7", "etl@1"]
    assert [d.label for d in client.store.definitions("etl")] == ["etl@1"]
    assert client.store.definitions("nothing") == []


def test_a_definition_not_deployed_is_named_with_the_versions_that_are(client: Client) -> None:
    with pytest.raises(WorkflowNotFoundError, match="no workflow 'etl' is deployed in "):
        client.store.definition("etl")
    client.store.deploy(etl(version="1"))
    client.store.deploy(etl(version="2"))
    with pytest.raises(WorkflowNotFoundError) as info:
        client.store.definition("etl", "3")
    assert str(info.value).endswith("in versions 2, 1, not '3'")
    with pytest.raises(WorkflowNotFoundError, match="no workflow 'other@1' is deployed"):
        client.store.definition("other", "1")


# -- two deploys racing -------------------------------------------------------------------------


@pytest.fixture
def two(db_url: str) -> Iterator[tuple[Client, Client]]:
    """Two clients on one database, each with connections of its own."""
    second_url = db_url if db_url.startswith("sqlite") else f"{db_url}?application_name={SECOND}"
    with Client(db_url) as first, Client(second_url) as second:
        yield first, second


@pytest.mark.parametrize("held_first", ["a", "b"])
def test_of_two_deploys_of_one_version_with_other_content_exactly_one_wins(
    two: tuple[Client, Client], db_url: str, held_first: str
) -> None:
    first, second = two
    mine, theirs = etl(label=held_first), etl(label="b" if held_first == "a" else "a")
    held = Held(first, "definition_written", lambda: first.store.deploy(mine))
    racing = Second(second, lambda: second.store.deploy(theirs))
    racing.assert_blocked(db_url)  # on the primary key (PostgreSQL) or the write lock
    assert held.release() == "created"
    with pytest.raises(DefinitionConflictError) as info:
        racing.wait()
    assert (info.value.existing_hash, info.value.new_hash) == (
        mine.content_hash,
        theirs.content_hash,
    )
    assert deployed(first) == [("etl", "1", mine.content_hash)]
    assert count(first.store, "workflow_specs") == 1


def test_of_two_deploys_of_the_same_content_one_creates_and_one_is_unchanged(
    two: tuple[Client, Client], db_url: str
) -> None:
    first, second = two
    held = Held(first, "definition_written", lambda: first.store.deploy(etl()))
    racing = Second(second, lambda: second.store.deploy(etl()))
    racing.assert_blocked(db_url)
    assert held.release() == "created"
    assert racing.wait() == "unchanged"
    assert deployed(first) == [("etl", "1", etl().content_hash)]


# -- sub-workflows by name ----------------------------------------------------------------------


def test_a_sub_workflow_by_name_prefers_the_deployed_version_to_newer_stored_ones(
    client: Client, db_url: str
) -> None:
    client.store.deploy(etl(version="1", label="deployed"))
    client.store.clock.advance(1)
    run_id = client.start(etl(version="2", label="only run"))  # stores version 2's spec
    [step] = claim(client)
    assert report(client, [ok(step, "only run")]).accepted == 1
    assert client.get(run_id).status is RunStatus.COMPLETED

    parent = Workflow("parent")
    newest = parent.sub_workflow("newest", "etl")
    pinned = parent.sub_workflow("pinned", "etl", version="2")  # not deployed: the stored one
    parent.outputs(newest=newest.output, pinned=pinned.output)
    run = legato.run(parent, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"newest": {"label": "deployed"}, "pinned": {"label": "only run"}}


def test_deployed_at_comes_from_the_stores_clock(client: Client) -> None:
    client.store.clock.advance(3600)
    client.store.deploy(etl())
    [definition] = client.store.definitions()
    ahead = definition.deployed_at - datetime.now(UTC)
    assert timedelta(minutes=59) < ahead < timedelta(minutes=61)
