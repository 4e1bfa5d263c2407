"""Per-key request rates and daily budgets.

- ``rpm``: a sliding window of the last 60 seconds (exact, unlike fixed windows or token buckets, which
  let up to twice the rate through around a boundary). Refused with the seconds until a slot frees.
- ``budget_usd_per_day`` (UTC days): a request reserves its worst-case cost before any upstream call and
  settles with its real cost afterwards. Admission needs ``spent + reserved < budget``, so however many
  requests race for the last dollar, the overspend is at most the last admitted request's cost.

Amounts are integer nano-USD, so Redis (whose scripts count in doubles) stays exact.
This module keeps state in memory; :mod:`gateway.books.limits_redis` shares it across replicas.
"""

from __future__ import annotations

import abc
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

NANO = Decimal("0.000000001")
WINDOW_S = 60.0


def to_nano(usd: Decimal) -> int:
    return int((usd / NANO).to_integral_value(rounding=ROUND_CEILING))


def from_nano(n: int) -> Decimal:
    return Decimal(n) * NANO


def utc_day(now: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y%m%d")


@dataclass(frozen=True, slots=True)
class Reservation:
    key: str
    day: str
    nano: int


class Limits(abc.ABC):
    @abc.abstractmethod
    async def hit(self, key: str, rpm: int) -> float | None:
        """Count one request; None if allowed, else the seconds until it would be."""

    @abc.abstractmethod
    async def reserve(self, key: str, budget: Decimal, amount: Decimal) -> Reservation | None:
        """Reserve ``amount`` against today's budget; None when the budget is spent."""

    @abc.abstractmethod
    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        """Release the reservation and record what was really spent."""

    @abc.abstractmethod
    async def spent(self, key: str) -> Decimal:
        """Today's spend so far (settled only)."""

    async def aclose(self) -> None:
        return None


class MemoryLimits(Limits):
    """State of this process only: right for one replica; lost on restart."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._budgets: dict[tuple[str, str], list[int]] = {}  # (key, day) -> [spent, reserved]

    async def hit(self, key: str, rpm: int) -> float | None:
        now = time.monotonic()
        window = self._hits.setdefault(key, deque())
        while window and window[0] <= now - WINDOW_S:
            window.popleft()
        if len(window) >= rpm:
            return window[0] + WINDOW_S - now
        window.append(now)
        return None

    async def reserve(self, key: str, budget: Decimal, amount: Decimal) -> Reservation | None:
        day = utc_day()
        state = self._budgets.get((key, day))
        if state is None:
            # A new day for this key: yesterday's figures are no longer needed.
            for old in [k for k in self._budgets if k[0] == key]:
                del self._budgets[old]
            state = self._budgets[(key, day)] = [0, 0]
        if state[0] + state[1] >= to_nano(budget):
            return None
        n = to_nano(amount)
        state[1] += n
        return Reservation(key, day, n)

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        state = self._budgets.setdefault((reservation.key, reservation.day), [0, 0])
        state[1] -= reservation.nano
        state[0] += to_nano(actual)

    async def spent(self, key: str) -> Decimal:
        return from_nano(self._budgets.get((key, utc_day()), [0, 0])[0])
