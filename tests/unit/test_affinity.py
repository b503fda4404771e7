"""CPU lists as Linux writes them (engine.affinity): the form NBA_API_CPUS and
NBA_BACKGROUND_CPUS take."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.affinity import MAX_CPU, format_cpus, parse_cpus
from engine.config import ConfigError, load_settings


@given(st.frozensets(st.integers(0, MAX_CPU), min_size=1, max_size=64))
def test_a_formatted_list_parses_back_to_its_cpus(cpus: frozenset[int]) -> None:
    text = format_cpus(cpus)
    assert parse_cpus(text) == cpus
    assert len(text.split(",")) == len(  # runs of consecutive CPUs are ranges
        [c for c in cpus if c - 1 not in cpus]
    )


@given(st.text(alphabet="0123456789-, x", max_size=16))
def test_any_text_is_a_cpu_set_or_a_value_error(text: str) -> None:
    try:
        cpus = parse_cpus(text)
    except ValueError:
        return
    assert cpus and all(0 <= c <= MAX_CPU for c in cpus)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0-3", {0, 1, 2, 3}), ("0,2-3", {0, 2, 3}), (" 1 , 0 ", {0, 1}), ("2-2", {2})],
)
def test_linux_list_forms(text: str, cpus: set[int]) -> None:
    assert parse_cpus(text) == cpus


@pytest.mark.parametrize(
    ("text", "words"),
    [("3-1", "backwards"), ("a", "not a CPU"), ("1,", "not a CPU"), ("-1", "not a CPU")],
)
def test_bad_lists_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_cpus(text)


def test_the_settings_refuse_cpus_this_machine_lacks_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NBA_BACKGROUND_CPUS", str(MAX_CPU))
    with pytest.raises(
        ConfigError, match=rf"NBA_BACKGROUND_CPUS: CPUs {MAX_CPU} are not on this machine"
    ):
        load_settings()
    monkeypatch.setenv("NBA_BACKGROUND_CPUS", "0")
    monkeypatch.setenv("NBA_API_CPUS", "0-")
    with pytest.raises(ConfigError, match="NBA_API_CPUS: '0-' is not"):
        load_settings()
    monkeypatch.setenv("NBA_API_CPUS", "0,0")
    assert load_settings().api_cpus == "0"
