"""The front end's forwarding rules, driven in memory (StubTreq, fake back ends)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from frontend.errors import GatewayTimeout
from frontend.proxy import _drive
from tests.fakes import FakeBackends, FakeResponse, Sent, front_end, header_pairs


def _headers(h: Headers) -> dict[bytes, Sequence[bytes]]:
    return {k.lower(): v for k, v in h.getAllRawHeaders()}


def test_host_header_and_request_target_pass_byte_for_byte() -> None:
    """Host and the request-target reach the back end exactly as the client sent them."""
    fe = front_end()
    fe.request(
        "GET",
        "http://fe/exchweb/img/a%20b.gif?x=1&y=%2F",
        headers={"Host": "WebMail.Example.COM:8443"},
    )
    sent = fe.backends.sent[0]
    assert sent.target == b"/exchweb/img/a%20b.gif?x=1&y=%2F"
    assert _headers(sent.headers)[b"host"] == [b"WebMail.Example.COM:8443"]
    assert sent.server == "ex1.example.com"


def test_hop_by_hop_headers_and_those_named_in_connection_are_dropped() -> None:
    """Keep-Alive, TE, Upgrade, Proxy-Authorization and Connection-named headers go."""
    fe = front_end()
    fe.request(
        "GET",
        "http://fe/exchweb/x",
        headers={
            "Connection": "keep-alive, X-Private",
            "X-Private": "secret",
            "Keep-Alive": "300",
            "TE": "trailers",
            "Upgrade": "websocket",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Proxy-Connection": "keep-alive",
            "X-Kept": "yes",
        },
    )
    got = _headers(fe.backends.sent[0].headers)
    for name in (
        b"connection",
        b"x-private",
        b"keep-alive",
        b"te",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-connection",
    ):
        assert name not in got, name
    assert got[b"x-kept"] == [b"yes"]


def test_front_end_headers_replace_client_copies() -> None:
    """X-Forwarded-For, X-Front-End-Server are set by the front end; a client's
    Front-End-Https is dropped on plain HTTP."""
    fe = front_end()
    fe.request(
        "GET",
        "http://fe/exchweb/x",
        headers={
            "X-Forwarded-For": "10.9.9.9",
            "Front-End-Https": "On",
            "X-Front-End-Server": "evil",
        },
    )
    got = _headers(fe.backends.sent[0].headers)
    assert got[b"x-forwarded-for"] == [b"127.0.0.1"]
    assert got[b"x-front-end-server"] == [b"fe1.example.com"]
    assert b"front-end-https" not in got


def test_front_end_https_on_for_tls_clients() -> None:
    """A client that reached the front end over TLS makes the back end see Front-End-Https: On."""
    fe = front_end()
    fe.request("GET", "https://fe/exchweb/x")
    got = _headers(fe.backends.sent[0].headers)
    assert got[b"front-end-https"] == [b"On"]


def test_authorization_passes_through_unchanged() -> None:
    """The back end authenticates the user again: Authorization is forwarded as sent."""
    fe = front_end()
    fe.request(
        "GET",
        "http://fe/exchweb/x",
        headers={"Authorization": "Basic YWxpY2U6YWxpY2UtcHc="},
    )
    got = _headers(fe.backends.sent[0].headers)
    assert got[b"authorization"] == [b"Basic YWxpY2U6YWxpY2UtcHc="]


def test_webdav_method_with_body_and_destination_is_forwarded() -> None:
    """PROPFIND/MOVE and friends pass through with their body and Destination header."""
    fe = front_end()
    body = b'<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>'
    fe.request(
        "PROPFIND",
        "http://fe/exchweb/folder/",
        data=body,
        headers={"Depth": "1", "Content-Type": "text/xml"},
    )
    fe.request(
        "MOVE",
        "http://fe/exchweb/a",
        headers={"Destination": "http://fe/exchweb/b"},
    )
    first, second = fe.backends.sent
    assert first.method == b"PROPFIND"
    assert first.body == body
    assert _headers(first.headers)[b"depth"] == [b"1"]
    assert second.method == b"MOVE"
    assert _headers(second.headers)[b"destination"] == [b"http://fe/exchweb/b"]


def test_response_hop_by_hop_headers_are_dropped_and_others_kept() -> None:
    """The client gets the back end's headers minus hop-by-hop ones; its Server header stays."""
    headers = Headers(
        {
            b"Content-Type": [b"text/html"],
            b"Server": [b"Microsoft-IIS/6.0"],
            b"Connection": [b"X-Internal"],
            b"X-Internal": [b"1"],
            b"Keep-Alive": [b"timeout=5"],
            b"Set-Cookie": [b"a=1", b"b=2"],
        }
    )
    fe = front_end(FakeBackends(lambda _: FakeResponse(headers=header_pairs(headers), body=b"hi")))
    response, body = fe.request("GET", "http://fe/exchweb/x")
    got = _headers(response.headers)
    assert body == b"hi"
    assert got[b"server"] == [b"Microsoft-IIS/6.0"]
    assert got[b"set-cookie"] == [b"a=1", b"b=2"]
    assert b"x-internal" not in got
    assert b"keep-alive" not in got


