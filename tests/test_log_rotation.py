"""Log rotation the nginx way: files renamed, then SIGUSR1 makes `feproxy serve`
reopen its access and error logs by path; the real logrotate, with the
snippet of conf/logrotate, while a client keeps sending requests."""

from __future__ import annotations

import gzip
import http.client
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher

from frontend.ops.logs import LogFile, LogWriter, reopen_all
from tests.fakes import MAILBOX_CONFIG
from tests.support.configs import static_config, write_config
from tests.support.farm import Farm, free_port
from tests.support.serve import ROOT, ServeProcess
from tests.test_access_log import LINE
from tests.test_workers import _both_workers, children

REOPENED = "log files reopened"


# -- in memory ---------------------------------------------------------------


def lines(n: int, size: int = 10) -> list[bytes]:
    return [b"%0*d\n" % (size - 1, i) for i in range(n)]


def test_batched_writer_writes_after_its_delay_or_once_enough_waits(tmp_path: Path) -> None:
    """With a clock, lines wait up to FLUSH_DELAY, or until FLUSH_SIZE bytes wait."""
    clock = Clock()
    path = tmp_path / "access.log"
    writer = LogWriter(LogFile.open(str(path)), lambda line: cast("bytes", line["text"]), clock)
    for line in lines(3):
        writer({"text": line})
    assert path.read_bytes() == b""
    clock.advance(LogWriter.FLUSH_DELAY)
    assert path.read_bytes() == b"".join(lines(3))
    many = lines(LogWriter.FLUSH_SIZE // 10 + 1)  # just over FLUSH_SIZE bytes
    for line in many:
        writer({"text": line})
    assert path.read_bytes() == b"".join(lines(3) + many)  # written at once, whole
    assert not clock.getDelayedCalls()
    writer({"text": b""})  # an event rendered as nothing writes nothing
    assert not clock.getDelayedCalls()


def test_reopen_writes_what_waits_to_the_old_file_then_opens_the_path_again(
    tmp_path: Path,
) -> None:
    """reopen flushes pending lines to the renamed file, then creates the path anew
    on the same descriptor; a stream without a path is left alone."""
    clock = Clock()
    path = tmp_path / "access.log"
    file = LogFile.open(str(path))
    fd = file.fd
    writer = LogWriter(file, lambda line: cast("bytes", line["text"]), clock)
    writer({"text": b"before\n"})
    path.rename(tmp_path / "access.log.1")
    writer.reopen()
    writer({"text": b"after\n"})
    writer.flush()
    assert (tmp_path / "access.log.1").read_bytes() == b"before\n"
    assert path.read_bytes() == b"after\n"
    assert file.fd == fd
    assert not os.get_inheritable(fd)
    LogFile(fd).reopen()  # no path: nothing to do
    assert not clock.getDelayedCalls()


def test_a_log_file_that_cannot_be_reopened_is_kept_and_the_failure_logged(
    tmp_path: Path,
) -> None:
    """When the path cannot be opened again (its directory gone), the old file stays
    in use and the error log says which file could not be reopened."""
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = LogWriter(LogFile.open(str(logs / "access.log")), lambda e: cast("bytes", e["text"]))
    logs.rename(tmp_path / "moved")
    events: list[LogEvent] = []
    observer = cast("ILogObserver", events.append)
    globalLogPublisher.addObserver(observer)
    try:
        reopen_all([writer])
    finally:
        globalLogPublisher.removeObserver(observer)
    writer({"text": b"still here\n"})
    assert (tmp_path / "moved" / "access.log").read_bytes() == b"still here\n"
    failed, done = events
    assert failed["log_level"] == LogLevel.error
    assert failed["path"] == str(logs / "access.log")
    assert done["log_format"] == REOPENED


def test_an_error_log_that_cannot_be_opened_stops_serve_at_once(tmp_path: Path) -> None:
    """feproxy serve --error-log in a missing directory exits 1 and says why."""
    config = write_config(tmp_path / "fe.toml", MAILBOX_CONFIG)
    serve = ServeProcess.start(config, None, "--error-log", str(tmp_path / "none" / "e.log"))
    assert serve.proc.wait(30) == 1
    assert "cannot open a log file" in serve.errors()
    assert "none/e.log" in serve.errors()


# -- real processes ----------------------------------------------------------


def logrotate() -> str:
    found = shutil.which("logrotate") or shutil.which("logrotate", path="/usr/sbin:/sbin")
    assert found, "logrotate is missing: scripts/install-log-tools installs it"
    return found


def poll(what: str, done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def serve_with_log_files(
    farm: Farm, tmp_path: Path, *extra: str
) -> tuple[ServeProcess, int, Path, Path]:
    port = free_port()
    config = static_config(tmp_path / "fe.toml", port, farm)
    logs = tmp_path / "logs"
    logs.mkdir()
    access, errors = logs / "access.log", logs / "error.log"
    args = ("--access-log", str(access), "--error-log", str(errors), *extra)
    serve = ServeProcess.start(config, ("127.0.0.1", port), *args)
    return serve, port, access, errors


def read_log(path: Path) -> str:
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode("ascii")
    return path.read_text(encoding="ascii")


def rotated_config(logs: Path, pid: int, state: Path) -> Path:
    """conf/logrotate for files in ``logs``, its postrotate signalling ``pid``."""
    snippet = (ROOT / "conf" / "logrotate").read_text(encoding="utf-8")
    snippet = snippet.replace("/var/log/feproxy/", f"{logs}/")
    snippet, n = re.subn(
        r"(?s)(\n\s*postrotate\n).*?(\n\s*endscript)", rf"\1        kill -USR1 {pid}\2", snippet
    )
    assert n == 1, "conf/logrotate has no postrotate script"
    path = state.with_name("logrotate.conf")
    path.write_text(snippet, encoding="utf-8")
    return path


class Client:
    """Threads sending ``GET /exchweb/echo?n=<i>`` over keep-alive connections
    until stopped, each i once; ``answered`` lists the i answered 200."""

    def __init__(self, port: int, threads: int = 2) -> None:
        self.port = port
        self.answered: list[str] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def answered_more(self, than: int) -> Callable[[], bool]:
        return lambda: len(self.answered) > than

    def _run(self, index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        i = 0
        try:
            while not self._stop.is_set():
                n = f"{index}-{i}"
                i += 1
                conn.request("GET", f"/exchweb/echo?n={n}", headers={"User-Agent": "rotation"})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.answered.append(n)
        except (OSError, http.client.HTTPException) as e:
            self.failures.append(e)
        finally:
            conn.close()


def test_logrotate_with_the_shipped_snippet_loses_and_tears_no_line(
    clean_farm: Farm, tmp_path: Path
) -> None:
    """Three forced rotations by the real logrotate (conf/logrotate, postrotate
    sending SIGUSR1) under a steady client: every request is in exactly one of
    the current and rotated (compressed) files, each line whole."""
    serve, port, access, errors = serve_with_log_files(clean_farm, tmp_path)
    state = tmp_path / "logrotate.state"
    config = rotated_config(access.parent, serve.pid, state)
    client = Client(port)
    with serve:
        client.start()
        for rotation in range(1, 4):
            poll("requests", client.answered_more(len(client.answered) + 50))
            poll("lines in the current file", lambda: access.exists() and access.stat().st_size > 0)
            done = subprocess.run(
                [logrotate(), "--force", "--state", str(state), str(config)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            # reopened: the new files exist, the error log says so (in the new file)
            poll("the new files", lambda: access.exists() and errors.exists())
            poll("the reopen", lambda: REOPENED in errors.read_text())
            assert (access.parent / "access.log.1").exists()
            assert len(list(access.parent.glob("access.log.*.gz"))) == rotation - 1
        client.stop()
        assert client.failures == []
        sent = Counter(client.answered)

        def files() -> list[Path]:
            return sorted(access.parent.glob("access.log*"))

        def logged() -> Counter[str]:
            found: Counter[str] = Counter()
            for path in files():
                for line in read_log(path).splitlines(keepends=True):
                    assert LINE.match(line), f"{path.name}: {line!r}"
                    n = re.search(r"\?n=([0-9-]+) ", line)
                    assert n is not None, line
                    found[n.group(1)] += 1
            return found

        poll("every line", lambda: sum(logged().values()) >= sum(sent.values()))
        assert logged() == sent
        assert max(sent.values()) == 1
        names = [p.name for p in files()]
        assert names == ["access.log", "access.log.1", "access.log.2.gz", "access.log.3.gz"]
        # one reopen line in each error log but the first (which saw no USR1)
        for name, count in [
            ("error.log", 1),
            ("error.log.1", 1),
            ("error.log.2.gz", 1),
            ("error.log.3.gz", 0),
        ]:
            assert read_log(errors.parent / name).count(REOPENED) == count, name


@pytest.mark.usefixtures("clean_farm")
def test_usr1_reopens_the_error_log_by_path(farm: Farm, tmp_path: Path) -> None:
    """After mv and SIGUSR1, a line logged later (a reload's) goes to a new file of
    the error log's name, not to the renamed one."""
    serve, _, _, errors = serve_with_log_files(farm, tmp_path)
    with serve:
        poll("the start line", lambda: "serving on" in errors.read_text())
        old = errors.with_name("error.log.old")
        errors.rename(old)
        serve.signal(signal.SIGUSR1)
        poll("the new error log", lambda: errors.exists() and REOPENED in errors.read_text())
        serve.signal(signal.SIGHUP)
        poll("the reload line", lambda: "configuration reloaded" in errors.read_text())
        assert "configuration reloaded" not in old.read_text()
        assert REOPENED not in old.read_text()
        assert serve.errors() == ""  # nothing went to the stderr it was started with
        assert serve.stop() == 0


def fds_to(pid: int, path: Path) -> int:
    """How many of ``pid``'s descriptors are open on ``path`` (by its current name)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if fd.readlink() == path:
                count += 1
        except OSError:
            continue
    return count


@pytest.mark.usefixtures("clean_farm")
def test_with_workers_usr1_to_the_master_reopens_every_process_logs(
    farm: Farm, tmp_path: Path
) -> None:
    """--workers 2: SIGUSR1 to the master reopens its error log and is relayed to
    both workers, which reopen their access and error logs."""
    serve, _, access, errors = serve_with_log_files(farm, tmp_path, "--workers", "2")
    with serve:
        workers = _both_workers(serve)
        poll("both workers", lambda: errors.read_text().count("serving on") == 2)
        for pid in workers:
            assert fds_to(pid, access) == 1
            assert fds_to(pid, errors) >= 1  # fd 2 (and stdout's, if it is the same)
        assert fds_to(serve.pid, errors) >= 1
        access.rename(access.with_name("access.log.1"))
        errors.rename(errors.with_name("error.log.1"))
        serve.signal(signal.SIGUSR1)
        poll("both reopens", lambda: errors.exists() and errors.read_text().count(REOPENED) == 2)
        poll("the master's reopen", lambda: fds_to(serve.pid, errors) >= 1)
        assert fds_to(serve.pid, errors.with_name("error.log.1")) == 0
        for pid in workers:
            assert fds_to(pid, access) == 1
            assert fds_to(pid, access.with_name("access.log.1")) == 0
            assert fds_to(pid, errors.with_name("error.log.1")) == 0
        assert children(serve.pid) == workers  # SIGUSR1 stopped none
        assert serve.stop() == 0
