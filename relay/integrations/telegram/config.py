"""A Telegram destination in relay.yaml: a bot token and a chat (optionally a forum topic)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator

from relay.config.types import DestinationBase, HttpUrl, Strict, Token, empty_is_none

TELEGRAM_API_URL = "https://api.telegram.org"
_TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9:_-]+")


def _token_characters(value: SecretStr) -> SecretStr:
    # The token becomes part of every Bot API URL (/bot<token>/method): a `/`, `?` or `#`
    # in it would call another URL. `relay doctor` judges the rest of its shape.
    if not _TOKEN_CHARACTERS.fullmatch(value.get_secret_value()):
        raise ValueError(
            "a bot token has only letters, digits, ':', '_' and '-' (it looks like "
            "123456789:AA…, from @BotFather; the value is not shown: it is a secret)"
        )
    return value


TelegramToken = Annotated[
    Annotated[Token, AfterValidator(_token_characters)] | None, BeforeValidator(empty_is_none)
]


class TelegramReplies(Strict):
    """Replies to the relay's messages (and messages in a conversation's topic) go to the
    customer (README: "Answering customers")."""

    from_users: list[int] = Field(
        default_factory=list, description="Telegram user ids who may answer; empty: anyone"
    )
    note_prefix: str = Field("note:", description="messages starting with it stay in Telegram")


class TelegramDestination(DestinationBase):
    type: Literal["telegram"]
    token: TelegramToken = Field(None, description="bot token from @BotFather")
    chat_id: Annotated[int | str | None, BeforeValidator(empty_is_none)] = Field(
        None, description="chat id (-100... for groups) or @channel"
    )
    topic_id: int | None = Field(None, description="forum topic (message_thread_id)")
    thread_by_conversation: bool = Field(
        False, description="later messages of a conversation reply to its first"
    )
    topic_per_conversation: bool = Field(
        False,
        description="one forum topic per conversation (the bot must be an admin that may "
        "manage topics)",
    )
    replies: TelegramReplies | None = Field(
        None, description="replies to the conversation's messages reach the customer"
    )
    link_preview: bool = Field(False, description="let Telegram preview customer-supplied links")
    api_url: HttpUrl = TELEGRAM_API_URL

    @model_validator(mode="after")
    def _complete(self) -> TelegramDestination:
        if self.enabled and (self.token is None or self.chat_id is None):
            raise ValueError("token and chat_id are required (relay telegram-chats lists chat ids)")
        if self.topic_per_conversation and self.topic_id is not None:
            raise ValueError(
                "topic_per_conversation opens a topic per conversation: remove topic_id"
            )
        return self

    @property
    def group(self) -> bool:
        """A group, supergroup or channel (negative ids, @channelname): 20 messages a minute."""
        return isinstance(self.chat_id, str) or (isinstance(self.chat_id, int) and self.chat_id < 0)
