"""Twisted's own ``ReverseProxyResource`` in front of one back end: the baseline.

``python bench/reverse_proxy.py --port N --backend HOST:PORT`` serves every
path on 127.0.0.1:N by forwarding it to HOST:PORT, exactly as
``twisted.web.proxy.ReverseProxyResource`` does out of the box (HTTP/1.0 to
the back end, one new connection per request, whole-response relay without
flow control).  No authentication, no routing: what a plain Twisted proxy
costs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from twisted.web.proxy import ReverseProxyResource
from twisted.web.server import Site

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reverse_proxy.py", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    parser.add_argument("--backend", required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    host, _, port = args.backend.rpartition(":")

    # The entry point: the only place that imports the global reactor.
    from twisted.internet import reactor as global_reactor  # noqa: PLC0415 - importing it installs it

    reactor: Any = global_reactor  # the installed reactor's interfaces are not typed
    site = Site(ReverseProxyResource(host, int(port), b""))
    site.noisy = False
    reactor.listenTCP(args.port, site, interface="127.0.0.1")
    print(f"reverse proxy on 127.0.0.1:{args.port} -> {host}:{port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
