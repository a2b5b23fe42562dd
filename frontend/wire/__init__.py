"""HTTP/1.1 on the wire, both ways: client connections and the requests they
read, the back-end client and its pool, the relay between them, deadlines.

Imports only :mod:`frontend.errors` and :mod:`frontend.config` of feproxy.
"""
