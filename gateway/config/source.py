"""YAML text -> plain data, remembering the line of every key, with ``${VAR}`` references resolved.

Errors found later (schema, cross-references) are reported as ``file:line: key.path: message``; this
module keeps the map from key path to line that makes that possible.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from gateway.wire.errors import ConfigError

Loc = tuple[str | int, ...]

# ${VAR} or ${VAR:-default}; $${ is a literal "${".
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class ConfigIssue:
    loc: Loc
    message: str


@dataclass
class Source:
    """Parsed YAML plus where each key was written."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    #: what parsing found (duplicate keys, unset environment variables), reported with the loader's findings
    issues: list[ConfigIssue] = field(default_factory=list)
    #: where an unset environment variable left an empty value: errors there are its echoes
    unset: list[Loc] = field(default_factory=list)

    def line_of(self, loc: Loc) -> int:
        """Line of the deepest key of ``loc`` that exists in the file (1-based)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return 1

    def error(self, issues: list[ConfigIssue]) -> ConfigError:
        """One error listing every issue, in the order of the file."""
        ordered = sorted(issues, key=lambda i: self.line_of(i.loc))
        return ConfigError("\n".join(self.format(i) for i in ordered))

    def format(self, issue: ConfigIssue) -> str:
        path = format_loc(issue.loc)
        prefix = f"{self.path}:{self.line_of(issue.loc)}:"
        return f"{prefix} {path}: {issue.message}" if path else f"{prefix} {issue.message}"


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_source(path: str, *, environ: Mapping[str, str] | None = None) -> Source:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    return parse_source(text, path, environ=os.environ if environ is None else environ)


def parse_source(text: str, path: str, *, environ: Mapping[str, str]) -> Source:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 1
        hint = _flow_env_ref_hint(text, mark.index) if mark is not None else ""
        raise ConfigError(f"{path}:{line}: invalid YAML: {exc.problem}{hint}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}:1: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    source = Source(path=path, data=None)
    if node is None:
        source.data = {}
        return source
    source.data = _build(node, (), source, loader, environ, source.issues)
    source.unset = [i.loc for i in source.issues if i.message.startswith("environment variable ")]
    return source


def _flow_env_ref_hint(text: str, index: int) -> str:
    """What to do when the parser tripped over an unquoted ``${VAR}`` inside ``{...}`` or ``[...]``.

    In YAML's flow style ``{`` opens a mapping, so ``{api_key: ${KEY}}`` is a syntax error whose own
    message ("expected ',' or '}', but got '{'") does not say that the reference is the cause.
    """
    if text[index - 1 : index + 1] != "${":
        return ""
    end = text.find("}", index)
    ref = text[index - 1 : end + 1] if end != -1 else "${VAR}"
    return (
        f'; an unquoted {ref} inside {{...}} or [...] is not valid YAML: quote it ("{ref}") '
        "or use block style, one key per line"
    )


def _build(
    node: yaml.Node,
    loc: Loc,
    source: Source,
    loader: yaml.SafeLoader,
    environ: Mapping[str, str],
    issues: list[ConfigIssue],
) -> Any:
    source.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(ConfigIssue(loc, "keys must be plain strings"))
                continue
            key = str(key_node.value)
            child = (*loc, key)
            source.lines[child] = key_node.start_mark.line + 1
            if key in out:
                issues.append(ConfigIssue(child, "duplicate key"))
                continue
            out[key] = _build(value_node, child, source, loader, environ, issues)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            source.lines[(*loc, i)] = item.start_mark.line + 1
            items.append(_build(item, (*loc, i), source, loader, environ, issues))
        return items
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str):
        return _substitute(value, loc, environ, issues)
    return value


def _substitute(value: str, loc: Loc, environ: Mapping[str, str], issues: list[ConfigIssue]) -> str:
    if "$" not in value:
        return value

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        got = environ.get(name)
        if got is not None and (got != "" or default is None):
            return got
        if default is not None:
            return default
        issues.append(ConfigIssue(loc, f"environment variable {name} is not set"))
        return ""

    return _ENV_REF.sub(repl, value)
