"""trainables/hub.py: one "hub id or local path?" rule for weights and data sets."""
from __future__ import annotations

import pytest

from trainables.hub import is_hub_id


@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-135M", "facebook/dinov2-small", "org/name.v2"])
def test_org_slash_name_is_a_hub_id(name):
    assert is_hub_id(name)


@pytest.mark.parametrize("name", ["gpt2", "./org/name", "/abs/org", "~/models/llm", "a/b/c", "org/clips.parquet",
                                  "org/na*e", ""])
def test_anything_else_is_a_path(name):
    assert not is_hub_id(name)


def test_an_existing_directory_of_that_form_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("org/name")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_id("org/name")


def test_weights_and_data_sets_follow_the_same_rule(tmp_path):
    """A path-like name that does not exist fails at once, for weights as for a data set."""
    from search_spaces.errors import ConfigError
    from trainables.data.preflight import _missing_weights
    from trainables.data.sources import resolve

    missing = str(tmp_path / "nothing")
    assert _missing_weights(missing, "llm_path") == f"no directory {missing}"
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(missing)
    assert resolve("org/name") == ("hub", "org/name")
