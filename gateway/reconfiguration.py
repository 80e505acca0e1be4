"""Reloading `gateway.yaml` while running (SIGHUP, POST /admin/reload): check, then apply in one step.

An invalid file, or a change that cannot be made live, is refused whole and the running
configuration stays. What only a restart can change (listeners, store, logging, simulators) is
applied at the next start and reported as such. A supplier keeps the system it answers from
(protocol, base_url, credentials) while any of its attempts is open.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from adapters.interface import Outcome
from gateway.catalog import Catalog
from gateway.config.loader import ConfigError, Problem, load_config
from gateway.config.model import GatewayConfig
from gateway.logs import get_logger
from gateway.order import Order
from gateway.runtime import Runtime
from gateway.store import StoreError
from gateway.suppliers import Supplier, update_suppliers

log = get_logger(__name__)

WHERE_KEYS: Final = ("protocol", "base_url", "credentials")
"""What says which system a supplier's past attempts live in, and how to ask it about them."""

OPEN_SCAN_LIMIT: Final = 100_000
"""Open orders read to find a supplier's open attempts; with more, a move is refused unseen."""

OPEN_OUTCOMES: Final = frozenset({Outcome.PROCESSING, Outcome.UNKNOWN})
SHOWN_IDS: Final = 3


@dataclass(frozen=True, slots=True)
class Reloaded:
    restart_required: tuple[str, ...]  # key paths whose new values wait for a restart


def restart_only_changes(old: GatewayConfig, new: GatewayConfig) -> tuple[str, ...]:
    changed = [key for key in ("server", "admin", "store", "log") if getattr(old, key) != getattr(new, key)]
    for name, supplier in new.suppliers.items():
        before = old.suppliers.get(name)
        if (before.simulate if before is not None else None) != supplier.simulate:
            changed.append(f"suppliers.{name}.simulate")
    return tuple(changed)


def live_problems(old: GatewayConfig, new: GatewayConfig) -> list[Problem]:
    """Changes a running gateway must refuse: a supplier's protocol is how its past attempts are read."""
    return [
        Problem(
            f"suppliers.{name}.protocol", f"cannot change from {before.protocol!r} while running; restart"
        )
        for name, supplier in new.suppliers.items()
        if (before := old.suppliers.get(name)) is not None and before.protocol != supplier.protocol
    ]


def moved_suppliers(suppliers: Mapping[str, Supplier], new: GatewayConfig) -> dict[str, tuple[str, ...]]:
    """Known suppliers (live or retired) that `new` sends elsewhere: name -> the keys that changed.

    A live supplier's protocol change is refused outright (`live_problems`); a retired one's
    counts here, since it may come back under another protocol once nothing of it is open.
    """
    moved: dict[str, tuple[str, ...]] = {}
    for name, after in new.suppliers.items():
        known = suppliers.get(name)
        if known is None:
            continue
        keys = tuple(key for key in WHERE_KEYS if getattr(known.config, key) != getattr(after, key))
        if not known.retired:
            keys = tuple(key for key in keys if key != "protocol")
        if keys:
            moved[name] = keys
    return moved


@dataclass(frozen=True, slots=True)
class OpenAttempts:
    """A supplier's attempts whose outcome its system has still to tell."""

    upstream_ids: tuple[str, ...]  # least recently updated first
    complete: bool  # False when the scan hit its limit: there may be more, anywhere


async def open_attempts(runtime: Runtime, names: Sequence[str]) -> dict[str, OpenAttempts]:
    """Per supplier of `names`, its attempts that are `processing` or `unknown` on a non-final order."""
    orders = await runtime.store.processing_orders(limit=OPEN_SCAN_LIMIT)
    complete = len(orders) < OPEN_SCAN_LIMIT
    return {name: OpenAttempts(_open_ids(orders, name), complete) for name in names}


def _open_ids(orders: Sequence[Order], supplier: str) -> tuple[str, ...]:
    return tuple(
        attempt.upstream_order_id
        for order in orders
        if not order.status.final
        for attempt in order.attempts
        if attempt.supplier == supplier and attempt.outcome in OPEN_OUTCOMES
    )


@dataclass(frozen=True, slots=True)
class Traffic:
    """A supplier's request counters at one moment."""

    admissions: int
    inflight: int

    @classmethod
    def of(cls, supplier: Supplier) -> Traffic:
        return cls(supplier.admissions, supplier.inflight)


