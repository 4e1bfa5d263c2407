"""``fusion-gateway``: serve, check, simulate, compare."""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
from collections.abc import Sequence

from gateway.books import logs
from gateway.config import CONFIG_ENV, GatewayConfig, default_config_path, load_config
from gateway.config.schema import SimulatorProviderConfig
from gateway.pipeline.auth import is_loopback
from gateway.wire.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusion-gateway", description="Multi-model fusion gateway.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config", default=None, help="config file (default: $FUSION_GATEWAY_CONFIG or config/gateway.yaml)"
    )
    serve.add_argument("--host", default=None, help="override server.host")
    serve.add_argument("--port", type=int, default=None, help="override server.port")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (metrics are aggregated across them)")

    check = sub.add_parser("check", help="validate a config file and print a summary")
    check.add_argument("path", nargs="?", default=None)

    sim = sub.add_parser("simulate", help="serve the simulated models as an OpenAI-compatible server")
    sim.add_argument("--config", default=None, help="take simulator profiles from this config")
    sim.add_argument("--provider", default=None, help="which simulator provider of the config (default: the first)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8100)

    rep = sub.add_parser("report", help="print /v1/fusion/stats of a running gateway, with a verdict per pool")
    rep.add_argument("--url", default="http://127.0.0.1:8000")
    rep.add_argument("--api-key", default=None, help="client key (default: $FUSION_GATEWAY_API_KEY)")

    from gateway.compare.command import add_arguments as add_compare_arguments

    compare = sub.add_parser("compare", help="compare pools with a fine-tuned baseline on a dataset, offline")
    add_compare_arguments(compare)

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "check":
        return _check(args.path or default_config_path())
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "report":
        return _report(args)
    if args.command == "compare":
        from gateway.compare.command import run as run_compare

        return run_compare(args, list(argv) if argv is not None else sys.argv[1:])
    return 2


def _load(path: str) -> GatewayConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return None


def _check(path: str) -> int:
    config = _load(path)
    if config is None:
        return 1
    print(summary(config))
    return 0


def summary(config: GatewayConfig) -> str:
    lines = [f"{config.path}: OK", f"server: http://{config.server.host}:{config.server.port}/v1"]
    lines.append(f"providers ({len(config.providers)}):")
    for name, p in config.providers.items():
        where = getattr(p, "base_url", "in-process")
        lines.append(f"  {name:<16} {p.type:<10} {where}")
    lines.append(f"models ({len(config.models)}):")
    for name, m in config.models.items():
        price = f"${m.price.input}/${m.price.output} per 1M in/out" if m.price else "no price (cost unknown)"
        lines.append(f"  {name:<16} {m.provider}:{m.upstream}  {price}")
    lines.append(f"pools ({len(config.pools)}):")
    for name, pool in config.pools.items():
        judge = pool.judge.model if pool.judge else "-"
        extra = f", baseline {pool.baseline.model} @ {pool.baseline.sample_rate:.0%}" if pool.baseline else ""
        lines.append(f"  {name:<16} {pool.mode:<8} members {', '.join(pool.members)}; judge {judge}{extra}")
    return "\n".join(lines)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app, tune_gc

    path = args.config or default_config_path()
    config = _load(path)
    if config is None:
        return 1
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    log = logs.configure(config.logging.level)
    if not config.auth.keys:
        if not is_loopback(host):
            log.error(
                f"refusing to serve on {host}: no client keys are configured (auth.keys), so anyone who can reach "
                "this address could spend the upstream credits. Add keys, or bind to 127.0.0.1."
            )
            return 2
        log.warning("no client keys configured: serving without authentication on loopback only",
                    extra={"fields": {"host": host}})
    if args.workers > 1:
        # Each worker builds its own app from the environment; metrics go through prometheus_client's
        # multiprocess files so that any worker's /metrics shows the whole process tree.
        os.environ[CONFIG_ENV] = os.path.abspath(path)
        metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="fusion-metrics-"))
        os.makedirs(metrics_dir, exist_ok=True)
        for stale in glob.glob(os.path.join(metrics_dir, "*.db")):
            os.remove(stale)  # values of an earlier run would otherwise be added to this one's
        target: object = "gateway.app:create_app_from_env"
    else:
        try:
            target = create_app(config, path)
        except ImportError as exc:  # an optional extra the config needs (tracing) is not installed
            log.error(str(exc))
            return 1
        tune_gc()
    uvicorn.run(
        target,  # type: ignore[arg-type]
        factory=args.workers > 1,
        workers=args.workers,
        host=host,
        port=port,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        # The gateway writes one access line per request itself (with tokens, cost, key); uvicorn's own
        # lines (start-up, errors) are JSON through the same formatter.
        access_log=False,
        log_config=logs.server_log_config(config.logging.level),
        proxy_headers=False,  # the gateway does not use the client address; skip the per-request rewrite
        server_header=False,  # no "server: uvicorn": nothing to gain from advertising the stack
        # A little longer than our own grace: streams still open when it runs out end with an in-band
        # error first, then the server closes what is left.
        timeout_graceful_shutdown=int(config.server.shutdown_grace_s) + 2,
        backlog=4096,
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.providers.simulator.server import SimulatorApp

    sim_config = SimulatorProviderConfig(type="simulator")
    if args.config:
        config = _load(args.config)
        if config is None:
            return 1
        sims = {n: p for n, p in config.providers.items() if isinstance(p, SimulatorProviderConfig)}
        if args.provider:
            if args.provider not in sims:
                print(
                    f"no simulator provider '{args.provider}' in {args.config} (have: {', '.join(sims) or 'none'})",
                    file=sys.stderr,
                )
                return 1
            sim_config = sims[args.provider]
        elif sims:
            sim_config = next(iter(sims.values()))
    uvicorn.run(
        SimulatorApp(sim_config),
        host=args.host,
        port=args.port,
        loop="uvloop" if _has("uvloop") else "asyncio",
        access_log=False,
        log_level="warning",
    )
    return 0




def _report(args: argparse.Namespace) -> int:
    import os

    import httpx

    from gateway.books.report import fetch, render

    try:
        stats = fetch(args.url, args.api_key or os.environ.get("FUSION_GATEWAY_API_KEY"))
    except httpx.HTTPError as exc:
        print(f"cannot read {args.url}/v1/fusion/stats: {exc}", file=sys.stderr)
        return 1
    print(render(stats))
    return 0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    raise SystemExit(main())
