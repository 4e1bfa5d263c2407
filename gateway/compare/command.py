"""The ``compare`` subcommand: arguments, checks before any request, the run, the reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from gateway.compare.advice import all_wrong_warning
from gateway.compare.client import GatewayClient, GatewayUnreachable, RetryPolicy, normalize_url
from gateway.compare.dataset import DatasetError, Item, load_dataset
from gateway.compare.progress import Progress
from gateway.compare.report_html import render_html
from gateway.compare.report_md import render_markdown
from gateway.compare.runner import Plan, Runner, System
from gateway.compare.scoring import NAMES, Scorer, parse_scorer
from gateway.compare.store import jsonable
from gateway.compare.summary import build_summary
from gateway.config import default_config_path, load_server_config, server_url
from gateway.wire.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
NO_JUDGE = "none"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help='chat fine-tuning JSONL: one {"messages": [...]} per line')
    p.add_argument(
        "--pool",
        action="append",
        required=True,
        dest="pools",
        metavar="NAME",
        help="a pool (or any model) to compare; repeat for several",
    )
    p.add_argument("--baseline", required=True, metavar="MODEL", help="the fine-tuned model to compare against")
    p.add_argument(
        "--url",
        default=None,
        help="the gateway (default: the server address of --config, $FUSION_GATEWAY_CONFIG or the default config)",
    )
    p.add_argument("--config", default=None, help="read the gateway's address from this config file")
    p.add_argument(
        "--api-key",
        default=os.environ.get("FUSION_GATEWAY_API_KEY"),
        help="sent as a bearer token (default: $FUSION_GATEWAY_API_KEY)",
    )
    p.add_argument("--concurrency", type=_positive_int, default=8, help="requests in flight (default: %(default)s)")
    p.add_argument("--limit", type=_positive_int, default=None, help="only the first N items")
    p.add_argument("--out", default="results", help="results and reports go here (default: %(default)s/)")
    p.add_argument(
        "--baseline-training-usd",
        type=_usd,
        default=None,
        metavar="X",
        help="one-off cost of fine-tuning the baseline, for the break-even volume",
    )
    p.add_argument(
        "--scorer",
        default="normalized",
        metavar="|".join(NAMES),
        help="how an answer is checked against the reference (default: %(default)s)",
    )
    p.add_argument(
        "--judge",
        default=None,
        metavar="MODEL",
        help="judge for pairwise preferences (default: the judge of the first pool that has one; "
        f"'{NO_JUDGE}' skips them)",
    )
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per request (default: %(default)s)")
    p.add_argument(
        "--retries", type=int, default=4, help="retries on 429, 5xx, connection errors (default: %(default)s)"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError("must be a non-negative amount of USD")
    return value


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    err: TextIO = sys.stderr
    try:
        scorer = parse_scorer(args.scorer)
    except ValueError as exc:
        print(f"compare: --scorer: {exc}", file=err)
        return EXIT_USAGE
    try:
        items = load_dataset(args.dataset)
    except DatasetError as exc:
        for problem in exc.problems:
            print(f"{exc.path}: {problem}", file=err)
        print(f"compare: {exc.path}: {len(exc.problems)} bad line(s); nothing was sent", file=err)
        return EXIT_USAGE
    if args.limit is not None:
        items = items[: args.limit]
    problems = [
        f"{args.dataset}: line {item.line}: {why}" for item in items if (why := scorer.check_reference(item.reference))
    ]
    if problems:
        print("\n".join(problems), file=err)
        print(
            f"compare: {len(problems)} item(s) cannot be scored with --scorer {scorer.label}; nothing was sent",
            file=err,
        )
        return EXIT_USAGE
    if args.baseline in args.pools:
        print(f"compare: '{args.baseline}' is the baseline; it cannot also be a --pool", file=err)
        return EXIT_USAGE
    pools = list(dict.fromkeys(args.pools))
    if args.url is None:
        path = args.config or default_config_path()
        try:
            args.url = server_url(load_server_config(path))
        except ConfigError as exc:
            print(exc.message, file=err)
            print(f"compare: cannot read the gateway's address from {path}: give it with --url", file=err)
            return EXIT_USAGE
        print(f"compare: gateway {args.url} (server address of {path}; --url to change)", file=err)
    try:
        return asyncio.run(_compare(args, items, pools, scorer, err, argv))
    except KeyboardInterrupt:
        print(
            f"\ncompare: interrupted; finished results are in {args.out}/. Run the same command again to resume.",
            file=err,
        )
        return EXIT_INTERRUPTED


async def _compare(
    args: argparse.Namespace, items: list[Item], pools: list[str], scorer: Scorer, err: TextIO, argv: list[str] | None
) -> int:
    progress = Progress(0, err)
    client = GatewayClient(
        url=args.url,
        api_key=args.api_key,
        timeout_s=args.timeout,
        retry=RetryPolicy(max_retries=max(0, args.retries)),
        on_retry=progress.retry,
    )
    async with client:
        try:
            listed = await client.models()
        except GatewayUnreachable as exc:
            print(f"compare: {exc}", file=err)
            return EXIT_FAILED
        plan = _plan(items, listed, pools, args.baseline, args.judge, err)
        if plan is None:
            return EXIT_USAGE
        out = Path(args.out)
        runner = Runner(client, plan, out, args.concurrency, progress)
        stats = await runner.run()
    summary = build_summary(
        runner,
        scorer,
        args.baseline_training_usd,
        dataset=args.dataset,
        url=normalize_url(args.url),
        command=redact(argv) if argv is not None else None,
    )
    warning = all_wrong_warning(runner, scorer)
    if warning is not None:
        summary["warnings"].append(warning)
        print(f"compare: warning: {warning}", file=err)
    write_reports(summary, out)
    # The findings and where they are written go to stdout (progress and warnings to stderr), so that
    # `compare ... > run.txt` keeps what matters.
    for cmp in summary["comparisons"]:
        print(cmp["headline"])
    print(f"results: {out / 'results.jsonl'}")
    print(f"report:  {out / 'report.html'}")
    print(f"         {out / 'report.md'}")
    print(f"summary: {out / 'summary.json'}")
    if stats.gave_up is not None:
        print(
            f"compare: stopped early: {stats.gave_up}. Finished results are kept in {out}/; run the same "
            "command again to resume.",
            file=err,
        )
        return EXIT_FAILED
    if stats.failed:
        print(
            f"compare: {stats.failed} request(s) failed after retries; run the same command again to retry them",
            file=err,
        )
        return EXIT_FAILED
    return EXIT_OK


def redact(argv: list[str]) -> list[str]:
    """The command line as the report shows it: never with the API key."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
        elif arg == "--api-key":
            out.append(arg)
            hide_next = True
        elif arg.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            out.append(arg)
    return out


