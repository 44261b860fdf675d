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


def test_the_module_table_lists_every_module() -> None:
    """Each module is named in README's "How it works" table: by its path, or by its file
    name (or its sub-package's folder) in the row of a package that holds it."""
    table = README.split("| module | concern |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| `")]
    missing = []
    for module in sorted((ROOT / "relay").rglob("*.py")):
        relative = module.relative_to(ROOT)
        if relative.as_posix() == "relay/__init__.py" or (
            module.name == "__init__.py" and module.parent.name != "relay"
        ):
            continue  # the package itself, listed by its folder
        names = {f"`{relative.as_posix()}`"}
        for package in relative.parents:
            if package.as_posix() in ("relay", "."):
                break
            inner = module.relative_to(ROOT / package).parts[0]
            names |= {f"`{package.as_posix()}/`+`{inner}`", f"`{package.as_posix()}/`+`{inner}/`"}
        if not any(
            name in paths + concern
            if "+" not in name
            else name.split("+")[0] in paths and name.split("+")[1] in concern
            for paths, concern in rows
            for name in names
        ):
            missing.append(relative.as_posix())
    assert missing == [], f"list these modules in README.md's module table: {missing}"


# Paths the repository creates but does not keep (bench output).
_GENERATED = ("bench/results",)


def test_code_and_docs_cite_only_files_in_the_repository() -> None:
    pattern = re.compile(r"(?<![\w./-])((?:relay|tests|bench|docs|config|deploy)/[\w./*-]*\w)")
    texts = [*ROOT.glob("relay/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py"),
             *ROOT.glob("*.md"), *ROOT.glob("tests/**/*.md"), *ROOT.glob("docs" + "/*.md")]
    missing = set()
    for path in texts:
        for match in pattern.finditer(path.read_text()):
            cited = match.group(1).rstrip(".")
            if cited.startswith(_GENERATED) or cited in ("relay/asyncio", "relay/uvloop"):
                continue  # bench output, and the names of two benchmark variants
            if not (list(ROOT.glob(cited)) if "*" in cited else (ROOT / cited).exists()):
                missing.add(f"{path.relative_to(ROOT)}: {cited}")
    assert sorted(missing) == []
