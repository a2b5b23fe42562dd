"""The control API of the stub farm: HTTP + JSON on a loopback address.

    GET    /servers               [{"name", "address", "port", "fault", "expect"}, ...]
    GET    /servers/<name>/expect {"mode": "decide" | "blind"}: how that server
                                  answers Expect: 100-continue
    PUT    /servers/<name>/expect {"mode": "decide" | "blind"} -> 200 + the mode,
                                  in force for requests whose head arrives
                                  from now on; 404 unknown server, 400 bad body
    GET    /requests[?server=N]   request records, oldest first (404: no server N)
    DELETE /requests              forget all records -> {"cleared": count}
    GET    /faults/<name>         the fault in force on that server
    PUT    /faults/<name>         {"mode": ..., "seconds"?, "after_bytes"?}
                                  -> 200 + the new fault, once it is in force;
                                  404 unknown server, 400 bad body

Errors are JSON objects ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from urllib.parse import unquote

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from backend_stub.expect import ExpectError, parse_expect
from backend_stub.faults import Fault, FaultError, parse_fault
from backend_stub.records import RequestLog
from backend_stub.server import StubServer

__all__ = ["ControlResource"]

_MAX_BODY = 64 * 1024

# Answers one method of a control resource: the body, or NOT_DONE_YET.
_Handler = Callable[[Request], object]


class ControlResource(Resource):
    """Serves the control API over the farm's *servers* and *records*."""

    isLeaf = True
    _log = Logger()

    def __init__(self, servers: Mapping[str, StubServer], records: RequestLog) -> None:
        Resource.__init__(self)
        self._servers = servers
        self._records = records

    def render(self, request: Request) -> object:
        """Dispatch on method and path."""
        parts = [unquote(p.decode("latin-1")) for p in request.postpath or [] if p]
        match parts:
            case ["servers"]:
                return self._only(request, {b"GET": self._get_servers})
            case ["requests"]:
                return self._only(
                    request, {b"GET": self._get_requests, b"DELETE": self._delete_requests}
                )
            case ["servers", name, "expect"]:
                return self._expect(request, name)
            case ["faults", name]:
                return self._fault(request, name)
            case _:
                return _json(request, 404, {"error": "no such control resource"})

    def _expect(self, request: Request, name: str) -> object:
        server = self._servers.get(name)
        if server is None:
            return _no_server(request, name)
        return self._only(
            request,
            {
                b"GET": lambda r: _json(r, 200, {"mode": server.expect_mode}),
                b"PUT": lambda r: self._put_expect(r, server),
            },
        )

    def _fault(self, request: Request, name: str) -> object:
        server = self._servers.get(name)
        if server is None:
            return _no_server(request, name)
        return self._only(
            request,
            {
                b"GET": lambda r: _json(r, 200, server.fault.to_json()),
                b"PUT": lambda r: self._put_fault(r, server),
            },
        )

    def _only(self, request: Request, handlers: Mapping[bytes, _Handler]) -> object:
        handler = handlers.get(request.method)
        if handler is None:
            return _not_allowed(request, b", ".join(handlers))
        return handler(request)

    def _get_servers(self, request: Request) -> bytes:
        return _json(request, 200, [s.to_json() for s in self._servers.values()])

    def _get_requests(self, request: Request) -> bytes:
        names = request.args.get(b"server")
        if not names:
            return _json(request, 200, self._records.list())
        name = names[0].decode("utf-8", "replace")
        if name not in self._servers:
            return _no_server(request, name)
        return _json(request, 200, self._records.list(name))

    def _delete_requests(self, request: Request) -> bytes:
        return _json(request, 200, {"cleared": self._records.clear()})

    def _put_expect(self, request: Request, server: StubServer) -> bytes:
        try:
            mode = parse_expect(_read_json(request))
        except (ValueError, ExpectError) as exc:
            return _bad_body(request, exc)
        return _json(request, 200, {"mode": server.set_expect(mode)})

    def _put_fault(self, request: Request, server: StubServer) -> object:
        try:
            fault = parse_fault(_read_json(request))
        except (ValueError, FaultError) as exc:
            return _bad_body(request, exc)

        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def done(result: Fault | Failure) -> None:
            if gone:
                return
            if isinstance(result, Failure):
                self._log.failure("cannot set fault on {server}", result, server=server.name)
                lines = result.getErrorMessage().splitlines() or ["error"]
                body = _json(request, 500, {"error": lines[0]})
            else:
                body = _json(request, 200, result.to_json())
            request.write(body)
            request.finish()

        server.set_fault(fault).addBoth(done)
        return NOT_DONE_YET


def _read_json(request: Request) -> object:
    """The decoded JSON body (null when empty); ValueError when not JSON or too large."""
    raw = request.content.read(_MAX_BODY + 1) if request.content is not None else b""
    if len(raw) > _MAX_BODY:
        raise ValueError("body too large")
    return json.loads(raw or b"null")


def _no_server(request: Request, name: str) -> bytes:
    return _json(request, 404, {"error": f"no server {name!r}"})


def _bad_body(request: Request, exc: Exception) -> bytes:
    lines = str(exc).splitlines() or ["bad body"]
    return _json(request, 400, {"error": lines[0]})


def _json(request: Request, status: int, value: object) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(value).encode("utf-8")


def _not_allowed(request: Request, allow: bytes) -> bytes:
    request.setHeader(b"Allow", allow)
    return _json(request, 405, {"error": "method not allowed"})
