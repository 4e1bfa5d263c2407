"""What a simulated model answers, and how long it takes.

Answers are deterministic per (seed, model, prompt): the same question gets the same answer every time,
so demos and tests are repeatable. Timing noise and injected failures come from a separate stateful
random stream, so a retry of a failed call can succeed, as it would upstream.

- Arithmetic ("What is 37 * 12?"): correct with the profile's ``accuracy``, else off by a small amount.
- A judge prompt (read by :mod:`.prompts`): the simulated judge votes. It picks the answer most
  candidates agree on (ties broken by a hash of the text, so neither label nor position matters), and
  its merge writes that answer. This keeps the offline demo honest: fusion really beats one member.
- An analysis prompt (a merge that shows its work): the judge groups the candidates by their number,
  and wherever they contradict each other, not only when no majority exists, it checks the arithmetic
  (with its ``accuracy``, the same draw as a plain merge's check) and notes which side holds. The merge
  written from that analysis follows the side it found; otherwise it merges as without one.
- A debate revision prompt: the member adopts the majority answer of the round, if there is one.
- A request with ``tools``: a call of the tool ``tool_choice`` forces, else of the first tool, with
  arguments generated from its parameters' schema (see :mod:`.shapes`).
- Anything else: deterministic filler text of the profile's length.

What the caller asked of the answer is honoured as an upstream would: ``response_format`` (a JSON value
generated from a ``json_schema`` carrying the answer's number or text, or a ``json_object``), ``stop``,
``max_tokens`` / ``max_completion_tokens`` (``finish_reason: length``), ``n`` choices (choice 0 is the
single answer; the others are drawn as if asked again) and ``logprobs`` / ``top_logprobs`` (one entry per
streamed token, values derived from a hash of the token).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import anyio
import orjson

from gateway.books.tokens import approximate, count_messages
from gateway.books.usage import Usage
from gateway.config.providers import SimulatorProfile
from gateway.providers.simulator.prompts import Block, JudgeTask, read_debate_task, read_judge_task
from gateway.providers.simulator.shapes import json_object_for, value_for
from gateway.wire.protocol import content_text

_ARITH = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/×x])\s*(-?\d+(?:\.\d+)?)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
#: what an analysis says when the judge settled a contradiction (see ``_analysis``)
_SETTLED = re.compile(r"Worked out: [^=\"]*= (-?\d+(?:\.\d+)?)\.")
_SECTIONS = ("consensus", "contradictions", "coverage_gaps", "unique_insights", "blind_spots")
# One piece per approximate token (see gateway.books.tokens), leading whitespace attached: joined, they give
# back the text, and their count is the completion's token count.
_PIECE = re.compile(r"\s*(?:[^\W\d_]{1,4}|\d{1,3}|[^\w\s]|_)")

_WORDS = [
    "the",
    "gateway",
    "sends",
    "each",
    "request",
    "to",
    "every",
    "member",
    "and",
    "a",
    "judge",
    "combines",
    "what",
    "they",
    "say",
    "so",
    "the",
    "answer",
    "is",
    "checked",
    "against",
    "several",
    "views",
    "before",
    "it",
    "reaches",
    "you",
    "latency",
    "follows",
    "the",
    "slowest",
    "member",
    "while",
    "cost",
    "adds",
    "up",
    "across",
    "all",
    "of",
    "them",
    "which",
    "is",
    "why",
    "the",
    "numbers",
    "matter",
    "a",
    "fine",
    "tuned",
    "model",
    "may",
    "match",
    "this",
    "on",
    "narrow",
    "tasks",
    "at",
    "a",
    "fraction",
    "of",
    "the",
    "price",
]


def stable_rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def pieces(text: str) -> list[str]:
    return _PIECE.findall(text)


@dataclass
class Choice:
    message: dict[str, Any]
    finish_reason: str
    #: streamed content, one approximate token per piece
    pieces: list[str]
    #: completion tokens this choice used
    tokens: int
    #: one logprob entry per piece, when the caller asked for logprobs
    logprobs: list[dict[str, Any]] | None = None


@dataclass
class Answer:
    choices: list[Choice]
    usage: Usage

    @property
    def message(self) -> dict[str, Any]:
        return self.choices[0].message

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason

    @property
    def pieces(self) -> list[str]:
        """Every choice's pieces (what streaming them takes)."""
        return [p for c in self.choices for p in c.pieces]


