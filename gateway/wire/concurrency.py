"""Structured-concurrency helpers on top of anyio."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def beside(main: Awaitable[T], *helpers: Callable[[], Coroutine[Any, Any, object]]) -> T:
    """Await ``main`` while ``helpers`` run next to it in one task group; the helpers are cancelled as soon
    as ``main`` ends. Unlike a bare task group, an exception from ``main`` comes out as itself, not
    wrapped in an ExceptionGroup, so callers can catch the gateway's own errors."""
    result: list[T] = []
    failure: list[BaseException] = []
    async with anyio.create_task_group() as tg:
        for helper in helpers:
            tg.start_soon(helper)
        try:
            result.append(await main)
        except BaseException as exc:  # re-raised below, outside the group
            failure.append(exc)
        finally:
            tg.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return result[0]
