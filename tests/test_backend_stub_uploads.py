"""Request bodies at the stub farm: PUT/POST sinks.

In memory first, then over loopback against the session farm.
"""

from __future__ import annotations

import hashlib
import http.client
import os
from contextlib import closing
from typing import Any

from backend_stub.routing import SinkReply, TextReply, route
from backend_stub.topology import load_topology
from tests.support.farm import DEFAULT_TOPOLOGY, Farm

EX1, EX2, EX3 = "ex1.example.com", "ex2.example.com", "ex3.example.com"
TOPOLOGY = load_topology(DEFAULT_TOPOLOGY)

# ---------------------------------------------------------------- in memory


def test_route_put_and_post_into_held_mailbox_or_folder_are_sinks() -> None:
    """PUT (201) and POST (200) into a mailbox or folder held here are uploads;
    other methods, and paths held elsewhere, answer as before."""
    ex1, ex3 = TOPOLOGY.server(EX1), TOPOLOGY.server(EX3)
    folders = TOPOLOGY.folders

    def reply(server: Any, path: str, method: str, from_front_end: bool = True) -> Any:
        return route(server, folders, path, from_front_end=from_front_end, method=method)

    assert reply(ex1, "/exchange/Alice/Inbox/a.eml", "PUT") == SinkReply(
        201, "mailbox Alice", "Created"
    )
    assert reply(ex1, "/exchange/alice/", "POST") == SinkReply(200, "mailbox alice", "OK")
    assert reply(ex3, "/apps/Archive/new.eml", "PUT") == SinkReply(
        201, "folder /apps/Archive", "Created"
    )
    assert reply(ex1, "/exchange/alice/", "PROPFIND") == TextReply(
        200, "mailbox alice on ex1.example.com\n"
    )
    elsewhere = reply(ex3, "/exchange/alice/a.eml", "PUT")
    assert isinstance(elsewhere, TextReply) and elsewhere.status == 404
    referral = reply(ex1, "/apps/Archive/new.eml", "PUT")
    assert isinstance(referral, TextReply) and referral.status == 421


# ------------------------------------------------------------- real process


def _put(farm: Farm, server: str, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    address = farm.address_of(server)
    with closing(http.client.HTTPConnection(address, farm.port, timeout=10)) as conn:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()


def test_put_and_post_sinks_name_length_and_sha256(clean_farm: Farm) -> None:
    """PUT into a mailbox or a held folder answers 201, POST 200, each naming
    the byte count and SHA-256 received."""
    body = os.urandom(300_000)
    text = f"received 300000 bytes, sha256 {hashlib.sha256(body).hexdigest()}\n".encode()
    status, answer = _put(clean_farm, EX2, "PUT", "/exchange/bob/Drafts/a.eml", body)
    assert (status, answer) == (201, b"mailbox bob on ex2.example.com: " + text)
    status, answer = _put(clean_farm, EX2, "POST", "/exchange/jose/", body)
    assert (status, answer) == (200, b"mailbox jose on ex2.example.com: " + text)
    status, answer = _put(clean_farm, EX3, "PUT", "/apps/Archive/2004.eml", body)
    assert (status, answer) == (201, b"folder /apps/Archive on ex3.example.com: " + text)
    records = clean_farm.requests()
    assert [r["body_length"] for r in records] == [300_000] * 3
