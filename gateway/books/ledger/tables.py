"""The ledger's schema as SQLAlchemy Core tables: one row per request, one per upstream call.

Money is stored as integer picodollars (10^-12 USD): sums stay exact on every backend (SQLite has no
decimal type) and any price written with up to six decimals per million tokens is represented exactly.
NULL cost means unknown (a model without a price), never 0. Both tables are keyed by ``(row_id,
created_at)``: on PostgreSQL they are partitioned by day on ``created_at`` (see the migrations), and a
partitioned table's keys must include the partition column.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: what a request was: a model called directly, a pool, a pool's shadow baseline, answered from the response
#: cache (no call made), or refused before any call
KINDS = ("passthrough", "pool", "baseline", "cached", "refused")

requests = sa.Table(
    "ledger_requests",
    metadata,
    sa.Column("row_id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("request_id", sa.String(160), nullable=False),
    #: the request a shadow baseline record belongs to
    sa.Column("parent_id", sa.String(160)),
    sa.Column("kind", sa.String(16), nullable=False),
    #: the inbound API: /v1/chat/completions, /v1/responses, /v1/messages, /v1/embeddings
    sa.Column("endpoint", sa.String(32)),
    sa.Column("key_name", sa.String(200), nullable=False),
    sa.Column("model", sa.String(200)),  # what the caller asked for: a model or a pool
    sa.Column("pool", sa.String(200)),
    sa.Column("mode", sa.String(16)),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("error_code", sa.String(64)),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("degraded", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Float),
    sa.Column("fanout_ms", sa.Float),
    sa.Column("slowest_member_ms", sa.Float),
    sa.Column("rounds_ms", sa.JSON),
    sa.Column("judge_ms", sa.Float),
    sa.Column("gateway_ms", sa.Float),
    sa.Column("escalation_ms", sa.Float),
    sa.Column("cost_pusd", sa.BigInteger),
    sa.Column("member_cost_pusd", sa.BigInteger),
    sa.Column("judge_cost_pusd", sa.BigInteger),
    #: a cache hit: what the answer cost when it was made (the hit itself costs 0)
    sa.Column("saved_cost_pusd", sa.BigInteger),
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    sa.Column("usage_estimated", sa.Boolean, nullable=False),
    sa.Column("judge_status", sa.String(16)),
    sa.Column("judge_model", sa.String(200)),
    sa.Column("winner", sa.String(200)),
    sa.Column("winner_index", sa.Integer),
    #: a pool's answer: its whole ``fusion`` object as the caller got it (verdict, consensus, analysis...)
    sa.Column("fusion", sa.JSON),
    #: a cascade: whether it escalated, and what the escalation pool cost when it did
    sa.Column("escalated", sa.Boolean),
    sa.Column("escalation_cost_pusd", sa.BigInteger),
    sa.Column("baseline_sampled", sa.Boolean, nullable=False),
    #: shadow baseline rows: fused / baseline ratios and the pairwise verdict (fusion, baseline, tie, error)
    sa.Column("latency_ratio", sa.Float),
    sa.Column("cost_ratio", sa.Float),
    sa.Column("comparison", sa.String(16)),
    #: prompt and answer, only with ``ledger.content: true``
    sa.Column("messages", sa.JSON),
    sa.Column("answer", sa.JSON),
)

calls = sa.Table(
    "ledger_calls",
    metadata,
    sa.Column("row_id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("request_row", sa.String(32), nullable=False),
    sa.Column("request_id", sa.String(160), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    #: passthrough, member, debate_round, judge, baseline, comparison (the pairwise judge)
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("member", sa.Integer),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(200)),
    #: a model with deployments or fallbacks: the model that answered, on which deployment, and why a
    #: fallback did (failure, rate_limited, unavailable)
    sa.Column("answered_by", sa.String(200)),
    sa.Column("deployment", sa.String(200)),
    sa.Column("fallback_reason", sa.String(32)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_type", sa.String(64)),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ttfb_ms", sa.Float),
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    sa.Column("cached_tokens", sa.Integer),
    sa.Column("reasoning_tokens", sa.Integer),
    sa.Column("cost_pusd", sa.BigInteger),
    sa.Column("usage_estimated", sa.Boolean, nullable=False),
)

sa.Index("ix_ledger_requests_created", requests.c.created_at)
sa.Index("ix_ledger_requests_request_id", requests.c.request_id)
sa.Index("ix_ledger_requests_pool_created", requests.c.pool, requests.c.created_at)
sa.Index("ix_ledger_requests_key_created", requests.c.key_name, requests.c.created_at)
sa.Index("ix_ledger_calls_request_row", calls.c.request_row)
sa.Index("ix_ledger_calls_model_created", calls.c.model, calls.c.created_at)
