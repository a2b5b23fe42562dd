"""sd_notify in memory: the Notifier on a fake clock and real datagram sockets, and
how a --workers master sums its workers up (WorkerNotices)."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from twisted.internet.task import Clock

from frontend.ops.notify import (
    Notifier,
    monotonic_usec,
    notify_reload,
    reload_status,
    watchdog_usec,
)
from frontend.ops.readiness import WorkerNotices
from tests.support.notify import Message, NotifySocket

_Closable = TypeVar("_Closable", Notifier, WorkerNotices)
_OPEN: list[Notifier | WorkerNotices] = []


def _kept(thing: _Closable) -> _Closable:
    """``thing``, closed when the test ends (its socket with it)."""
    _OPEN.append(thing)
    return thing


@pytest.fixture(autouse=True)
def _close_what_the_test_opened() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _notifier(sd: NotifySocket, pid: int = 4321, **environ: str) -> Notifier:
    return _kept(Notifier.from_environ({"NOTIFY_SOCKET": str(sd.path), **environ}, pid=pid))


def _pending(sd: NotifySocket) -> list[Message]:
    """What was sent and not read yet (sends are synchronous: all of it is there)."""
    found = []
    while (message := sd.receive(0.01)) is not None:
        found.append(message)
    return found


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    """No NOTIFY_SOCKET: the notifier is off, every message is a no-op, no watchdog runs."""
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "1000000"}, pid=1)
    assert not notifier.enabled
    assert notifier.started("up") is False
    assert notifier.start_watchdog(Clock()) is None
    notifier.close()


def test_started_sends_ready_mainpid_and_status_in_one_datagram(tmp_path: Path) -> None:
    """READY=1, MAINPID and STATUS go together, from this process, to the path named."""
    with NotifySocket(tmp_path / "n") as sd:
        notifier = _notifier(sd, pid=4321)
        assert notifier.started("feproxy serving on tcp:80")
        message = sd.next(timeout=5)
        assert message.fields == {
            "READY": "1",
            "MAINPID": "4321",
            "STATUS": "feproxy serving on tcp:80",
        }
        assert message.pid == os.getpid()


def test_an_abstract_socket_is_written_with_a_leading_at() -> None:
    """NOTIFY_SOCKET=@name reaches the abstract socket "\\0name"."""
    name = f"feproxy-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sd:
        sd.bind("\0" + name)
        notifier = _kept(Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}, pid=7))
        assert notifier.stopping()
        sd.settimeout(5)
        assert sd.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_reloading_carries_the_monotonic_clock_in_microseconds(tmp_path: Path) -> None:
    """RELOADING=1 comes with MONOTONIC_USEC from the injected clock; the real one is
    CLOCK_MONOTONIC in microseconds."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    now = monotonic_usec()
    assert before <= now <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    with NotifySocket(tmp_path / "n") as sd:
        notifier = _kept(
            Notifier(
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
                str(sd.path),
                pid=1,
                monotonic=lambda: 123456789,
            )
        )
        notifier.reloading()
        message = sd.next(timeout=5)
        assert message.fields["RELOADING"] == "1"
        assert message.fields["MONOTONIC_USEC"] == "123456789"


def test_a_reload_is_framed_by_reloading_and_ready_saying_whether_it_took(
    tmp_path: Path,
) -> None:
    """notify_reload: RELOADING=1 before the reload runs, READY=1 after it, with a STATUS
    for a taken and for a refused configuration."""
    with NotifySocket(tmp_path / "n") as sd:
        notifier = _notifier(sd)
        seen_during: list[list[Message]] = []

        def reload(_path: str) -> bool:
            seen_during.append(_pending(sd))
            return len(seen_during) == 1  # the first is taken, the second refused

        assert notify_reload(notifier, reload, "/etc/fe.toml") is True
        assert [m.fields.get("RELOADING") for m in seen_during[0]] == ["1"]
        ready = sd.next(timeout=5)
        assert ready.fields == {
            "READY": "1",
            "STATUS": "configuration reloaded from /etc/fe.toml",
        }
        assert notify_reload(notifier, reload, "/etc/fe.toml") is False
        assert sd.next(timeout=5).fields["STATUS"] == reload_status("/etc/fe.toml", taken=False)
        assert reload_status("x", taken=False).startswith("configuration refused")


def test_a_failed_send_is_dropped_and_warned_about_once(tmp_path: Path) -> None:
    """A NOTIFY_SOCKET nobody listens on: sends return False, never raise, one warning."""
    warnings: list[str] = []
    notifier = _kept(
        Notifier.from_environ(
            {"NOTIFY_SOCKET": str(tmp_path / "gone")}, pid=1, warn=warnings.append
        )
    )
    assert notifier.enabled
    assert notifier.started("up") is False
    assert notifier.ping() is False
    assert len(warnings) == 1
    assert "READY=1" in warnings[0]
    assert "gone" in warnings[0]


