"""MetadataStore.find_case_by_number: the case behind a typed case number."""

from __future__ import annotations

from storage import MetadataStore


def test_a_case_is_found_by_exactly_its_number(store: MetadataStore) -> None:
    """The whole number finds its case; a prefix, a number another district has not reached,
    other letter case or an unknown number finds nothing (the HTTP layer trims and upper-cases
    what was typed)."""
    first = store.create_case("HD")
    second = store.create_case("HD")
    other = store.create_case("CY")
    for case in (first, second, other):
        assert store.find_case_by_number(case.case_number) == case
    assert store.find_case_by_number(first.case_number[:-1]) is None
    assert store.find_case_by_number(second.case_number.replace("HD", "CY")) is None
    assert store.find_case_by_number(first.case_number.lower()) is None
    assert store.find_case_by_number("HD-1999-99999") is None
    assert store.find_case_by_number("") is None
