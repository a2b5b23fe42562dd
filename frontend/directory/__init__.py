"""The directory (LDAP): the ldap3 client and its thread pool, the cached
lookups, Basic credentials checked by a bind, and the change watch.

Imports only :mod:`frontend.errors` and :mod:`frontend.config` of feproxy.
"""
