"""relay.yaml: interpolation, validation, every error at once with FILE:LINE: path: message."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from relay.config.load import load_config, parse_config
from relay.config.schema import schema
from relay.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = """
oneroute:
  secrets: ["a-long-enough-secret"]
"""


def errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), "relay.yaml", env or {})
    return caught.value.lines()


def test_minimal_config_has_documented_defaults() -> None:
    config = parse_config(MINIMAL, environ={})
    assert (config.server.host, config.server.port) == ("0.0.0.0", 8080)
    assert config.server.path == "/webhooks/oneroute"
    assert config.storage == "sqlite:///relay.db"
    assert config.oneroute.allowed_ips == [] and config.routes == []
    assert config.delivery.give_up_after == 86400


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${PORT}", {"PORT": "9000"}, 9000),  # a plain scalar is typed after substitution
        ("${PORT:-8081}", {}, 8081),
        ("${PORT:-8081}", {"PORT": ""}, 8081),  # empty counts as unset for :-
        ("${PORT:-8081}", {"PORT": "7000"}, 7000),
    ],
)
def test_interpolation_in_plain_scalars(value: str, env: dict[str, str], expected: int) -> None:
    config = parse_config(f"server:\n  port: {value}\n{MINIMAL}", environ=env)
    assert config.server.port == expected


def test_interpolation_in_quoted_strings_and_escapes() -> None:
    env = {"SECRET": "from-the-environment", "SUFFIX": "x"}
    text = 'oneroute:\n  secrets: ["${SECRET}", "pre-$${SUFFIX}-${SUFFIX:+yes}${NOPE:+no}-long"]\n'
    config = parse_config(text, environ=env)
    values = [s.get_secret_value() for s in config.oneroute.secrets]
    assert values == ["from-the-environment", "pre-${SUFFIX}-yes-long"]


def test_unset_variable_is_one_clear_error_with_its_line() -> None:
    assert errors('\noneroute:\n  secrets: ["${ONEROUTE_SECRET}"]\n') == [
        "relay.yaml:3: oneroute.secrets[0]: environment variable ONEROUTE_SECRET is not set "
        "(set it, or write ${ONEROUTE_SECRET:-default} to give a default)"
    ]


def test_broken_reference_is_an_error() -> None:
    (line,) = errors(f'{MINIMAL}server:\n  host: "${{ONE ROUTE}}-host"\n')
    assert "relay.yaml:5: server.host: cannot read '${ONE ROUTE}'" in line


def test_every_error_is_reported_at_once_in_line_order() -> None:
    lines = errors(
        """
        server:
          port: 99999
          hots: x
        oneroute:
          secrets: ["short"]
          allowed_ips: ["1.2.3.4", "10.0.0.0/8", "nope"]
          trusted_proxies: ["::1", "2001:db8::/32", "300.1.1.1"]
        destinations:
          support-slack:
            type: slack
            token: xoxb-123456789
            chanel: C1
          tg:
            type: telegrm
          hook:
            type: slack
            webhook_url: https://hooks.slack.com/services/T0/B0/XXXXXXXX
            thread_by_conversation: true
          bad name:
            type: console
        routes:
          - name: refunds
            when:
              message.content: {regex: "("}
              event: {nott: x}
              message.sender.authUser: {exists: maybe}
            to: [suport-slack]
          - name: refunds
            to: []
        """
    )
    assert lines == [
        "relay.yaml:3: server.port: Input should be less than or equal to 65535",
        "relay.yaml:4: server.hots: unknown key 'hots' (did you mean 'host'?)",
        "relay.yaml:6: oneroute.secrets[0]: a secret must be at least 8 characters "
        "(it keys the HMAC)",
        "relay.yaml:7: oneroute.allowed_ips[2]: 'nope' is not an IP address or CIDR "
        "(e.g. 203.0.113.7, 10.0.0.0/8)",
        "relay.yaml:8: oneroute.trusted_proxies[2]: '300.1.1.1' is not an IP address or CIDR "
        "(e.g. 203.0.113.7, 10.0.0.0/8)",
        "relay.yaml:13: destinations.support-slack.chanel: unknown key 'chanel' "
        "(did you mean 'channel'?)",
        "relay.yaml:15: destinations.tg.type: unknown type 'telegrm' (did you mean 'telegram'?); "
        "use one of: slack, telegram, console",
        "relay.yaml:16: destinations.hook: thread_by_conversation needs a bot token: "
        "incoming webhooks cannot thread",
        'relay.yaml:20: destinations["bad name"]: destination name \'bad name\' may use only '
        "letters, digits, '_', '-' and '.'",
        'relay.yaml:25: routes[0].when["message.content"].regex: invalid regex \'(\': '
        "missing ) in '('",
        "relay.yaml:26: routes[0].when.event: unknown matcher 'nott': use regex, not or exists",
        'relay.yaml:27: routes[0].when["message.sender.authUser"]: exists takes true or false',
        "relay.yaml:28: routes[0].to[0]: unknown destination 'suport-slack' "
        "(did you mean 'support-slack'?)",
        "relay.yaml:29: routes[1].name: duplicate route name 'refunds' (also routes[0])",
        "relay.yaml:30: routes[1].to: must not be empty",
    ]


def test_a_destination_is_checked_whole_once_its_keys_are_valid() -> None:
    # pydantic checks how a destination's keys fit together only when each key is valid.
    lines = errors(
        """
        oneroute: {secrets: ["a-long-enough-secret"]}
        destinations:
          both:
            type: slack
            token: xoxb-123456789
            webhook_url: https://hooks.slack.com/services/T0/B0/XXXXXXXX
          neither: {type: slack}
          telegram-without-chat: {type: telegram, token: "123:abcdefgh"}
          hook-with-channel:
            type: slack
            webhook_url: https://hooks.slack.com/services/T0/B0/XXXXXXXX
            channel: C1
        """
    )
    assert lines == [
        "relay.yaml:4: destinations.both: set either token (with channel) or webhook_url, "
        "not both or neither",
        "relay.yaml:8: destinations.neither: set either token (with channel) or webhook_url, "
        "not both or neither",
        "relay.yaml:9: destinations.telegram-without-chat: token and chat_id are required "
        "(relay telegram-chats lists chat ids)",
        "relay.yaml:10: destinations.hook-with-channel: an incoming webhook posts to its own "
        "channel: remove channel",
    ]


def test_duplicate_keys_are_errors_not_silently_overwritten() -> None:
    lines = errors(
        """
        oneroute:
          secrets: ["a-long-enough-secret"]
        destinations:
          a: {type: console}
          a: {type: console}
        """
    )
    assert lines == [
        "relay.yaml:6: destinations.a: duplicate key 'a' (first defined on line 5)"
    ]


def test_missing_sections_and_wrong_types() -> None:
    lines = errors("server: []\nroutes: {}\n")
    assert "relay.yaml: oneroute: required" in lines[0] or any(
        line.endswith("oneroute: required") for line in lines
    )
    assert any(line.startswith("relay.yaml:1: server:") for line in lines)
    assert any(line.startswith("relay.yaml:2: routes:") for line in lines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key: [unclosed\n", "relay.yaml:2: invalid YAML"),
        ("- a\n- b\n", "relay.yaml:1: the config must be a mapping of keys"),
        ("", "relay.yaml:1: the config must be a mapping of keys (oneroute, destinations, "
         "routes, ...); found nothing"),
        ("just text\n", "found a string"),
    ],
)
def test_not_yaml_or_not_a_mapping(text: str, expected: str) -> None:
    (line,) = errors(text)
    assert expected in line


def test_missing_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)
    # Unreadable even for root (tests may run as root, where chmod 0 does not stop reads).
    with pytest.raises(ConfigError, match="cannot read: Input/output error"):
        load_config("/proc/self/mem")


def test_destinations_switched_off_by_an_empty_variable() -> None:
    text = """
    oneroute: {secrets: ["a-long-enough-secret"]}
    destinations:
      slack:
        type: slack
        enabled: ${SLACK_BOT_TOKEN:+true}
        token: "${SLACK_BOT_TOKEN:-}"
        channel: "${SLACK_CHANNEL:-}"
    """
    off = parse_config(textwrap.dedent(text), environ={})
    assert off.destinations["slack"].enabled is False
    on = parse_config(
        textwrap.dedent(text), environ={"SLACK_BOT_TOKEN": "xoxb-1-2-3", "SLACK_CHANNEL": "C1"}
    )
    assert on.destinations["slack"].enabled is True
    half = errors(text, {"SLACK_BOT_TOKEN": "xoxb-1-2-3"})
    assert half == [
        "relay.yaml:4: destinations.slack: channel is required with token "
        "(e.g. channel: C0123456789)"
    ]


def test_secrets_do_not_show_in_the_config_repr() -> None:
    config = parse_config(
        textwrap.dedent(
            """
            oneroute: {secrets: ["super-secret-value"]}
            destinations:
              t: {type: telegram, token: "123456:ABCDEF-token", chat_id: -100}
            storage: postgresql://relay:db-password-123@localhost/relay
            """
        ),
        environ={},
    )
    shown = repr(config)
    for secret in ("super-secret-value", "123456:ABCDEF-token"):
        assert secret not in shown
    assert set(config.secrets()) == {"super-secret-value", "123456:ABCDEF-token",
                                     "db-password-123"}


def test_example_configs_are_valid() -> None:
    examples = [ROOT / "relay.yaml.example", *sorted((ROOT / "config").glob("*.yaml"))]
    assert len(examples) >= 2
    for example in examples:
        load_config(example, environ={})  # raises with every problem if not


def test_example_config_delivers_for_real_when_credentials_are_set() -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-1-2-3", "SLACK_CHANNEL": "C0123456789",
           "TELEGRAM_BOT_TOKEN": "123:abcdefgh", "TELEGRAM_CHAT_ID": "-1001234567890"}
    config = load_config(ROOT / "relay.yaml.example", environ=env)
    assert all(d.enabled for d in config.destinations.values())
    assert config.destinations["support-telegram"].chat_id == -1001234567890
    bare = load_config(ROOT / "relay.yaml.example", environ={})
    assert [n for n, d in bare.destinations.items() if d.enabled] == ["terminal"]


def test_schema_file_is_in_sync_with_the_model() -> None:
    on_disk = json.loads((ROOT / "config" / "relay.schema.json").read_text())
    assert on_disk == schema(), "run `make schema` to regenerate config/relay.schema.json"


def test_template_errors_are_reported_with_their_lines(tmp_path: Path) -> None:
    (tmp_path / "good.j2").write_text("{{ sender }}: {{ content }}\n")
    (tmp_path / "bad.j2").write_text("ok\n{% if content %}\nno endif\n")
    config = tmp_path / "relay.yaml"
    config.write_text(textwrap.dedent("""
        oneroute: {secrets: ["a-long-enough-secret"]}
        destinations:
          a:
            type: slack
            webhook_url: https://hooks.slack.com/services/T0/B0/XXXXXXXX
            template: |
              {{ sender }}
              {{ content | }}
          b:
            type: telegram
            token: "123:abcdefgh"
            chat_id: -1
            template_file: bad.j2
          c: {type: telegram, token: "123:abcdefgh", chat_id: -1, template_file: good.j2}
          d: {type: telegram, token: "123:abcdefgh", chat_id: -1, template_file: none.j2}
          e: {type: console, template: "x"}
          f: {type: slack, token: xoxb-123456789, channel: C1, template: x, template_file: good.j2}
    """))
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={})
    lines = [line.removeprefix(f"{config}:") for line in caught.value.lines()]
    assert lines[0].startswith("7: destinations.a.template: line 2: ")
    assert lines[1].startswith("14: destinations.b.template_file: bad.j2:")
    assert "endif" in lines[1] or "end of template" in lines[1]
    assert lines[2] == (
        "16: destinations.d.template_file: cannot read none.j2: No such file or directory"
    )
    assert lines[3] == (
        "17: destinations.e.template: only slack and telegram destinations take a template"
    )
    assert lines[4] == "18: destinations.f.template: set template or template_file, not both"
    assert len(lines) == 5


def test_example_config_with_only_the_telegram_token_stays_valid_for_telegram_chats() -> None:
    # `relay telegram-chats` needs a valid config to find the chat id that is still missing.
    config = load_config(ROOT / "relay.yaml.example", environ={"TELEGRAM_BOT_TOKEN": "1:abcdefgh"})
    telegram = config.destinations["support-telegram"]
    assert telegram.enabled is False and telegram.token is not None


# --- interpolation: nested references, as in docker compose -----------------------------------


def host(value: str, env: dict[str, str]) -> str:
    text = f'{MINIMAL}server:\n  host: "{value}"\n'
    return parse_config(text, environ=env).server.host


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${A:-${B}}", {"B": "b"}, "b"),
        ("${A:-${B}}", {"A": "a"}, "a"),  # B is unset, but its default is not needed
        ("${A:-${B:-${C}}}", {"C": "c"}, "c"),
        ("${A:-${B:-${C:-deep}}}-x", {}, "deep-x"),
        ("${A:+${B}}", {"A": "1", "B": "b"}, "b"),
        ("${A:+${B}}", {}, ""),
        ("${A:+[${B:-none}]}", {"A": "1"}, "[none]"),
        ("x${A:-}y", {}, "xy"),
        ("${A-default}", {"A": ""}, ""),  # without the colon: only when unset
        ("${A-default}", {}, "default"),
        ("${A+word}", {"A": ""}, "word"),
        ("${A+word}", {}, ""),
        ("${A:?say why}", {"A": "set"}, "set"),
        ("$${A}", {"A": "a"}, "${A}"),
        ("${A:-$${B}}", {}, "${B}"),
        ("${A:-$$}", {}, "$"),
        ("price $5, {braces} and } alone", {}, "price $5, {braces} and } alone"),
        ("${A:-x y}", {}, "x y"),
        ("${A:-a}}", {}, "a}"),  # a brace after the reference is text, as in compose
    ],
)
def test_nested_interpolation(value: str, env: dict[str, str], expected: str) -> None:
    assert host(value, env) == expected


@pytest.mark.parametrize(
    ("value", "fragment", "problem"),
    [
        ("${", "${", "it is not closed with }"),
        ("x ${A", "${A", "it is not closed with }"),
        ("${1A}", "${1A}", "a variable name is letters, digits and _"),
        ("${}", "${}", "the variable name is missing"),
        ("${A B}", "${A B}", "after the name comes }, :-default"),
        ("${A:x}", "${A:x}", "after the name comes }, :-default"),
        ("${A:-${B}", "${A:-${B}", "it is not closed with }"),
        ("${A:-${1B}}", "${1B}", "a variable name is letters"),
        ("${A:+${B:-x}", "${A:+${B:-x}", "it is not closed with }"),
    ],
)
def test_malformed_references_are_errors_naming_them(
    value: str, fragment: str, problem: str
) -> None:
    (line,) = errors(f'{MINIMAL}server:\n  host: "{value}"\n', {"A": "a", "B": "b"})
    assert line.startswith(f"relay.yaml:5: server.host: cannot read '{fragment}': {problem}")
    assert line.endswith("write ${NAME}, ${NAME:-default}, ${NAME:+word} or ${NAME:?message}, "
                         "or $$ for a literal $")


def test_required_variables_say_their_message() -> None:
    text = f'{MINIMAL}server:\n  host: "${{HOST:?set HOST to the address to listen on}}"\n'
    assert errors(text) == [
        "relay.yaml:5: server.host: environment variable HOST is not set: "
        "set HOST to the address to listen on"
    ]
    assert errors(text, {"HOST": ""}) == [
        "relay.yaml:5: server.host: environment variable HOST is empty: "
        "set HOST to the address to listen on"
    ]
    assert errors(f'{MINIMAL}server:\n  host: "${{A:-${{B}}}}"\n') == [
        "relay.yaml:5: server.host: environment variable B is not set "
        "(set it, or write ${B:-default} to give a default)"
    ]


# --- numbers: finite and in range -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (".nan", "a duration must be a number of seconds, not NaN"),
        (".inf", "a duration must be at most 100 years (36500d)"),
        ("-.inf", "a duration must be positive"),
        ("1.0e+999", "a duration must be at most 100 years (36500d)"),
        ("1" + "0" * 400, "a duration must be at most 100 years (36500d)"),  # no float holds it
        ("36501d", "a duration must be at most 100 years (36500d)"),
        ("3153600001", "a duration must be at most 100 years (36500d)"),
        ("1e999", "'1e999' is not a duration: write e.g. 30s, 10m, 24h or 7d"),
        ("0s", "a duration must be positive"),
        ("true", "expected a duration like 30s, 10m, 24h or 7d"),
    ],
)
def test_durations_are_finite_positive_and_at_most_100_years(value: str, message: str) -> None:
    for key in ("retention: {}", "delivery: {{timeout: {}}}", "delivery: {{give_up_after: {}}}"):
        (line,) = errors(f"{MINIMAL}{key.format(value)}\n")
        assert line.startswith("relay.yaml:4: ") and f": {message}" in line


def test_the_longest_duration_is_accepted() -> None:
    assert parse_config(f"{MINIMAL}retention: 36500d\n", environ={}).retention == 36500 * 86400


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+999", "true", "nan", "'inf'"])
def test_max_per_second_is_a_finite_number(value: str) -> None:
    text = f"{MINIMAL}destinations:\n  out: {{type: console, max_per_second: {value}}}\n"
    assert errors(text) == [
        "relay.yaml:5: destinations.out.max_per_second: expected a finite number above 0 "
        "(e.g. 1 or 0.5)"
    ]
