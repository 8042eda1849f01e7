"""``MeldReport`` round-trips through its JSON form, and refuses any other shape."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.meld import AddedRequirement, MeldReport, Uncovered

_text = st.text(max_size=12)
_texts = st.lists(_text, max_size=3).map(tuple)
_added = st.builds(
    AddedRequirement,
    requirement=_text,
    result=st.none() | _text,
    marker=st.none() | _text,
    declared_by=_texts,
    lacking=_texts,
)
_reports = st.builds(
    MeldReport,
    project=st.none() | _text,
    version=st.none() | _text,
    wheels=st.integers(0, 500),
    disagreed=st.booleans(),
    complete=st.booleans(),
    added=st.lists(_added, max_size=3).map(tuple),
    provides_extra=_texts,
    conflicts=_texts,
    problems=st.dictionaries(_text, _text, max_size=3).map(MappingProxyType),
    changed=_texts,
    uncovered=st.sampled_from(Uncovered),
    left_to_sdist=_texts,
    dropped=_texts,
)


@given(_reports)
def test_a_report_read_back_from_its_json_is_the_same_report(report: MeldReport) -> None:
    again = MeldReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.to_dict() == report.to_dict()
    assert dict(again.problems) == dict(report.problems)
    assert (again.added, again.uncovered, again.dropped) == (report.added, report.uncovered, report.dropped)


def test_fields_an_older_report_lacks_take_their_defaults() -> None:
    report = MeldReport.from_dict({"project": "demo", "version": "1.0", "wheels": 2, "disagreed": True})
    assert (report.complete, report.added, report.uncovered, report.dropped) == (True, (), Uncovered.FREE, ())


@pytest.mark.parametrize(
    "changes",
    [
        {"wheels": "2"},
        {"disagreed": "yes"},
        {"conflicts": "one"},
        {"conflicts": [1]},
        {"problems": ["a"]},
        {"problems": {"a.whl": 1}},
        {"added": [{"result": "x"}]},
        {"added": ["x"]},
        {"uncovered": "sometimes"},
        {"project": 3},
    ],
)
def test_a_field_of_another_shape_is_a_value_error(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MeldReport.from_dict({"wheels": 2, "disagreed": False, **changes})