def test_connection_refused_fails_over_to_next_static_server() -> None:
    """When nothing reached the first server (refused), the next one gets the request."""

    def answer(s: Sent) -> FakeResponse | BaseException:
        if s.server == "ex1.example.com":
            return ierror.ConnectionRefusedError()
        return FakeResponse(body=b"from ex2")

    fe = front_end(FakeBackends(answer))
    _, body = fe.request("GET", "http://fe/exchweb/x")
    assert body == b"from ex2"
    assert [s.server for s in fe.backends.sent] == [
        "ex1.example.com",
        "ex2.example.com",
    ]


def test_every_server_refusing_gives_502_with_one_line() -> None:
    """Connection refused everywhere -> 502 and a one-line reason without internal names."""
    fe = front_end(FakeBackends(lambda _: ierror.ConnectionRefusedError("127.0.0.2:80")))
    response, body = fe.request("GET", "http://fe/exchweb/x")
    assert response.code == 502
    assert body == b"502 The back-end server refused the connection.\n"
    assert b"ex1" not in body
    assert b"127.0" not in body


def test_response_timeout_gives_504_and_no_replay() -> None:
    """A back end that took the request but never answered -> 504; no other server gets it."""
    fe = front_end(FakeBackends(lambda _: GatewayTimeout(detail="ex1 slow")))
    response, body = fe.request("POST", "http://fe/exchweb/x", data=b"payload")
    assert response.code == 504
    assert body == b"504 The back-end server did not answer in time.\n"
    assert len(fe.backends.sent) == 1


def test_connect_timeout_gives_504_after_trying_every_server() -> None:
    """Connect timeouts are safe to retry elsewhere; when all time out the answer is 504."""
    fe = front_end(FakeBackends(lambda _: ierror.TimeoutError()))
    response, _ = fe.request("GET", "http://fe/exchweb/x")
    assert response.code == 504
    assert len(fe.backends.sent) == 2


def test_unexpected_error_is_500_without_detail() -> None:
    """An internal error says nothing of its cause to the client."""
    fe = front_end(FakeBackends(lambda _: RuntimeError("secret internal state")))
    response, body = fe.request("GET", "http://fe/exchweb/x")
    assert response.code == 500
    assert b"secret" not in body
    assert body.count(b"\n") == 1


def test_unknown_path_is_404_and_never_forwarded() -> None:
    """A path outside every virtual directory is answered 404 by the front end."""
    fe = front_end()
    response, _ = fe.request("GET", "http://fe/nothing/here")
    assert response.code == 404
    assert fe.backends.sent == []
    assert not response.headers.hasHeader(b"server")


def test_dot_segments_and_encoded_slashes_are_refused() -> None:
    """Paths the back end could read differently are refused with 400 before routing."""
    fe = front_end()
    for path in (
        "/exchweb/%2e%2e/exchange/bob/",
        "/exchweb/a%2Fb",
        "/exchweb//x",
        "/exchweb/..;/x",
        "/exchweb/%00",
        "/exchweb/a%5Cb",
    ):
        response, _ = fe.request("GET", "http://fe" + path)
        assert response.code == 400, path
    assert fe.backends.sent == []


def test_cut_response_body_aborts_the_client_connection() -> None:
    """A body cut by the back end is never finished as if complete."""
    cut = "peer reset"
    fe = front_end(
        FakeBackends(
            lambda _: FakeResponse(
                headers=header_pairs(Headers({b"Content-Length": [b"100"]})),
                body=b"x" * 10,
                error=cut,
            )
        )
    )
    d = fe.treq.get("http://fe/exchweb/big")
    fe.treq.flush()
    results: list[Any] = []
    d.addCallback(fe.treq.content).addBoth(results.append)
    fe.treq.flush()
    assert isinstance(results[0], Failure)


def test_request_coroutine_resumes_with_a_later_result_and_a_later_failure() -> None:
    """The driver of request handling gives a coroutine what its Deferreds
    fire with later, failures included, and leaves no failure unhandled."""
    got: list[object] = []
    first: Deferred[int] = Deferred()
    second: Deferred[int] = Deferred()

    async def work() -> None:
        got.append(await first)
        try:
            await second
        except KeyError:
            got.append("caught")

    _drive(work())
    assert got == []
    first.callback(5)
    second.errback(KeyError("x"))
    assert got == [5, "caught"]
    assert second.result is None
