"""``${VAR}`` in files: read only where the operator allows, secrets never read or stored."""

from __future__ import annotations

import pytest

from legato.errors import DefinitionError
from legato.files import EnvRules, load_text

FLOW = """
name: envy
steps:
  - id: a
    uses: files.echo
    with:
      x: "{value}"
"""


def inputs(value: str, rules: EnvRules) -> object:
    (spec,) = load_text(FLOW.replace("{value}", value), "envy.yaml", env=rules)
    return spec.task_step("a").inputs


def test_allowed_variables_are_read_at_load_time() -> None:
    rules = EnvRules(allow=("BUCKET", "STAGE_*"), environ={"BUCKET": "b1", "STAGE_X": "dev"})
    assert inputs("s3://${BUCKET}/${STAGE_X}/raw", rules) == {"x": "s3://b1/dev/raw"}


def test_an_unset_variable_takes_its_default_or_is_named() -> None:
    rules = EnvRules(allow=("REGION",), environ={})
    assert inputs("${REGION:-eu-west-1}", rules) == {"x": "eu-west-1"}
    with pytest.raises(DefinitionError, match=r"envy.yaml:7:7: .*REGION is not set"):
        inputs("${REGION}", rules)


def test_a_variable_not_allowed_is_refused_naming_the_settings() -> None:
    rules = EnvRules(allow=("BUCKET",), environ={"HOME": "/root"})
    with pytest.raises(DefinitionError) as info:
        inputs("${HOME}", rules)
    assert "HOME is not allowed in definitions" in str(info.value)
    assert "LEGATO_ENV_ALLOW" in str(info.value) and "LEGATO_SECRETS" in str(info.value)
    assert "/root" not in str(info.value)


def test_secrets_become_references_and_their_values_are_never_read() -> None:
    rules = EnvRules(secrets=("*_TOKEN",), environ={"API_TOKEN": "hunter2"})
    spec_inputs = inputs("Bearer ${API_TOKEN}", rules)
    assert spec_inputs == {"x": "Bearer ${{ secrets.API_TOKEN }}"}
    assert "hunter2" not in str(spec_inputs)


def test_a_doubled_dollar_is_the_text_itself() -> None:
    assert inputs("$${HOME}", EnvRules()) == {"x": "${HOME}"}


def test_rules_come_from_the_settings() -> None:
    rules = EnvRules.from_env({"LEGATO_ENV_ALLOW": "A, B_*", "LEGATO_SECRETS": "*_KEY"})
    assert rules.allow == ("A", "B_*")
    assert rules.is_secret("AWS_KEY") and not rules.is_secret("A")
