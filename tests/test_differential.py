"""The differential table: every case of tests/support/wire_cases.py against a
real `feproxy serve` in front of the stub farm, and against llhttp alone.

For each case: feproxy's statuses are the expected ones; a refusal is a
one-line answer with Connection: close and a closed connection; exactly the
requests meant to reach the back end reach it (the farm records each request
it received in full, by the case's marker path), with their method byte for
byte; and whatever llhttp refuses, feproxy refuses too (it forwards no more
requests of an input than llhttp completed before its error), except that a
method token llhttp does not know is forwarded unchanged.

`pytest -s -k table tests/test_differential.py` prints the whole table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.farm import Farm
from tests.support.wire_cases import (
    CASES,
    EXCHANGE_METHODS,
    WireCase,
    differential,
    format_table,
    llhttp_knows,
    llhttp_verdict,
    main,
)
from tests.support.wire_client import Outcome, run_case, start_front_end

pytestmark = pytest.mark.slow

#: Outcomes of the one-write runs, kept for the printed table.
ANSWERS: dict[str, Outcome] = {}
SPLIT_CASES = [c for c in CASES if c.split]


@pytest.fixture(scope="module")
def front_end(farm: Farm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One `feproxy serve` for the module, in front of the session's farm (its
    records cleared first: the last test checks all of them)."""
    farm.reset()
    serve, port = start_front_end(farm, tmp_path_factory.mktemp("differential"))
    with serve:
        yield port


def _records(farm: Farm, case: WireCase) -> list[dict[str, Any]]:
    return [r for r in farm.requests() if case.tag in r["uri"]]


def _number(case: WireCase, uri: str) -> int:
    found = re.match(r"\d+", uri.split(case.tag, 1)[1])
    return int(found.group()) if found else 0


def check(case: WireCase, outcome: Outcome, farm: Farm, earlier: int = 0) -> None:
    """Every assertion of one case's row (``earlier``: records of the case from
    before this run, left out)."""
    shown = f"{case.id}: sent {case.raw[:160]!r}, got {outcome.data[:300]!r}"
    statuses = outcome.statuses
    if case.body_error:
        # The error is found in the body, maybe after the request started
        # towards the back end: an answer if none started yet, or a close.
        assert statuses in (case.expect, case.expect[:-1]), shown
        assert outcome.closed, shown
    else:
        assert statuses == case.expect, shown
    if not case.stays_open:
        assert outcome.closed, f"the connection was not closed: {shown}"
    if case.refused and statuses == case.expect:
        last = outcome.responses[-1]
        assert [v.lower() for v in last.header(b"connection")] == [b"close"], shown
        assert last.complete, shown
        assert last.body.endswith(b"\n"), shown
        assert last.body.count(b"\n") == 1, f"not a one-line answer: {shown}"

    # Bodies stream: a request whose body the front end refused part way may
    # have reached the back end in part.  The farm records such a request
    # when its connection is lost, with body_complete false; what must never
    # happen is a complete copy of a refused request at the back end.
    records = [r for r in _records(farm, case)[earlier:] if r["body_complete"]]
    got = [(_number(case, r["uri"]), r["method"].encode("latin-1")) for r in records]
    assert got == list(case.forwards), f"reached the back end: {got}; {shown}"
    if case.forwarded_header is not None:
        name, value = case.forwarded_header
        assert [name, value] in records[0]["headers"], records[0]["headers"]
    if case.dropped_header is not None:
        names = [n.lower() for n, _ in records[0]["headers"]]
        assert case.dropped_header.lower() not in names, records[0]["headers"]

    # The differential rule.
    diff = differential(case)
    if diff.limit is not None:
        answered = sum(1 for s in statuses if 200 <= s < 300)
        beyond = (
            f"llhttp refuses ({diff.judged.detail}) after {diff.limit} request(s), "
            f"feproxy forwarded {len(records)}: {shown}"
        )
        assert len(records) <= diff.limit, beyond
        assert answered <= diff.limit, beyond
    for number, method in got:
        if method in diff.unknown_methods:
            assert case.method(number) == method  # forwarded byte for byte


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_feproxy_answers_the_case(front_end: int, farm: Farm, case: WireCase) -> None:
    """feproxy answers as the case's rule says and forwards no more than llhttp would."""
    outcome = run_case(front_end, case)
    ANSWERS[case.id] = outcome
    check(case, outcome, farm)


