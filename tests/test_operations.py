"""Operations: reload under load, directory change detection, graceful stop."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import cast

import ldap3
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from frontend.config import load_config
from frontend.directory.watch import DirectoryWatcher
from frontend.errors import DirectoryUnavailable
from frontend.ops.reactor import IServeReactor, global_reactor
from frontend.ops.service import FrontEndService
from frontend.proxy.accesslog import JSON_FIELDS
from frontend.routing.hashing import POLICIES
from tests.fakes import MAILBOX_CONFIG
from tests.support.configs import write_config
from tests.support.farm import Farm, free_port
from tests.support.serve import ServeProcess
from tests.support.slapd import ROOT_DN, ROOT_PASSWORD, Slapd
from tests.test_end_to_end import fe_config, get

# -- in memory ---------------------------------------------------------------


class Fingerprints:
    def __init__(self, *values: str | BaseException) -> None:
        self.values = list(values)

    def config_fingerprint(self) -> defer.Deferred[str]:
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        if isinstance(value, BaseException):
            return defer.fail(value)
        return defer.succeed(value)


def test_watcher_calls_on_change_only_when_the_fingerprint_moves() -> None:
    """The first poll sets the baseline; later polls report a changed fingerprint once."""
    clock = Clock()
    changes: list[int] = []
    directory = Fingerprints("a", "a", "b", DirectoryUnavailable(), "b", "c")
    watcher = DirectoryWatcher(directory, 60.0, lambda: changes.append(1), clock)
    watcher.startService()
    assert changes == []
    for _ in range(5):
        clock.advance(60)
    assert len(changes) == 2  # a -> b, b -> c; the outage changed nothing
    watcher.stopService()
    clock.advance(600)
    assert watcher.polls == 5


def test_watcher_with_interval_zero_never_polls() -> None:
    """poll_interval = 0 turns change detection off."""
    clock = Clock()
    watcher = DirectoryWatcher(Fingerprints("a"), 0, lambda: None, clock)
    watcher.startService()
    clock.advance(3600)
    assert watcher.polls == 0


# -- real processes ----------------------------------------------------------


def start(farm: Farm, slapd: Slapd, tmp_path: Path, **frontend: object) -> tuple[ServeProcess, int]:
    port = free_port()
    config = fe_config(tmp_path / "fe.toml", port, farm, slapd, **frontend)
    return ServeProcess.start(config, ("127.0.0.1", port)), port


def test_new_replica_in_directory_is_used_within_one_poll(
    farm: Farm, clean_farm: Farm, slapd_factory: Callable[..., Slapd], tmp_path: Path
) -> None:
    """Adding a public store for ex1 to the Apps tree empties the caches at the
    next poll: a user who hashes to ex1 goes there well before the cache TTL."""
    directory = slapd_factory()
    data = fe_config(tmp_path / "x.toml", 1, farm, directory).read_text()
    (tmp_path / "x.toml").unlink()
    port = free_port()
    config = tmp_path / "fe.toml"
    config.write_text(
        data.replace("tcp:1:", f"tcp:{port}:").replace(
            "[directory]\n", "[directory]\npoll_interval = 0.3\n"
        )
    )
    users = {"alice": b"", "bob": b"", "jose": b""}
    with ServeProcess.start(config, ("127.0.0.1", port)):
        for user in users:
            assert get(port, "/apps/Projects/", user, f"{user}-pw")[0] == 200
        assert clean_farm.requests("ex1.example.com") == []
        conn = ldap3.Connection(directory.url, ROOT_DN, ROOT_PASSWORD, auto_bind=True)
        exchange = "cn=Exchange,cn=Configuration,dc=example,dc=com"
        ex1 = f"cn=EX1,cn=Servers,{exchange}"
        apps = f"cn=Apps,cn=Folder Hierarchies,{exchange}"
        assert conn.add(
            f"cn=APPS1,cn=InformationStore,{ex1}",
            ["msExchPublicMDB"],
            {"msExchOwningServer": ex1, "msExchOwningPFTree": apps},
        ), conn.result
        conn.unbind()
        deadline = time.monotonic() + 5
        while not clean_farm.requests("ex1.example.com"):
            assert time.monotonic() < deadline, "the new replica was never used"
            for user in users:
                get(port, "/apps/Projects/", user, f"{user}-pw")
            time.sleep(0.1)


def test_new_replica_only_takes_users_that_hash_to_it() -> None:
    """Sanity of the scenario above: some example user hashes to ex1 once it is a replica."""
    tokens = [
        uuid.uuid5(uuid.NAMESPACE_URL, f"feproxy:user:{u}").bytes for u in ("alice", "bob", "jose")
    ]
    four = ("ex1.example.com", "ex2.example.com", "ex3.example.com", "ex4.example.com")
    assert any(POLICIES["rendezvous"].order(t, four)[0] == "ex1.example.com" for t in tokens)


def test_sighup_under_continuous_load_fails_no_request(
    farm: Farm, slapd: Slapd, tmp_path: Path
) -> None:
    """Four clients keep requesting while the configuration is reloaded five times:
    every request succeeds; then a listener added to the file opens and a removed one closes."""
    serve, port = start(farm, slapd, tmp_path)
    config = tmp_path / "fe.toml"
    results: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def client(user: str) -> None:
        while not stop.is_set():
            try:
                results.append(get(port, "/apps/Projects/", user, f"{user}-pw")[0])
            except (OSError, http.client.HTTPException) as e:
                errors.append(e)

    with serve:
        threads = [
            threading.Thread(target=client, args=(u,)) for u in ("alice", "bob", "jose", "alice")
        ]
        for t in threads:
            t.start()
        try:
            for _ in range(5):
                time.sleep(0.3)
                serve.signal(signal.SIGHUP)
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert errors == []
        assert len(results) > 20
        assert set(results) == {200}
        assert serve.errors().count("configuration reloaded") == 5

        second = free_port(exclude=(port,))
        fe_config(config, second, farm, slapd)  # the same file, listening elsewhere
        serve.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "the removed listener stayed open"
            time.sleep(0.05)
        assert get(second, "/exchange/", "alice", "alice-pw")[0] == 200


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(
    farm: Farm, clean_farm: Farm, slapd: Slapd, tmp_path: Path
) -> None:
    """SIGTERM stops accepting at once, the slow request in flight still gets its
    answer, and the process exits 0."""
    serve, port = start(farm, slapd, tmp_path, stop_timeout=10.0, response_timeout=10.0)
    clean_farm.set_fault("ex1.example.com", "delay", seconds=2.5)
    answer: list[object] = []

    def slow() -> None:
        try:
            answer.append(get(port, "/exchweb/echo")[0])
        except (OSError, http.client.HTTPException) as e:
            answer.append(e)

    with serve:
        t = threading.Thread(target=slow)
        t.start()
        deadline = time.monotonic() + 5
        while not clean_farm.requests("ex1.example.com"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        serve.signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        while True:  # the listener closes at once, well before the answer comes
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting after SIGTERM"
            time.sleep(0.02)
        assert answer == []
        t.join(10)
        code = serve.proc.wait(10)
        assert answer == [200], serve.errors()
        assert code == 0


def test_sigterm_gives_up_on_requests_after_stop_timeout(
    farm: Farm, clean_farm: Farm, slapd: Slapd, tmp_path: Path
) -> None:
    """A request that outlives stop_timeout does not keep the process alive."""
    serve, port = start(farm, slapd, tmp_path, stop_timeout=0.5, response_timeout=30.0)
    clean_farm.set_fault("ex1.example.com", "hang")
    outcome: list[object] = []

    def hung() -> None:
        try:
            outcome.append(get(port, "/exchweb/echo")[0])
        except (OSError, http.client.HTTPException) as e:
            outcome.append(e)

    with serve:
        t = threading.Thread(target=hung, daemon=True)
        t.start()
        deadline = time.monotonic() + 5
        while not clean_farm.requests("ex1.example.com"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        serve.signal(signal.SIGTERM)
        assert serve.proc.wait(10) == 0
        assert time.monotonic() - started < 5
        t.join(5)
        # the headers had been relayed: the body is visibly cut short
        assert len(outcome) == 1
        assert isinstance(outcome[0], http.client.IncompleteRead)


def test_log_json_and_level_flags(farm: Farm, slapd: Slapd, tmp_path: Path) -> None:
    """--log-json writes JSON lines on both streams (the access log on stdout);
    --log-level warn keeps info lines out of the operator's log."""
    port = free_port()
    config = fe_config(tmp_path / "fe.toml", port, farm, slapd)
    with ServeProcess.start(config, ("127.0.0.1", port), "--log-json") as serve:
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 200
        deadline = time.monotonic() + 5
        while not serve.access_lines():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert get(port, "/exchange/", "alice", "wrong")[0] == 401
        while len(serve.access_lines()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ok, refused = [json.loads(line) for line in serve.access_lines()][-2:]
        assert ok["user"] == "alice"
        assert ok["status"] == 200
        assert ok["bytes"] == len(b"mailbox alice on ex1.example.com\n")
        assert refused["status"] == 401
        assert refused["bytes"] == len(b"401 The user name or password is incorrect.\n")
        # the fields of the text line, under the names README documents
        assert set(JSON_FIELDS) <= ok.keys()
        assert (ok["method"], ok["path"], ok["version"]) == ("GET", "/exchange/", "HTTP/1.1")
        assert ok["upstream"].startswith("127.0.0.2:")
        assert (refused["user"], refused["upstream"], refused["backend"]) == (None, None, None)
        assert all(json.loads(line) for line in serve.errors().splitlines())
    port = free_port(exclude=(port,))
    quiet = fe_config(tmp_path / "quiet.toml", port, farm, slapd)
    with ServeProcess.start(quiet, ("127.0.0.1", port), "--log-level", "warn") as serve:
        assert get(port, "/exchange/", "nobody", "x")[0] == 401
        serve.stop()
        assert "serving on" not in serve.errors()


def test_the_real_reactor_provides_what_feproxy_serve_asks_for() -> None:
    """IServeReactor (the type the commands give their reactor) names only
    interfaces the default reactor provides."""
    reactor = global_reactor()
    twisted_interfaces = [
        i for i in IServeReactor.__iro__ if not i.__module__.startswith("frontend")
    ]
    assert len(twisted_interfaces) > 5
    assert [i.__name__ for i in twisted_interfaces if not i.providedBy(reactor)] == []


def test_reload_empties_caches_keeps_marks_and_refuses_bad_files(tmp_path: Path) -> None:
    """A reload builds fresh (empty) caches and a fresh back-end pool (closing
    the old one's idle connections), keeps unavailable marks, and an invalid
    file leaves the running configuration in place."""
    reactor = cast("IServeReactor", MemoryReactorClock())  # the parts a reload uses
    path = write_config(tmp_path / "fe.toml", MAILBOX_CONFIG)
    service = FrontEndService(load_config(path), reactor, config_path=str(path))
    before = service.runtime
    assert before.lookups is not None
    before.lookups.user.put("alice", None)
    service.marks.mark("ex3.example.com")
    closed: list[bool] = []
    before.agent.close_idle = lambda: closed.append(True)  # type: ignore[method-assign]  # a spy
    assert service.reload(str(path))
    assert service.runtime is not before
    assert service.runtime.lookups is not None
    assert len(service.runtime.lookups.user) == 0
    assert closed == [True]  # the old pool's idle back-end connections go
    assert "ex3.example.com" in service.marks
    current = service.runtime
    (tmp_path / "fe.toml").write_text("[frontend\n")
    assert not service.reload(str(path))
    assert service.runtime is current
