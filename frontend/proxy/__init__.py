"""The request handler: route, forward, follow referrals, fail over, answer
errors; the one place that joins the wire, routing and directory layers.

Imports :mod:`frontend.wire`, :mod:`frontend.routing`,
:mod:`frontend.directory`, :mod:`frontend.config` and :mod:`frontend.errors`.
"""

from frontend.proxy.forward import CONNECT_FAILURES
from frontend.proxy.handler import NO_ACCESS_LOG, FrontEnd, _drive
from frontend.proxy.runtime import Runtime

__all__ = ["CONNECT_FAILURES", "NO_ACCESS_LOG", "FrontEnd", "Runtime", "_drive"]
