"""Query parameters: the client-side binder (used for the 18.16 server) and
chDB's native binding must give the same answers, whatever the value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camcount.warehouse import ChdbBackend, QueryError, parse_url
from camcount.warehouse.binding import bind, check_params, placeholders, quote_string

HOSTILE = [
    "",
    "plain",
    "it's",
    "back\\slash",
    "\\'; DROP TABLE crossings; --",
    "' OR 1=1 OR '",
    "{camera_id:String}",  # looks like a placeholder: must stay text
    "nul\x00byte",
    "new\nline\rtab\t",
    "\x7f\x01\x1f",
    "ünïcödé ✓ 漢字 🚶",
    "\\x41",  # a literal backslash-x escape, not an A
    "%(name)s",
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbBackend]:
    backend = ChdbBackend(parse_url(f"chdb://{tmp_path_factory.mktemp('binding')}/db"))
    yield backend
    backend.close()


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_round_trip_both_ways(engine: ChdbBackend, value: str) -> None:
    sql = "SELECT {v:String} AS v, length({v:String}) AS n"
    native = engine.query(sql, {"v": value}).to_pylist()
    bound = engine.query(bind(sql, {"v": value})).to_pylist()
    assert native == bound == [{"v": value, "n": len(value.encode())}]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text(max_size=40))
def test_any_text_round_trips(engine: ChdbBackend, value: str) -> None:
    assert engine.query(bind("SELECT {v:String} AS v", {"v": value})).column(0).to_pylist() == [
        value
    ]


@pytest.mark.parametrize(
    ("type_name", "value", "literal"),
    [
        ("UInt32", 5, "5"),
        ("UInt64", 2**64 - 1, str(2**64 - 1)),
        ("Int32", -7, "(-7)"),  # parenthesised: a-{x} never becomes a -- comment
        ("Float64", 1.5, "1.5"),
        ("Float64", -0.25, "(-0.25)"),
        ("Float64", 3, "3.0"),
    ],
)
def test_numbers_become_bare_literals(type_name: str, value: object, literal: str) -> None:
    assert bind(f"SELECT {{x:{type_name}}}", {"x": value}) == f"SELECT {literal}"


def test_minus_a_negative_number_stays_arithmetic(engine: ChdbBackend) -> None:
    sql = "SELECT 10-{x:Int32} AS r"
    assert engine.query(bind(sql, {"x": -5})).column(0).to_pylist() == [15]


@pytest.mark.parametrize(
    ("type_name", "value", "message"),
    [
        ("UInt32", -1, "outside UInt32"),
        ("UInt8", 256, "outside UInt8"),
        ("UInt32", "5", "must be an integer"),
        ("UInt32", True, "must be an integer"),  # bool is not a number here
        ("UInt32", 1.0, "must be an integer"),
        ("String", 5, "must be a string"),
        ("Float64", float("nan"), "finite"),
        ("Float64", float("inf"), "finite"),
        ("Float64", "1.0", "must be a number"),
    ],
)
def test_values_are_checked_against_declared_types(
    type_name: str, value: object, message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        bind(f"SELECT {{x:{type_name}}}", {"x": value})


def test_missing_and_unexpected_parameters_are_errors() -> None:
    with pytest.raises(QueryError, match=r"missing: \['b'\], unexpected: \['c'\]"):
        check_params("SELECT {a:String}, {b:UInt32}", {"a": "x", "c": 1})


def test_a_name_has_one_type_and_types_are_known() -> None:
    with pytest.raises(QueryError, match="both String and UInt32"):
        placeholders("SELECT {a:String}, {a:UInt32}")
    with pytest.raises(QueryError, match="unsupported type"):
        placeholders("SELECT {a:Array}")


def test_substitution_is_one_pass() -> None:
    sql = "SELECT {a:String}, {b:String}"
    assert bind(sql, {"a": "{b:String}", "b": "x"}) == "SELECT '{b:String}', 'x'"


def test_placeholders_in_literals_and_comments_are_text(engine: ChdbBackend) -> None:
    sql = "SELECT '{a:String}' AS lit, {a:String} AS p -- {b:UInt32}\n/* {c:UInt8} */"
    assert placeholders(sql) == {"a": "String"}
    assert bind(sql, {"a": "x"}).startswith("SELECT '{a:String}' AS lit, 'x' AS p")
    assert engine.query(sql, {"a": "x"}).to_pylist() == [{"lit": "{a:String}", "p": "x"}]


def test_quoted_literal_is_one_printable_line() -> None:
    text = quote_string("a'b\\c\n\x00")
    assert text == "'a\\'b\\\\c\\x0A\\x00'"
    assert all(ch.isprintable() for ch in text)


def test_engine_rejects_bad_native_values_too(engine: ChdbBackend, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="outside UInt32"):
        engine.query("SELECT {n:UInt32}", {"n": -3})