@pytest.mark.parametrize("case", SPLIT_CASES, ids=lambda c: c.id)
def test_feproxy_answers_the_case_sent_byte_by_byte(
    front_end: int, farm: Farm, case: WireCase
) -> None:
    """Sending a case one byte at a time changes nothing in feproxy's answer."""
    earlier = len(_records(farm, case))  # those of the one-write run
    check(case, run_case(front_end, case, bytewise=True), farm, earlier)


def test_the_table_is_large_unique_and_agrees_with_llhttp_on_paper() -> None:
    """No expectation of the table forwards a request that llhttp refuses."""
    assert len(CASES) > 100
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i) for i in ids)
    for case in CASES:
        assert case.rule, case.id
        assert case.expect, case.id
        assert all(m for _, m in case.forwards), case.id
        limit = differential(case).limit
        assert limit is None or len(case.forwards) <= limit, case.id


def test_the_exchange_methods_are_the_one_exception_class() -> None:
    """llhttp refuses the Exchange methods; the table expects each forwarded unchanged."""
    forwarded = {m for c in CASES for _, m in c.forwards}
    for method in EXCHANGE_METHODS:
        assert not llhttp_knows(method)
        verdict = llhttp_verdict(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert not verdict.accepted
        assert "method" in verdict.detail.lower()
        assert method in forwarded


def test_llhttp_verdict_counts_messages_and_names_errors() -> None:
    """The oracle reports acceptance, complete messages and llhttp's reason."""
    one = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert llhttp_verdict(one) == (True, "ok", 1)
    assert llhttp_verdict(one * 3).messages == 3
    assert llhttp_verdict(one[:-2]) == (True, "ok, a message still incomplete", 0)
    accepted, detail, messages = llhttp_verdict(one + b"GET / HTTP/1.1\nHost: a\n\n")
    assert (accepted, messages) == (False, 1)
    assert "CRLF" in detail
    upgrade = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
    assert llhttp_verdict(upgrade)[0] is True


@pytest.mark.usefixtures("farm")
def test_table(front_end: int) -> None:
    """`pytest -s -k table` prints the whole table in fixed-width columns."""
    for case in CASES:
        if case.id not in ANSWERS:
            ANSWERS[case.id] = run_case(front_end, case)
    text = format_table(CASES, lambda c: ANSWERS[c.id].answer)
    print("\n" + text)  # noqa: T201 - the table is what this test shows (pytest -s)
    assert len(text.splitlines()) == len(CASES) + 2


def test_markdown_helper_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m tests.support.wire_cases --table` prints the table as Markdown."""
    # One case, run against a farm and a front end of the helper's own.
    assert main(["--table", "-k", "line-ok"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| case | expected | feproxy | llhttp alone | rule |"
    assert lines[2].startswith("| `line-ok` | 200 | 200 ")
    assert len(lines) == 3


@pytest.mark.usefixtures("front_end")
def test_nothing_else_reached_the_back_end(farm: Farm) -> None:
    """The back end received complete copies only of the requests the cases meant
    to forward (none late); refused bodies reached it, if at all, broken off."""
    by_tag = {c.tag: c for c in CASES}
    for record in farm.requests():
        if not record["body_complete"]:
            continue
        uri = record["uri"]
        tag = next((t for t in by_tag if t in uri), None)
        assert tag is not None, f"a request without a case marker reached the back end: {uri}"
        case = by_tag[tag]
        forwarded = (_number(case, uri), record["method"].encode("latin-1"))
        assert forwarded in case.forwards, f"{case.id} reached the back end: {forwarded}"
