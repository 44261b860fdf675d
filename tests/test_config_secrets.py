"""No config error shows a secret: not in `relay check`, not in a refused reload's log (both
print str(ConfigError)), whatever is wrong with the value — YAML's own messages, tags and
aliases, broken ${...} references, wrong types and shapes, or a storage URL whose password
holds an unencoded `@` or `/`. And the storage password is found however it is written."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.cli import main
from relay.config.load import parse_config
from relay.errors import ConfigError

SECRET = "Zq8Wv3Lm9Tk2Rp7X"
VALID = 'oneroute: {secrets: ["a-long-enough-secret"]}\n'

# Where a secret goes: a config text with the value written at {v} (in block style).
FIELDS: dict[str, str] = {
    "oneroute.secrets": "oneroute:\n  secrets:\n    - {v}\n",
    "slack token": VALID
    + "destinations:\n  s:\n    type: slack\n    channel: C1\n    token: {v}\n",
    "webhook_url": VALID + "destinations:\n  s:\n    type: slack\n    webhook_url: {v}\n",
    "telegram token": VALID + "destinations:\n  t:\n    type: telegram\n    chat_id: 1\n"
    "    token: {v}\n",
    "storage": VALID + "storage: {v}\n",
}

# Malformed values holding the secret `s`, as written in the file.
MALFORMED: list[Callable[[str], str]] = [
    lambda s: f'"{s} {s}"',  # a space
    lambda s: f'"{s}\\n"',  # a newline read from a file
    lambda s: f'"\\t{s}"',
    lambda s: f'" {s}"',
    lambda s: f'"{s}\u00a0x"',
    lambda s: f"*{s}",  # YAML: an alias to an anchor that does not exist
    lambda s: f"!{s}",  # YAML: a tag
    lambda s: f"!{s} x",
    lambda s: f"!{s}!x y",  # a tag handle
    lambda s: f"!<{s} x",
    lambda s: f"!!int {s}",
    lambda s: f"!!float {s}",
    lambda s: f"!!timestamp {s}",
    lambda s: f"!!binary {s}",
    lambda s: f"&{s}",  # an anchor, and no value
    lambda s: f'"${{{s}"',  # broken references
    lambda s: f'"x${{{s} y}}"',
    lambda s: f'"${{{s}:x}}"',
    lambda s: f'"${{1{s}}}"',
    lambda s: f'"${{A:-{s}"',
    lambda s: f'"{s}${{"',
    lambda s: f"[{s}]",  # wrong types
    lambda s: f"{{{s}: 1}}",
    lambda s: f"{{key: {s}}}",
    lambda s: f"{{{s}: !x y}}",  # a key inside a secret: no error path names it
    lambda s: f"{{{s}: 1, {s}: 2}}",
    lambda s: f"'{s}",  # broken YAML
    lambda s: f'"{s}',
    lambda s: f"'{s}'x",
    lambda s: f"{s}: x: y",
    lambda s: f"hooks.slack.com/services/T000/B000/{s}",  # no scheme
    lambda s: f'"https://hooks.slack.com/services/T000/B000/{s} x"',
    lambda s: f"https://hooks.slack.com/services/T000/B000/{s}?#/x",
    lambda s: f"{s}/bot",
    lambda s: f"postgresql://relay:p@ss/{s}@db:5432/relay",  # unencoded @ and /
    lambda s: f"postgresql://relay:{s}/w@db:5432/relay",
    lambda s: f"postgresql://relay:{s}@x@db/relay",
    lambda s: f"postgresql://relay:{s}?x@db/relay",
    lambda s: f'"postgresql://relay:{s}#x@db/relay"',
    lambda s: f"postgresql://relay:{s}@db:54x2/relay",
    lambda s: f'"postgresql://relay:{s} x@db/relay"',
    lambda s: f"postgresql://db/relay?sslkey=/k@x&password={s}",
    lambda s: f"mysql://relay:{s}@db/relay",
]


def fill(template: str, value: str) -> str:
    return template.replace("{v}", value)


def pieces(secret: str, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def leaked(text: str, secret: str) -> list[str]:
    return [piece for piece in pieces(secret) if piece in text]


def config_error(text: str) -> str | None:
    try:
        parse_config(text, "relay.yaml", {})
    except ConfigError as error:
        return str(error)
    return None


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("malformed", range(len(MALFORMED)))
def test_no_config_error_shows_a_secret(field: str, malformed: int) -> None:
    value = MALFORMED[malformed](SECRET)
    message = config_error(fill(FIELDS[field], value))
    assert message is None or leaked(message, SECRET) == [], message


@settings(max_examples=150, deadline=None)
@given(
    secret=st.text(
        # Letters rare in English, so that no 8 characters of a secret are in a message's
        # own words by chance ("00stinatio" is in "destinations").
        alphabet="QXZJKVWYqxzjkvwy23456789_-",
        min_size=10,
        max_size=30,
    ).filter(lambda s: s[0].isalnum()),
    field=st.sampled_from(sorted(FIELDS)),
    malformed=st.sampled_from(MALFORMED),
)
def test_no_config_error_shows_any_secret(
    secret: str, field: str, malformed: Callable[[str], str]
) -> None:
    message = config_error(fill(FIELDS[field], malformed(secret)))
    assert message is None or leaked(message, secret) == [], message


def test_relay_check_shows_no_secret(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    file = tmp_path / "relay.yaml"
    shown = []
    for field, template in FIELDS.items():
        for malformed in MALFORMED:
            file.write_text(fill(template, malformed(SECRET)))
            code = main(["check", "-c", str(file)])
            out, err = capsys.readouterr()
            assert code in (0, 1)
            if leaked(out + err, SECRET):
                shown.append(f"{field} = {malformed(SECRET)}: {out + err}")
    assert shown == []


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://relay:p@ss/w0rd-Zq8Wv3Lm9Tk2@db:5432/relay",
        "postgresql://relay:Zq8Wv3Lm9Tk2/w0rd@db:5432/relay",
        "postgresql://relay:Zq8Wv3Lm9Tk2@ss@db:5432/relay",
        "postgresql://relay:Zq8W?v3Lm9Tk2@db/relay",
        "postgres://relay:Zq8W#v3Lm9Tk2@db/relay",
    ],
)
def test_an_unencoded_storage_password_is_an_error_saying_to_encode_it(url: str) -> None:
    lines = error_lines(f'{VALID}storage: "{url}"\n')
    assert lines == [
        "relay.yaml:2: storage: the password in the storage URL (or its user name, or a query "
        "value) holds a character that must be percent-encoded: write @ as %40, / as %2F, "
        "? as %3F, # as %23, % as %25 and a space as %20 (the URL is not shown: it holds the "
        "password)"
    ]


def error_lines(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "relay.yaml", {})
    return caught.value.lines()


@pytest.mark.parametrize(
    ("url", "passwords"),
    [
        ("postgresql://relay:p%40ss%2Fw0rd@db:5432/relay", {"p@ss/w0rd", "p%40ss%2Fw0rd"}),
        ("postgresql://relay:plain-password@db/relay", {"plain-password"}),
        ("postgresql://relay:pass:word:x@db/relay", {"pass:word:x"}),
        ("postgresql://relay@db/relay?sslmode=require&password=query-password", {"query-password"}),
        ("postgresql://relay:in%20url@/relay?host=/run/postgresql", {"in url", "in%20url"}),
        ("postgresql://db/relay", set()),
        ("sqlite:///relay.db", set()),
    ],
)
def test_secrets_find_the_storage_password_however_it_is_written(
    url: str, passwords: set[str]
) -> None:
    config = parse_config(f'{VALID}storage: "{url}"\n', environ={})
    assert set(config.secrets()) - {"a-long-enough-secret"} == passwords


def test_the_store_error_masks_a_password_given_as_a_query_parameter(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "relay.yaml"
    file.write_text(
        textwrap.dedent(f"""\
        {VALID}
        storage: postgresql://relay@127.0.0.1:1/relay?connect_timeout=2&password={SECRET}
        """)
    )
    assert main(["dead", "list", "-c", str(file)]) == 1
    out, err = capsys.readouterr()
    assert err.startswith(
        "storage postgresql://relay@127.0.0.1:1/relay?connect_timeout=2&password="
    )
    assert leaked(out + err, SECRET) == [], err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("oneroute.secrets", '"a-long-secret\\n"', "holds a line break, tab or other invisible"),
        ("oneroute.secrets", '" a-long-secret"', "starts or ends with a space: remove it"),
        ("slack token", "xoxb-1 2-3456789", "holds a space, which no token has: remove it"),
        ("telegram token", "123456:ABC/../x", "a bot token has only letters, digits, ':'"),
        ("webhook_url", "hooks.slack.com/services/T0/B0/XXXXXXXX", "not an http(s) URL"),
        ("webhook_url", '"https://hooks.slack.com/services/T0/B0/XX XX"', "without spaces"),
        ("storage", "postgresql://relay:secret@db:54x2/relay", "the port in the storage URL"),
        ("storage", '"postgresql://relay:sec ret@db/relay"', "holds a space or a control"),
    ],
)
def test_odd_secrets_are_errors_that_say_what_is_wrong(
    field: str, value: str, message: str
) -> None:
    (line,) = error_lines(fill(FIELDS[field], value))
    assert message in line
    assert "not shown" in line


def test_a_secret_pasted_into_another_key_is_masked_in_that_keys_error() -> None:
    lines = error_lines(
        f'oneroute: {{secrets: ["{SECRET}"], allowed_ips: ["{SECRET}"]}}\n'
        f'destinations: {{s: {{type: slack, token: "{SECRET}", channel: C1,\n'
        f'  api_url: "{SECRET}"}}}}\n'
    )
    assert lines == [
        "relay.yaml:1: oneroute.allowed_ips[0]: '[REDACTED]' is not an IP address or CIDR "
        "(e.g. 203.0.113.7, 10.0.0.0/8)",
        "relay.yaml:3: destinations.s.api_url: '[REDACTED]' is not an http(s) URL",
    ]


def test_a_broken_reference_in_a_secret_is_described_without_its_text() -> None:
    (line,) = error_lines(fill(FIELDS["slack token"], '"${SLACK_BOT_TOKEN"'))
    assert line == (
        "relay.yaml:6: destinations.s.token: cannot read a ${...} reference (not shown: the "
        "value is a secret): it is not closed with }; write ${NAME}, ${NAME:-default}, "
        "${NAME:+word} or ${NAME:?message}, or $$ for a literal $"
    )
