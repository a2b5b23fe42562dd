"""In-memory stand-ins for fast tests: back ends, and a front end driven in memory.

``FakeBackends`` implements :class:`frontend.wire.interfaces.BackendClient`;
each request is recorded (its body read as a back end would) and answered by
a function of the test's choosing.
``front_end`` builds the real handler and client-connection protocol around
it, driven by treq over in-memory transports (no sockets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import treq
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource

from frontend.config import Config, parse_config
from frontend.directory.interfaces import UserEntry
from frontend.errors import BackendFailed, DirectoryUnavailable
from frontend.ops.metrics import Metrics
from frontend.proxy import FrontEnd as Handler
from frontend.proxy import Runtime
from frontend.routing.marks import UnavailableMarks
from frontend.wire.headers import client_response_headers
from frontend.wire.interfaces import BodySink, Exchange, OutgoingRequest, Pairs
from frontend.wire.server import ClientLimits, FrontEndFactory

_T = TypeVar("_T")


@dataclass
class Sent:
    server: str
    method: bytes
    target: bytes
    headers: Headers
    body: bytes
    expect_continue: bool = False
    body_read: bool = False


def header_pairs(headers: Headers) -> Pairs:
    """Twisted ``Headers`` as (name, value) pairs, one per value."""
    return [(k, v) for k, vs in headers.getAllRawHeaders() for v in vs]


@dataclass
class FakeResponse:
    """A back end's response (an :class:`frontend.wire.interfaces.Exchange`)
    whose body is delivered at once, or cut when ``error`` is set."""

    code: int = 200
    phrase: bytes = b"OK"
    headers: Pairs = field(default_factory=list)
    body: bytes = b""
    error: str | None = None
    aborted: bool = False
    paused: bool = False
    body_sent: bool = False
    peer: str = "127.0.0.2:80"
    end_to_end: Pairs = field(init=False)
    length: int | None = field(init=False)

    def __post_init__(self) -> None:
        self.end_to_end = client_response_headers(self.headers)
        cl = self.header(b"content-length")
        self.length = int(cl[0]) if cl else None

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name]

    def whole_body(self) -> bytes | None:
        return None  # delivered through deliver_body, as a streaming back end would

    def deliver_body(self, sink: BodySink) -> None:
        if self.body:
            sink.body_data(self.body)
        sink.body_end(self.error)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def abort(self) -> None:
        self.aborted = True


Answer = Callable[[Sent], "FakeResponse | BaseException"]


class FakeBackends:
    """Records what the front end sends; answers with ``answer(sent)``."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.sent: list[Sent] = []
        self.answer: Answer = answer or (lambda _: FakeResponse(body=b"ok"))
        # Answers a request with Expect: 100-continue from its head alone
        # (None: ask for the body), as a back end that refers would.
        self.early: Callable[[Sent], FakeResponse | None] | None = None

    def send(self, server: str, request: OutgoingRequest) -> defer.Deferred[Exchange]:
        s = Sent(
            server,
            request.method,
            request.target,
            Headers(_grouped(request.headers)),
            b"",
            expect_continue=request.expect_continue,
        )
        self.sent.append(s)
        if request.body is None:
            return self._answer(s)
        if request.expect_continue and self.early is not None:
            early = self.early(s)
            if early is not None:  # answered before asking for the body
                return defer.succeed(early)
        d: defer.Deferred[Exchange] = defer.Deferred()
        parts: list[bytes] = []

        class Collect:
            def body_data(self, data: bytes) -> None:
                parts.append(data)

            def body_end(self, error: str | None) -> None:
                s.body, s.body_read = b"".join(parts), True
                if error is not None:
                    d.errback(BackendFailed(detail=f"body broke off: {error}"))
                    return
                self_answer = backends._answer(s)
                self_answer.chainDeferred(d)

        backends = self
        request.body.stream_to(Collect())
        return d

    def _answer(self, s: Sent) -> defer.Deferred[Exchange]:
        result = self.answer(s)
        if isinstance(result, BaseException):
            return defer.fail(result)
        if isinstance(result, FakeResponse) and s.body:
            result.body_sent = True
        return defer.succeed(result)

    def close_idle(self) -> None:
        pass


