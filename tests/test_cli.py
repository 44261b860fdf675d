"""The relay command: exit codes 0/1/2, one clear line per failure, no tracebacks, no secrets."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from relay.cli import main
from relay.ingest.signature import sign
from relay.store.base import Incoming
from relay.store.sqlite import SQLiteStore

SAMPLES = Path(__file__).parent / "data" / "oneroute"
SECRET = "cli-test-secret-123"
SLACK_TOKEN = "xoxb-cli-test-token-0123456789"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/cli-webhook-secret-path"
TELEGRAM_TOKEN = "123456:cli-telegram-token-abcdef"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "relay.yaml"
    path.write_text(textwrap.dedent(f"""
        oneroute: {{secrets: ["{SECRET}"]}}
        storage: sqlite:///{tmp_path}/relay.db
        destinations:
          slack: {{type: slack, token: "{SLACK_TOKEN}", channel: C0123456789}}
          hook: {{type: slack, webhook_url: "{WEBHOOK}"}}
          telegram: {{type: telegram, token: "{TELEGRAM_TOKEN}", chat_id: -1001, topic_id: 7}}
          quiet: {{type: console, enabled: false}}
        routes:
          - name: messages
            when: {{event: newMessage}}
            to: [slack, hook, telegram, quiet]
          - name: rest
            to: [quiet]
    """))
    return path




def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_ok(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, _ = run(capsys, "check", "-c", str(config_file))
    assert code == 0
    assert out == (
        f"{config_file}: OK (4 destinations, 3 enabled; 2 routes, 0 regexes)\n"
        'regexes match in linear time (RE2; the syntax is in README.md, "Routing")\n'
    )


def test_check_reports_every_error_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('oneroute: {secrets: ["0123456789"]}\nroutes:\n  - to: [nowhere]\n'
                   "    when: {event: {regex: '['}}\n")
    code, out, err = run(capsys, "check", "-c", str(bad))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"{bad}:3: routes[0].to[0]: unknown destination 'nowhere'",
        f"{bad}:4: routes[0].when.event.regex: invalid regex '[': missing ] in '['",
    ]


def test_missing_config_names_the_way_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELAY_CONFIG", raising=False)
    code, _, err = run(capsys, "check")
    assert code == 1
    assert err == ("relay.yaml: no such file (copy relay.yaml.example to relay.yaml, "
                   "or pass -c FILE)\n")


def test_config_defaults_to_relay_config_env(
    capsys: pytest.CaptureFixture[str], config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_CONFIG", str(config_file))
    code, out, _ = run(capsys, "check")
    assert code == 0 and "OK" in out


@pytest.mark.parametrize(
    "argv",
    [[], ["bogus"], ["route"], ["check", "--nope"], ["dead"], ["dead", "retry"],
     ["dead", "retry", "x"], ["serve", "--log-format", "xml"]],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], config_file: Path, argv: list[str]
) -> None:
    if argv[:2] == ["dead", "retry"]:
        argv = [*argv, "-c", str(config_file)]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits by itself
        code = int(exit_.code or 0)
    _, err = capsys.readouterr()
    assert code == 2
    assert "usage: relay" in err


def test_route_prints_routes_and_destinations(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    event = SAMPLES / "new-message-text.json"
    code, out, _ = run(capsys, "route", "-c", str(config_file), str(event))
    assert code == 0
    assert out.splitlines() == [
        "routes: messages",
        "  -> slack (slack)",
        "  -> hook (slack)",
        "  -> telegram (telegram)",
        "  -> quiet (console) (off: not delivered)",
    ]


def test_route_render_prints_exact_payloads_without_secrets(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    event = SAMPLES / "new-message-image.json"
    code, out, _ = run(capsys, "route", "-c", str(config_file), str(event), "--render")
    assert code == 0
    rendered = json.loads(out)
    assert list(rendered) == ["slack", "hook", "telegram"]
    assert rendered["slack"][0]["call"] == "chat.postMessage"
    assert rendered["slack"][0]["body"]["channel"] == "C0123456789"
    assert rendered["hook"][0]["call"] == "incoming webhook"
    assert "channel" not in rendered["hook"][0]["body"]
    first_call = rendered["telegram"][0]
    assert first_call["body"]["chat_id"] == -1001 and first_call["body"]["message_thread_id"] == 7
    for secret in (SLACK_TOKEN, WEBHOOK, TELEGRAM_TOKEN, SECRET):
        assert secret not in out


def test_route_render_of_several_events_shows_them_coalesced(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    text, image = SAMPLES / "new-message-text.json", SAMPLES / "new-message-image.json"
    code, out, _ = run(
        capsys, "route", "-c", str(config_file), str(text), str(text), str(image), "--render"
    )
    assert code == 0
    rendered = json.loads(out)
    (slack,) = rendered["slack"]  # three events, one message: Slack shows images as blocks
    assert slack["body"]["text"].startswith("3 messages\n")
    methods = [call["call"] for call in rendered["telegram"]]
    assert methods == ["sendMessage", "sendPhoto"]  # the two texts together; the photo alone
    code, out, _ = run(capsys, "route", "-c", str(config_file), str(text), str(image))
    assert out.count("routes: messages") == 2 and f"{text}:" in out and f"{image}:" in out


def test_route_with_bad_event_file(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path
) -> None:
    array = tmp_path / "array.json"
    array.write_text("[1]")
    code, _, err = run(capsys, "route", "-c", str(config_file), str(array))
    assert (code, err) == (1, f"{array}: the body must be a JSON object\n")
    code, _, err = run(capsys, "route", "-c", str(config_file), str(tmp_path / "none.json"))
    assert code == 1 and "cannot read: No such file or directory" in err


def test_sign_prints_the_signature_of_the_exact_bytes(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    event = SAMPLES / "new-message-text.json"
    code, out, _ = run(capsys, "sign", "-c", str(config_file), str(event))
    assert code == 0
    assert out == sign(SECRET, event.read_bytes()) + "\n"
    assert SECRET not in out


def test_dead_list_and_retry(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path
) -> None:
    async def prepare() -> None:
        store = SQLiteStore(tmp_path / "relay.db")
        await store.open()
        await store.accept(Incoming(b"{}", "newMessage", "c", ("slack", "telegram"), 1e9))
        for destination, reason, detail in [
            ("slack", "channel_not_found", "Slack: channel_not_found"),
            ("telegram", "unauthorized", f"token {TELEGRAM_TOKEN} was rejected"),
        ]:
            (row,) = await store.claim(destination, 1e9 + 1, 1, 60, "t")
            await store.bury([row.id], 1e9 + 2, reason, detail)
        await store.close()

    asyncio.run(prepare())
    code, out, _ = run(capsys, "dead", "list", "-c", str(config_file))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "DESTINATION", "REASON", "DIED", "(UTC)", "EVENT", "DETAIL"]
    assert lines[1].split()[:3] == ["1", "slack", "channel_not_found"]
    assert "2001-09-09 01:46:42" in lines[1]
    assert TELEGRAM_TOKEN not in out and "[REDACTED]" in lines[2]
    code, out, _ = run(capsys, "dead", "retry", "-c", str(config_file), "1", "77")
    assert (code, out) == (0, "1 dead deliveries put back in line "
                              "(1 of the ids given are not dead deliveries)\n")
    code, out, _ = run(capsys, "dead", "retry", "-c", str(config_file), "--all")
    assert (code, out) == (0, "1 dead deliveries put back in line\n")
    code, out, _ = run(capsys, "dead", "list", "-c", str(config_file))
    assert out == "no dead deliveries\n"


def test_dead_list_when_the_store_cannot_open(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "relay.yaml"
    config.write_text(f'oneroute: {{secrets: ["{SECRET}"]}}\n'
                      f"storage: sqlite:///{tmp_path}/missing-dir/relay.db\n")
    code, _, err = run(capsys, "dead", "list", "-c", str(config))
    assert code == 1
    assert err.startswith(f"storage sqlite:///{tmp_path}/missing-dir/relay.db: ")
    assert "does not exist" in err and "Traceback" not in err


def test_python_dash_m_relay_and_version() -> None:
    result = subprocess.run([sys.executable, "-m", "relay", "--version"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("oneroute-relay ")


def test_doctor_and_telegram_chats_are_wired(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "relay.yaml"
    config.write_text(f'oneroute: {{secrets: ["{SECRET}"]}}\n'
                      "destinations: {out: {type: console}}\n")
    code, out, _ = run(capsys, "doctor", "-c", str(config))
    assert code == 0
    assert out.splitlines()[0].startswith("ok        out (console)")
    code, out, _ = run(capsys, "telegram-chats", "-c", str(config))
    assert code == 1 and "no Telegram destination with a token" in out
