"""Sending answers: the courier of a destination's answer lane (`@answers:<name>`).

The lane (relay/lanes.py) claims stored answers as it claims deliveries, in order per
conversation, and hands each to `AnswerSender.send`, which

1. finds the customer's and the business's numbers in the conversation's latest events
   (`oneroute.reply_numbers`, dotted paths; the newest event that has each wins);
2. notes the answer as going out (relay/store/replies.py), so that OneRoute's echo of it is
   not posted back where it was written (relay/answers/echo.py);
3. calls OneRoute (relay/answers/oneroute.py), whose outcome the lane records: sent, retry
   later (backoff, `give_up_after`), or dead with the reason;
4. gives feedback where the answer was written (relay/answers/feedback.py): a reaction on
   success, a reply saying why when OneRoute refused it or it cannot be sent at all (no
   API key: `no_api_key`, no number: `no_number`).

Every answer is counted in `relay_replies_total` and logged once, without its text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from relay.answers.feedback import Feedback
from relay.answers.intake import read_answer
from relay.answers.model import Reply
from relay.answers.oneroute import OneRouteClient, SessionMessage
from relay.config.model import ReplyNumbers
from relay.errors import Reason
from relay.events import parse_event, text_at
from relay.integrations.base import Courier, Request
from relay.logs import fields
from relay.metrics import Metrics
from relay.outcome import Outcome, Permanent, RetryLater, Sent
from relay.pacing import Limit

log = logging.getLogger("relay.answers")

ONEROUTE_RATE = 5.0  # answers per second per destination: people type slower than this


@dataclass(frozen=True)
class Answer:
    """One stored answer, as the lane hands it to the sender."""

    reply: Reply
    conversation: str


class SenderStore(Protocol):
    async def latest_events(self, conversation: str, limit: int = ...) -> list[bytes]: ...
    async def answer_going_out(
        self, destination: str, conversation: str, text: str, now: float
    ) -> None: ...
    async def remember_sent(
        self, destination: str, ref: str, conversation: str, now: float
    ) -> None: ...


def render_answer(event: Mapping[str, Any]) -> Sequence[Answer]:
    """The lane's renderer for a stored answer (pure)."""
    reply, conversation = read_answer(event)
    return [Answer(reply, conversation)]


def find_numbers(events: Sequence[bytes], numbers: ReplyNumbers) -> tuple[str | None, str | None]:
    """The business and customer numbers: each from the newest event that has it."""
    business = customer = None
    for body in events:
        try:
            event = parse_event(body)
        except ValueError:
            continue
        business = business or text_at(event, numbers.business)
        customer = customer or text_at(event, numbers.customer)
        if business and customer:
            break
    return business, customer


class AnswerSender:
    """Sends one destination's answers through OneRoute (None: no API key configured)."""

    def __init__(
        self,
        *,
        destination: str,
        client: OneRouteClient | None,
        numbers: ReplyNumbers,
        store: SenderStore,
        feedback: Feedback,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.destination = destination
        self.client = client
        self.numbers = numbers
        self.store = store
        self.feedback = feedback
        self.metrics = metrics
        self.clock = clock

    def request(self, message: Answer, thread: str | None) -> Request:
        numbers = self.numbers
        return Request(
            "conversation/text",
            {"from": f"<{numbers.business}>", "to": f"<{numbers.customer}>", "message": "…"},
        )

    async def send(self, message: Answer, thread: str | None = None) -> Outcome:
        reply, conversation = message.reply, message.conversation
        outcome = await self._send(reply, conversation)
        if isinstance(outcome, Sent):
            await self.feedback.accepted(reply)
        elif isinstance(outcome, Permanent):
            await self._refused(reply, conversation, outcome)
        state = {Sent: "sent", RetryLater: "retried", Permanent: "dead"}[type(outcome)]
        reason = "" if isinstance(outcome, Sent) else str(outcome.reason)
        self.metrics.replies.labels(self.destination, state, reason).inc()
        log.log(
            logging.WARNING if isinstance(outcome, Permanent) else logging.INFO,
            "answer %s",
            {"sent": "sent to OneRoute", "retried": "not sent yet", "dead": "refused"}[state],
            extra=fields(
                destination=self.destination,
                conversation=conversation,
                user=reply.user,
                reason=reason or None,
            ),
        )
        return outcome

    async def _send(self, reply: Reply, conversation: str) -> Outcome:
        if self.client is None:
            return Permanent(Reason.NO_API_KEY, "oneroute.api_key is not set")
        events = await self.store.latest_events(conversation)
        business, customer = find_numbers(events, self.numbers)
        if business is None or customer is None:
            missing = [
                path
                for path, found in (
                    (f"business ({self.numbers.business})", business),
                    (f"customer ({self.numbers.customer})", customer),
                )
                if found is None
            ]
            return Permanent(
                Reason.NO_NUMBER,
                f"no {' and no '.join(missing)} number in the conversation's events",
            )
        await self.store.answer_going_out(self.destination, conversation, reply.text, self.clock())
        return await self.client.send(SessionMessage(business, customer, reply.text))

    async def gave_up(self, bodies: Sequence[bytes], outcome: Permanent) -> None:
        """The lane gave up on these answers (`give_up_after`): say so where they were
        written, with the last failure."""
        for body in bodies:
            reply, conversation = read_answer(parse_event(body))
            self.metrics.replies.labels(self.destination, "dead", str(outcome.reason)).inc()
            await self._refused(reply, conversation, outcome)

    async def _refused(self, reply: Reply, conversation: str, outcome: Permanent) -> None:
        """Say why where the answer was written; the explanation is one of the relay's
        messages of the conversation, so a reply to it (trying again) is an answer."""
        ref = await self.feedback.refused(reply, refusal_words(outcome))
        if ref is None:
            return
        try:
            await self.store.remember_sent(self.destination, ref, conversation, self.clock())
        except Exception as error:  # a courtesy, as the feedback itself
            log.warning(
                "could not remember the explanation (a reply to it is not an answer): %s",
                error,
                extra=fields(destination=self.destination),
            )

    async def close(self) -> None:
        await self.feedback.close()
        if self.client is not None:
            await self.client.close()


def refusal_words(outcome: Permanent) -> str:
    """Why an answer was not sent, for the people in the thread."""
    if outcome.reason == Reason.NO_API_KEY:
        return (
            "Not sent to the customer: the relay has no OneRoute API key "
            "(oneroute.api_key in its config)."
        )
    if outcome.reason == Reason.NO_NUMBER:
        return (
            f"Not sent to the customer: {outcome.detail} — OneRoute needs both to send it "
            "(oneroute.reply_numbers in the relay's config says where they are)."
        )
    if outcome.reason == Reason.UNAUTHORIZED:
        return (
            "Not sent to the customer: OneRoute refused the relay's API key — check "
            "oneroute.api_key (OneRoute settings → API key)."
        )
    if outcome.reason == Reason.GAVE_UP:
        return (
            "Not sent to the customer: OneRoute could not be reached or kept failing "
            f"({outcome.detail}). `relay dead retry` sends it again."
        )
    said = outcome.detail.removeprefix("OneRoute answered ")
    return f"Not sent to the customer: OneRoute refused it ({said})."


def answer_courier(sender: AnswerSender) -> Courier[Answer]:
    """The courier of `@answers:<name>`: one answer per call, never coalesced."""
    return Courier(
        render=render_answer,
        sender=sender,
        limits=(Limit(f"oneroute:{sender.destination}", ONEROUTE_RATE),),
        gave_up=sender.gave_up,
    )
