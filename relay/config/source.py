"""relay.yaml as plain data, with the line of every value and `${VAR}` interpolation.

PyYAML's own constructor forgets where a value came from and silently keeps the last of
two duplicate keys, so the file is composed into nodes and built here: each value's line
is recorded under its key path (for `FILE:LINE: key.path: message` errors), duplicate
keys are errors, and environment variables are substituted in scalar values — in plain
(unquoted) scalars before YAML decides the type, so `port: ${PORT:-8080}` is a number.

Interpolation, as in docker compose:
  ${VAR}          the variable; an error when it is unset
  ${VAR:-default} the default when VAR is unset or empty
  ${VAR:+word}    word when VAR is set and non-empty, else empty
  $$              a literal $
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from relay.errors import ConfigIssue as Issue
from relay.errors import KeyPath as Path

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\+)([^}]*))?\}")
_BROKEN_REFERENCE = re.compile(r"\$\{(?![A-Za-z_][A-Za-z0-9_]*(?::[-+][^}]*)?\})[^}]*\}?")


@dataclass
class Source:
    """The config file's data, and the line of each key path within it."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    key_lines: dict[Path, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    def line_of(self, path: Path) -> int | None:
        """The line of the value at `path`, or of its nearest ancestor that exists."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


class YAMLSyntaxError(ValueError):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def parse(text: str, environ: Mapping[str, str] | None = None) -> Source:
    """Compose YAML text into a Source. Raises YAMLSyntaxError for text that is not YAML."""
    env = os.environ if environ is None else environ
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        raise YAMLSyntaxError(f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as error:
        raise YAMLSyntaxError(f"invalid YAML: {error}", None) from None
    finally:
        loader.dispose()
    source = Source(data=None)
    if node is not None:
        source.data = _Builder(loader, env, source).build(node, ())
    return source


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, env: Mapping[str, str], source: Source) -> None:
        self.loader = loader
        self.env = env
        self.source = source

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.source.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)  # `<<: *anchor` merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.source.issues.append(Issue(path, "a key must be a plain name", line))
                continue
            # Keys are names, as written: `off:` or `1:` is not YAML 1.1's false or 1.
            key = key_node.value
            if key in result:
                first = self.source.key_lines.get((*path, key))
                self.source.issues.append(
                    Issue(
                        (*path, key), f"duplicate key '{key}' (first defined on line {first})", line
                    )
                )
                continue
            self.source.key_lines[(*path, key)] = line
            result[key] = self.build(value_node, (*path, key))
        return result

    def _scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        if node.tag != "tag:yaml.org,2002:str" or "$" not in node.value:
            return self.loader.construct_object(node, deep=True)
        value = self._interpolate(node.value, path, node.start_mark.line + 1)
        if node.style is not None:  # quoted or block scalar: stays a string
            return value
        tag = self.loader.resolve(yaml.ScalarNode, value, (True, False))
        return self.loader.construct_object(yaml.ScalarNode(tag, value), deep=True)

    def _interpolate(self, text: str, path: Path, line: int) -> str:
        broken = _BROKEN_REFERENCE.search(text.replace("$$", ""))
        if broken:
            self.source.issues.append(
                Issue(
                    path,
                    f"cannot read '{broken.group(0)}': write ${{NAME}}, ${{NAME:-default}} "
                    "or ${NAME:+word}, or $$ for a literal $",
                    line,
                )
            )
            return text

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, operator, word = match.group(1), match.group(2), match.group(3) or ""
            value = self.env.get(name)
            if operator == ":-":
                return value if value else word
            if operator == ":+":
                return word if value else ""
            if value is None:
                self.source.issues.append(
                    Issue(
                        path,
                        f"environment variable {name} is not set "
                        f"(set it, or write ${{{name}:-default}} to give a default)",
                        line,
                    )
                )
                return ""
            return value

        return _REFERENCE.sub(substitute, text)
