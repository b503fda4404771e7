from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import DEMO_CATALOGUE
from engine.errors import CatalogueError
from rules.catalogue import load_catalogue, parse_action

GOOD = """\
id: shoes-10
kind: offer
name: Shoes
channels: [web]
placements: [home_hero]
eligibility: customer.age >= 18
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_the_demo_catalogue_loads() -> None:
    catalogue = load_catalogue(DEMO_CATALOGUE)
    assert len(catalogue.actions) >= 25
    assert catalogue.channel_names() == {"web", "shop", "call_centre", "email"}
    assert catalogue.default_placement("web") == "home_hero"
    assert len(catalogue.candidates("web", "home_hero")) > 5


def test_every_problem_is_reported_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD + "---\nid: Bad_Id\nkind: offer\nname: x\nchannels: [web]\n")
    write(tmp_path, "b.yaml", "id: ok-2\nkind: coupon\nname: y\nchannels: [web]\n")
    write(
        tmp_path,
        "c.yaml",
        "id: ok-3\nkind: offer\nname: z\nchannels: [web]\neligibility: customer.age >=\n",
    )
    write(tmp_path, "d.yaml", "id: [unclosed\n")
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(tmp_path)
    problems = {(Path(p.source).name, p.line): p.message for p in caught.value.problems}
    assert ("a.yaml", 8) in problems and "id" in problems[("a.yaml", 8)]
    assert ("b.yaml", 2) in problems and "kind" in problems[("b.yaml", 2)]
    assert ("c.yaml", 5) in problems
    assert any(name == "d.yaml" for name, _ in problems)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    with pytest.raises(CatalogueError, match="defined twice"):
        load_catalogue(tmp_path)


def test_an_empty_catalogue_is_fine(tmp_path: Path) -> None:
    catalogue = load_catalogue(tmp_path)
    assert catalogue.actions == () and catalogue.channel_names() == set()


def test_action_only_rules_are_settled_at_load(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD + "attributes: {category: shoes}\n")
    write(
        tmp_path,
        "rules.yaml",
        'rule: no-shoes\napplies_to: action.category == "shoes"\n'
        "require: false\n---\nrule: adults\nrequire: customer.age >= 18\n",
    )
    catalogue = load_catalogue(tmp_path)
    (item,) = catalogue.actions
    assert item.excluded_at_load == "no-shoes"
    assert len(catalogue.candidates("web", "home_hero")) == 0
    assert [c.name for c in item.checks] == ["adults", "eligibility"]


def test_a_changed_catalogue_gets_a_new_version(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    first = load_catalogue(tmp_path).version
    write(tmp_path, "a.yaml", GOOD.replace("Shoes", "Shoes!"))
    assert load_catalogue(tmp_path).version != first


def test_parse_action_names_the_field() -> None:
    with pytest.raises(CatalogueError) as caught:
        parse_action({"id": "x", "kind": "offer", "name": "n", "channels": [], "value": -1})
    fields = " ".join(p.message for p in caught.value.problems)
    assert "channels" in fields and "value" in fields


def test_a_channel_may_set_its_own_budget_and_a_bad_one_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    write(tmp_path, "a.yaml", GOOD)
    settings = "channels:\n  web: {placements: [home_hero]}\n  call_centre:\n    budget_ms: 150\n"
    write(tmp_path, "channels.yaml", settings)
    catalogue = load_catalogue(tmp_path)
    assert catalogue.budget_s("call_centre", 0.02) == pytest.approx(0.15)
    assert catalogue.budget_s("web", 0.02) == 0.02  # the service's
    assert catalogue.budget_s("fax", 0.02) == 0.02

    write(tmp_path, "channels.yaml", settings.replace("150", "0"))
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(tmp_path)
    [problem] = caught.value.problems
    assert (Path(problem.source).name, problem.line) == ("channels.yaml", 4)
    assert "budget_ms" in problem.message


def test_a_problem_inside_a_list_is_reported_at_its_item(tmp_path: Path) -> None:
    write(
        tmp_path,
        "channels.yaml",
        "channels:\n  email:\n    caps:\n      - {name: ok, count: 2, days: 7}\n"
        "      - {name: bad, count: -1, days: 7}\n",
    )
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(tmp_path)
    [problem] = caught.value.problems
    assert problem.line == 5 and "channels.email.caps.1.count" in problem.message
