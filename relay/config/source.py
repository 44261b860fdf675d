"""relay.yaml as plain data, with the line of every value and `${VAR}` interpolation.

PyYAML's own constructor forgets where a value came from and silently keeps the last of
two duplicate keys, so the file is composed into nodes and built here: each value's line
is recorded under its key path (for `FILE:LINE: key.path: message` errors), duplicate
keys are errors, and environment variables are substituted in scalar values — in plain
(unquoted) scalars before YAML decides the type, so `port: ${PORT:-8080}` is a number.

Interpolation, as in docker compose (relay/config/interpolate.py):
  ${VAR}          the variable; an error when it is unset
  ${VAR:-default} the default when VAR is unset or empty (${VAR-default}: when unset)
  ${VAR:+word}    word when VAR is set and non-empty, else empty (${VAR+word}: when set)
  ${VAR:?message} an error saying message when VAR is unset or empty (${VAR?message})
  $$              a literal $
Defaults, words and messages may hold references themselves: ${A:-${B:-x}}.

Nothing here quotes the value of a secret (`secret(path)`, from relay/config/load.py) in
an error: a refused reload is logged, and YAML's own messages quote what they stumble on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from relay.config.interpolate import InterpolationError, interpolate
from relay.errors import ConfigIssue as Issue
from relay.errors import KeyPath as Path

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_SHOWN_QUOTE = 7  # YAML's messages may quote this much of the text (a character, a token)


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


def parse(
    text: str,
    environ: Mapping[str, str] | None = None,
    secret: Callable[[Path], Path | None] = lambda path: None,
) -> Source:
    """Compose YAML text into a Source. Raises YAMLSyntaxError for text that is not YAML.

    `secret(path)` is the part of a key path that names a secret, or None: no error quotes a
    secret's value, nor names a key inside one (`token: {xoxb-...: x}`)."""
    env = os.environ if environ is None else environ
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = _yaml_problem(error.problem or error.context or "invalid YAML")
        raise YAMLSyntaxError(f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as error:
        problem = _yaml_problem(str(error).splitlines()[0])
        raise YAMLSyntaxError(f"invalid YAML: {problem}", None) from None
    finally:
        loader.dispose()
    source = Source(data=None)
    if node is not None:
        source.data = _Builder(loader, env, source, secret).build(node, ())
    return source


def _yaml_problem(problem: str) -> str:
    """PyYAML's words for a problem, without the text it quotes, which may be a secret
    (an unquoted value starting with * or ! is read as an alias or a tag)."""
    if problem.startswith("found undefined alias"):
        return (
            "a value starting with * refers to an anchor (&name) that is not defined; "
            "quote the value if it is text"
        )
    return _QUOTED.sub(
        lambda quoted: (
            quoted.group()
            if len(quoted.group()) - 2 <= _SHOWN_QUOTE
            or re.fullmatch(r".<[\w ]+>.", quoted.group())
            else "'…'"
        ),
        problem,
    )


class _Builder:
    def __init__(
        self,
        loader: yaml.SafeLoader,
        env: Mapping[str, str],
        source: Source,
        secret: Callable[[Path], Path | None],
    ) -> None:
        self.loader = loader
        self.env = env
        self.source = source
        self.secret = secret

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
                shown = "" if self.secret((*path, key)) else f" '{key}'"  # a key in a secret
                self.source.issues.append(
                    Issue(
                        (*path, key), f"duplicate key{shown} (first defined on line {first})", line
                    )
                )
                continue
            self.source.key_lines[(*path, key)] = line
            result[key] = self.build(value_node, (*path, key))
        return result

    def _scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        line = node.start_mark.line + 1
        if node.tag != "tag:yaml.org,2002:str" or "$" not in node.value:
            return self._construct(node, path, line)
        value = self._interpolate(node.value, path, line)
        if node.style is not None:  # quoted or block scalar: stays a string
            return value
        tag = self.loader.resolve(yaml.ScalarNode, value, (True, False))
        return self._construct(yaml.ScalarNode(tag, value), path, line)

    def _construct(self, node: yaml.ScalarNode, path: Path, line: int) -> Any:
        """The scalar's value; an issue (never quoting the value) when its tag cannot read it:
        `!foo x` (a tag SafeLoader does not know), `!!int abc`, `!!timestamp 2024-13-45`."""
        try:
            return self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError):
            if node.tag in self.loader.yaml_constructors:  # !!int, !!binary, !!timestamp...
                tag = node.tag.replace("tag:yaml.org,2002:", "!!")
                message = f"this is not a valid {tag} value: fix it, or remove the tag"
            else:
                message = (
                    "a value starting with ! is a YAML tag, which relay.yaml does not use; "
                    "quote the value if it is text"
                )
        self.source.issues.append(Issue(path, message, line))
        return None

    def _interpolate(self, text: str, path: Path, line: int) -> str:
        try:
            interpolation = interpolate(text, self.env)
        except InterpolationError as error:
            secret = self.secret(path) is not None
            self.source.issues.append(Issue(path, error.describe(secret), line))
            return text
        for problem in dict.fromkeys(interpolation.problems):  # each once, in order
            self.source.issues.append(Issue(path, problem, line))
        return interpolation.value
