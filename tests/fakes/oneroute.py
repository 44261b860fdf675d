"""A fake OneRoute API: "Send Session Message", with the rules the relay must live with.

    POST /api/public/conversation/text   apiKey: <key>   {"from", "to", "message"}

- a missing or wrong `apiKey` → 401 `{"success": false, "message": "Invalid API Key"}`;
- a body that is not a JSON object with `from`, `to` and `message` strings → 400;
- a `from` that is not one of the business's numbers → 400;
- a customer (`to`) who has not written within 24 hours (the WhatsApp session window:
  `customer_wrote(number)` opens it) → 400 with OneRoute-like words;
- else 200 `{"success": true, "data": {...}}`, recorded in `.sent`; and, when
  `echo_to(url, secret)` was set, the echo OneRoute sends for every message an agent
  sends: a signed `newMessage` webhook with `message.sender.authUser: true` for the
  conversation `customer_wrote` named.

Faults (`.faults`, shared with the other fakes: tests/fakes/base.py) apply to every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.base import FakeServer

API_KEY = "oneroute-fake-api-key-0123456789"
BUSINESS = "+2348000000001"
WINDOW = 24 * 3600.0


def customer_event(conversation: str, n: int, name: str = "newMessage") -> bytes:
    """A webhook event of the n-th message of a conversation on the "Lagos line" (a
    customer, a channel: what the console lists); its text is `<conversation>-msg-<n>`."""
    return json.dumps(
        {
            "event": name,
            "message": {"content": f"{conversation}-msg-{n}", "sender": {"name": "Ada"}},
            "conversation": {
                "id": conversation,
                "customer": {"name": "Ada Customer"},
                "Channel": {"name": "Lagos line", "medium": "WHATSAPP"},
            },
        }
    ).encode()


@dataclass(frozen=True)
class SessionMessage:
    """What OneRoute accepted: from the business number to a customer."""

    business: str
    customer: str
    text: str
    at: float


class FakeOneRoute(FakeServer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keys = {API_KEY}
        self.businesses = {BUSINESS}
        self.sent: list[SessionMessage] = []
        self._last_wrote: dict[str, float] = {}
        self._conversations: dict[str, str] = {}  # customer number -> conversation id
        self._echo: tuple[str, str] | None = None
        self._echoes: set[asyncio.Task[None]] = set()
        self.app.router.add_post("/api/public/conversation/text", self._send)

    @property
    def api_url(self) -> str:
        return self.base_url

    def customer_wrote(self, number: str, conversation: str = "", at: float | None = None) -> None:
        """The customer wrote (to `conversation`): a session window opens for 24 hours."""
        self._last_wrote[number] = self.clock() if at is None else at
        if conversation:
            self._conversations[number] = conversation

    def echo_to(self, url: str, secret: str) -> None:
        """Post the `newMessage` echo of every accepted message to `url`, signed."""
        self._echo = (url, secret)

    async def stop(self) -> None:
        for task in list(self._echoes):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().stop()

    async def _send(self, request: web.Request) -> web.Response:
        fault = self.faults.take()
        if not await self.pause(fault.delay):
            return web.Response(status=503)
        if fault.raw is not None:
            self.note("send", fault.raw.status, "raw")
            return fault.raw.response()
        if fault.status is not None:
            return self._answer(fault.status, False, "Too many requests" if fault.status == 429
                                else "Service unavailable", retry_after=fault.retry_after)
        if request.headers.get("apiKey") not in self.keys:
            return self._answer(401, False, "Invalid API Key")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._answer(400, False, "The body must be JSON")
        fields = ("from", "to", "message")
        if not isinstance(body, dict) or not all(isinstance(body.get(f), str) for f in fields):
            return self._answer(400, False, "from, to and message are required")
        if body["from"] not in self.businesses:
            return self._answer(400, False, f"{body['from']} is not one of your channels")
        wrote = self._last_wrote.get(body["to"])
        if wrote is None or self.clock() - wrote > WINDOW:
            return self._answer(
                400, False, "The customer has not messaged in the last 24 hours: outside the "
                "session window, send a template message instead",
            )
        message = SessionMessage(body["from"], body["to"], body["message"], self.clock())
        self.sent.append(message)
        if self._echo is not None:
            task = asyncio.create_task(self._post_echo(message))
            self._echoes.add(task)
            task.add_done_callback(self._echoes.discard)
        return self._answer(200, True, data={"id": f"msg-{len(self.sent)}", "to": body["to"]})

    def _answer(
        self, status: int, success: bool, message: str = "", data: Any = None,
        retry_after: float | None = None,
    ) -> web.Response:
        self.note("send", status, None if success else message)
        body: dict[str, Any] = {"success": success}
        if message:
            body["message"] = message
        if data is not None:
            body["data"] = data
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return web.json_response(body, status=status, headers=headers)

    async def _post_echo(self, message: SessionMessage) -> None:
        from relay.ingest.signature import sign

        assert self._echo is not None
        url, secret = self._echo
        conversation = self._conversations.get(message.customer, "")
        event = {
            "event": "newMessage",
            "message": {
                "sender": {"name": "Agent", "authUser": True},
                "content": message.text,
                "contentType": "TEXT",
                "conversation_id": conversation,
            },
            "conversation": {"id": conversation, "status": "open"},
        }
        body = json.dumps(event).encode()
        await asyncio.sleep(0.05)  # OneRoute echoes shortly after it answers
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with aiohttp.ClientSession() as session, session.post(
                url, data=body, headers={"x-oneroute-signature": sign(secret, body)}
            ) as response:
                await response.read()