def _plan(
    items: list[Item], listed: list[dict[str, Any]], pools: list[str], baseline: str, judge: str | None, err: TextIO
) -> Plan | None:
    by_id = {str(m.get("id")): m for m in listed}
    unknown = [n for n in [*pools, baseline] if n not in by_id]
    if judge not in (None, NO_JUDGE) and judge not in by_id:
        unknown.append(judge)
    if unknown:
        print(
            f"compare: not at the gateway: {', '.join(unknown)} (it serves: {', '.join(by_id) or 'nothing'})", file=err
        )
        return None
    systems = [_system(n, by_id[n]) for n in pools]
    if judge is None:
        judge = next((s.judge for s in systems if s.judge), None)
        if judge is None:
            print(f"compare: no --pool has a judge; name one with --judge MODEL (or --judge {NO_JUDGE})", file=err)
            return None
    return Plan(
        items=items,
        baseline=_system(baseline, by_id[baseline]),
        pools=systems,
        judge=None if judge == NO_JUDGE else judge,
    )


def _system(name: str, listed: dict[str, Any]) -> System:
    fusion = listed.get("fusion")
    if isinstance(fusion, dict):
        return System(
            name=name,
            kind="pool",
            mode=str(fusion.get("mode")),
            members=tuple(str(m) for m in fusion.get("members") or ()),
            judge=str(fusion["judge"]) if fusion.get("judge") else None,
        )
    return System(name=name, kind="model")


def write_reports(summary: dict[str, Any], out: Path) -> None:
    data = jsonable(summary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(data), encoding="utf-8")
    (out / "report.html").write_text(render_html(data), encoding="utf-8")
