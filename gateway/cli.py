"""``fusion-gateway``: serve, check, simulate, report, compare, db upgrade, export."""

from __future__ import annotations

import argparse
import errno
import glob
import os
import socket
import sys
import tempfile
from collections.abc import Sequence, Sized
from urllib.parse import urlsplit

from gateway import __version__
from gateway.books import logs
from gateway.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    GatewayConfig,
    default_config_path,
    load_config,
    load_server_config,
    server_url,
)
from gateway.config.providers import SimulatorProviderConfig
from gateway.pipeline.auth import is_loopback
from gateway.wire.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusion-gateway", description="Multi-model fusion gateway.")
    parser.add_argument("--version", action="version", version=f"fusion-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config",
        default=None,
        help="config file (default: $FUSION_GATEWAY_CONFIG, else config/gateway.yaml if it exists, else the "
        "packaged offline default)",
    )
    serve.add_argument("--host", default=None, help="override server.host")
    serve.add_argument("--port", type=int, default=None, help="override server.port")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (metrics are aggregated across them)")

    check = sub.add_parser("check", help="validate a config file and print a summary")
    check.add_argument("path", nargs="?", default=None)

    init = sub.add_parser("init", help="write a starter config (and commented examples) to edit")
    init.add_argument("dir", nargs="?", default="config", help="where to write gateway.yaml (default: config)")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")

    sim = sub.add_parser("simulate", help="serve the simulated models as an OpenAI-compatible server")
    sim.add_argument("--config", default=None, help="take simulator profiles from this config")
    sim.add_argument("--provider", default=None, help="which simulator provider of the config (default: the first)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8100)

    from gateway.books.ledger.command import add_db_argument

    rep = sub.add_parser("report", help="print /v1/fusion/stats of a running gateway (or of a ledger database, "
                                        "with --db), with a verdict per pool")
    rep.add_argument("--url", default=None, help="the gateway (default: the server address of --config)")
    rep.add_argument("--config", default=None, help="read the gateway's address from this config file")
    rep.add_argument("--api-key", default=None, help="client key (default: $FUSION_GATEWAY_API_KEY)")
    rep.add_argument("--db", default=None, help="read this ledger database instead of a running gateway")
    rep.add_argument("--since", default=None, help="only records this recent: 24h, 7d, ... (with --db)")

    db = sub.add_parser("db", help="the ledger's database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply the ledger's schema migrations")
    add_db_argument(upgrade)

    exp = sub.add_parser("export", help="a pool's answers from the ledger as OpenAI chat fine-tuning JSONL")
    add_db_argument(exp)
    exp.add_argument("--pool", required=True)
    exp.add_argument("--since", default=None, help="only answers this recent: 24h, 7d, ...")
    exp.add_argument("--winners-only", action="store_true",
                     help="only answers the pairwise judge preferred to the baseline's")

    from gateway.compare.command import add_arguments as add_compare_arguments

    compare = sub.add_parser("compare", help="compare pools with a fine-tuned baseline on a dataset, offline")
    add_compare_arguments(compare)

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "check":
        return _check(args.path or default_config_path())
    if args.command == "init":
        return _init(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "report":
        if args.db:
            from gateway.books.ledger.command import report

            return report(args)
        return _report(args)
    if args.command == "db":
        from gateway.books.ledger.command import db_upgrade

        return db_upgrade(args)
    if args.command == "export":
        from gateway.books.ledger.command import export

        return export(args)
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


def _init(args: argparse.Namespace) -> int:
    from gateway.config.starter import write_starter

    try:
        written = write_starter(args.dir, force=args.force)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.dir}: cannot write the starter config: {exc.strerror or exc}", file=sys.stderr)
        return 1
    config = written.config
    print(f"wrote {config} (offline, on the built-in simulator) and {len(written.examples)} examples:")
    for example in written.examples:
        print(f"  {example}")
    serve = "fusion-gateway serve" if str(config) == DEFAULT_CONFIG_PATH else f"fusion-gateway serve --config {config}"
    print(f"next: edit {config} (or start from an example), then: fusion-gateway check {config} && {serve}")
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
        if pool.mode == "cascade" and pool.check is not None:
            check = pool.check
            checks = [k for k in ("response_format", "regex", "agree_with", "judge") if getattr(check, k)]
            what = f"first {pool.first}; check {', '.join(checks)}; escalate {pool.escalate}"
            lines.append(f"  {name:<16} cascade  {what}")
            continue
        judge = pool.judge.model if pool.judge else "-"
        extra = f", baseline {pool.baseline.model} @ {pool.baseline.sample_rate:.0%}" if pool.baseline else ""
        lines.append(f"  {name:<16} {pool.mode:<8} members {', '.join(pool.members)}; judge {judge}{extra}")
    return "\n".join(lines)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import HOST_ENV, create_app, tune_gc
    from gateway.service.front_door import WORKER_PROTOCOL, protocol_for

    path = args.config or default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        # serve writes only JSON lines (README, Logs); `check` prints the same errors as plain text
        logs.configure("info").error("config error", extra={"fields": {"path": path, "errors": exc.message}})
        return 1
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    log = logs.configure(config.logging.level)
    # Everything from here on is a JSON log line, like every line the server writes (README, Logs).
    if not config.auth.keys and not is_loopback(host):
        log.error(
            f"refusing to serve on {host}: no client keys are configured (auth.keys), so anyone who can reach "
            "this address could spend the upstream credits. Add keys, or bind to 127.0.0.1."
        )
        return 2
    busy = _port_in_use(host, port)
    if busy is not None:
        log.error(busy)
        return 1
    log.info(f"fusion-gateway {__version__}", extra={"fields": banner(config, host, port)})
    if not config.auth.keys:
        log.warning("no client keys configured: serving without authentication on loopback only",
                    extra={"fields": {"host": host}})
    _raise_open_file_limit()
    if args.workers > 1:
        # Each worker builds its own app from the environment; metrics go through prometheus_client's
        # multiprocess files so that any worker's /metrics shows the whole process tree.
        os.environ[CONFIG_ENV] = os.path.abspath(path)
        os.environ[HOST_ENV] = host
        metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="fusion-metrics-"))
        os.makedirs(metrics_dir, exist_ok=True)
        for stale in glob.glob(os.path.join(metrics_dir, "*.db")):
            os.remove(stale)  # values of an earlier run would otherwise be added to this one's
        target: object = "gateway.app:create_app_from_env"
    else:
        try:
            target = create_app(config, path, host)
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
        # worker processes import the protocol by name and read the limits from the config file
        http=WORKER_PROTOCOL if args.workers > 1 else protocol_for(config.server.limits),
        timeout_keep_alive=config.server.limits.idle_timeout_s,
        # h11 refuses a head past this itself (with a 400); a little above ours, so ours answers 431 first
        h11_max_incomplete_event_size=config.server.limits.max_header_bytes + 64 * 1024,
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


