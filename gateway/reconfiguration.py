"""Reloading `gateway.yaml` while running (SIGHUP, POST /admin/reload): check, then apply in one step.

An invalid file, or a change that cannot be made live, is refused whole and the running
configuration stays. What only a restart can change (listeners, store, logging, simulators) is
applied at the next start and reported as such.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from gateway.catalog import Catalog
from gateway.config.loader import ConfigError, Problem, load_config
from gateway.config.model import GatewayConfig
from gateway.logs import get_logger
from gateway.runtime import Runtime
from gateway.suppliers import update_suppliers

log = get_logger(__name__)


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


def apply_config(runtime: Runtime, new: GatewayConfig) -> Reloaded:
    """Swap every live part to `new` without awaiting, so no order sees half of each configuration."""
    problems = live_problems(runtime.config, new)
    if problems:
        raise ConfigError(problems, source="reload")
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
    runtime.notifier.reconfigure(new.notify, secrets)
    runtime.auth.replace_secrets(secrets)
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
    return apply_config(runtime, new)
