"""``feproxy loadtest``: how users spread over public-folder replicas, and how
many move when a replica is added, removed or fails.

Two modes: ``offline`` hashes synthetic tokens with :mod:`frontend.routing.hashing`
(no network; a million users in seconds); ``live`` drives users through a
running ``feproxy serve`` (started on loopback with a generated directory and
stub farm, or one that runs already) and attributes every answer to the back
end named in ``X-Backend-Server``.

Modules: :mod:`.cli` (arguments, output), :mod:`.offline`, :mod:`.live`
(rounds and the change), :mod:`.driver` (requests), :mod:`.targets`,
:mod:`.stack` (the started stack), :mod:`.procs` (child processes),
:mod:`.ldif`, :mod:`.slapd`, :mod:`.tomlwrite` (generated configuration),
:mod:`.report` (values, JSON), :mod:`.table`, :mod:`.plot`, :mod:`.stats`.
``bench/`` and ``tests/support/`` reuse :mod:`.procs`, :mod:`.slapd` and
:mod:`.tomlwrite`.
"""

from frontend.loadtest.cli import add_parser, main, run

__all__ = ["add_parser", "main", "run"]
