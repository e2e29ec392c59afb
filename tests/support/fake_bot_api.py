"""A fake Telegram Bot API HTTP server for end-to-end tests and benchmarks.

The real python-telegram-bot ``Application`` talks to this server over HTTP exactly as it would
talk to ``api.telegram.org``, so tests exercise the genuine request/response path (serialisation,
long polling, error mapping, rate-limit handling) without network access. Test code injects
updates with helpers such as :meth:`FakeBotApi.send_text` and :meth:`FakeBotApi.press_button` and
inspects what the bot sent through :attr:`FakeBotApi.calls` and the per-chat message records.

It can also run as its own process for benchmarks::

    python -m tests.support.fake_bot_api --port 8081 --latency 0.05 --rate-limit 30

in which case a small JSON control API under ``/_control/...`` replaces the Python helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import inspect
import itertools
import json
import re
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

JSONDict = dict[str, Any]

#: Methods that count against the optional global flood limit, like Telegram's message limits.
RATE_LIMITED_METHODS = frozenset(
    {"sendMessage", "sendPhoto", "sendDocument", "editMessageText", "copyMessage"}
)

#: Parameters whose form-encoded value is always a plain string and must never be JSON-decoded
#: (otherwise a message text like ``"123"`` or ``"true"`` would turn into a number or a bool).
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "inline_message_id",
        "url",
        "secret_token",
        "language_code",
        "action",
        "file_id",
        "emoji",
        "business_connection_id",
        "message_effect_id",
        "ip_address",
    }
)

#: Parameters holding chat/message/user ids, normalised to int when sent as digit strings.
_ID_PARAMS = ("chat_id", "from_chat_id", "message_id", "user_id", "offset", "limit", "timeout")

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)

#: HTML tags Telegram accepts with ``parse_mode=HTML``.
_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
)
_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s[^<>]*)?)>")


class ApiError(Exception):
    """A Telegram-style error answer; raised by method handlers, turned into JSON by the router."""

    def __init__(self, status: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSONDict:
        """Return the JSON body Telegram would send for this error."""
        body: JSONDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


@dataclass
class UploadedFile:
    """A file the bot uploaded via multipart form data, kept so tests can inspect it."""

    filename: str
    content: bytes
    content_type: str | None = None

    @property
    def size(self) -> int:
        """Number of uploaded bytes."""
        return len(self.content)


@dataclass
class ApiCall:
    """One recorded Bot API request (recorded even if it was answered with an error)."""

    method: str
    params: JSONDict
    time: float
    status: int = 200
    error: str | None = None

    def to_json(self) -> JSONDict:
        """Serialise for the control API (uploaded files become a small summary)."""
        return {
            "method": self.method,
            "params": _jsonable(self.params),
            "time": self.time,
            "status": self.status,
            "error": self.error,
        }


@dataclass
class BotMessage:
    """A message the bot sent, holding its CURRENT content (edits replace text and markup)."""

    chat_id: int | str
    message_id: int
    date: int
    text: str | None = None
    caption: str | None = None
    reply_markup: JSONDict | None = None
    kind: str = "text"
    file: UploadedFile | str | None = None
    parse_mode: str | None = None
    sent_text: str | None = None
    edits: int = 0
    media: Any = None
    raw: JSONDict = field(default_factory=dict)

    @property
    def is_photo(self) -> bool:
        """True for messages sent with sendPhoto."""
        return self.kind == "photo"

    @property
    def is_document(self) -> bool:
        """True for messages sent with sendDocument."""
        return self.kind == "document"

    def to_json(self) -> JSONDict:
        """Serialise for the control API."""
        return {
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "date": self.date,
            "kind": self.kind,
            "text": self.text,
            "caption": self.caption,
            "reply_markup": self.reply_markup,
            "edits": self.edits,
        }


def _jsonable(value: Any) -> Any:
    """Make recorded params JSON-serialisable (uploaded files are summarised)."""
    if isinstance(value, UploadedFile):
        return {"filename": value.filename, "size": value.size}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _decode_form_value(key: str, value: str) -> Any:
    """Decode a form field: PTB JSON-encodes every non-string parameter in form bodies."""
    if key in _STRING_PARAMS or not value:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _decode_nested(params: JSONDict) -> JSONDict:
    """Decode objects that arrived as JSON strings inside a JSON body (Telegram accepts both)."""
    for key, value in params.items():
        if key in _STRING_PARAMS or not isinstance(value, str):
            continue
        if value[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


def _utf16_len(text: str) -> int:
    """Telegram measures entity offsets and lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _render_html(text: str) -> str:
    """Validate Telegram-flavoured HTML and return the plain text the user would see.

    Real Telegram rejects unsupported or unbalanced tags, which is a classic production bug
    (e.g. unescaped ``<`` in user-provided text), so the fake rejects them too.
    """
    stack: list[str] = []
    out: list[str] = []
    pos = 0
    while True:
        lt = text.find("<", pos)
        if lt < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:lt])
        match = _TAG_RE.match(text, lt)
        if match is None:
            raise ApiError(
                400,
                'Bad Request: can\'t parse entities: Unexpected character "<" '
                f"at byte offset {len(text[:lt].encode())}",
            )
        closing, name = match.group(1), match.group(2).lower()
        if name not in _HTML_TAGS:
            kind = "end" if closing else "start"
            raise ApiError(
                400,
                f'Bad Request: can\'t parse entities: Unsupported {kind} tag "{name}" '
                f"at byte offset {len(text[:lt].encode())}",
            )
        if closing:
            if not stack or stack[-1] != name:
                raise ApiError(
                    400,
                    f"Bad Request: can't parse entities: Unmatched end tag at byte offset "
                    f'{len(text[:lt].encode())}, expected "</{stack[-1] if stack else ""}>", '
                    f'found "</{name}>"',
                )
            stack.pop()
        else:
            stack.append(name)
        pos = match.end()
    if stack:
        raise ApiError(
            400,
            f"Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
            f'"{stack[-1]}"',
        )
    return html.unescape("".join(out))