def move_problems(
    moved: Mapping[str, tuple[str, ...]],
    found: Mapping[str, OpenAttempts],
    before: Mapping[str, Traffic],
    after: Mapping[str, Traffic],
) -> list[Problem]:
    """Moves that would send queries about open attempts to another system.

    There, "not found" would read as "not executed" and the order would fail over: a second
    charge for one the first supplier may have made. So a move waits until nothing of the
    supplier is open, nor could have opened unseen: a request under way when the store was read,
    or admitted since, may carry an attempt the read did not show.
    """
    problems: list[Problem] = []
    for name, keys in moved.items():
        attempts = found[name]
        busy = before[name].inflight or after[name] != before[name]
        if attempts.upstream_ids:
            count = len(attempts.upstream_ids)
            shown = ", ".join(attempts.upstream_ids[:SHOWN_IDS])
            more = ", ..." if count > SHOWN_IDS else ""
            why = (
                f'supplier "{name}" has {count} open attempt(s) ({shown}{more}); queries about them '
                'would go to another system, where "not found" would look like "not executed" and '
                f'fail the order over (a double charge): disable "{name}" and reload once they have settled'
            )
        elif busy:
            why = (
                f'supplier "{name}" is being sent requests, which may open attempts: disable "{name}" '
                "and reload once its open attempts have settled"
            )
        elif not attempts.complete:
            why = (
                f'more than {OPEN_SCAN_LIMIT} orders are open, so whether supplier "{name}" has open '
                "attempts is not known: reload once fewer are open"
            )
        else:
            continue
        problems.extend(Problem(f"suppliers.{name}.{key}", f"cannot change while {why}") for key in keys)
    return problems


async def reload_config(runtime: Runtime, new: GatewayConfig) -> Reloaded:
    """Check `new` against the running gateway and its open attempts, then apply it in one step."""
    async with runtime.reloading:
        problems = live_problems(runtime.config, new)
        if problems:
            raise ConfigError(problems, source="reload")
        moved = moved_suppliers(runtime.suppliers, new)
        if moved:
            before = {name: Traffic.of(runtime.suppliers[name]) for name in moved}
            try:
                found = await open_attempts(runtime, list(moved))
            except StoreError as exc:
                # Unable to look is no licence to move: refused like any other problem, nothing applied.
                raise ConfigError(
                    [
                        Problem(f"suppliers.{name}.{key}", f"cannot tell whether it has open attempts: {exc}")
                        for name, keys in moved.items()
                        for key in keys
                    ],
                    source="reload",
                ) from exc
            # Read again after the store, with no await until the swap: nothing can slip in between.
            after = {name: Traffic.of(runtime.suppliers[name]) for name in moved}
            problems = move_problems(moved, found, before, after)
            if problems:
                raise ConfigError(problems, source="reload")
        return _apply(runtime, new)


def _apply(runtime: Runtime, new: GatewayConfig) -> Reloaded:
    """Swap every live part to `new` without awaiting, so no order sees half of each configuration."""
    restart = restart_only_changes(runtime.config, new)
    catalog = Catalog(new)
    secrets = {name: shop.secret.reveal().encode() for name, shop in new.shops.items()}
    update_suppliers(
        runtime.suppliers,
        new,
        runtime.metrics,
        clock=runtime.clock,
        rng=runtime.rng,
        rate_state=runtime.rate_state,
    )
    runtime.orders.reconfigure(new.orders, catalog)
    runtime.reconciler.reconfigure(new.orders)
    runtime.notifier.reconfigure(
        new.notify, secrets, {name: shop.notify_hosts for name, shop in new.shops.items()}
    )
    runtime.auth.replace_secrets(secrets)
    runtime.auth.replace_rate_limits({name: shop.rate_limit for name, shop in new.shops.items()})
    runtime.catalog = catalog
    runtime.config = new
    log.info(
        "config_reloaded",
        suppliers=len(new.suppliers),
        products=len(new.products),
        shops=len(new.shops),
        restart_required=list(restart),
    )
    return Reloaded(restart_required=restart)


async def reload_from_file(runtime: Runtime) -> Reloaded:
    """Re-read the file the gateway started from; `ConfigError` (nothing applied) if it is refused."""
    if runtime.config_path is None:
        raise ConfigError([Problem("", "the gateway was not started from a file")], source="reload")
    # Reading and parsing a file blocks: off the event loop.
    new = await asyncio.to_thread(load_config, runtime.config_path, dict(os.environ))
    return await reload_config(runtime, new)