def _grouped(pairs: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


class MemoryAgent(RequestTraversalAgent):
    """treq's in-memory agent, talking to the front end's own protocol."""

    def __init__(self, factory: FrontEndFactory) -> None:
        RequestTraversalAgent.__init__(self, Resource())
        # treq's agent only calls buildProtocol on it, though it holds a Site.
        self._serverFactory = factory  # type: ignore[assignment]  # treq types it Site


class MemoryTreq(HTTPClient):
    """treq's client over :class:`MemoryAgent`, with treq's body helpers."""

    content = staticmethod(treq.content)
    text_content = staticmethod(treq.text_content)
    json_content = staticmethod(treq.json_content)

    def __init__(self, agent: MemoryAgent) -> None:
        # Bodies written at once, as StubTreq does: no cooperator on a real reactor.
        super().__init__(agent, data_to_body_producer=_SynchronousProducer)
        self._agent_in_memory = agent

    def flush(self) -> None:
        self._agent_in_memory.flush()


BASE_CONFIG: dict[str, Any] = {
    "frontend": {
        "name": "fe1.example.com",
        "listen": ["tcp:0"],
        "authenticate": False,
    },
    "vdirs": [
        {
            "path": "/exchweb",
            "kind": "static",
            "servers": ["ex1.example.com", "ex2.example.com"],
        },
    ],
}


def make_config(**frontend: object) -> Config:
    data = {**BASE_CONFIG, "frontend": {**BASE_CONFIG["frontend"], **frontend}}
    return parse_config(data)


@dataclass
class FrontEnd:
    treq: MemoryTreq
    backends: FakeBackends
    marks: UnavailableMarks
    clock: Clock
    runtime: Runtime
    runtime_metrics: Metrics

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[IResponse, bytes]:
        """(response, body) of one request; raises what it failed with."""
        sent = None if headers is None else Headers({k: [v] for k, v in headers.items()})
        d = self.treq.request(method, url, headers=sent, data=data)
        self.treq.flush()
        results: list[IResponse | Failure] = []
        d.addBoth(results.append)
        self.treq.flush()
        assert results, "no response"
        response = results[0]
        if isinstance(response, Failure):
            response.raiseException()
        body = self.treq.content(response)
        self.treq.flush()
        got: list[bytes | Failure] = []
        body.addBoth(got.append)
        assert got, "no body"
        if isinstance(got[0], Failure):
            got[0].raiseException()
        return response, got[0]


def front_end(
    backends: FakeBackends | None = None,
    config: Config | None = None,
    directory: FakeDirectory | None = None,
) -> FrontEnd:
    """The real front end over fake back ends, driven in memory."""
    backends = backends or FakeBackends()
    config = config or make_config()
    clock = Clock()
    marks = UnavailableMarks(clock, config.frontend.unavailable_for)
    runtime = Runtime.build(config, clock, marks, agent=backends, directory=directory)
    metrics = Metrics(marks=marks.snapshot, clock=clock.seconds)
    handler = Handler(lambda: runtime, clock, marks, metrics)
    treq = MemoryTreq(MemoryAgent(FrontEndFactory(handler, ClientLimits(), clock)))
    return FrontEnd(
        treq=treq,
        backends=backends,
        marks=marks,
        clock=clock,
        runtime=runtime,
        runtime_metrics=metrics,
    )


@dataclass(frozen=True)
class FakeUser(UserEntry):
    """A directory user, with the addresses and the password the fake directory knows."""

    http_enabled: bool = True
    token: bytes = b""
    addresses: tuple[str, ...] = ()
    password: str = ""


class FakeDirectory:
    """The directory client's interface over a few users, counting every call.

    ``down`` makes every call fail as an unreachable directory would.
    """

    def __init__(
        self,
        users: list[FakeUser],
        store_servers: dict[str, str],
        public_servers: dict[str, str] | None = None,
        trees: dict[str | None, tuple[str, ...]] | None = None,
    ) -> None:
        self.users = {u.login.lower(): u for u in users}
        self.store_servers = dict(store_servers)
        self.public_servers = dict(public_servers or {})
        self.trees = dict(trees or {})
        self.calls: list[tuple[str, object]] = []
        self.down = False

    def _answer(self, name: str, arg: object, value: _T) -> defer.Deferred[_T]:
        self.calls.append((name, arg))
        if self.down:
            return defer.fail(DirectoryUnavailable(detail="fake directory down"))
        return defer.succeed(value)

    def find_user(self, login: str) -> defer.Deferred[UserEntry | None]:
        return self._answer("find_user", login, self.users.get(login.lower()))

    def find_mailbox(self, address: str) -> defer.Deferred[UserEntry | None]:
        found: UserEntry | None = None
        for u in self.users.values():
            if address.lower() in (a.lower() for a in u.addresses):
                found = u
        return self._answer("find_mailbox", address, found)

    def check_password(self, dn: str, password: bytes) -> defer.Deferred[bool]:
        ok = any(u.dn == dn and u.password.encode() == password for u in self.users.values())
        return self._answer("check_password", dn, ok and bool(password))

    def server_of_store(self, dn: str) -> defer.Deferred[str | None]:
        return self._answer("server_of_store", dn, self.store_servers.get(dn))

    def public_server_for_mailbox_store(self, dn: str) -> defer.Deferred[str | None]:
        return self._answer("public_server_for_mailbox_store", dn, self.public_servers.get(dn))

    def tree_replicas(self, tree: str) -> defer.Deferred[tuple[str, ...]]:
        return self._answer("tree_replicas", tree, self.trees.get(tree, ()))

    def default_tree_replicas(self) -> defer.Deferred[tuple[str, ...]]:
        return self._answer("default_tree_replicas", None, self.trees.get(None, ()))


MB1 = "cn=MB1,cn=stores"
MB2 = "cn=MB2,cn=stores"
ALICE = FakeUser(
    "cn=alice",
    "alice",
    "alice@example.com",
    "alice",
    MB1,
    addresses=("alice@example.com", "a.archer@example.com"),
    password="alice-pw",
)
BOB = FakeUser(
    "cn=bob",
    "bob",
    "bob@example.com",
    "bob",
    MB2,
    addresses=("bob@example.com",),
    password="bob-pw",
)
CAROL = FakeUser(
    "cn=carol",
    "carol",
    "carol@example.com",
    "carol",
    MB1,
    http_enabled=False,
    addresses=("carol@example.com",),
    password="carol-pw",
)
DAVE = FakeUser("cn=dave", "dave", None, None, None, password="dave-pw")


APPS = ("ex2.example.com", "ex3.example.com", "ex4.example.com")


def fake_directory() -> FakeDirectory:
    return FakeDirectory(
        [ALICE, BOB, CAROL, DAVE],
        {MB1: "ex1.example.com", MB2: "ex2.example.com"},
        public_servers={MB1: "ex1.example.com", MB2: "ex2.example.com"},
        trees={None: ("ex1.example.com", "ex2.example.com"), "Apps": APPS},
    )


MAILBOX_CONFIG: dict[str, Any] = {
    "frontend": {
        "name": "fe1.example.com",
        "listen": ["tcp:0"],
        "realm": "example.com",
    },
    "directory": {
        "url": "ldap://127.0.0.1:1",
        "bind_dn": "cn=svc",
        "bind_password": "x",
        "base_dn": "dc=example,dc=com",
    },
    "vdirs": [
        {"path": "/exchange", "kind": "mailbox", "smtp_domain": "example.com"},
        {"path": "/exchweb", "kind": "static", "servers": ["ex1.example.com"]},
        {"path": "/public", "kind": "public", "tree": "default"},
        {"path": "/apps", "kind": "public", "tree": "Apps"},
    ],
}
