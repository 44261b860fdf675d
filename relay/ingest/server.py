"""The webhook endpoint: decide, remember, answer — never call Slack or Telegram here.

Only what must happen before the 200 happens here, in this order: client address (403),
size (413), signature (401; 503 when a large body cannot be checked now, see
relay/ingest/offload.py), JSON object (400), routing, one durable write (503 if it
fails). From the signature on, the body is the bytes the signature covered. Lanes are
woken after the write and deliver in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from relay.config.model import Config
from relay.errors import InvalidEvent, Overloaded, StoreUnavailable
from relay.events import conversation_key, event_name, parse_event
from relay.ingest.clients import ClientPolicy
from relay.ingest.offload import Reserialiser
from relay.ingest.signature import SIGNATURE_HEADER, Verifier
from relay.logs import fields, write
from relay.metrics import Metrics
from relay.routing import Router
from relay.store.base import Incoming, IngestStore

log = logging.getLogger("relay.ingest")

MAX_BODY = 1024 * 1024
BODY_TIMEOUT = 10.0  # a client that has not sent its body by then is cut off (slowloris)


@dataclass(frozen=True)
class Gate:
    """What ingest needs from the config; swapped whole on reload."""

    config: Config
    policy: ClientPolicy
    verifier: Verifier
    enabled: frozenset[str]
    router: Router

    @classmethod
    def from_config(cls, config: Config) -> Gate:
        return cls(
            config=config,
            policy=ClientPolicy(config.oneroute.allowed_ips, config.oneroute.trusted_proxies),
            verifier=Verifier([s.get_secret_value() for s in config.oneroute.secrets]),
            enabled=frozenset(
                name for name, destination in config.destinations.items() if destination.enabled
            ),
            router=Router(config.routes),
        )


class Ingest:
    def __init__(
        self,
        gate: Gate,
        store: IngestStore,
        on_accepted: Callable[[Sequence[str]], None] = lambda destinations: None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        reserialiser: Reserialiser | None = None,
    ) -> None:
        self.gate = gate
        self.store = store
        self.on_accepted = on_accepted
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.reserialiser = reserialiser or Reserialiser()

    def _answer(
        self, code: int, result: str, event: str | None = None, **body: Any
    ) -> web.Response:
        self.metrics.received(event, result)
        return web.json_response(body, status=code)

    async def handle(self, request: web.Request) -> web.Response:
        gate = self.gate  # one config for the whole request, even if a reload swaps it
        client = gate.policy.client_address(
            request.remote, request.headers.getall("X-Forwarded-For", [])
        )
        if not gate.policy.allows(client):
            log.warning("refused: address not allowed", extra=fields(client=str(client)))
            return self._answer(
                403, "forbidden", error="forbidden", detail="this address may not post events"
            )
        if (request.content_length or 0) > MAX_BODY:
            return self._too_large(client)
        try:
            if request.content.is_eof():  # the whole body came with the headers: no wait
                body = await request.read()
            else:
                async with asyncio.timeout(BODY_TIMEOUT):
                    body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(client)
        except TimeoutError:
            log.warning("refused: body not received in time", extra=fields(client=str(client)))
            return self._answer(
                408, "bad_request", error="timeout", detail="the body took too long"
            )
        signature = request.headers.get(SIGNATURE_HEADER)
        try:
            verified = await gate.verifier.verify_with(body, signature, self.reserialiser)
        except Overloaded as error:  # not checked: 503 so that OneRoute retries, never 401
            log.warning("refused: %s", error, extra=fields(client=str(client), bytes=len(body)))
            return self._answer(
                503,
                "unavailable",
                error="unavailable",
                detail="too many large bodies are being verified; retry later",
            )
        if verified is None:
            missing = not signature
            log.warning(
                "refused: %s signature",
                "missing" if missing else "invalid",
                extra=fields(client=str(client), bytes=len(body)),
            )
            return self._answer(
                401,
                "unauthorized",
                error="unauthorized",
                detail=f"{'missing' if missing else 'invalid'} {SIGNATURE_HEADER}",
            )
        # From here on, the event is what the signature covered: its raw bytes, or their
        # re-serialisation when only that matched (so its spellings are one event).
        body = verified.signed
        try:
            event = parse_event(body)
        except InvalidEvent as error:
            log.warning("refused: %s", error, extra=fields(client=str(client)))
            return self._answer(400, "bad_request", error="bad_request", detail=str(error))
        return await self._accept(gate, body, event, client)

    async def _accept(
        self, gate: Gate, body: bytes, event: dict[str, Any], client: object
    ) -> web.Response:
        name = event_name(event)
        decision = gate.router.decide(event)
        destinations = tuple(d for d in decision.destinations if d in gate.enabled)
        conversation = conversation_key(event)
        incoming = Incoming(body, name, conversation, destinations, self.clock())
        try:
            accepted = await self.store.accept(incoming)
        except StoreUnavailable as error:
            log.error("refused: store unavailable: %s", error, extra=fields(event=name))
            return self._answer(
                503,
                "unavailable",
                name,
                error="unavailable",
                detail="storage is unavailable; retry later",
            )
        if accepted.duplicate:
            write(
                log,
                logging.INFO,
                "duplicate: already accepted",
                event_id=accepted.event_id,
                event=name,
                client=str(client),
            )
            return self._answer(
                200,
                "duplicate",
                name,
                status="duplicate",
                event_id=accepted.event_id,
                detail="this exact body was accepted in the last 24 h; it is not delivered again",
            )
        write(
            log,
            logging.INFO,
            "accepted",
            event_id=accepted.event_id,
            event=name,
            conversation=conversation,
            routes=",".join(decision.routes) or "-",
            destinations=",".join(destinations) or "-",
            client=str(client),
        )
        if destinations:
            self.on_accepted(destinations)
        return self._answer(
            200,
            "accepted",
            name,
            status="accepted",
            event_id=accepted.event_id,
            destinations=list(destinations),
        )

    def _too_large(self, client: object) -> web.Response:
        log.warning("refused: body over 1 MiB", extra=fields(client=str(client)))
        return self._answer(413, "too_large", error="too_large", detail="the body is over 1 MiB")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(
    ingest: Ingest, extra_routes: Sequence[web.RouteDef] = (), *, health: bool = True
) -> web.Application:
    """The webhook endpoint, /healthz (unless `health` is False: an ingest worker passes it
    to the relay's process) and `extra_routes`."""
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(ingest.gate.config.server.path, ingest.handle)
    if health:
        app.router.add_get("/healthz", healthz)
    app.router.add_routes(extra_routes)

    async def stop_worker(app: web.Application) -> None:
        await ingest.reserialiser.close()

    app.on_cleanup.append(stop_worker)
    return app