@dataclass
class Timing:
    ttft_s: float
    per_token_s: float


@dataclass
class Fault:
    kind: str  # "status" | "hang" | "cut"
    status: int = 0


class SimulatedModel:
    def __init__(self, name: str, profile: SimulatorProfile, seed: int, chaos: random.Random) -> None:
        self.name = name
        self.profile = profile
        self.seed = seed
        self._chaos = chaos

    # ---------------------------------------------------------------- chaos: timing and faults

    def timing(self) -> Timing:
        p = self.profile
        ttft = p.ttft_ms
        if p.jitter_ms:
            ttft = max(0.0, ttft + self._chaos.uniform(-p.jitter_ms, p.jitter_ms))
        if p.tail.probability and self._chaos.random() < p.tail.probability:
            ttft *= p.tail.multiplier
        return Timing(ttft_s=ttft / 1000, per_token_s=1.0 / p.tokens_per_s)

    def fault(self, *, stream: bool) -> Fault | None:
        f = self.profile.failures
        r = self._chaos.random()
        if r < f.rate:
            return Fault("status", f.status)
        if r < f.rate + f.timeout_rate:
            return Fault("hang")
        if stream and f.cut_rate and self._chaos.random() < f.cut_rate:
            return Fault("cut")
        return None

    async def first_byte(self, *, stream: bool) -> tuple[Fault | None, Timing]:
        """Wait as the upstream would before its first byte: forever for a hang, else the time to first
        token. Returns the fault still to act on (an error status, a cut) and the timing to stream at."""
        fault = self.fault(stream=stream)
        timing = self.timing()
        if fault is not None and fault.kind == "hang":
            await anyio.sleep_forever()
        await anyio.sleep(timing.ttft_s)
        return fault, timing

    # ---------------------------------------------------------------- the answer

    def answer(self, body: dict[str, Any]) -> Answer:
        messages: list[dict[str, Any]] = body.get("messages") or []
        n = body.get("n")
        count = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
        choices = [self._choice(body, messages, variant) for variant in range(count)]
        prompt = count_messages(messages)
        if body.get("tools"):
            prompt += approximate(orjson.dumps(body["tools"]).decode())
        usage = Usage(prompt_tokens=prompt, completion_tokens=sum(c.tokens for c in choices))
        return Answer(choices=choices, usage=usage)

    def _choice(self, body: dict[str, Any], messages: list[dict[str, Any]], variant: int) -> Choice:
        message, finish = self._message(body, messages, variant)
        if message.get("tool_calls"):
            fn = message["tool_calls"][0]["function"]
            tokens = approximate(fn["name"]) + approximate(fn["arguments"])
            return Choice(message, finish, [], tokens, [] if body.get("logprobs") is True else None)
        text = message.get("content") or ""
        stop = body.get("stop")
        for s in [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else ():
            if isinstance(s, str) and s and s in text:
                text, finish = text[: text.index(s)], "stop"
        out_pieces = pieces(text)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and limit < len(out_pieces):
            out_pieces, finish = out_pieces[:limit], "length"
        message = {**message, "content": "".join(out_pieces)}
        logprobs = None
        if body.get("logprobs") is True:
            top = body.get("top_logprobs")
            logprobs = [_logprob(self.name, p, i, top if isinstance(top, int) else 0) for i, p in enumerate(out_pieces)]
        return Choice(message, finish, out_pieces, len(out_pieces), logprobs)

    def _message(
        self, body: dict[str, Any], messages: list[dict[str, Any]], variant: int = 0
    ) -> tuple[dict[str, Any], str]:
        judge = read_judge_task(messages, body.get("response_format"))
        if judge is not None and judge.asks == "equivalence":
            return _text(orjson.dumps({"equivalent": _equivalent([b.body for b in judge.candidates])}).decode()), "stop"
        if judge is not None and judge.asks == "confidence":
            confidence = self._confidence(judge.conversation, judge.candidates[-1].body)
            return _text(orjson.dumps({"confidence": confidence}).decode()), "stop"
        if judge is not None and judge.asks == "analysis":
            return _text(orjson.dumps(self._analysis(judge.conversation, judge.candidates)).decode()), "stop"
        if judge is not None and judge.wants_verdict:
            label = judge.candidates[self._judge_pick(judge)].label
            verdict = {
                "analysis": f"Candidate {label} gives the best-supported answer and shows no error.",
                "winner": label,
            }
            return _text(orjson.dumps(verdict).decode()), "stop"
        tools = body.get("tools")
        if tools and judge is None and _calls_tool(body, messages):
            return self._tool_call(tools, body.get("tool_choice"), messages), "tool_calls"
        text = self._text(judge, messages, variant)
        return _text(_shaped(text, body.get("response_format"), _asks_arithmetic(messages))), "stop"

    def _judge_pick(self, judge: JudgeTask) -> int:
        texts = [b.body for b in judge.candidates]
        best = _vote(texts, keys=[b.label for b in judge.candidates])
        if _unanimous(texts):
            return 0  # equally good: like real judges, it leans to the first shown (a swap makes it a tie)
        if _majority_number(texts) is None:
            return self._check_work(judge.conversation, texts, best)
        return best

    def _text(self, judge: JudgeTask | None, messages: list[dict[str, Any]], variant: int) -> str:
        """What the model says, before the caller's format shapes it."""
        if judge is not None:  # a merge: the judge writes the answer it would have picked
            settled = _SETTLED.search(judge.notes) if judge.notes is not None else None
            if settled is not None:  # written from its own comparison: the side the comparison found
                return f"The answer is {settled.group(1)}."
            texts = [b.body for b in judge.candidates]
            number = _majority_number(texts)
            return f"The answer is {number}." if number is not None else texts[self._judge_pick(judge)]
        debate = read_debate_task(messages)
        if debate is not None:
            texts = [debate.own, *(b.body for b in debate.others)]
            number = _majority_number(texts)
            return f"The answer is {number}." if number is not None else texts[_vote(texts)]
        question = _last_user_text(messages)
        rng = stable_rng(self.seed, self.name, question) if variant == 0 else stable_rng(
            self.seed, self.name, question, variant
        )
        m = _ARITH.search(question)
        if m is not None:
            value = _evaluate(m.group(1), m.group(2), m.group(3))
            if value is not None:
                correct = rng.random() < self.profile.accuracy
                shown = value if correct else _wrong(value, rng)
                expr = f"{m.group(1)} {m.group(2)} {m.group(3)}"
                return f"Working it out: {expr} = {_fmt(shown)}. The answer is {_fmt(shown)}."
        return self._filler(rng)

    def _check_work(self, conversation: str, texts: Sequence[str], fallback: int) -> int:
        """No majority to follow (two candidates, or all different): with the judge's own ``accuracy``,
        it works the arithmetic out and picks an answer that gets it right; otherwise it keeps
        ``fallback``, a choice that depends on neither label nor position."""
        right = self._worked_out(conversation, texts)
        return fallback if right is None else right

    def _worked_out(self, conversation: str, texts: Sequence[str]) -> int | None:
        """With the judge's ``accuracy``, the candidate whose arithmetic is right (None: it could not tell,
        or none is). One draw per question and panel, whichever prompt asks."""
        m = _ARITH.search(conversation)
        value = _evaluate(m.group(1), m.group(2), m.group(3)) if m else None
        if value is None:
            return None
        if stable_rng(self.seed, self.name, "check", conversation, *sorted(texts)).random() >= self.profile.accuracy:
            return None
        right = [i for i, t in enumerate(texts) if final_number(t) == _fmt(value)]
        if not right:
            return None
        return min(right, key=lambda i: hashlib.sha256(texts[i].encode()).digest())

    def _analysis(self, conversation: str, candidates: Sequence[Block]) -> dict[str, list[str]]:
        """The panel compared: who agrees on which number, and, where they contradict each other, which
        side the judge's own working supports."""
        texts = [b.body for b in candidates]
        out: dict[str, list[str]] = {name: [] for name in _SECTIONS}
        if all(final_number(t) is None for t in texts):
            # Not arithmetic: the simulated judge can only tell whether the candidates say the same thing.
            if _equivalent(texts):
                out["consensus"].append(f"{', '.join(b.label for b in candidates)} give the same answer.")
            else:
                out["unique_insights"] += [f"{b.label} words its answer its own way." for b in candidates]
                out["blind_spots"].append("No candidate gives a checkable result.")
            return out
        by_number: dict[str, list[str]] = {}
        for b in candidates:
            by_number.setdefault(final_number(b.body) or "no number", []).append(b.label)
        groups = sorted(by_number.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        if len(groups) == 1 and len(texts) > 1:
            out["consensus"].append(f"{', '.join(groups[0][1])} all give {groups[0][0]}.")
        elif groups and len(groups[0][1]) > 1:
            out["consensus"].append(f"{', '.join(groups[0][1])} give {groups[0][0]}.")
        if len(groups) > 1:
            sides = "; ".join(f"{', '.join(ls)} {'give' if len(ls) > 1 else 'gives'} {n}" for n, ls in groups)
            right = self._worked_out(conversation, texts)
            m = _ARITH.search(conversation)
            if right is not None and m is not None:
                n = final_number(texts[right])
                expr = f"{m.group(1)} {m.group(2)} {m.group(3)}"
                out["contradictions"].append(f"The candidates disagree: {sides}. Worked out: {expr} = {n}.")
            else:
                out["contradictions"].append(f"The candidates disagree: {sides}. Could not settle it.")
        return out

    def _confidence(self, conversation: str, text: str) -> float:
        """How sure the judge is that ``text`` answers the arithmetic in ``conversation`` right: with its
        ``accuracy`` it works the sum out (0.95 when the answer matches, 0.05 when not); otherwise, or for
        anything that is not arithmetic, it cannot tell (0.5)."""
        m = _ARITH.search(conversation)
        value = _evaluate(m.group(1), m.group(2), m.group(3)) if m else None
        if value is None:
            return 0.5
        if stable_rng(self.seed, self.name, "confidence", conversation, text).random() >= self.profile.accuracy:
            return 0.5
        return 0.95 if final_number(text) == _fmt(value) else 0.05

    def _filler(self, rng: random.Random) -> str:
        words: list[str] = []
        # approximately answer_tokens tokens; most filler words are one or two tokens
        while sum(approximate(w) for w in words) < self.profile.answer_tokens:
            words.append(rng.choice(_WORDS))
        return f"({self.name}) " + " ".join(words).capitalize() + "."

    def _arithmetic_answer(self, messages: list[dict[str, Any]]) -> Decimal | None:
        """The number this model answers an arithmetic question with (right or wrong, as in text)."""
        if not _asks_arithmetic(messages):
            return None
        found = final_number(self._text(None, messages, 0))
        return Decimal(found) if found is not None else None

    def _tool_call(self, tools: Sequence[Any], choice: Any, messages: list[dict[str, Any]]) -> dict[str, Any]:
        fn = _chosen_tool(tools, choice)
        params = fn.get("parameters")
        number = self._arithmetic_answer(messages)
        args = value_for(params, number=number, text=_last_user_text(messages)) if isinstance(params, dict) else {}
        call_id = "call_" + hashlib.sha256(f"{self.name}{_last_user_text(messages)}".encode()).hexdigest()[:20]
        return {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": str(fn.get("name", "tool")), "arguments": orjson.dumps(args).decode()},
                }
            ],
        }


