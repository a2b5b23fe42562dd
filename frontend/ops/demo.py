"""``feproxy demo``: directory, stub back-end farm and front end in one process.

The directory is ldaptor's in-memory LDAP server loaded from
conf/directory.ldif, reached by the front end over real LDAP through the same
ldap3 code as in production; the farm is the stub farm of
conf/topology.toml; the front end serves conf/feproxy.toml.

Signals as for ``feproxy serve``: SIGHUP reloads the front end's
configuration from its ``--config`` file (the directory and the farm stay as
they are); SIGTERM and SIGINT (Ctrl-C) stop the front end (requests in flight
finish), the farm and the directory, and the demo exits 0.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from frontend.config import Config
from frontend.errors import ConfigError

if TYPE_CHECKING:
    from backend_stub.topology import Topology
    from frontend.ops.reactor import IServeReactor
    from frontend.ops.service import FrontEndService

__all__ = ["BANNER", "CONF", "run_demo"]

CONF = Path(__file__).resolve().parents[2] / "conf"

log = Logger()

BANNER = """\
feproxy demo is running.
  front end   http://{fe}/            (conf/feproxy.toml)
  directory   ldap://{ldap}/     (conf/directory.ldif; users alice, bob, carol, dave, jose;
                                          password <name>-pw)
  back ends   ex1..ex4.example.com on 127.0.0.2-5 port {backend_port} (conf/topology.toml)
  admin       {admin}

Try:
  curl -i -u alice:alice-pw http://{fe}/exchange/              # implicit logon -> ex1
  curl -i -u alice:alice-pw http://{fe}/exchange/bob/          # explicit logon -> ex2
  curl -i http://{fe}/exchange/                                # 401
  curl -i -u carol:carol-pw http://{fe}/exchange/              # 403, HTTP disabled
  curl -i -u alice:alice-pw http://{fe}/public/Announcements/  # alice's public store
  curl -i -u bob:bob-pw http://{fe}/apps/Archive/              # referral followed
Reload the front end's configuration with kill -HUP {pid}; stop with Ctrl-C.
"""


def run_demo(args: argparse.Namespace) -> int:
    from backend_stub.topology import load_topology
    from frontend.ops.configfile import load_or_report
    from frontend.ops.logs import start_logging
    from frontend.ops.reactor import global_reactor
    from frontend.ops.signals import stop_on_signals

    reactor = global_reactor()
    config = load_or_report(args.config)
    if config is None:
        return 1
    topology = load_topology(args.topology)
    start_logging(level="info")
    failed: list[Failure] = []
    running: list[FrontEndService] = []

    def fail(f: Failure) -> None:
        log.failure("the demo could not start", f)
        failed.append(f)
        reactor.stop()

    def go() -> None:
        started = defer.ensureDeferred(_start(reactor, config, topology, args.ldif, args.config))
        started.addCallbacks(running.append, fail)

    def reload() -> None:
        if not running:
            log.warn("SIGHUP before the front end started: nothing to reload")
            return
        running[0].reload(args.config)

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        reactor.callFromThread(reload)

    signal.signal(signal.SIGHUP, on_hup)
    # SIGTERM and SIGINT stop it once, as they stop serve (frontend.ops.signals).
    reactor.callWhenRunning(stop_on_signals, reactor)
    reactor.callWhenRunning(go)
    reactor.run()
    if failed:
        return 1
    log.info("feproxy demo stopped: front end, stub farm and directory closed")
    return 0


async def _start(
    reactor: IServeReactor, config: Config, topology: Topology, ldif: str, config_path: str
) -> FrontEndService:
    from backend_stub.farm import StubFarm
    from frontend.ops.demo_directory import start_demo_directory
    from frontend.ops.service import FrontEndService

    if config.directory is None:
        raise ConfigError("directory", "the demo needs a [directory] section")
    url = urlsplit(config.directory.url)
    directory = await start_demo_directory(
        reactor, ldif, port=url.port or 389, interface=url.hostname or "127.0.0.1"
    )
    reactor.addSystemEventTrigger("before", "shutdown", directory.stop)
    farm = StubFarm(topology, reactor)
    await farm.start()
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(farm.stop()))
    service = FrontEndService(config, reactor, config_path=config_path)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    listen = config.frontend.listen[0].split(":")
    fe = f"127.0.0.1:{listen[1]}"
    admin = ", ".join(
        f"http://127.0.0.1:{d.split(':')[1]}/ (status), /metrics" for d in config.frontend.admin
    )
    banner = BANNER.format(
        fe=fe, ldap=url.netloc, backend_port=topology.port, admin=admin or "-", pid=os.getpid()
    )
    print(banner, flush=True)
    return service