def test_a_notify_socket_that_is_neither_path_nor_abstract_is_refused() -> None:
    """NOTIFY_SOCKET=vsock:... (or a relative path) turns notification off, with a warning."""
    warnings: list[str] = []
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"}, pid=1, warn=warnings.append)
    assert not notifier.enabled
    assert warnings == [
        "NOTIFY_SOCKET=vsock:2:1234: not a path nor an abstract socket; not notifying"
    ]


def test_the_watchdog_is_ours_only_when_watchdog_pid_is_unset_or_ours() -> None:
    """WATCHDOG_USEC applies to this pid if WATCHDOG_PID is absent or names it;
    a zero or malformed timeout is no watchdog."""
    assert watchdog_usec({"WATCHDOG_USEC": "30000000"}, 10) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "10"}, 10) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "11"}, 10) is None
    assert watchdog_usec({"WATCHDOG_USEC": "0"}, 10) is None
    assert watchdog_usec({"WATCHDOG_USEC": "soon"}, 10) is None
    assert watchdog_usec({}, 10) is None


def test_the_watchdog_pings_every_half_timeout_on_the_injected_clock(tmp_path: Path) -> None:
    """WATCHDOG=1 at once, then every WATCHDOG_USEC/2 of the clock; none after close."""
    clock = Clock()
    with NotifySocket(tmp_path / "n") as sd:
        notifier = _notifier(sd, WATCHDOG_USEC="2000000")
        loop = notifier.start_watchdog(clock)
        assert loop is not None
        assert [m.fields for m in _pending(sd)] == [{"WATCHDOG": "1"}]
        clock.advance(0.9)
        assert _pending(sd) == []
        clock.advance(0.1)
        assert [m.fields for m in _pending(sd)] == [{"WATCHDOG": "1"}]
        clock.pump([1.0, 1.0, 1.0])
        assert len(_pending(sd)) == 3
        notifier.close()
        assert not loop.running
        clock.advance(5)
        assert _pending(sd) == []
        assert notifier.ping() is False  # closed: nothing goes


def test_a_watchdog_meant_for_another_process_is_not_pinged(tmp_path: Path) -> None:
    """WATCHDOG_PID naming another process: no loop, no ping."""
    with NotifySocket(tmp_path / "n") as sd:
        notifier = _notifier(sd, pid=10, WATCHDOG_USEC="2000000", WATCHDOG_PID="11")
        assert notifier.start_watchdog(Clock()) is None
        assert _pending(sd) == []


