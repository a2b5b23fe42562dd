"""Where a request goes: the pure decisions (virtual directories, logons,
trees), the resolver that fetches their facts, hashing and unavailable marks.

Imports :mod:`frontend.directory` (for its lookups), :mod:`frontend.config`
and :mod:`frontend.errors`.
"""
