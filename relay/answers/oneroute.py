"""OneRoute's API, as the relay uses it to answer customers: "Send Session Message".

    POST {api_url}/api/public/conversation/text
    apiKey: <the key from OneRoute's settings>
    {"from": <business number>, "to": <customer number>, "message": <text>}

OneRoute answers `{"success": true, "data": {...}}`, or `{"success": false, "message":
reason}` with a 4xx status — e.g. when WhatsApp's 24-hour session window has closed.
`classify_oneroute` decides what an answer means, as the platforms' classifiers do
(relay/integrations/slack/classify.py): 401 (OneRoute words it "Invalid API Key") is
`unauthorized`; any other 4xx is a refusal of this message (`bad_request`, with OneRoute's
own words, which say why); 429 waits, 5xx, timeouts and anything that is not OneRoute's
JSON are retried.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import aiohttp

from relay.errors import Reason
from relay.integrations.base import Request
from relay.outcome import Failure, Outcome, Permanent, RetryLater, Sent, describe, short_detail
from relay.redact import Redactor

DEFAULT_API_URL = "https://api.oneroute.io"
SEND_PATH = "/api/public/conversation/text"
KEY_HEADER = "apiKey"


@dataclass(frozen=True)
class SessionMessage:
    """One text to a customer, within the conversation's WhatsApp session."""

    business: str  # the channel's number: who it is from
    customer: str  # the customer's number: who it is to
    text: str


def classify_oneroute(
    *,
    status: int | None = None,
    body: Any = None,
    retry_after: str | None = None,
    exc: BaseException | None = None,
) -> Failure:
    """What a failed call means. `body` is the parsed JSON (None when the answer was not
    JSON), `exc` an exception raised instead of an answer."""
    if exc is not None:
        if isinstance(exc, TimeoutError):
            return RetryLater(Reason.TIMEOUT, short_detail(describe(exc)))
        if isinstance(exc, aiohttp.ClientError | OSError):
            return RetryLater(Reason.NETWORK, short_detail(describe(exc)))
        return RetryLater(Reason.BAD_ANSWER, short_detail(f"unreadable answer: {describe(exc)}"))
    said = body.get("message") if isinstance(body, dict) else None
    words = f"OneRoute answered HTTP {status}" + (f": {said}" if isinstance(said, str) else "")
    detail = short_detail(words)
    if status == 429:
        return RetryLater(Reason.RATE_LIMITED, detail, _seconds(retry_after), rate_limited=True)
    if status is not None and status >= 500:
        return RetryLater(Reason.SERVER_ERROR, detail)
    if status == 408:
        return RetryLater(Reason.TIMEOUT, detail)
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        return RetryLater(Reason.BAD_ANSWER, short_detail(f"{words} (not OneRoute's JSON)"))
    if status in (401, 403):
        return Permanent(Reason.UNAUTHORIZED, detail)
    return Permanent(Reason.BAD_REQUEST, detail)


def _seconds(retry_after: str | None) -> float | None:
    try:
        seconds = float(retry_after) if retry_after is not None else None
    except ValueError:
        return None
    return max(seconds, 0.0) if seconds is not None and math.isfinite(seconds) else None


class OneRouteClient:
    """Sends session messages with one API key (never in a log, error or detail)."""

    def __init__(self, *, api_key: str, api_url: str = DEFAULT_API_URL, timeout: float = 10.0):
        self.redact = Redactor(api_key)
        self._api_key = api_key
        self._url = api_url.rstrip("/") + SEND_PATH
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def request(self, message: SessionMessage) -> Request:
        """The call, without its key (pure)."""
        return Request(
            "conversation/text",
            {"from": message.business, "to": message.customer, "message": message.text},
        )

    async def send(self, message: SessionMessage) -> Outcome:
        request = self.request(message)
        try:
            async with self._client().post(
                self._url,
                json=request.body,
                headers={KEY_HEADER: self._api_key},
                allow_redirects=False,  # aiohttp would take the apiKey header along
            ) as response:
                raw = await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
        except Exception as exc:  # transport errors; nothing of OneRoute's was read
            return classify_oneroute(exc=exc).masked(self.redact)
        body = _json(raw)
        if 200 <= status < 300 and isinstance(body, dict) and body.get("success") is True:
            data = body.get("data")
            ref = data.get("id") if isinstance(data, dict) else None
            return Sent(ref=str(ref) if ref is not None else None)
        failure = classify_oneroute(status=status, body=body, retry_after=retry_after)
        return failure.masked(self.redact)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        return self._session


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting: not OneRoute's
        return None
