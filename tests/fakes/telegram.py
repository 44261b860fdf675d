"""A stateful stand-in for the Telegram Bot API, served on 127.0.0.1.

python-telegram-bot talks to it unchanged (`Bot(token, base_url=f"{fake.api_url}/bot")`,
or a sender's `api_url=fake.api_url`). It routes `/bot<token>/<method>` and enforces the
rules the relay must live with: tokens (404 for a malformed one, 401 for a wrong one, as
Telegram does), known chats, a bot kicked out, groups upgraded to supergroups, forum
topics, replies, HTML entity parsing (tests/fakes/telegram_html.py), the 4096/1024 length
limits counted in UTF-16 after parsing, media URLs Telegram will not fetch, and 429 with
`parameters.retry_after`. Accepted messages are recorded in order (`fake.messages`).

For `relay doctor` and `relay telegram-chats`: what getChatMember says about the bot
(`chats[id].bot_status`, `.bot_rights`), a group's member permissions, forums, updates
queued for getUpdates (`add_update`), and a webhook that makes getUpdates answer 409.

For answers (relay/answers/telegram_in.py): getUpdates long-polls (it waits up to its
`timeout` for an update, and a newer getUpdates ends a waiting one with 409, as Telegram
does), `user_message` for a person's message (a reply, a forum topic message, an edit),
`setMessageReaction` (Telegram's emoji list only) and `createForumTopic`.

Bodies are read as Telegram reads them: PTB sends form-encoded fields (multipart only when
uploading files) with every non-string value JSON-encoded, e.g. `reply_parameters=
{"message_id": 3, ...}` and `chat_id=-100123`; JSON bodies and query strings work too.

Fault knobs (`fake.faults`) and the `running()` context manager come from
tests/fakes/base.py, shared with the fake Slack.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from telegram.constants import ReactionEmoji

from tests.fakes.base import FakeServer, Fault, RateWindow, request_params
from tests.fakes.telegram_html import EntityParseError, parse, utf16_len

TOKEN = "123456789:AAFakeTokenForRelayTests0123456789a"
CHAT_ID = -1001000000001
MAX_TEXT, MAX_CAPTION = 4096, 1024
CLIENT_GONE = 499  # noted for an error answer whose client had already gone
MEDIA_FIELDS = {
    "sendPhoto": "photo",
    "sendVideo": "video",
    "sendDocument": "document",
    "sendAudio": "audio",
}
_TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]{30,}")
_JSON_FIELDS = {
    "reply_parameters",
    "link_preview_options",
    "reply_markup",
    "entities",
    "caption_entities",
    "reaction",
    "allowed_updates",
}
_INT_FIELDS = {
    "message_thread_id",
    "reply_to_message_id",
    "user_id",
    "offset",
    "limit",
    "message_id",
    "icon_color",
}
_FLOAT_FIELDS = {"timeout"}
_BOOL_FIELDS = {
    "disable_notification",
    "protect_content",
    "allow_sending_without_reply",
    "has_spoiler",
    "show_caption_above_media",
    "is_big",
}
REACTIONS = frozenset(emoji.value for emoji in ReactionEmoji)  # what bots may react with
HUMAN_ID = 4242  # the person `user_message` writes as by default


@dataclass
class TelegramChat:
    id: int | str
    type: str  # private, group, supergroup, channel
    title: str = "Relay tests"
    forum: bool = False
    topics: set[int] = field(default_factory=set)
    kicked: bool = False
    bot_status: str = "administrator"  # what getChatMember says about the bot
    bot_rights: dict[str, Any] = field(default_factory=dict)  # e.g. {"can_post_messages": False}
    permissions: dict[str, bool] | None = None  # getChat's default member permissions
    migrated_to: int | None = None
    message_ids: list[int] = field(default_factory=list)  # every message: the bot's, people's
    topic_names: dict[int, str] = field(default_factory=dict)  # createForumTopic's


@dataclass(frozen=True)
class TelegramReaction:
    """What setMessageReaction set on a message (`emoji` empty: reactions removed)."""

    chat_id: int | str
    message_id: int
    emoji: tuple[str, ...]
    at: float


@dataclass(frozen=True)
class TelegramPost:
    """An accepted message. `text` is what readers see (HTML parsed) for a text message or
    a caption; `raw` is what was sent; `media` the photo/video/... URL; `reply_to` the
    message it replies to (None when the parent was missing and that was allowed)."""

    message_id: int
    chat_id: int | str
    method: str
    text: str | None
    raw: str | None
    media: str | None
    parse_mode: str | None
    thread_id: int | None
    reply_to: int | None
    at: float
    params: dict[str, Any] = field(repr=False)


class BotApiError(Exception):
    def __init__(self, status: int, description: str, **parameters: Any) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters


class FakeTelegram(FakeServer):
    """The Bot API methods the relay and `relay doctor` use."""

    def __init__(
        self, *, tokens: Iterable[str] = (TOKEN,), clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(clock)
        self.tokens = set(tokens)
        self.chats: dict[int | str, TelegramChat] = {}
        self.refused_media: dict[str, str] = {}
        self.messages: list[TelegramPost] = []
        self.limits: list[tuple[RateWindow, Callable[[int | str], Any]]] = []
        self.updates: list[dict[str, Any]] = []  # pending for getUpdates, oldest first
        self.webhook_url: str | None = None
        self.allowed_updates: list[str] | None = None  # as getUpdates last set it
        self.reactions: list[TelegramReaction] = []
        self._update_seq = 100_000
        self._message_json: dict[tuple[int | str, int], dict[str, Any]] = {}
        self._new_update = asyncio.Event()  # set (and replaced) when an update is queued
        self._waiting_poll: asyncio.Event | None = None  # set: a newer poll ended it
        methods: dict[str, Callable[[str, dict[str, Any]], Any]] = {
            "getMe": self._get_me,
            "getChat": self._get_chat,
            "getUpdates": self._get_updates,
            "getChatMember": self._get_chat_member,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._webhook_info,
            "sendMessage": self._send,
            "setMessageReaction": self._set_reaction,
            "createForumTopic": self._create_topic,
            **dict.fromkeys(MEDIA_FIELDS, self._send),
        }
        # Bot API method names ignore case; handlers and records use the documented spelling.
        self._methods = {name.lower(): (name, handler) for name, handler in methods.items()}
        self.add_chat(CHAT_ID)
        self.app.router.add_route("*", "/bot{token}/{method}", self._api)

    @property
    def api_url(self) -> str:
        """The Bot API base, as `TelegramSender(api_url=...)` wants it (no /bot)."""
        return self.base_url

    def add_chat(
        self,
        chat_id: int | str,
        *,
        type: str | None = None,
        forum: bool = False,
        topics: Iterable[int] = (),
        title: str = "Relay tests",
    ) -> TelegramChat:
        """A chat the bot is in. Type defaults from the id: -100… supergroup, other
        negative ids group, positive ids private, @names channel. A forum accepts only its
        `topics`."""
        chat = TelegramChat(chat_id, type or _chat_type(chat_id), title, forum, set(topics))
        self.chats[chat_id] = chat
        return chat

    def kick(self, chat_id: int | str) -> None:
        """The bot was removed from the chat (or blocked by the user): 403 from now on."""
        self.chats[chat_id].kicked = True

    def migrate(self, chat_id: int, new_chat_id: int) -> TelegramChat:
        """Upgrade a group to a supergroup: the old id answers 400 with migrate_to_chat_id."""
        self.chats[chat_id].migrated_to = new_chat_id
        return self.add_chat(new_chat_id, type="supergroup")

    def set_webhook(self, url: str = "https://relay.example.com/hook") -> None:
        """The bot has a webhook: getUpdates answers 409 Conflict until deleteWebhook."""
        self.webhook_url = url
        if self._waiting_poll is not None:  # Telegram ends a waiting getUpdates too
            self._waiting_poll.set()

    def add_update(
        self,
        kind: str = "message",
        *,
        chat_id: int | str = CHAT_ID,
        type: str | None = None,
        title: str = "Relay tests",
        username: str | None = None,
        text: str = "hello",
        status: str = "member",
    ) -> dict[str, Any]:
        """Queue an update for getUpdates from a chat (known to the fake or not).

        `kind` is message, edited_message, channel_post, edited_channel_post,
        my_chat_member (the bot's own membership became `status`) or chat_member (a user's
        did). A private chat's `title` is the user's first name."""
        chat = _chat_json(TelegramChat(chat_id, type or _chat_type(chat_id), title))
        if username is not None:
            chat["username"] = username
        return self._queue(kind, _update_body(kind, chat, text, status))

    def user_message(
        self,
        chat_id: int | str = CHAT_ID,
        text: str = "hello",
        *,
        user_id: int = HUMAN_ID,
        is_bot: bool = False,
        reply_to: int | None = None,
        thread_id: int | None = None,
        edited: bool = False,
    ) -> dict[str, Any]:
        """A person (or, `is_bot`, another bot) writes `text` in a chat the fake knows:
        replying to message `reply_to` (which must exist in the chat), in forum topic
        `thread_id` (which must be a topic of the forum). Queues and returns the update;
        `edited` queues an `edited_message` update for it instead."""
        chat = self.chats.get(chat_id)
        if chat is None:
            raise ValueError(f"no chat {chat_id} in the fake")
        if reply_to is not None and reply_to not in chat.message_ids:
            raise ValueError(f"no message {reply_to} in chat {chat_id} to reply to")
        if thread_id is not None and (not chat.forum or thread_id not in chat.topics):
            raise ValueError(f"{thread_id} is not a topic of a forum {chat_id}")
        message_id = self._next_message_id(chat)
        now = int(time.time())
        sender = (
            {"id": user_id, "is_bot": True, "first_name": "Other bot", "username": "other_bot"}
            if is_bot
            else {
                "id": user_id,
                "is_bot": False,
                "first_name": "Ada" if user_id == HUMAN_ID else f"User {user_id}",
            }
        )
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": now,
            "chat": _chat_json(chat),
            "from": sender,
            "text": text,
        }
        if thread_id is not None:
            # Telegram: a topic message is a reply to the topic's first message, unless it
            # replies to another one.
            message |= {"message_thread_id": thread_id, "is_topic_message": True}
            message["reply_to_message"] = (
                self._known(chat, reply_to)
                if reply_to is not None
                else self._message_json.get((chat.id, thread_id)) or _topic_created(chat, thread_id)
            )
        elif reply_to is not None:
            message["reply_to_message"] = self._known(chat, reply_to)
        self._message_json[(chat.id, message_id)] = {
            k: v for k, v in message.items() if k != "reply_to_message"
        }
        if edited:
            return self._queue("edited_message", message | {"edit_date": now})
        return self._queue("message", message)

    @property
    def polling(self) -> bool:
        """A getUpdates is waiting for an update (long polling)."""
        return self._waiting_poll is not None

    def reactions_on(self, chat_id: int | str, message_id: int) -> tuple[str, ...]:
        """The bot's current reaction on a message (empty: none)."""
        found = [
            r.emoji for r in self.reactions if (r.chat_id, r.message_id) == (chat_id, message_id)
        ]
        return found[-1] if found else ()

    def _queue(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Make an update; pending for getUpdates unless `allowed_updates` leaves it out."""
        self._update_seq += 1
        update = {"update_id": self._update_seq, kind: body}
        if self.allowed_updates is not None and kind not in self.allowed_updates:
            return update  # Telegram does not keep updates the bot asked not to get
        self.updates.append(update)
        self._new_update.set()
        self._new_update = asyncio.Event()
        return update

    def _known(self, chat: TelegramChat, message_id: int) -> dict[str, Any]:
        """A message of the chat as replies quote it (a bare one for ids added by hand)."""
        return self._message_json.get((chat.id, message_id)) or {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": _chat_json(chat),
            "from": _bot_user(),
            "text": "…",
        }

    def _next_message_id(self, chat: TelegramChat) -> int:
        message_id = len(chat.message_ids) + 1
        chat.message_ids.append(message_id)
        return message_id

    def refuse_media(
        self, url: str, description: str = "wrong file identifier/HTTP URL specified"
    ) -> None:
        """Telegram will not fetch this media URL ("failed to get HTTP URL content", ...)."""
        self.refused_media[url] = description

    def enforce_rate_limits(
        self,
        *,
        per_chat: tuple[int, float] = (1, 1.0),
        per_group: tuple[int, float] = (20, 60.0),
        per_bot: tuple[int, float] = (30, 1.0),
    ) -> None:
        """Answer 429 beyond Telegram's documented limits: 1 message/s per chat, 20/min in
        a group (negative chat ids), 30/s per bot. Each is (messages, seconds)."""
        self.limits = [
            (RateWindow(*per_chat), lambda chat: chat),
            (RateWindow(*per_group), lambda chat: chat if _is_group(chat) else None),
            (RateWindow(*per_bot), lambda chat: "bot"),
        ]

    def messages_in(self, chat_id: int | str = CHAT_ID) -> list[TelegramPost]:
        return [m for m in self.messages if m.chat_id == chat_id]

    # -------------------------------------------------------------- routing

    async def _api(self, request: web.Request) -> web.Response:
        method, handler = self._methods.get(
            request.match_info["method"].lower(), (request.match_info["method"], None)
        )
        fault = self.faults.take()
        if not await self.pause(fault.delay):
            return web.Response(status=503)
        if fault.raw is not None:
            self.note(method, fault.raw.status, "raw")
            return fault.raw.response()
        try:
            if fault.status is not None:
                raise _fault_error(fault)
            token = request.match_info["token"]
            if token not in self.tokens:
                # Telegram: 404 for a token that is not token-shaped, 401 for a wrong one.
                raise (
                    BotApiError(401, "Unauthorized")
                    if _TOKEN_SHAPE.fullmatch(token)
                    else BotApiError(404, "Not Found")
                )
            if handler is None:
                raise BotApiError(404, "Not Found")
            try:
                params = _typed(await request_params(request))
            except ValueError:
                raise BotApiError(400, "Bad Request: can't parse JSON object") from None
            except ConnectionError:  # the client gave up mid-request (a poller stopping)
                return web.Response(status=400)
            result = handler(method, params)
            if inspect.isawaitable(result):
                result = await result
        except BotApiError as error:
            # A poll whose client has gone (a stopped poller) is still ended with 409 when a
            # newer one comes, as Telegram does, but nobody reads that answer: it is noted
            # as 499 (client closed request), so count(409) counts answers a client got.
            gone = request.transport is None or request.transport.is_closing()
            self.note(method, CLIENT_GONE if gone else error.status, error.description)
            body: dict[str, Any] = {
                "ok": False,
                "error_code": error.status,
                "description": error.description,
            }
            if error.parameters:
                body["parameters"] = error.parameters
            return web.json_response(body, status=error.status)
        self.note(method, 200, None)
        return web.json_response({"ok": True, "result": result})

    # -------------------------------------------------------------- methods

    def _get_me(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return _bot_user()

    async def _get_updates(self, method: str, params: dict[str, Any]) -> list[Any]:
        """Pending updates at once; none pending, waits up to `timeout` seconds for one. An
        offset confirms (forgets) older updates; a negative one keeps only the last
        -offset. `allowed_updates` is remembered and applies to updates queued later, as
        Telegram's does. A newer call ends a waiting one with 409, as Telegram does."""
        self._refuse_with_webhook()
        if self._waiting_poll is not None:
            self._waiting_poll.set()
            self._waiting_poll = None
        if params.get("allowed_updates") is not None:
            self.allowed_updates = list(params["allowed_updates"])
        offset = params.get("offset")
        if offset is not None and offset < 0:
            self.updates = self.updates[offset:]
        elif offset is not None:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        limit = params.get("limit") or 100
        deadline = asyncio.get_running_loop().time() + max(0.0, params.get("timeout") or 0.0)
        ended = asyncio.Event()
        while not self.updates:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            self._waiting_poll = ended
            waits = [
                asyncio.ensure_future(e.wait()) for e in (self._new_update, ended, self._closing)
            ]
            try:
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
                if self._waiting_poll is ended:
                    self._waiting_poll = None
            if self._closing.is_set():
                break
            if ended.is_set():
                self._refuse_with_webhook()
                raise BotApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only "
                    "one bot instance is running",
                )
        return self.updates[:limit]

    def _refuse_with_webhook(self) -> None:
        if self.webhook_url is not None:
            raise BotApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )

    def _webhook_info(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.webhook_url or "", "has_custom_certificate": False,
                "pending_update_count": len(self.updates)}

    def _delete_webhook(self, method: str, params: dict[str, Any]) -> bool:
        self.webhook_url = None
        return True

    def _get_chat(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        full: dict[str, Any] = {
            **_chat_json(chat),
            "is_forum": chat.forum,
            "accent_color_id": 0,
            "max_reaction_count": 11,
        }
        if chat.permissions is not None:
            full["permissions"] = chat.permissions
        return full

    def _get_chat_member(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        if params.get("user_id") != _bot_user()["id"]:
            return _member_json("member", _HUMAN, chat.type)
        return _member_json(chat.bot_status, _bot_user(), chat.type) | chat.bot_rights

    def _send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        thread_id = self._thread(chat, params.get("message_thread_id"))
        reply_to = self._reply(chat, params)
        text, media = self._content(method, params)
        self._pace(chat.id)
        message_id = self._next_message_id(chat)
        raw = params.get("caption" if method in MEDIA_FIELDS else "text")
        self.messages.append(
            TelegramPost(
                message_id,
                chat.id,
                method,
                text,
                raw,
                media,
                params.get("parse_mode"),
                thread_id,
                reply_to,
                self.clock(),
                params,
            )
        )
        sent = _message_json(message_id, chat, method, text, thread_id)
        self._message_json[(chat.id, message_id)] = sent
        return sent

    def _set_reaction(self, method: str, params: dict[str, Any]) -> bool:
        chat = self._chat(params)
        message_id = params.get("message_id")
        if message_id not in chat.message_ids:
            raise BotApiError(400, "Bad Request: message to react not found")
        reaction = params.get("reaction") or []
        if not isinstance(reaction, list):
            raise BotApiError(400, "Bad Request: can't parse reaction types JSON object")
        emoji: list[str] = []
        for kind in reaction:
            if not isinstance(kind, dict) or kind.get("type") != "emoji":
                raise BotApiError(400, "Bad Request: REACTION_INVALID")
            if kind.get("emoji") not in REACTIONS:
                raise BotApiError(400, "Bad Request: REACTION_INVALID")
            emoji.append(kind["emoji"])
        if len(emoji) > 1:  # bots set at most one reaction
            raise BotApiError(400, "Bad Request: REACTIONS_TOO_MANY")
        self.reactions.append(TelegramReaction(chat.id, message_id, tuple(emoji), self.clock()))
        return True

    def _create_topic(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        if not chat.forum:
            raise BotApiError(400, "Bad Request: the chat is not a forum")
        may_manage = chat.bot_status == "creator" or (
            chat.bot_status == "administrator" and chat.bot_rights.get("can_manage_topics", True)
        )
        if not may_manage:
            raise BotApiError(400, "Bad Request: not enough rights to create a topic")
        name = str(params.get("name", ""))
        icon_color = params.get("icon_color", 7322096)
        # The topic is its first (service) message: message_thread_id is that message's id.
        thread_id = self._next_message_id(chat)
        chat.topics.add(thread_id)
        chat.topic_names[thread_id] = name
        self._message_json[(chat.id, thread_id)] = _topic_created(chat, thread_id, name, icon_color)
        return {"message_thread_id": thread_id, "name": name, "icon_color": icon_color}

    # -------------------------------------------------------------- rules

    def _chat(self, params: dict[str, Any]) -> TelegramChat:
        chat = self.chats.get(params.get("chat_id", ""))
        if chat is None:
            raise BotApiError(400, "Bad Request: chat not found")
        if chat.migrated_to is not None:
            raise BotApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                migrate_to_chat_id=chat.migrated_to,
            )
        if chat.kicked:
            raise BotApiError(403, f"Forbidden: {_KICKED[chat.type]}")
        return chat

    def _thread(self, chat: TelegramChat, thread_id: int | None) -> int | None:
        if thread_id is not None and (not chat.forum or thread_id not in chat.topics):
            raise BotApiError(400, "Bad Request: message thread not found")
        return thread_id

    def _reply(self, chat: TelegramChat, params: dict[str, Any]) -> int | None:
        reply = params.get("reply_parameters")
        if reply is None and "reply_to_message_id" in params:
            reply = {
                "message_id": params["reply_to_message_id"],
                "allow_sending_without_reply": params.get("allow_sending_without_reply"),
            }
        if reply is None:
            return None
        if not isinstance(reply, dict) or not isinstance(reply.get("message_id"), int):
            raise BotApiError(400, "Bad Request: can't parse reply parameters JSON object")
        if reply["message_id"] in chat.message_ids:
            return int(reply["message_id"])
        if reply.get("allow_sending_without_reply"):
            return None
        raise BotApiError(400, "Bad Request: message to be replied not found")

    def _content(self, method: str, params: dict[str, Any]) -> tuple[str | None, str | None]:
        """The visible text (or caption) and the media URL, or a refusal."""
        media: str | None = None
        if method in MEDIA_FIELDS:
            media = _media(method, params.get(MEDIA_FIELDS[method]))
            if media in self.refused_media:
                raise BotApiError(400, f"Bad Request: {self.refused_media[media]}")
        key, limit = ("caption", MAX_CAPTION) if media is not None else ("text", MAX_TEXT)
        raw = params.get(key)
        if raw is None and media is not None:
            return None, media
        visible = _visible(str(raw or ""), params.get("parse_mode"))
        if media is None and not visible.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        if utf16_len(visible) > limit:
            what = "message caption is too long" if media else "message is too long"
            raise BotApiError(400, f"Bad Request: {what}")
        return visible, media

    def _pace(self, chat_id: int | str) -> None:
        for window, key_of in self.limits:
            key = key_of(chat_id)
            wait = window.wait(key, self.clock()) if key is not None else 0.0
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                raise BotApiError(
                    429, f"Too Many Requests: retry after {seconds}", retry_after=seconds
                )


# ---------------------------------------------------------------- helpers


def _fault_error(fault: Fault) -> BotApiError:
    if fault.status == 429:
        seconds = fault.retry_after if fault.retry_after is not None else 1
        return BotApiError(429, f"Too Many Requests: retry after {seconds:g}", retry_after=seconds)
    status = fault.status or 503
    return BotApiError(
        status,
        {500: "Internal Server Error", 502: "Bad Gateway"}.get(status, "Service Unavailable"),
    )


def _typed(params: dict[str, Any]) -> dict[str, Any]:
    """Form fields are strings; give them the types Telegram reads them as."""
    typed: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(value, str):
            typed[key] = value
        elif key in _JSON_FIELDS:
            typed[key] = json.loads(value)
        elif key in _INT_FIELDS:
            typed[key] = int(value)
        elif key in _FLOAT_FIELDS:
            typed[key] = float(value)
        elif key in _BOOL_FIELDS:
            typed[key] = value.lower() == "true"
        elif key == "chat_id":
            typed[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
        else:
            typed[key] = value
    return typed


def _visible(text: str, parse_mode: str | None) -> str:
    if parse_mode is None or parse_mode.upper() != "HTML":
        return text  # MarkdownV2 is not modelled: its text is taken as it is
    try:
        return parse(text)
    except EntityParseError as error:
        raise BotApiError(400, f"Bad Request: {error}") from None


def _media(method: str, value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    if hasattr(value, "filename"):  # a multipart upload
        return f"upload:{value.filename}"
    raise BotApiError(400, f"Bad Request: there is no {MEDIA_FIELDS[method]} in the request")


def _chat_type(chat_id: int | str) -> str:
    if str(chat_id).startswith("-100"):
        return "supergroup"
    if not isinstance(chat_id, int):
        return "channel"  # @channelname
    return "group" if chat_id < 0 else "private"


def _member_json(status: str, user: dict[str, Any], chat_type: str) -> dict[str, Any]:
    """A ChatMember with the fields PTB requires for its status (all rights granted)."""
    member: dict[str, Any] = {"status": status, "user": user}
    if status == "administrator":
        member |= dict.fromkeys(_ADMIN_RIGHTS, True)
        if chat_type == "channel":
            member |= {"can_post_messages": True, "can_edit_messages": True}
        else:
            member["can_manage_topics"] = True
    elif status == "creator":
        member["is_anonymous"] = False
    elif status == "restricted":
        member |= {"is_member": True, "until_date": 0, **dict.fromkeys(_RESTRICTED_RIGHTS, True)}
    elif status == "kicked":
        member["until_date"] = 0
    return member


def _update_body(kind: str, chat: dict[str, Any], text: str, status: str) -> dict[str, Any]:
    now = int(time.time())
    if kind in ("message", "edited_message", "channel_post", "edited_channel_post"):
        body: dict[str, Any] = {"message_id": 1, "date": now, "chat": chat, "text": text}
        if not kind.endswith("channel_post"):
            body["from"] = _HUMAN
        if kind.startswith("edited_"):
            body["edit_date"] = now
        return body
    if kind in ("my_chat_member", "chat_member"):
        user = _bot_user() if kind == "my_chat_member" else _HUMAN
        return {
            "chat": chat,
            "from": _HUMAN,
            "date": now,
            "old_chat_member": _member_json("left", user, chat["type"]),
            "new_chat_member": _member_json(status, user, chat["type"]),
        }
    raise ValueError(f"add_update does not build {kind!r} updates")


def _is_group(chat_id: int | str) -> bool:
    return isinstance(chat_id, int) and chat_id < 0


def _bot_user() -> dict[str, Any]:
    return {
        "id": int(TOKEN.split(":")[0]),
        "is_bot": True,
        "first_name": "Relay",
        "username": "relay_test_bot",
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }


def _chat_json(chat: TelegramChat) -> dict[str, Any]:
    if chat.type == "private":
        return {"id": chat.id, "type": "private", "first_name": chat.title}
    if chat.forum:
        return {"id": chat.id, "type": chat.type, "title": chat.title, "is_forum": True}
    return {"id": chat.id, "type": chat.type, "title": chat.title}


def _topic_created(
    chat: TelegramChat, thread_id: int, name: str | None = None, icon_color: int = 7322096
) -> dict[str, Any]:
    """A topic's first message: the service message saying it was created."""
    return {
        "message_id": thread_id,
        "date": int(time.time()),
        "chat": _chat_json(chat),
        "from": _bot_user(),
        "message_thread_id": thread_id,
        "is_topic_message": True,
        "forum_topic_created": {
            "name": name or chat.topic_names.get(thread_id, f"Topic {thread_id}"),
            "icon_color": icon_color,
        },
    }


def _message_json(
    message_id: int, chat: TelegramChat, method: str, text: str | None, thread_id: int | None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": _chat_json(chat),
        "from": _bot_user(),
    }
    if thread_id is not None:
        message |= {"message_thread_id": thread_id, "is_topic_message": True}
    file = {"file_id": f"file-{chat.id}-{message_id}", "file_unique_id": f"u{message_id}"}
    media_json: dict[str, Any] = {
        "sendPhoto": {"photo": [{**file, "width": 640, "height": 480}]},
        "sendVideo": {"video": {**file, "width": 640, "height": 480, "duration": 1}},
        "sendDocument": {"document": file},
        "sendAudio": {"audio": {**file, "duration": 1}},
    }
    if method in media_json:
        message |= media_json[method]
        if text is not None:
            message["caption"] = text
    else:
        message["text"] = text
    return message


_KICKED = {
    "group": "bot was kicked from the group chat",
    "supergroup": "bot was kicked from the supergroup chat",
    "channel": "bot is not a member of the channel chat",
    "private": "bot was blocked by the user",
}
_HUMAN = {"id": 4242, "is_bot": False, "first_name": "Ada", "username": "ada"}
_RESTRICTED_RIGHTS = (
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_send_messages",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_manage_topics",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_edit_tag",
    "can_react_to_messages",
)
_ADMIN_RIGHTS = (
    "can_be_edited",
    "is_anonymous",
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
)
