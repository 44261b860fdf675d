"""Slack's message and Block Kit rules, as the fake Slack enforces them."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from typing import Any

MAX_BLOCKS, MAX_SECTION_TEXT, MAX_HEADER_TEXT, MAX_MESSAGE_TEXT = 50, 3000, 150, 40_000


class SlackRefusal(Exception):
    """An answer other than success: Slack's error word, its notes, an HTTP status."""

    def __init__(
        self,
        error: str,
        notes: Iterable[str] = (),
        status: int = 200,
        retry_after: int | None = None,
        **fields: str,
    ) -> None:
        super().__init__(error)
        self.error, self.notes, self.status = error, list(notes), status
        self.retry_after = retry_after
        self.fields = fields  # extra top-level keys of the answer (`needed`, `provided`)

def check_message(
    params: dict[str, Any], broken_images: Collection[str]
) -> tuple[str | None, list[dict[str, Any]] | None]:
    """Slack's content rules for a message body; returns (text, blocks) or refuses."""
    text = params.get("text")
    blocks = _decoded(params.get("blocks"), "invalid_blocks_format")
    attachments = _decoded(params.get("attachments"), "invalid_attachments")
    if not text and not blocks and not attachments:
        raise SlackRefusal("no_text")
    if text is not None and len(str(text)) > MAX_MESSAGE_TEXT:
        raise SlackRefusal("msg_too_long")
    if attachments and len(attachments) > 100:
        raise SlackRefusal("too_many_attachments")
    if blocks is not None:
        if not isinstance(blocks, list):
            raise SlackRefusal("invalid_blocks_format")
        notes = block_errors(blocks, broken_images)
        if notes:
            raise SlackRefusal("invalid_blocks", notes)
    return (str(text) if text is not None else None), blocks


def _decoded(value: Any, error: str) -> Any:
    """Blocks and attachments arrive as JSON values, or as JSON text in form bodies."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise SlackRefusal(error) from None
    return value


def block_errors(blocks: list[Any], broken_images: Collection[str] = ()) -> list[str]:
    """Block Kit violations, worded like Slack's `errors` (with json-pointers)."""
    if len(blocks) > MAX_BLOCKS:
        return [f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"]
    errors: list[str] = []
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"missing required field: type [json-pointer:{where}]")
            continue
        check = _BLOCK_CHECKS.get(block["type"])
        if check is None:
            errors.append(f"unsupported type: {block['type']} [json-pointer:{where}/type]")
            continue
        errors += check(block, where, broken_images)
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                errors.append(f"duplicate block_id [json-pointer:{where}/block_id]")
            block_ids.add(block_id)
    return errors


def _text_errors(obj: Any, where: str, limit: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return [f"must provide an object [json-pointer:{where}]"]
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if obj.get("type") not in kinds:
        return [f"must be one of {', '.join(kinds)} [json-pointer:{where}/type]"]
    if not obj["text"]:
        return [f"must be more than 0 characters [json-pointer:{where}/text]"]
    if len(obj["text"]) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{where}/text]"]
    return []


def _section(block: dict[str, Any], where: str, _: Collection[str]) -> list[str]:
    if "text" not in block and "fields" not in block:
        return [f"must provide either text or fields [json-pointer:{where}]"]
    errors = (
        _text_errors(block["text"], f"{where}/text", MAX_SECTION_TEXT) if "text" in block else []
    )
    fields = block.get("fields", [])
    if not isinstance(fields, list) or len(fields) > 10:
        return [*errors, f"no more than 10 items allowed [json-pointer:{where}/fields]"]
    for j, item in enumerate(fields):
        errors += _text_errors(item, f"{where}/fields/{j}", 2000)
    return errors


def _header(block: dict[str, Any], where: str, _: Collection[str]) -> list[str]:
    return _text_errors(block.get("text"), f"{where}/text", MAX_HEADER_TEXT, plain_only=True)


def _image(block: dict[str, Any], where: str, broken: Collection[str]) -> list[str]:
    url = block.get("image_url")
    if not isinstance(url, str) or not url or len(url) > 3000:
        return [f"must provide a valid image_url [json-pointer:{where}/image_url]"]
    if not isinstance(block.get("alt_text"), str) or not block["alt_text"]:
        return [f"missing required field: alt_text [json-pointer:{where}]"]
    if "title" in block:
        errors = _text_errors(block["title"], f"{where}/title", 2000, plain_only=True)
        if errors:
            return errors
    if url in broken:  # checked last: Slack fetches the image only for a valid block
        return [f"downloading image failed [json-pointer:{where}/image_url]"]
    return []


def _context(block: dict[str, Any], where: str, broken: Collection[str]) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
        return [f"must have 1 to 10 items [json-pointer:{where}/elements]"]
    errors: list[str] = []
    for j, element in enumerate(elements):
        at = f"{where}/elements/{j}"
        if isinstance(element, dict) and element.get("type") == "image":
            errors += _image(element, at, broken)
        else:
            errors += _text_errors(element, at, 3000)
    return errors


def _markdown(block: dict[str, Any], where: str, _: Collection[str]) -> list[str]:
    text = block.get("text")
    if not isinstance(text, str) or not 0 < len(text) <= 12_000:
        return [f"must be 1 to 12000 characters [json-pointer:{where}/text]"]
    return []


def _anything(block: dict[str, Any], where: str, _: Collection[str]) -> list[str]:
    return []  # blocks the relay does not render; accepted as they are


_BLOCK_CHECKS: dict[str, Callable[[dict[str, Any], str, Collection[str]], list[str]]] = {
    "section": _section,
    "header": _header,
    "image": _image,
    "context": _context,
    "markdown": _markdown,
    "divider": _anything,
    "actions": _anything,
    "rich_text": _anything,
    "video": _anything,
    "file": _anything,
    "input": _anything,
}