def banner(config: GatewayConfig, host: str, port: int) -> dict[str, str]:
    """What an operator wants to see once at start-up: which build, which file, where, what, how guarded.
    The fields of the start-up log line (one JSON line, like every other)."""
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    keys = config.auth.keys
    auth = (
        f"on ({_count(keys, 'client key')}"
        f"{', admin key set' if config.auth.admin_key is not None else ''})"
        if keys
        else "off (loopback only)"
    )
    redis = urlsplit(config.state.redis_url) if config.state.redis_url else None
    # the URL may carry a password: show where, never who
    state = f"redis at {redis.hostname}:{redis.port or 6379}" if redis else "in memory (this process)"
    return {
        "version": __version__,
        "config": os.path.abspath(config.path),
        "listening": f"{base}/v1",
        "playground": f"{base}/ui",
        "serving": f"{_count(config.pools, 'pool')}, {_count(config.models, 'model')}, "
        f"{_count(config.providers, 'provider')}",
        "auth": auth,
        "limits": state,
    }


def _count(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _port_in_use(host: str, port: int) -> str | None:
    """One clear line when the address is taken, instead of the server's start-up and shutdown logs."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # the same option the server sets: a port in TIME_WAIT is free for it, so it is free here too
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (another gateway?): stop it, or pick another "
                        "port with --port or server.port")
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def _raise_open_file_limit() -> None:
    """Soft open-file limit up to the hard one: client connections and upstream connections both take
    descriptors, and the default soft limit (often 1,024) would bite before ``server.limits.max_connections``."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        return  # not on this platform, or not allowed: the limit stays as it was


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

    if args.url is None:
        path = args.config or default_config_path()
        try:
            args.url = server_url(load_server_config(path))
        except ConfigError as exc:
            print(f"{exc.message}\nreport: cannot read the gateway's address from {path}: give it with --url",
                  file=sys.stderr)
            return 1
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