def _calls_tool(body: dict[str, Any], messages: list[dict[str, Any]]) -> bool:
    """A forced ``tool_choice`` always calls; ``auto`` calls when the user just spoke; ``none`` never."""
    choice = body.get("tool_choice")
    if choice == "none":
        return False
    if choice == "required" or isinstance(choice, dict):
        return True
    return bool(messages) and messages[-1].get("role") == "user"


def _chosen_tool(tools: Sequence[Any], choice: Any) -> dict[str, Any]:
    functions = [t.get("function") or {} for t in tools if isinstance(t, dict)]
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for fn in functions:
            if fn.get("name") == name:
                return fn
    return functions[0] if functions else {}


def _asks_arithmetic(messages: Sequence[dict[str, Any]]) -> bool:
    return any(m.get("role") == "user" and _ARITH.search(content_text(m.get("content"))) for m in messages)


def _shaped(text: str, response_format: Any, arithmetic: bool) -> str:
    """``text`` in the format the caller asked for: as it is, or as JSON carrying its number or words."""
    if not isinstance(response_format, dict) or response_format.get("type") not in ("json_object", "json_schema"):
        return text
    found = final_number(text) if arithmetic else None
    number = Decimal(found) if found is not None else None
    if response_format["type"] == "json_object":
        return orjson.dumps(json_object_for(number=number, text=text)).decode()
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    value = value_for(schema if isinstance(schema, dict) else {}, number=number, text=text)
    return orjson.dumps(value).decode()