def _inline_markup(markup: Any) -> JSONDict | None:
    """Return the markup only if it is a non-empty inline keyboard (what a Message carries)."""
    if isinstance(markup, dict) and markup.get("inline_keyboard"):
        return markup
    return None


def _validate_markup(markup: Any) -> None:
    """Reject keyboards real Telegram would reject, so bot bugs surface in tests."""
    if markup is None:
        return
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ApiError(400, 'Bad Request: field "inline_keyboard" must be an Array of Array')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise ApiError(400, "Bad Request: inline keyboard button text is empty")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")


class FakeBotApi:
    """In-process fake of the Telegram Bot API served over real HTTP with aiohttp.

    Runs inside the caller's event loop. Point the bot at :attr:`base_url` (PTB appends
    ``token + "/" + method``). All state lives in plain attributes so tests can inspect it.
    """

    def __init__(
        self,
        token: str = "123456:TEST",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        rate_limit_per_second: float | None = None,
        blocked_chats: Iterable[int] | None = None,
        bot_user_id: int = 123456,
        bot_username: str = "spi_test_bot",
        bot_first_name: str = "SPI Bot",
        strict_html: bool = True,
    ) -> None:
        self.token = token
        self.host = host
        self.latency = latency
        self.rate_limit_per_second = rate_limit_per_second
        self.blocked_chats: set[int | str] = set(blocked_chats or ())
        self.bot_user_id = bot_user_id
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.strict_html = strict_html

        self.calls: list[ApiCall] = []
        self.method_counts: Counter[str] = Counter()
        self.too_many_requests = 0
        self.webhook_url: str | None = None
        self.commands: dict[tuple[str, str], list[JSONDict]] = {}
        self.menu_buttons: dict[int | str | None, JSONDict | None] = {}
        self.callback_answers: dict[str, JSONDict] = {}

        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._calls_by_method: dict[str, list[ApiCall]] = {}
        self._rate_window: deque[float] = deque()
        self._messages: dict[int | str, dict[int, BotMessage]] = {}
        self._next_message_id: dict[int | str, int] = {}
        self._chats: dict[int | str, JSONDict] = {}
        self._users: dict[int, JSONDict] = {}
        self._pending: deque[JSONDict] = deque()
        self._redeliver: deque[JSONDict] = deque()
        self._next_update_id = 1
        self._update_event = asyncio.Event()
        self._callback_ids = itertools.count(1)
        self._file_ids = itertools.count(1)

        self._handlers: dict[str, Callable[[JSONDict], Any]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "close": self._true,
            "logOut": self._true,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "copyMessage": self._copy_message,
            "deleteMessage": self._delete_message,
            "sendChatAction": self._send_chat_action,
            "setChatMenuButton": self._set_chat_menu_button,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the HTTP server to a (by default random free) port in the running loop."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_post("/_control/updates", self._control_updates)
        app.router.add_get("/_control/calls", self._control_calls)
        app.router.add_get("/_control/messages", self._control_messages)
        app.router.add_get("/_control/stats", self._control_stats)
        self._closing = False
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        await site.start()
        addresses = self._runner.addresses
        self._port = int(addresses[0][1]) if addresses else self._requested_port

    async def stop(self) -> None:
        """Shut the server down, releasing any long-polling getUpdates immediately."""
        self._closing = True
        self._wake_pollers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotApi:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The TCP port actually bound (valid after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("FakeBotApi is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """Value for PTB's ``base_url`` setting, e.g. ``http://127.0.0.1:PORT/bot``."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def root_url(self) -> str:
        """Server root, e.g. for the ``/_control`` endpoints."""
        return f"http://{self.host}:{self.port}"

    @property
    def bot_user(self) -> JSONDict:
        """The bot's ``User`` object as used in ``from`` of bot messages."""
        return {
            "id": self.bot_user_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle_api(self, request: web.Request) -> web.Response:
        """Route one Bot API call: parse, record, dispatch, then answer after the latency."""
        method = request.match_info["method"]
        try:
            params = await self._parse_params(request)
        except ValueError as exc:
            params = {}
            error: ApiError | None = ApiError(400, f"Bad Request: {exc}")
        else:
            error = None
        call = ApiCall(method=method, params=params, time=time.monotonic())
        self.calls.append(call)
        self._calls_by_method.setdefault(method, []).append(call)
        self.method_counts[method] += 1

        result: Any = None
        try:
            if error is not None:
                raise error
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            handler = self._handlers.get(method)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            self._check_chat(method, params)
            result = handler(params)
            if inspect.isawaitable(result):
                result = await result
        except ApiError as exc:
            call.status = exc.status
            call.error = exc.description
            if self.latency:
                await asyncio.sleep(self.latency)
            return web.json_response(exc.payload(), status=exc.status)
        if self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response({"ok": True, "result": result})

    async def _parse_params(self, request: web.Request) -> JSONDict:
        """Merge query string and body (JSON, urlencoded or multipart) into one dict."""
        params: JSONDict = {k: _decode_form_value(k, v) for k, v in request.query.items()}
        if not request.can_read_body:
            return params
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("request body must be a JSON object")
            params.update(_decode_nested(body))
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            files: dict[str, UploadedFile] = {}
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    upload = UploadedFile(
                        filename=value.filename,
                        content=value.file.read(),
                        content_type=value.content_type,
                    )
                    files[key] = upload
                    params[key] = upload
                else:
                    params[key] = _decode_form_value(key, str(value))
            # Resolve "attach://name" references (used for media groups and thumbnails).
            for key, value in params.items():
                if isinstance(value, str) and value.startswith("attach://"):
                    params[key] = files.get(value[len("attach://") :], value)
        # Ids may come as digit strings (e.g. query strings); state is keyed by int ids.
        for key in _ID_PARAMS:
            raw_id = params.get(key)
            if isinstance(raw_id, str) and raw_id.lstrip("-").isdigit():
                params[key] = int(raw_id)
        return params

    def _check_chat(self, method: str, params: JSONDict) -> None:
        """Apply the blocked-chat and flood-limit rules before a method runs."""
        chat_id = params.get("chat_id")
        if chat_id is not None and chat_id in self.blocked_chats:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if self.rate_limit_per_second is not None and method in RATE_LIMITED_METHODS:
            now = time.monotonic()
            window = self._rate_window
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= self.rate_limit_per_second:
                self.too_many_requests += 1
                raise ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
            window.append(now)

    # ------------------------------------------------------------------ state helpers

    def _chat(self, chat_id: int | str) -> JSONDict:
        """The Chat object for a chat id (remembered from updates, else a private chat)."""
        chat = self._chats.get(chat_id)
        if chat is None:
            if isinstance(chat_id, int) and chat_id < 0:
                chat = {"id": chat_id, "type": "group", "title": f"Group {chat_id}"}
            else:
                chat = {"id": chat_id, "type": "private", "first_name": "User"}
            self._chats[chat_id] = chat
        return chat

    def _new_message_id(self, chat_id: int | str) -> int:
        """Message ids are sequential per chat and shared by user and bot messages."""
        message_id = self._next_message_id.get(chat_id, 0) + 1
        self._next_message_id[chat_id] = message_id
        return message_id

    def _require_chat_id(self, params: JSONDict) -> int | str:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        if not isinstance(chat_id, int | str):
            raise ApiError(400, "Bad Request: chat not found")
        return chat_id

    def _render(self, text: Any, parse_mode: Any) -> str:
        """Turn sent text into displayed text, validating HTML like Telegram does."""
        plain = str(text)
        if self.strict_html and isinstance(parse_mode, str) and parse_mode.upper() == "HTML":
            return _render_html(plain)
        return plain

    def _get_message(self, params: JSONDict) -> BotMessage:
        chat_id = self._require_chat_id(params)
        message_id = _as_int(params.get("message_id"))
        message = None if message_id is None else self._messages.get(chat_id, {}).get(message_id)
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        return message

    def _store(self, chat_id: int | str, message: BotMessage) -> BotMessage:
        self._messages.setdefault(chat_id, {})[message.message_id] = message
        self._refresh_raw(message)
        return message

    def _refresh_raw(self, message: BotMessage) -> None:
        """Rebuild the Telegram ``Message`` JSON from the current content."""
        raw: JSONDict = {
            "message_id": message.message_id,
            "date": message.date,
            "chat": self._chat(message.chat_id),
            "from": self.bot_user,
        }
        if message.edits:
            raw["edit_date"] = int(time.time())
        if message.text is not None:
            raw["text"] = message.text
        if message.caption is not None:
            raw["caption"] = message.caption
        if message.kind in ("photo", "document"):
            if message.media is None:
                message.media = (
                    self._photo_sizes() if message.kind == "photo" else self._document(message.file)
                )
            raw[message.kind] = message.media
        markup = _inline_markup(message.reply_markup)
        if markup is not None:
            raw["reply_markup"] = markup
        message.raw = raw

    def _photo_sizes(self) -> list[JSONDict]:
        n = next(self._file_ids)
        return [
            {
                "file_id": f"photo-{n}-s",
                "file_unique_id": f"u-photo-{n}-s",
                "width": 90,
                "height": 60,
                "file_size": 1024,
            },
            {
                "file_id": f"photo-{n}-m",
                "file_unique_id": f"u-photo-{n}-m",
                "width": 800,
                "height": 600,
                "file_size": 40960,
            },
        ]

    def _document(self, file: UploadedFile | str | None) -> JSONDict:
        n = next(self._file_ids)
        doc: JSONDict = {"file_id": f"doc-{n}", "file_unique_id": f"u-doc-{n}"}
        if isinstance(file, UploadedFile):
            doc["file_name"] = file.filename
            doc["file_size"] = file.size
            if file.content_type:
                doc["mime_type"] = file.content_type
        return doc

    # ------------------------------------------------------------------ Bot API methods

    def _true(self, params: JSONDict) -> bool:
        return True

    def _get_me(self, params: JSONDict) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _delete_webhook(self, params: JSONDict) -> bool:
        self.webhook_url = None
        if params.get("drop_pending_updates"):
            self._pending.clear()
            self._redeliver.clear()
        return True

    def _set_webhook(self, params: JSONDict) -> bool:
        self.webhook_url = str(params.get("url") or "") or None
        if params.get("drop_pending_updates"):
            self._pending.clear()
            self._redeliver.clear()
        return True

    def _get_webhook_info(self, params: JSONDict) -> JSONDict:
        return {
            "url": self.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending) + len(self._redeliver),
        }

    async def _get_updates(self, params: JSONDict) -> list[JSONDict]:
        """Long polling: confirm by offset, return what is queued or wait up to ``timeout``."""
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = _as_int(params.get("offset")) or 0
        limit = max(1, min(100, _as_int(params.get("limit")) or 100))
        timeout = max(0.0, float(params.get("timeout") or 0))
        deadline = time.monotonic() + timeout
        while True:
            event = self._update_event
            updates = self._collect_updates(offset, limit)
            if updates or self._closing:
                return updates
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _collect_updates(self, offset: int, limit: int) -> list[JSONDict]:
        pending = self._pending
        if offset > 0:
            while pending and pending[0]["update_id"] < offset:
                pending.popleft()
        elif offset < 0:
            while len(pending) > -offset:
                pending.popleft()
        result: list[JSONDict] = []
        while self._redeliver and len(result) < limit:
            result.append(self._redeliver.popleft())
        for update in pending:
            if len(result) >= limit:
                break
            result.append(update)
        return result

    def _send_message(self, params: JSONDict) -> JSONDict:
        chat_id = self._require_chat_id(params)
        text = params.get("text")
        if text is None or str(text).strip() == "":
            raise ApiError(400, "Bad Request: message text is empty")
        rendered = self._render(text, params.get("parse_mode"))
        if len(rendered) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        markup = params.get("reply_markup")
        _validate_markup(markup)
        message = BotMessage(
            chat_id=chat_id,
            message_id=self._new_message_id(chat_id),
            date=int(time.time()),
            text=rendered,
            sent_text=str(text),
            parse_mode=params.get("parse_mode"),
            reply_markup=markup,
        )
        return self._store(chat_id, message).raw

    def _send_media(self, params: JSONDict, kind: str) -> JSONDict:
        chat_id = self._require_chat_id(params)
        key = "photo" if kind == "photo" else "document"
        file = params.get(key)
        if file is None or file == "":
            raise ApiError(400, f"Bad Request: there is no {key} in the request")
        caption = params.get("caption")
        rendered = None if caption is None else self._render(caption, params.get("parse_mode"))
        if rendered is not None and len(rendered) > 1024:
            raise ApiError(400, "Bad Request: message caption is too long")
        markup = params.get("reply_markup")
        _validate_markup(markup)
        message = BotMessage(
            chat_id=chat_id,
            message_id=self._new_message_id(chat_id),
            date=int(time.time()),
            caption=rendered,
            sent_text=None if caption is None else str(caption),
            parse_mode=params.get("parse_mode"),
            reply_markup=markup,
            kind=kind,
            file=file if isinstance(file, UploadedFile) else str(file),
        )
        return self._store(chat_id, message).raw

    def _send_photo(self, params: JSONDict) -> JSONDict:
        return self._send_media(params, "photo")

    def _send_document(self, params: JSONDict) -> JSONDict:
        return self._send_media(params, "document")

    def _copy_message(self, params: JSONDict) -> JSONDict:
        chat_id = self._require_chat_id(params)
        from_chat = params.get("from_chat_id")
        source_id = _as_int(params.get("message_id"))
        source = (
            self._messages.get(from_chat, {}).get(source_id)
            if isinstance(from_chat, int | str) and source_id is not None
            else None
        )
        message = BotMessage(
            chat_id=chat_id,
            message_id=self._new_message_id(chat_id),
            date=int(time.time()),
            text=source.text if source else None,
            caption=source.caption if source else None,
            kind=source.kind if source else "text",
            file=source.file if source else None,
            media=source.media if source else None,
            reply_markup=params.get("reply_markup"),
        )
        self._store(chat_id, message)
        return {"message_id": message.message_id}

    def _edit_message_text(self, params: JSONDict) -> JSONDict | bool:
        if params.get("inline_message_id"):
            return True
        text = params.get("text")
        if text is None or str(text).strip() == "":
            raise ApiError(400, "Bad Request: message text is empty")
        message = self._get_message(params)
        if message.kind != "text":
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        rendered = self._render(text, params.get("parse_mode"))
        if len(rendered) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        markup = params.get("reply_markup")
        _validate_markup(markup)
        if message.sent_text == str(text) and _inline_markup(markup) == _inline_markup(
            message.reply_markup
        ):
            raise ApiError(400, _NOT_MODIFIED)
        message.text = rendered
        message.sent_text = str(text)
        message.parse_mode = params.get("parse_mode")
        message.reply_markup = markup
        message.edits += 1
        self._refresh_raw(message)
        return message.raw

    def _edit_message_caption(self, params: JSONDict) -> JSONDict | bool:
        if params.get("inline_message_id"):
            return True
        message = self._get_message(params)
        if message.kind == "text":
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = params.get("caption")
        markup = params.get("reply_markup")
        _validate_markup(markup)
        new_sent = None if caption is None else str(caption)
        if message.sent_text == new_sent and _inline_markup(markup) == _inline_markup(
            message.reply_markup
        ):
            raise ApiError(400, _NOT_MODIFIED)
        message.caption = (
            None if caption is None else self._render(caption, params.get("parse_mode"))
        )
        message.sent_text = new_sent
        message.reply_markup = markup
        message.edits += 1
        self._refresh_raw(message)
        return message.raw

    def _edit_message_reply_markup(self, params: JSONDict) -> JSONDict | bool:
        if params.get("inline_message_id"):
            return True
        message = self._get_message(params)
        markup = params.get("reply_markup")
        _validate_markup(markup)
        if _inline_markup(markup) == _inline_markup(message.reply_markup):
            raise ApiError(400, _NOT_MODIFIED)
        message.reply_markup = markup
        message.edits += 1
        self._refresh_raw(message)
        return message.raw

    def _answer_callback_query(self, params: JSONDict) -> bool:
        query_id = params.get("callback_query_id")
        if not query_id:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self.callback_answers[str(query_id)] = params
        return True

    @staticmethod
    def _commands_key(params: JSONDict) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    def _set_my_commands(self, params: JSONDict) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            name = command.get("command", "") if isinstance(command, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(params)] = commands
        return True

    def _get_my_commands(self, params: JSONDict) -> list[JSONDict]:
        return self.commands.get(self._commands_key(params), [])

    def _delete_my_commands(self, params: JSONDict) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    def _delete_message(self, params: JSONDict) -> bool:
        chat_id = self._require_chat_id(params)
        message_id = _as_int(params.get("message_id"))
        chat_messages = self._messages.get(chat_id, {})
        if message_id in chat_messages:
            del chat_messages[message_id]
            return True
        if message_id is not None and 0 < message_id <= self._next_message_id.get(chat_id, 0):
            return True  # a user message: not tracked, but it existed
        raise ApiError(400, "Bad Request: message to delete not found")

    def _send_chat_action(self, params: JSONDict) -> bool:
        self._require_chat_id(params)
        return True

    def _set_chat_menu_button(self, params: JSONDict) -> bool:
        self.menu_buttons[params.get("chat_id")] = params.get("menu_button")
        return True

    # ------------------------------------------------------------------ injecting updates

    def _wake_pollers(self) -> None:
        """Release every waiting getUpdates; a fresh event is used for the next wait."""
        self._update_event.set()
        self._update_event = asyncio.Event()

    def send_update(self, update: JSONDict) -> JSONDict:
        """Enqueue a raw update (assigning ``update_id`` if missing) and wake long polls."""
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        self._pending.append(update)
        self._wake_pollers()
        return update

    def redeliver(self, update: JSONDict) -> JSONDict:
        """Deliver an update again with the SAME update_id, even if the offset already passed it.

        Simulates Telegram's duplicate delivery (e.g. after a timeout) to test idempotency.
        """
        self._redeliver.append(update)
        self._wake_pollers()
        return update

    def _user(
        self,
        user_id: int,
        first_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
    ) -> JSONDict:
        """Build (and remember) a user so later button presses reuse the same profile."""
        user = dict(
            self._users.get(user_id)
            or {"id": user_id, "is_bot": False, "first_name": "Budi", "language_code": "id"}
        )
        if first_name is not None:
            user["first_name"] = first_name
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        self._users[user_id] = user
        return user

    def send_text(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Budi",
        username: str | None = None,
        language_code: str = "id",
    ) -> JSONDict:
        """Enqueue a text message from a user; a leading ``/cmd`` gets a bot_command entity."""
        user = self._user(user_id, first_name, username, language_code)
        chat_id = user_id if chat_id is None else chat_id
        if chat_type == "private":
            chat: JSONDict = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
            if "username" in user:
                chat["username"] = user["username"]
        else:
            chat = {"id": chat_id, "type": chat_type, "title": f"Chat {chat_id}"}
        self._chats[chat_id] = chat
        message: JSONDict = {
            "message_id": self._new_message_id(chat_id),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
            "text": text,
        }
        if text.startswith("/") and len(text) > 1:
            command = text.split(maxsplit=1)[0]
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
            ]
        return self.send_update({"message": message})

    def press_button(
        self, user_id: int, message_id: int, data: str, *, chat_id: int | None = None
    ) -> JSONDict:
        """Enqueue a callback_query as if the user tapped an inline button of a bot message."""
        chat_id = user_id if chat_id is None else chat_id
        stored = self._messages.get(chat_id, {}).get(message_id)
        if stored is not None:
            message = {**stored.raw, "chat": self._chat(chat_id)}
        else:
            message = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": self._chat(chat_id),
                "from": self.bot_user,
            }
        query = {
            "id": f"cbq-{next(self._callback_ids)}",
            "from": self._user(user_id),
            "chat_instance": f"ci-{chat_id}",
            "data": data,
            "message": message,
        }
        return self.send_update({"callback_query": query})

    def press_label(
        self,
        user_id: int,
        label: str,
        *,
        chat_id: int | None = None,
        message_id: int | None = None,
    ) -> JSONDict:
        """Press the button whose text contains ``label`` in the latest (or given) message."""
        chat_id = user_id if chat_id is None else chat_id
        message = self._find_keyboard_message(chat_id, message_id)
        data = self.button_data(chat_id, label, message_id=message.message_id)
        return self.press_button(user_id, message.message_id, data, chat_id=chat_id)

    # ------------------------------------------------------------------ inspection / waiting

    def calls_of(self, method: str) -> list[ApiCall]:
        """All recorded calls of one method, in order (indexed, no scan)."""
        return list(self._calls_by_method.get(method, ()))

    def mark(self) -> int:
        """Current call index; pass it as ``after=`` to only wait for calls made from now on."""
        return len(self.calls)

    def chat_messages(self, chat_id: int | str) -> list[BotMessage]:
        """The bot's live messages in a chat, oldest first, with current text and markup."""
        return list(self._messages.get(chat_id, {}).values())

    def last_message(self, chat_id: int | str) -> BotMessage:
        """The newest live bot message in a chat (AssertionError if there is none)."""
        messages = self._messages.get(chat_id)
        if not messages:
            raise AssertionError(f"the bot has sent no (undeleted) message to chat {chat_id}")
        return next(reversed(messages.values()))

    def message(self, chat_id: int | str, message_id: int) -> BotMessage:
        """One stored bot message by id (AssertionError if unknown)."""
        try:
            return self._messages[chat_id][message_id]
        except KeyError:
            raise AssertionError(f"no bot message {message_id} in chat {chat_id}") from None

    @staticmethod
    def buttons(message: BotMessage | JSONDict | None) -> list[tuple[str, str | None]]:
        """Flattened ``(text, callback_data)`` of an inline keyboard (None for URL buttons)."""
        markup = message.reply_markup if isinstance(message, BotMessage) else message
        if isinstance(markup, dict) and "reply_markup" in markup:
            markup = markup["reply_markup"]
        if not isinstance(markup, dict):
            return []
        return [
            (str(button.get("text", "")), button.get("callback_data"))
            for row in markup.get("inline_keyboard") or []
            for button in row
        ]

    def _find_keyboard_message(self, chat_id: int | str, message_id: int | None) -> BotMessage:
        if message_id is not None:
            return self.message(chat_id, message_id)
        for message in reversed(self._messages.get(chat_id, {}).values()):
            if _inline_markup(message.reply_markup):
                return message
        raise AssertionError(f"no bot message with an inline keyboard in chat {chat_id}")

    def button_data(
        self, chat_id: int | str, label_substring: str, message_id: int | None = None
    ) -> str:
        """Callback data of the first button whose text contains the label.

        Looks in the given message, or else in the newest message that has an inline keyboard.
        Falls back to a case-insensitive match before giving up.
        """
        message = self._find_keyboard_message(chat_id, message_id)
        buttons = self.buttons(message)
        folded = label_substring.casefold()
        for text, data in buttons:
            if label_substring in text and data is not None:
                return data
        for text, data in buttons:
            if folded in text.casefold() and data is not None:
                return data
        raise AssertionError(
            f"no callback button containing {label_substring!r} in message "
            f"{message.message_id} of chat {chat_id}; buttons: {buttons}"
        )

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,
        message: str | None = None,
    ) -> None:
        """Poll ``predicate`` until true; AssertionError with recent calls on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for "
                    f"{message or getattr(predicate, '__name__', 'condition')}; "
                    f"last calls: {self._describe_recent_calls()}"
                )
            await asyncio.sleep(0.005)

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] | None = None,
        timeout: float = 5.0,
        after: int = 0,
    ) -> ApiCall:
        """Wait for a call of ``method`` at index >= ``after`` matching ``predicate``.

        Scans incrementally, so waiting stays cheap even with many recorded calls.
        """
        deadline = time.monotonic() + timeout
        pos = after
        while True:
            calls = self.calls
            while pos < len(calls):
                call = calls[pos]
                pos += 1
                if call.method == method and (predicate is None or predicate(call)):
                    return call
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for a {method} call"
                    f"{' matching the predicate' if predicate else ''} after index {after}; "
                    f"last calls: {self._describe_recent_calls()}"
                )
            await asyncio.sleep(0.005)

    def _describe_recent_calls(self, count: int = 8) -> str:
        recent = [c for c in self.calls[-count * 4 :] if c.method != "getUpdates"][-count:]
        if not recent:
            return "(none besides getUpdates)"
        parts = []
        for call in recent:
            detail = {k: v for k, v in call.params.items() if k in ("chat_id", "text", "data")}
            status = "" if call.status == 200 else f" -> {call.status} {call.error}"
            parts.append(f"{call.method}({_jsonable(detail)}){status}")
        return "; ".join(parts)

    def stats(self) -> JSONDict:
        """Counters for benchmarks."""
        return {
            "calls": len(self.calls),
            "by_method": dict(self.method_counts),
            "too_many_requests": self.too_many_requests,
            "pending_updates": len(self._pending) + len(self._redeliver),
            "next_update_id": self._next_update_id,
        }

    # ------------------------------------------------------------------ control API

    async def _control_updates(self, request: web.Request) -> web.Response:
        """POST a list of raw or helper-described updates (``kind`` = text / press)."""
        body = await request.json()
        items = body.get("updates", []) if isinstance(body, dict) else body
        if not isinstance(items, list):
            return web.json_response({"ok": False, "description": "expected a list"}, status=400)
        created: list[JSONDict] = []
        try:
            for item in items:
                kind = item.get("kind")
                args = {k: v for k, v in item.items() if k != "kind"}
                if kind == "text":
                    created.append(self.send_text(**args))
                elif kind == "press":
                    created.append(self.press_button(**args))
                elif kind is None:
                    created.append(self.send_update(item))
                else:
                    raise ValueError(f"unknown kind {kind!r}")
        except (TypeError, ValueError, AttributeError) as exc:
            return web.json_response({"ok": False, "description": str(exc)}, status=400)
        return web.json_response({"ok": True, "result": created})

    async def _control_calls(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        calls = self.calls[since:]
        return web.json_response(
            {"ok": True, "next": since + len(calls), "result": [c.to_json() for c in calls]}
        )

    async def _control_messages(self, request: web.Request) -> web.Response:
        raw = request.query.get("chat_id", "")
        chat_id: int | str = int(raw) if raw.lstrip("-").isdigit() else raw
        return web.json_response(
            {"ok": True, "result": [m.to_json() for m in self.chat_messages(chat_id)]}
        )

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "result": self.stats()})


def _as_int(value: Any) -> int | None:
    """Lenient int conversion for ids that may arrive as strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str | float):
        with contextlib.suppress(ValueError):
            return int(value)
    return None


async def _serve(args: argparse.Namespace) -> None:
    """Run the fake server until SIGINT/SIGTERM (benchmark mode)."""
    api = FakeBotApi(
        args.token,
        host=args.host,
        port=args.port,
        latency=args.latency,
        rate_limit_per_second=args.rate_limit,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await api.start()
    print(f"fake Bot API listening on {api.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await api.stop()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``python -m tests.support.fake_bot_api --port 8081``."""
    parser = argparse.ArgumentParser(description="Fake Telegram Bot API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="123456:TEST")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per call")
    parser.add_argument(
        "--rate-limit", type=float, default=None, help="max sends/edits per second (429 beyond)"
    )
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
