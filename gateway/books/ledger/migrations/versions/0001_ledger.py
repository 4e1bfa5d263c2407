"""The ledger: one row per request, one per upstream call.

On PostgreSQL both tables are partitioned by day on ``created_at``: the writer creates each day's
partition before writing into it, and retention drops whole partitions instead of deleting rows.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def _partitioned() -> dict[str, Any]:
    return {"postgresql_partition_by": "RANGE (created_at)"} if op.get_bind().dialect.name == "postgresql" else {}


def _keys() -> list[sa.Column[object]]:
    return [
        sa.Column("row_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "ledger_requests",
        *_keys(),
        sa.Column("request_id", sa.String(160), nullable=False),
        sa.Column("parent_id", sa.String(160)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(32)),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("pool", sa.String(200)),
        sa.Column("mode", sa.String(16)),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("degraded", sa.Boolean, nullable=False),
        *(sa.Column(c, sa.Float) for c in ("latency_ms", "fanout_ms", "slowest_member_ms")),
        sa.Column("rounds_ms", sa.JSON),
        *(sa.Column(c, sa.Float) for c in ("judge_ms", "gateway_ms", "escalation_ms")),
        *(sa.Column(c, sa.BigInteger) for c in ("cost_pusd", "member_cost_pusd", "judge_cost_pusd",
                                                 "saved_cost_pusd")),
        *(sa.Column(c, sa.Integer) for c in ("prompt_tokens", "completion_tokens")),
        sa.Column("usage_estimated", sa.Boolean, nullable=False),
        sa.Column("judge_status", sa.String(16)),
        sa.Column("judge_model", sa.String(200)),
        sa.Column("winner", sa.String(200)),
        sa.Column("winner_index", sa.Integer),
        sa.Column("fusion", sa.JSON),
        sa.Column("escalated", sa.Boolean),
        sa.Column("escalation_cost_pusd", sa.BigInteger),
        sa.Column("baseline_sampled", sa.Boolean, nullable=False),
        *(sa.Column(c, sa.Float) for c in ("latency_ratio", "cost_ratio")),
        sa.Column("comparison", sa.String(16)),
        *(sa.Column(c, sa.JSON) for c in ("messages", "answer")),
        sa.PrimaryKeyConstraint("row_id", "created_at"),
        **_partitioned(),
    )
    op.create_table(
        "ledger_calls",
        *_keys(),
        sa.Column("request_row", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(160), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("member", sa.Integer),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(200)),
        sa.Column("answered_by", sa.String(200)),
        sa.Column("deployment", sa.String(200)),
        sa.Column("fallback_reason", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_type", sa.String(64)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttfb_ms", sa.Float),
        *(sa.Column(c, sa.Integer) for c in ("prompt_tokens", "completion_tokens", "cached_tokens",
                                              "reasoning_tokens")),
        sa.Column("cost_pusd", sa.BigInteger),
        sa.Column("usage_estimated", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("row_id", "created_at"),
        **_partitioned(),
    )
    op.create_index("ix_ledger_requests_created", "ledger_requests", ["created_at"])
    op.create_index("ix_ledger_requests_request_id", "ledger_requests", ["request_id"])
    op.create_index("ix_ledger_requests_pool_created", "ledger_requests", ["pool", "created_at"])
    op.create_index("ix_ledger_requests_key_created", "ledger_requests", ["key_name", "created_at"])
    op.create_index("ix_ledger_calls_request_row", "ledger_calls", ["request_row"])
    op.create_index("ix_ledger_calls_model_created", "ledger_calls", ["model", "created_at"])
