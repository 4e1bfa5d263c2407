"""Writes ``arithmetic.jsonl`` beside this file: 240 arithmetic questions in OpenAI's chat fine-tuning format.

Deterministic (fixed seed, no dependencies): running it again gives the same file byte for byte.
Each line is a system message, a question ("What is 37 * 12?") and the reference answer ("The answer is
444."), so ``fusion-gateway compare --scorer numeric`` checks the last number of each answer.

On the default simulator config (``config/gateway.yaml``) the outcome is known in advance: the three
members are each right about 70% of the time, the fine-tuned ``sim-ft`` about 76%, and best-of-3 (the
judge picks the majority answer) about 84%, at many times the cost of one call.

    python config/datasets/make_arithmetic.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20240808
COUNT = 240
SYSTEM = "You are a careful calculator. Show the working briefly, then end with: The answer is N."


def questions(seed: int = SEED, count: int = COUNT) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    while len(out) < count:
        op = rng.choice("+-*")
        if op == "*":
            a, b = rng.randint(11, 99), rng.randint(3, 49)
            value = a * b
        elif op == "+":
            a, b = rng.randint(100, 9999), rng.randint(100, 9999)
            value = a + b
        else:
            a, b = rng.randint(500, 9999), rng.randint(10, 499)
            value = a - b
        q = f"What is {a} {op} {b}?"
        if q in seen:
            continue
        seen.add(q)
        out.append((q, value))
    return out


def lines() -> list[str]:
    return [
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": f"The answer is {value}."},
                ]
            }
        )
        for q, value in questions()
    ]


if __name__ == "__main__":
    path = Path(__file__).with_name("arithmetic.jsonl")
    path.write_text("\n".join(lines()) + "\n", encoding="utf-8")
    print(f"wrote {COUNT} items to {path}")
