"""Wall-clock limits for upstream calls.

``asyncio.timeout`` rather than ``anyio.fail_after`` on the request path: it is the same structured
construct (a scope that raises ``TimeoutError``), costs about a third as much (4 us against 11 us per
use, measured with uvloop on the reference machine), and a request makes several. It counts its
cancellation with ``Task.uncancel`` like anyio's scopes, so the two nest safely.
"""

from __future__ import annotations

import asyncio


def within(seconds: float) -> asyncio.Timeout:
    """``async with within(s):`` raises ``TimeoutError`` if the block is still running after ``s`` seconds."""
    return asyncio.timeout(max(0.0, seconds))
