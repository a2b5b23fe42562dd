"""Stubs for the part of pytest-twisted the suite uses (the package ships no annotations).

Both decorators return the function they are given, marked for the plugin
(``ensureDeferred``: run the coroutine on the reactor; ``async_yield_fixture``:
a pytest fixture around an async generator).
"""

from collections.abc import Callable
from typing import Any, TypeVar, overload

_F = TypeVar("_F", bound=Callable[..., Any])

@overload
def ensureDeferred(f: _F, /) -> _F: ...
@overload
def ensureDeferred() -> Callable[[_F], _F]: ...
@overload
def async_fixture(f: _F, /) -> _F: ...
@overload
def async_fixture(*, scope: str = ..., name: str = ...) -> Callable[[_F], _F]: ...
@overload
def async_yield_fixture(f: _F, /) -> _F: ...
@overload
def async_yield_fixture(*, scope: str = ..., name: str = ...) -> Callable[[_F], _F]: ...