def _logprob(model: str, token: str, position: int, top: int) -> dict[str, Any]:
    """A deterministic logprob entry for ``token``: the token itself is always the likeliest."""
    digest = hashlib.sha256(f"{model}\x00{position}\x00{token}".encode()).digest()
    own = -round(digest[0] / 255 * 2, 4)

    def entry(tok: str, lp: float) -> dict[str, Any]:
        return {"token": tok, "logprob": lp, "bytes": list(tok.encode())}

    alternatives = [entry(token, own)]
    for i in range(1, top):
        word = " " + _WORDS[digest[i % len(digest)] % len(_WORDS)]
        alternatives.append(entry(word if word != token else word + "s", round(own - 1.5 * i, 4)))
    return {**entry(token, own), "top_logprobs": alternatives}


def _text(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content.strip(), "refusal": None}


def _last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return content_text(msg.get("content"))
    return ""


def _evaluate(a: str, op: str, b: str) -> Decimal | None:
    try:
        x, y = Decimal(a), Decimal(b)
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op in "*×x":
            return x * y
        if y == 0:
            return None
        return (x / y).quantize(Decimal("0.0001")).normalize()
    except InvalidOperation:
        return None


def _wrong(value: Decimal, rng: random.Random) -> Decimal:
    delta = rng.choice([d for d in range(-12, 13) if d != 0])
    return value + delta


