"""Every example in the README and docs/ works when copied.

Fenced ``yaml`` blocks load and pass ``fusion-gateway check`` with the environment variables they name
set; ``sh`` blocks parse (``bash -n``); ``python`` blocks compile. A YAML block that shows one section of
a larger file says which file it belongs to with an HTML comment on the line before the fence,
``<!-- snippet-of: config/examples/mixed-pool.yaml -->``: it is checked merged into that file, section by
section, the way a reader would paste it.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
_ENV_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SNIPPET_OF = re.compile(r"<!-- snippet-of: (\S+) -->\n$")


@dataclass(frozen=True)
class Snippet:
    doc: Path
    line: int
    lang: str
    text: str
    #: the file this fragment belongs to, when it is one
    base: str | None

    @property
    def id(self) -> str:
        return f"{self.doc.name}:{self.line}:{self.lang}"


def snippets(doc: Path) -> list[Snippet]:
    text = doc.read_text()
    out = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()]
        base = _SNIPPET_OF.search(before)
        out.append(Snippet(doc, before.count("\n") + 1, m.group(1), m.group(2), base.group(1) if base else None))
    return out


ALL = [s for doc in DOCS for s in snippets(doc)]


def of(*langs: str) -> list[Any]:
    return [pytest.param(s, id=s.id) for s in ALL if s.lang in langs]


def test_the_docs_have_examples_of_each_kind() -> None:
    # Guards the extraction itself: a changed fence syntax must not silently check nothing.
    langs = {s.lang for s in ALL}
    assert {"yaml", "sh", "python"} <= langs
    assert len([s for s in ALL if s.lang == "yaml"]) >= 4


@pytest.mark.parametrize("snippet", of("yaml"))
def test_yaml_examples_pass_check(
    snippet: Snippet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(snippet.text)  # plain YAML first: the mistake a reader would hit on copying
    assert isinstance(data, dict)
    text = snippet.text
    if snippet.base is not None:
        base = yaml.safe_load((ROOT / snippet.base).read_text())
        for section, body in data.items():
            if isinstance(body, dict) and isinstance(base.get(section), dict):
                base[section] = {**base[section], **body}
            else:
                base[section] = body
        text = yaml.safe_dump(base, sort_keys=False)
    for name in set(_ENV_REF.findall(text)):  # ${VAR:-default} works unset: left alone
        monkeypatch.setenv(name, f"test-{name.lower()}")
    path = tmp_path / "snippet.yaml"
    path.write_text(text)
    code = main(["check", str(path)])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"{path}: OK\n")


@pytest.mark.parametrize("snippet", of("sh", "bash", "shell"))
def test_shell_examples_parse(snippet: Snippet) -> None:
    proc = subprocess.run(["bash", "-n"], input=snippet.text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("snippet", of("python"))
def test_python_examples_compile(snippet: Snippet) -> None:
    compile(snippet.text, snippet.id, "exec")
