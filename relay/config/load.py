"""Load relay.yaml: read, interpolate, validate, cross-check; every error at once.

Each error reads `FILE:LINE: key.path: message`, with a did-you-mean for misspelt names,
so `relay check` can be fixed in one pass. No error shows a secret (`relay check` prints
them, and a refused reload logs them before the new secrets are known to relay/redact.py):
the values at secret paths (`is_secret_path`) are never quoted, and as a last guard every
message is scrubbed of the secret values in the file.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path as FilePath
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from relay.config.model import Config
from relay.config.source import Issue, Path, Source, YAMLSyntaxError, parse
from relay.config.storage import storage_passwords
from relay.config.types import SecretField
from relay.errors import ConfigError
from relay.routing import MatcherError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def load_config(file: str | FilePath, environ: Mapping[str, str] | None = None) -> Config:
    """The validated config in `file`; raises ConfigError naming every problem."""
    name = str(file)
    try:
        raw = FilePath(file).read_bytes()
    except FileNotFoundError:
        raise _error(
            name, "no such file (copy relay.yaml.example to relay.yaml, or pass -c FILE)"
        ) from None
    except IsADirectoryError:
        raise _error(name, "is a directory, not a config file") from None
    except OSError as error:
        raise _error(name, f"cannot read: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _error(name, f"not UTF-8 text (byte {error.start})") from None
    return parse_config(text, name, environ)


def parse_config(
    text: str, name: str = "relay.yaml", environ: Mapping[str, str] | None = None
) -> Config:
    try:
        source = parse(text, environ, secret_prefix)
    except YAMLSyntaxError as error:
        raise ConfigError(name, (Issue((), str(error), error.line),)) from None
    if not isinstance(source.data, dict):
        found = "nothing" if source.data is None else f"a {_kind(source.data)}"
        raise _error(
            name,
            f"the config must be a mapping of keys (oneroute, destinations, routes, ...); "
            f"found {found}",
            line=1,
        )
    issues = list(source.issues)
    config: Config | None = None
    try:
        config = Config.model_validate(source.data)
    except ValidationError as error:
        # A value already reported (an unset variable) is not reported again for its emptiness.
        reported = [issue.path for issue in issues]
        issues.extend(
            issue
            for issue in _validation_issues(error, source)
            if not any(path and _related(issue.path, path) for path in reported)
        )
    issues.extend(_cross_check(source))
    issues.extend(_check_templates(source, FilePath(name).parent))
    if issues:
        raise ConfigError(name, _scrub(issues, source))
    assert config is not None
    return config


def _related(a: Path, b: Path) -> bool:
    """One path lies within the other (an empty value and the list that is then too short)."""
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def _error(name: str, message: str, line: int | None = None) -> ConfigError:
    return ConfigError(name, (Issue((), message, line),))


def _kind(value: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def did_you_mean(word: str, candidates: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --- pydantic errors -> issues ----------------------------------------------------------------


def _validation_issues(error: ValidationError, source: Source) -> list[Issue]:
    issues = []
    for detail in error.errors(include_url=False):
        loc = tuple(detail["loc"])
        path = _data_path(loc, source.data)
        if detail["type"] == "union_tag_invalid":
            path = (*path, "type")
        cause = (detail.get("ctx") or {}).get("error")
        if isinstance(cause, MatcherError):  # routes[i].when.<path>.regex: where it is wrong
            path = (*path, *cause.at)
        issues.append(Issue(path, _message(detail, loc), _line(path, source)))
    return issues


def _data_path(loc: tuple[Any, ...], data: Any) -> Path:
    """pydantic's loc names the union member (`destinations.x.slack.token`); drop it."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part not in current and current.get("type") == part:
            continue
        path.append(part)
        current = (
            current.get(part)
            if isinstance(current, dict)
            else (
                current[part]
                if isinstance(current, list) and isinstance(part, int) and part < len(current)
                else None
            )
        )
    return tuple(path)