def _fmt(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def final_number(text: str) -> str | None:
    """The number an answer gives: in JSON, the first one (the schema's numeric field, see
    :mod:`.shapes`); in prose, the last one (the conclusion comes last)."""
    if text[:1] in "{[":
        try:
            found = _first_number(orjson.loads(text))
        except orjson.JSONDecodeError:
            found = None
        if found is not None:
            return found
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    return _fmt(Decimal(numbers[-1]))


def _first_number(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _fmt(Decimal(str(value)))
    if isinstance(value, str):
        found = _NUMBER.findall(value)
        return _fmt(Decimal(found[-1])) if found else None
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        got = _first_number(child)
        if got is not None:
            return got
    return None


def _majority_number(texts: Sequence[str]) -> str | None:
    counts = Counter(n for n in (final_number(t) for t in texts) if n is not None)
    if not counts:
        return None
    (top, n), *rest = counts.most_common()
    if n < 2 or (rest and rest[0][1] == n):
        return None
    return top


def _equivalent(texts: Sequence[str]) -> bool:
    """Two answers say the same when their final numbers are equal, or, without numbers, their words."""
    numbers = [final_number(t) for t in texts]
    if len(texts) < 2:
        return False
    if all(n is not None for n in numbers):
        return len(set(numbers)) == 1
    words = {" ".join(t.casefold().split()).rstrip(".!") for t in texts}
    return len(words) == 1


def _unanimous(texts: Sequence[str]) -> bool:
    numbers = {final_number(t) for t in texts}
    return len(texts) > 1 and (len(set(texts)) == 1 or (len(numbers) == 1 and None not in numbers))


def _vote(texts: Sequence[str], keys: Sequence[str] | None = None) -> int:
    """Index of the text a fair judge would pick: the majority number if any; ties by a hash of the text,
    then by ``keys`` (labels), so that neither the order shown nor anything else positional decides."""
    majority = _majority_number(texts)
    pool = [i for i, t in enumerate(texts) if majority is not None and final_number(t) == majority]
    if not pool:
        pool = list(range(len(texts)))
    tiebreak = keys or [""] * len(texts)
    return min(pool, key=lambda i: (hashlib.sha256(texts[i].encode()).digest(), tiebreak[i]))
