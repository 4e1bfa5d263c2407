"""``fusion-gateway compare``, the parts without a gateway: dataset checks, scorers, statistics."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.books.stats import StatsStore, percentile
from gateway.cli import main
from gateway.compare.dataset import load_dataset
from gateway.compare.progress import Progress
from gateway.compare.scoring import parse_scorer
from gateway.compare.stats import break_even, mean_ci, wilson
from gateway.compare.store import JsonlLog


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def msgs(*pairs: tuple[str, str]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in pairs]})


GOOD = msgs(("user", "What is 2 + 2?"), ("assistant", "The answer is 4."))


def test_every_bad_line_is_reported_with_its_number_and_nothing_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        GOOD,
        "{not json",
        '{"prompt": "hi"}',
        '{"messages": []}',
        msgs(("bot", "hello")),
        "",
        msgs(("system", "be brief"), ("assistant", "ok")),
        '{"messages": [{"role": "user", "content": "   "}]}',
        '["messages"]',
        '{"messages": "hello"}',
        '{"messages": [{"role": "user"}]}',
        GOOD,
    )
    # The URL is never contacted: a bad dataset stops the run before any request.
    code = main(["compare", "--dataset", str(path), "--pool", "p", "--baseline", "b", "--url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err == [
        f"{path}: line 2: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        f'{path}: line 3: no "messages"',
        f'{path}: line 4: "messages" is empty',
        f"{path}: line 5: messages[0] has role 'bot' (allowed: system, developer, user, assistant, tool)",
        f"{path}: line 6: empty line",
        f"{path}: line 7: no user message to send (the last assistant message is the reference, not a question)",
        f"{path}: line 8: messages[0] (user) has empty content",
        f'{path}: line 9: expected a JSON object like {{"messages": [...]}}',
        f'{path}: line 10: "messages" is not a list',
        f"{path}: line 11: messages[0] (user) has no content",
        f"compare: {path}: 10 bad line(s); nothing was sent",
    ]


def test_a_missing_dataset_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.jsonl"
    assert main(["compare", "--dataset", str(path), "--pool", "p", "--baseline", "b"]) == 2
    assert f"cannot read {path}: No such file or directory" in capsys.readouterr().err


def test_the_reference_is_kept_not_sent_and_training_keys_are_dropped(tmp_path: Path) -> None:
    line = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello", "weight": 0},
            {"role": "user", "content": "What is 6 * 7?"},
            {"role": "assistant", "content": "The answer is 42.", "weight": 1},
        ]
    }
    no_ref = {"messages": [{"role": "user", "content": "Tell me a joke"}]}
    items = load_dataset(write(tmp_path, json.dumps(line), json.dumps(no_ref), "", ""))
    assert len(items) == 2  # blank lines at the very end are not items
    first, second = items
    assert first.reference == "The answer is 42."
    assert first.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "What is 6 * 7?"},
    ]
    assert (first.line, second.line, second.reference) == (1, 2, None)


def test_the_item_key_follows_the_question_not_the_reference(tmp_path: Path) -> None:
    a = load_dataset(write(tmp_path, msgs(("user", "What is 2 + 2?"), ("assistant", "4"))))[0]
    b = load_dataset(write(tmp_path, msgs(("user", "What is 2 + 2?"), ("assistant", "four"))))[0]
    c = load_dataset(write(tmp_path, msgs(("user", "What is 2 + 3?"), ("assistant", "4"))))[0]
    assert a.key == b.key != c.key
    twice = load_dataset(write(tmp_path, GOOD, GOOD))
    assert twice[1].key == twice[0].key + ".1"  # the same question twice is two items


def test_numeric_scorer_refuses_references_without_a_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD, msgs(("user", "Capital of France?"), ("assistant", "Paris")))
    code = main(["compare", "--dataset", str(path), "--pool", "p", "--baseline", "b", "--scorer", "numeric"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err == [
        f"{path}: line 2: the reference answer has no number (scorer numeric)",
        "compare: 1 item(s) cannot be scored with --scorer numeric; nothing was sent",
    ]


@pytest.mark.parametrize(
    ("scorer", "answer", "reference", "expected"),
    [
        ("exact", "Paris", "Paris", True),
        ("exact", " Paris\n", "Paris", True),
        ("exact", "paris", "Paris", False),
        ("normalized", "  PARIS!! ", "Paris.", True),
        ("normalized", "New   York", "new york", True),
        ("normalized", "Paris, France", "Paris", False),
        ("numeric", "Working it out: 37 * 12 = 444. The answer is 444.", "The answer is 444.", True),
        ("numeric", "The answer is 444.0", "444", True),
        ("numeric", "It is 1,234 in total", "1234", True),
        ("numeric", "The answer is 443.", "The answer is 444.", False),
        ("numeric", "no idea", "444", False),
        ("numeric", "0.1 + 0.2 = 0.3", "0.30", True),
        ("contains", "I think the capital is PARIS.", "paris", True),
        ("contains", "I think it is Lyon.", "paris", False),
        ("regex:^The answer is \\d+\\.$", "The answer is 12.", None, True),
        ("regex:^The answer is \\d+\\.$", "Maybe 12", None, False),
    ],
)
def test_scorers(scorer: str, answer: str, reference: str | None, expected: bool) -> None:
    assert parse_scorer(scorer).score(answer, reference) is expected


def test_scorers_without_a_reference_or_an_answer() -> None:
    assert parse_scorer("exact").score("anything", None) is None  # not scorable: left out of accuracy
    assert parse_scorer("numeric").score(None, "4") is False  # a failed request is a wrong answer
    assert parse_scorer("regex:x").score(None, None) is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fuzzy", "unknown scorer 'fuzzy' (choose from: exact, normalized, numeric, contains, regex:<pattern>)"),
        ("regex:", "regex scorer needs a pattern: regex:<pattern>"),
        ("regex:(", "bad regex '(': missing ), unterminated subpattern at position 0"),
    ],
)
def test_bad_scorers_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_scorer(text)
    assert str(exc.value) == message


def test_wilson_interval_matches_the_formula_and_known_values() -> None:
    # Worked by hand, 84 of 100: centre = (0.84 + z²/200) / (1 + z²/100) = 0.82742,
    # half-width = z * sqrt(0.84 * 0.16 / 100 + z²/40000) / (1 + z²/100) = 0.07163
    lo, hi = wilson(84, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.7558, 0.8990)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)
    z = 1.959963984540054
    n, k = 37, 29
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson(k, n) == (centre - half, centre + half)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 50) == 10.0  # ceil(0.5 * 20) = 10th
    assert percentile(values, 95) == 19.0  # ceil(0.95 * 20) = 19th
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([], 50) is None


def test_live_stats_and_the_compare_report_give_the_same_percentiles() -> None:
    values = [float(v) for v in (7, 1, 9, 4, 12, 3, 8, 2)]
    store = StatsStore()
    for v in values:
        store.request("p", "ok", latency_ms=v)
    latency = store.snapshot({"p": {}})["pools"][0]["fusion"]["latency_ms"]
    assert latency["p50"] == percentile(values, 50) == 4.0  # the 4th smallest of 8, not 5.5 interpolated
    assert latency["p95"] == percentile(values, 95) == 12.0
    m = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert m is not None and m[0] == 2.5
    assert m[2] - m[0] == pytest.approx(1.959963984540054 * math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3 / 4))


def test_break_even() -> None:
    be = break_even(Decimal("50"), Decimal("0.0042"), Decimal("0.0002"))
    assert be.volume == Decimal("12500") and be.requests == 12500 and not be.never
    odd = break_even(Decimal("10"), Decimal("0.003"), Decimal("0"))
    assert odd.requests == 3334  # 3333.33... rounded up: above it the fine-tuned model is cheaper
    never = break_even(Decimal("50"), Decimal("0.0001"), Decimal("0.0002"))
    assert never.never and never.volume is None
    unknown = break_even(Decimal("50"), None, Decimal("0.0002"))
    assert not unknown.known


def test_a_half_written_last_line_is_ignored_and_the_next_append_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"key": "a", "status": "ok"}\n{"key": "b", "sta', encoding="utf-8")
    log = JsonlLog(path)
    assert log.done("a") and log.get("b") is None
    log.append({"key": "b", "status": "ok", "cost_usd": Decimal("0.000123")})
    log.close()
    assert path.read_text(encoding="utf-8").splitlines() == [
        '{"key": "a", "status": "ok"}',
        '{"key": "b", "sta',
        '{"key":"b","status":"ok","cost_usd":"0.000123"}',
    ]
    again = JsonlLog(path)
    assert again.done("a") and again.done("b")


def test_progress_without_a_terminal_prints_plain_lines() -> None:
    import io

    out = io.StringIO()
    p = Progress(20, out, tty=False)
    p.start(already=5)
    for i in range(20):
        p.step(error=i == 3)
    p.retry()
    p.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "compare: 20 to do (5 already done in an earlier run)"
    assert len(lines) == 11  # start, every 10% up to 90%, the end
    assert "\r" not in out.getvalue()
    assert lines[-1].startswith("compare: [########################] 100% 20/20 · 1 failed · 1 retried · ")