def _line(path: Path, source: Source) -> int | None:
    """The line of the key that holds the value (a mapping value starts a line later)."""
    return source.key_lines.get(path) or source.line_of(path)


def _message(detail: Mapping[str, Any], loc: tuple[Any, ...]) -> str:
    kind, message = detail["type"], detail["msg"]
    ctx = detail.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(loc[-1])
        return f"unknown key '{key}'{did_you_mean(key, _keys_at(loc[:-1]))}"
    if kind == "missing":
        return "required"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "union_tag_invalid":
        tags = [tag.strip("' ") for tag in str(ctx.get("expected_tags", "")).split(",")]
        tag = str(ctx.get("tag"))
        return f"unknown type '{tag}'{did_you_mean(tag, tags)}; use one of: {', '.join(tags)}"
    if kind == "union_tag_not_found":
        return "type is required (slack, telegram or console)"
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model allows at `loc` (a pydantic loc, union members included)."""
    annotation: Any = Config
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [field.alias or name for name, field in annotation.model_fields.items()]
    return []


def _step(annotation: Any, part: Any) -> Any:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    origin = typing.get_origin(annotation)
    if origin is dict:
        return typing.get_args(annotation)[1]
    if origin is list:
        return typing.get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            member = _unwrap(member)
            tag = getattr(member, "model_fields", {}).get("type")
            if tag is not None and part in typing.get_args(tag.annotation):
                return member
    return None


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


# --- secrets -------------------------------------------------------------------------------


def is_secret_path(path: Path) -> bool:
    """Whether the value at a key path is, or is inside, a secret: a SecretStr field
    (`oneroute.secrets[0]`, `destinations.x.token`) or one marked SECRET (`storage`).
    Read from the model, so a secret field added there is covered here."""
    return secret_prefix(path) is not None


def secret_prefix(path: Path) -> Path | None:
    """The part of `path` that names a secret value, or None when the path is in none.

    A path may go on inside a secret written wrongly (`token: {xoxb-...: x}` holds a
    mapping whose key is the token); an error then names the secret's own path."""
    end = _secret_end(Config, path, 0)
    return None if end is None else path[:end]


def _secret_end(annotation: Any, path: Path, depth: int) -> int | None:
    annotation, marked = _unwrap_marked(annotation)
    if marked or annotation is SecretStr:
        return depth
    holds = _holds_secret(annotation)
    if depth == len(path):
        return depth if holds else None
    part = path[depth]
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                if any(isinstance(m, SecretField) for m in field.metadata):
                    return depth + 1
                return _secret_end(field.annotation, path, depth + 1)
        return None
    if origin is dict:
        return _secret_end(typing.get_args(annotation)[1], path, depth + 1)
    if origin is list and isinstance(part, int):
        return _secret_end(typing.get_args(annotation)[0], path, depth + 1)
    if origin in (typing.Union, types.UnionType):  # a destination: any of its types
        ends = [_secret_end(member, path, depth) for member in typing.get_args(annotation)]
        return min((end for end in ends if end is not None), default=None)
    return depth if holds else None  # `secrets: {...}`: a mapping where a list belongs


def _unwrap_marked(annotation: Any) -> tuple[Any, bool]:
    marked = False
    while typing.get_origin(annotation) is typing.Annotated:
        marked = marked or any(isinstance(m, SecretField) for m in annotation.__metadata__)
        annotation = typing.get_args(annotation)[0]
    return annotation, marked


def _holds_secret(annotation: Any) -> bool:
    """A SecretStr, or a list, mapping or union of them (`secrets: [...]` as a whole)."""
    annotation, marked = _unwrap_marked(annotation)
    if marked or annotation is SecretStr:
        return True
    if typing.get_origin(annotation) in (list, dict, typing.Union, types.UnionType):
        return any(_holds_secret(argument) for argument in typing.get_args(annotation))
    return False


