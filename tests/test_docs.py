"""The README stays true: every config key and every command is documented."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from relay.cli import build_parser
from relay.config.model import Config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def models(model: type[BaseModel]) -> set[type[BaseModel]]:
    found = {model}
    for field in model.model_fields.values():
        for argument in [field.annotation, *_nested(field.annotation)]:
            if isinstance(argument, type) and issubclass(argument, BaseModel):
                found |= models(argument)
    return found


def _nested(annotation: object) -> list[object]:
    arguments = list(typing.get_args(annotation))
    for argument in list(arguments):
        arguments += _nested(argument)
    return arguments


def test_every_config_key_is_in_the_readme() -> None:
    keys = {field.alias or name for model in models(Config)
            for name, field in model.model_fields.items()}
    assert len(keys) > 25
    missing = sorted(key for key in keys if not re.search(rf"\b{re.escape(key)}:", README))
    assert missing == [], f"document these config keys in README.md: {missing}"


def test_every_command_and_option_is_in_the_readme() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    missing = []
    for name, sub in commands.items():
        nested = [(f"{name} {n}", s) for n, s in
                  (sub._subparsers._group_actions[0].choices.items() if sub._subparsers else [])]
        for full, command in nested or [(name, sub)]:
            if f"relay {full}" not in README:
                missing.append(f"relay {full}")
            for action in command._actions:
                missing += [option for option in action.option_strings
                            if option.startswith("--") and option not in ("--help", "--config")
                            and option not in README]
    assert missing == [], f"document in README.md: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    head = README.split("\n## ", 1)[0]
    assert "make run" in head and "make test" in head
