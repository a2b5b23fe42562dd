"""A farm of stub Exchange back-end servers, driven by a topology file.

Run it with ``backend-stub --topology conf/topology.toml``; see
:mod:`backend_stub.cli` for the command and :mod:`backend_stub.control` for
the control API (request records and fault injection).
"""

__all__: list[str] = []
