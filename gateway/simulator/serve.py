"""`python -m gateway.simulator.serve`: the simulated suppliers of a configuration, in a process of their own.

Serves each supplier's `simulate:` block at its base_url until SIGINT or SIGTERM, for benchmarks and
soaks that must not count the simulators in the gateway's process; give the gateway a copy of the
configuration without those blocks, or it serves them too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

from gateway.config.loader import ConfigError, load_config
from gateway.config.model import GatewayConfig
from gateway.logs import configure_logging
from gateway.simulation import SimulatorFarm


def simulated_only(config: GatewayConfig, names: Sequence[str]) -> GatewayConfig:
    """`config` with only the suppliers in `names` (every simulated one when empty) left to simulate."""
    simulated = {name for name, supplier in config.suppliers.items() if supplier.simulate is not None}
    unknown = sorted(set(names) - simulated)
    if unknown:
        raise ValueError(
            f"not simulated in this configuration: {', '.join(unknown)};"
            f" simulated: {', '.join(sorted(simulated)) or 'none'}"
        )
    chosen = set(names) or simulated
    return config.model_copy(
        update={"suppliers": MappingProxyType({n: s for n, s in config.suppliers.items() if n in chosen})}
    )


async def serve(config: GatewayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    farm = SimulatorFarm(config)
    try:
        await farm.start()
        await stop.wait()
    finally:
        await farm.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.simulator.serve", description=__doc__)
    parser.add_argument("-c", "--config", default=os.environ.get("GATEWAY_CONFIG", "gateway.yaml"))
    parser.add_argument(
        "--supplier", action="append", default=[], help="serve only this one (repeatable; default: all)"
    )
    args = parser.parse_args(argv)
    try:
        config = simulated_only(load_config(Path(args.config), os.environ), args.supplier)
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem.path}: {problem.message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 1
    configure_logging(config.log)
    try:
        asyncio.run(serve(config))
    except OSError as exc:  # a base_url's port taken
        print(f"simulators: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