def _scrub(issues: list[Issue], source: Source) -> tuple[Issue, ...]:
    """The issues, with any secret in the file masked (the last guard, should a message,
    pydantic's or a validator's, ever quote one), and no path going inside a secret."""
    secrets = sorted(_secret_values(source.data, ()), key=len, reverse=True)
    scrubbed = []
    for issue in issues:
        message = issue.message
        for secret in secrets:
            message = message.replace(secret, "[REDACTED]")
        scrubbed.append(Issue(secret_prefix(issue.path) or issue.path, message, issue.line))
    return tuple(scrubbed)


def _secret_values(data: Any, path: Path) -> set[str]:
    """The secrets in the file's data: each secret value, a URL's path, a storage password."""
    if isinstance(data, dict):
        return set().union(*(_secret_values(v, (*path, k)) for k, v in data.items()))
    if isinstance(data, list):
        return set().union(*(_secret_values(v, (*path, i)) for i, v in enumerate(data)))
    if not isinstance(data, str) or not is_secret_path(path):
        return set()
    found = {data, *storage_passwords(data)}
    if data.startswith(("https://", "http://")):  # a webhook URL's path is its secret
        found.add("/" + data.split("://", 1)[1].partition("/")[2])
    return {secret for secret in found if len(secret) >= _MIN_SCRUBBED}


_MIN_SCRUBBED = 6  # as relay/redact.py: shorter strings would mask ordinary words


# --- checks across the file -------------------------------------------------------------------


def _check_templates(source: Source, base: FilePath) -> list[Issue]:
    """Compile every destination template now, so `relay check` shows its syntax errors."""
    from relay.errors import TemplateError
    from relay.render.template import compile_template

    destinations = source.data.get("destinations")
    if not isinstance(destinations, dict):
        return []
    issues: list[Issue] = []
    for name, destination in destinations.items():
        if not isinstance(destination, dict):
            continue
        inline, file = destination.get("template"), destination.get("template_file")
        if inline is None and file is None:
            continue
        path: Path = ("destinations", name, "template" if inline is not None else "template_file")
        flavor = destination.get("type")
        if flavor not in ("slack", "telegram"):
            issues.append(
                Issue(
                    path,
                    "only slack and telegram destinations take a template",
                    _line(path, source),
                )
            )
            continue
        if inline is not None and file is not None:
            issues.append(
                Issue(path, "set template or template_file, not both", _line(path, source))
            )
            continue
        where = "line {}"
        if file is not None:
            try:
                inline = (base / str(file)).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or error
                issues.append(Issue(path, f"cannot read {file}: {reason}", _line(path, source)))
                continue
            where = f"{file}:{{}}"
        if not isinstance(inline, str):
            continue  # the model reports the wrong type
        try:
            compile_template(inline, flavor)
        except TemplateError as error:
            place = f"{where.format(error.line)}: " if error.line else ""
            issues.append(Issue(path, f"{place}{error.message}", _line(path, source)))
    return issues


def _cross_check(source: Source) -> list[Issue]:
    data = source.data
    destinations = data.get("destinations")
    known = list(destinations) if isinstance(destinations, dict) else []
    issues: list[Issue] = []
    for name in known:
        if not _NAME.match(name):
            path: Path = ("destinations", name)
            issues.append(
                Issue(
                    path,
                    f"destination name '{name}' may use only letters, digits, '_', '-' and '.'",
                    source.key_lines.get(path),
                )
            )
    routes = data.get("routes")
    if not isinstance(routes, list):
        return issues
    seen: dict[str, int] = {}
    for index, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        name = route.get("name")
        if isinstance(name, str):
            if name in seen:
                path = ("routes", index, "name")
                issues.append(
                    Issue(
                        path,
                        f"duplicate route name '{name}' (also routes[{seen[name]}])",
                        _line(path, source),
                    )
                )
            seen.setdefault(name, index)
        targets = route.get("to")
        if not isinstance(targets, list):
            continue
        for position, target in enumerate(targets):
            if isinstance(target, str) and target not in known:
                path = ("routes", index, "to", position)
                issues.append(
                    Issue(
                        path,
                        f"unknown destination '{target}'{did_you_mean(target, known)}",
                        source.line_of(path),
                    )
                )
    return issues