def test_a_worker_notifier_writes_to_the_channel_its_master_handed_over() -> None:
    """Notifier.for_channel sends on the inherited connected socket (no NOTIFY_SOCKET)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with ours:
        notifier = Notifier.for_channel(os.dup(theirs.fileno()), {"WATCHDOG_USEC": "1000"}, pid=5)
        theirs.close()
        assert notifier.watchdog == 1000
        assert notifier.started("worker up")
        ours.settimeout(5)
        assert ours.recv(4096) == b"READY=1\nMAINPID=5\nSTATUS=worker up"
        notifier.close()


# The master's side ------------------------------------------------------------


class _Now:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _master(sd: NotifySocket, count: int = 2, **environ: str) -> tuple[WorkerNotices, _Now]:
    now = _Now()
    notices = _kept(WorkerNotices(_notifier(sd, pid=99, **environ), count, "2 workers up", now=now))
    return notices, now


READY = {"READY": "1", "STATUS": "feproxy serving"}
RELOADING = {"RELOADING": "1", "MONOTONIC_USEC": "5"}
RELOADED = {"READY": "1", "STATUS": reload_status("fe.toml", taken=True)}
REFUSED = {"READY": "1", "STATUS": reload_status("fe.toml", taken=False)}


def test_the_master_is_ready_once_every_worker_is_and_only_once(tmp_path: Path) -> None:
    """READY=1 (with the master's pid) when the last worker is ready; a worker
    started again later does not make the master say it again."""
    with NotifySocket(tmp_path / "n") as sd:
        notices, _now = _master(sd)
        notices.heard(0, READY)
        assert _pending(sd) == []
        notices.heard(1, READY)
        assert [m.fields for m in _pending(sd)] == [
            {"READY": "1", "MAINPID": "99", "STATUS": "2 workers up"}
        ]
        notices.spawned(1)
        notices.heard(1, READY)
        assert _pending(sd) == []


def test_a_sighup_is_reloading_until_every_worker_has_reloaded(tmp_path: Path) -> None:
    """SIGHUP: RELOADING=1 first, READY=1 once each worker has said RELOADING then
    READY (a start-up READY does not count); the STATUS counts refusals."""
    with NotifySocket(tmp_path / "n") as sd:
        notices, _now = _master(sd)
        notices.heard(0, READY)
        notices.heard(1, READY)
        _pending(sd)
        notices.signalled(signal.SIGHUP)
        notices.heard(0, RELOADING)  # the flag is acted on before the report
        assert [m.fields.get("RELOADING") for m in _pending(sd)] == ["1"]
        notices.heard(1, READY)  # not after a RELOADING=1: not the end of its reload
        notices.heard(0, RELOADED)
        assert _pending(sd) == []
        notices.heard(1, RELOADING)
        notices.heard(1, REFUSED)
        assert [m.fields for m in _pending(sd)] == [
            {
                "READY": "1",
                "STATUS": "configuration refused by 1 of 2 workers, "
                "which keep the old one (see the log)",
            }
        ]
        notices.signalled(signal.SIGHUP)
        notices.wait(0)
        assert "RELOADING=1" in _pending(sd)[0]
        notices.heard(0, RELOADING)
        notices.heard(0, RELOADED)
        notices.spawned(1)  # started again: it read the new file as it started
        assert [m.fields for m in _pending(sd)] == [
            {"READY": "1", "STATUS": "configuration reloaded by 2 workers"}
        ]


def test_a_sighup_before_the_master_is_ready_announces_nothing(tmp_path: Path) -> None:
    """Workers still starting reload as they start: no RELOADING=1 before READY=1."""
    with NotifySocket(tmp_path / "n") as sd:
        notices, _now = _master(sd)
        notices.signalled(signal.SIGHUP)
        notices.wait(0)
        notices.heard(0, READY)
        assert _pending(sd) == []


def test_sigterm_and_sigint_say_stopping_once_and_end_a_reload(tmp_path: Path) -> None:
    """STOPPING=1 once, whichever stop signals come; a reload under way is not
    announced as ended; other signals say nothing."""
    with NotifySocket(tmp_path / "n") as sd:
        notices, _now = _master(sd)
        notices.heard(0, READY)
        notices.heard(1, READY)
        notices.signalled(signal.SIGHUP)
        notices.signalled(signal.SIGUSR2)
        notices.wait(0)
        _pending(sd)
        notices.signalled(signal.SIGTERM)
        notices.signalled(signal.SIGINT)
        notices.wait(0)
        notices.heard(0, RELOADING)
        notices.heard(0, RELOADED)
        notices.heard(1, RELOADING)
        notices.heard(1, RELOADED)
        assert [m.fields for m in _pending(sd)] == [{"STOPPING": "1", "STATUS": "stopping"}]


def test_the_master_pings_systemd_only_while_every_worker_pings_it(tmp_path: Path) -> None:
    """With a watchdog, WATCHDOG=1 every half timeout while each worker pinged
    within the timeout; a silent worker stops the pings until it pings again."""
    with NotifySocket(tmp_path / "n") as sd:
        notices, now = _master(sd, WATCHDOG_USEC="2000000")
        notices.spawned(0)
        notices.spawned(1)
        notices.wait(0)  # their start-up is their grace
        assert [m.fields for m in _pending(sd)] == [{"WATCHDOG": "1"}]
        now.t += 0.5
        notices.wait(0)
        assert _pending(sd) == []  # not yet half the timeout
        now.t += 0.6
        notices.heard(0, {"WATCHDOG": "1"})
        notices.wait(0)
        assert len(_pending(sd)) == 1
        now.t += 1.1  # worker 1 silent for 2.2 s
        notices.heard(0, {"WATCHDOG": "1"})
        notices.wait(0)
        assert _pending(sd) == []
        notices.heard(1, {"WATCHDOG": "1"})
        notices.wait(0)
        assert [m.fields for m in _pending(sd)] == [{"WATCHDOG": "1"}]


def test_workers_get_no_notify_socket_and_the_masters_watchdog_timeout(tmp_path: Path) -> None:
    """A worker's environment: NOTIFY_SOCKET and WATCHDOG_PID gone, WATCHDOG_USEC
    the master's (none without a watchdog), the rest unchanged."""
    environ = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": "99",
        "PATH": "/usr/bin",
    }
    with NotifySocket(tmp_path / "n") as sd:
        notices, _now = _master(sd, WATCHDOG_USEC="30000000")
        assert notices.child_environ(environ) == {"WATCHDOG_USEC": "30000000", "PATH": "/usr/bin"}
        plain, _now = _master(sd)
        assert plain.child_environ(environ) == {"PATH": "/usr/bin"}


def test_the_master_reads_what_workers_send_on_their_channels(tmp_path: Path) -> None:
    """wait() reads the datagrams of each worker's channel (a socket pair whose
    descriptor the worker inherits) and passes READY=1 on."""
    with NotifySocket(tmp_path / "n") as sd:
        notices, _now = _master(sd)
        workers = []
        for i in range(2):
            fd = notices.open_channel(i)
            workers.append(_kept(Notifier.for_channel(os.dup(fd), {}, pid=100 + i)))
            notices.spawned(i)  # closes the master's copy of the worker's end
        workers[0].started("worker 0")
        workers[1].ping()
        notices.wait(5)
        assert _pending(sd) == []
        workers[1].started("worker 1")
        deadline = time.monotonic() + 10
        while not notices.announced:
            assert time.monotonic() < deadline
            notices.wait(0.1)
        assert [m.fields.get("READY") for m in _pending(sd)] == ["1"]
        notices.close()
        for w in workers:
            assert w.started("again") is False  # the master's end is gone
