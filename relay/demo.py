"""The newcomer's first minute: a signed sample event and the curl that posts it.

`make run` starts the relay on relay.yaml.example, whose OneRoute secret defaults to
EXAMPLE_SECRET; the relay then prints a ready-to-paste curl. With a real secret it does
not: a signed body in a log is a message anyone reading the log could post.
"""

from __future__ import annotations

import json
import shlex
import time

from relay.config.model import Config
from relay.ingest.signature import SIGNATURE_HEADER, sign

EXAMPLE_SECRET = "example-secret-change-me"  # noqa: S105 - public on purpose: the example's


def sample_event(now: float | None = None) -> dict[str, object]:
    """A newMessage event shaped like OneRoute's documented example, stamped with `now`."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now or time.time()))
    conversation = "bf9d96d9-e495-489a-a22a-206b0ea44d90"
    return {
        "event": "newMessage",
        "message": {
            "sender": {"name": "Ada (sample)", "authUser": False, "lastActivity": stamp},
            "externalId": None,
            "content": "Hello! Is my order on its way? <!channel> & <b>this</b> stays plain text.",
            "contentType": "TEXT",
            "imageUrl": None,
            "videoUrl": None,
            "documentUrl": None,
            "audioUrl": None,
            "quoted_message_id": None,
            "conversation_id": conversation,
        },
        "conversation": {
            "id": conversation,
            "customer": {"name": "Ada (sample)", "email": "ada@example.com"},
            "lastMessageAt": stamp,
            "status": "in-queue",
            "Channel": {"name": "Support line", "medium": "WHATSAPP"},
        },
    }


def curl_command(config: Config, now: float | None = None) -> str | None:
    """A curl posting a signed sample event, when the config uses the example secret."""
    secrets = [s.get_secret_value() for s in config.oneroute.secrets]
    if EXAMPLE_SECRET not in secrets:
        return None
    body = json.dumps(sample_event(now), separators=(",", ":"))
    host = config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{config.server.port}{config.server.path}"
    return " ".join(
        [
            "curl -sS",
            shlex.quote(url),
            "-H 'content-type: application/json'",
            "-H",
            shlex.quote(f"{SIGNATURE_HEADER}: {sign(EXAMPLE_SECRET, body.encode())}"),
            "--data-binary",
            shlex.quote(body),
        ]
    )
