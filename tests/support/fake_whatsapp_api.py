"""A fake WhatsApp Cloud API for end-to-end tests and the WhatsApp benchmark.

The bot's real client posts to ``POST /{version}/{phone_id}/messages`` here as it
would to graph.facebook.com. The fake checks what Meta checks and answers with
Meta's error shape: at most 3 reply buttons with titles of at most 20 characters,
lists of at most 10 rows (titles 24, descriptions 72, button text 20), bodies of
at most 1024 (interactive) or 4096 (text) characters, unique ids. It keeps the
24-hour window per user (free-form to a user with no recent message fails with
131047), can inject 130429 and 131047, and delivers SIGNED webhooks to the bot.
Media are uploaded with ``POST /{version}/{phone_id}/media`` (multipart: the file,
its ``type`` and ``messaging_product``), checked for type and size as Meta does
(images: PNG or JPEG, at most 5 MB), and kept; an image message must name an
uploaded media id.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

JSONDict = dict[str, Any]
VERSION = "v23.0"

_ERROR_MESSAGES = {
    100: "Invalid parameter",
    131009: "Parameter value is not valid",
    130429: "Rate limit hit",
    131047: "Re-engagement message",
    131008: "Required parameter is missing",
    131053: "Media upload error",
    190: "Invalid OAuth access token",
}


class CloudApiRefusal(Exception):
    def __init__(self, code: int, details: str, status: int = 400) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.status = status


def error_body(code: int, details: str) -> JSONDict:
    """The Cloud API's error JSON."""
    return {
        "error": {
            "message": f"(#{code}) {_ERROR_MESSAGES.get(code, 'Error')}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AfakeTraceId",
        }
    }


def _check_length(value: object, low: int, high: int, what: str) -> str:
    if not isinstance(value, str) or not low <= len(value) <= high:
        length = len(value) if isinstance(value, str) else "missing"
        raise CloudApiRefusal(
            131009, f"{what} length invalid ({length}). Min length: {low}, Max length: {high}"
        )
    return value


def validate(message: JSONDict) -> str:
    """Raise CloudApiRefusal for anything the real API would refuse; returns the type."""
    if message.get("messaging_product") != "whatsapp":
        raise CloudApiRefusal(100, "messaging_product must be 'whatsapp'")
    if not isinstance(message.get("to"), str) or not message["to"]:
        raise CloudApiRefusal(131008, "to is required")
    kind = message.get("type")
    if kind == "text":
        _check_length(message.get("text", {}).get("body"), 1, 4096, "Text body")
    elif kind == "template":
        template = message.get("template", {})
        _check_length(template.get("name"), 1, 512, "Template name")
        _check_length(template.get("language", {}).get("code"), 2, 8, "Template language")
    elif kind == "interactive":
        _validate_interactive(message.get("interactive", {}))
    elif kind == "image":
        image = message.get("image", {})
        if not isinstance(image.get("id"), str) and not isinstance(image.get("link"), str):
            raise CloudApiRefusal(131008, "image: id or link is required")
        if "caption" in image:
            _check_length(image["caption"], 1, 1024, "Image caption")
    else:
        raise CloudApiRefusal(100, f"unsupported message type {kind!r}")
    return str(kind)


def _validate_interactive(interactive: JSONDict) -> None:
    _check_length(interactive.get("body", {}).get("text"), 1, 1024, "Body text")
    if "footer" in interactive:
        _check_length(interactive["footer"].get("text"), 1, 60, "Footer text")
    action = interactive.get("action", {})
    kind = interactive.get("type")
    if kind == "button":
        buttons = action.get("buttons", [])
        if not 1 <= len(buttons) <= 3:
            raise CloudApiRefusal(131009, f"buttons: expected 1 to 3, got {len(buttons)}")
        ids, titles = set(), set()
        for button in buttons:
            reply = button.get("reply", {})
            ids.add(_check_length(reply.get("id"), 1, 256, "Button id"))
            titles.add(_check_length(reply.get("title"), 1, 20, "Button title"))
        if len(ids) != len(buttons) or len(titles) != len(buttons):
            raise CloudApiRefusal(131009, "Button ids and titles must be unique")
    elif kind == "list":
        _check_length(action.get("button"), 1, 20, "Button label")
        sections = action.get("sections", [])
        rows = [row for section in sections for row in section.get("rows", [])]
        if not 1 <= len(sections) <= 10 or not 1 <= len(rows) <= 10:
            raise CloudApiRefusal(131009, f"rows: expected 1 to 10, got {len(rows)}")
        if len(sections) > 1:
            for section in sections:
                _check_length(section.get("title"), 1, 24, "Section title")
        ids = set()
        for row in rows:
            ids.add(_check_length(row.get("id"), 1, 200, "Row id"))
            _check_length(row.get("title"), 1, 24, "Row title")
            if "description" in row:
                _check_length(row["description"], 1, 72, "Row description")
        if len(ids) != len(rows):
            raise CloudApiRefusal(131009, "Row ids must be unique")
    else:
        raise CloudApiRefusal(100, f"unsupported interactive type {kind!r}")


IMAGE_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
IMAGE_MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Media:
    """An uploaded file as the fake kept it."""

    id: str
    mime_type: str
    filename: str
    data: bytes


@dataclass
class Sent:
    """One message the bot sent, as accepted by the fake."""

    to: str
    message: JSONDict
    id: str
    at: float

    @property
    def kind(self) -> str:
        if self.message["type"] == "interactive":
            return str(self.message["interactive"]["type"])
        return str(self.message["type"])

    @property
    def text(self) -> str:
        if self.message["type"] == "text":
            return str(self.message["text"]["body"])
        if self.message["type"] == "interactive":
            return str(self.message["interactive"]["body"]["text"])
        if self.message["type"] == "image":
            return str(self.message["image"].get("caption", ""))
        return ""

    def choices(self) -> list[tuple[str, str, str]]:
        """(reply id, title, description) of its buttons or list rows."""
        if self.message["type"] != "interactive":
            return []
        interactive = self.message["interactive"]
        if interactive["type"] == "button":
            return [
                (b["reply"]["id"], b["reply"]["title"], "")
                for b in interactive["action"]["buttons"]
            ]
        return [
            (r["id"], r["title"], r.get("description", ""))
            for s in interactive["action"]["sections"]
            for r in s["rows"]
        ]


class FakeWhatsAppApi:
    def __init__(
        self,
        phone_id: str = "109876543210",
        token: str = "wa-test-token-0123456789",
        app_secret: bytes = b"wa-test-app-secret-0123456789",
        host: str = "127.0.0.1",
        latency: float = 0.0,
    ) -> None:
        self.phone_id = phone_id
        self.token = token
        self.app_secret = app_secret
        self.host = host
        self.latency = latency
        self.port = 0
        self.webhook_url: str | None = None
        self.sent: list[Sent] = []
        self.inbound_ids: list[str] = []  # ids of the user messages it made
        self.refused: list[tuple[JSONDict, JSONDict]] = []
        self.windows: dict[str, float] = {}  # wa_id → time of their last message
        self.enforce_window = True
        self.on_sent: list[Callable[[Sent], None]] = []  # called for every accepted message
        self.inject: deque[tuple[int, str | None]] = deque()  # (error code, only for this wa_id)
        self.media: dict[str, Media] = {}  # uploaded files by media id
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle -----------------------------------------------------------
    async def __aenter__(self) -> FakeWhatsAppApi:
        app = web.Application(client_max_size=2 * IMAGE_MAX_BYTES)  # larger: refused as Meta does
        app.router.add_post("/{version}/{phone_id}/messages", self._messages)
        app.router.add_post("/{version}/{phone_id}/media", self._upload)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/{VERSION}"

    # -- the Cloud API side --------------------------------------------------------
    async def _messages(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(error_body(190, "bad token"), status=401)
        if request.match_info["phone_id"] != self.phone_id:
            return web.json_response(error_body(100, "unknown phone number id"), status=400)
        if self.latency:
            await asyncio.sleep(self.latency)
        message: JSONDict = await request.json()
        try:
            kind = validate(message)
            media_id = message.get("image", {}).get("id") if kind == "image" else None
            if media_id is not None and media_id not in self.media:
                raise CloudApiRefusal(131053, f"unknown media id {media_id!r}")
            self._injected(message["to"])
            if (
                self.enforce_window
                and kind != "template"
                and time.time() - self.windows.get(message["to"], -1e12) > 24 * 3600
            ):
                raise CloudApiRefusal(
                    131047, "Message failed to send because more than 24 hours have passed"
                )
        except CloudApiRefusal as refusal:
            body = error_body(refusal.code, refusal.details)
            self.refused.append((message, body))
            return web.json_response(body, status=refusal.status)
        sent = Sent(message["to"], message, f"wamid.out{next(self._ids)}", time.monotonic())
        self.sent.append(sent)
        for listener in self.on_sent:
            listener(sent)
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": message["to"], "wa_id": message["to"]}],
                "messages": [{"id": sent.id}],
            }
        )

    async def _upload(self, request: web.Request) -> web.Response:
        """``POST /{phone_id}/media``: one file, multipart, as the Cloud API takes it."""
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(error_body(190, "bad token"), status=401)
        if request.match_info["phone_id"] != self.phone_id:
            return web.json_response(error_body(100, "unknown phone number id"), status=400)
        try:
            form = await request.post()
        except ValueError:
            return web.json_response(error_body(100, "not a multipart form"), status=400)
        try:
            if form.get("messaging_product") != "whatsapp":
                raise CloudApiRefusal(100, "messaging_product must be 'whatsapp'")
            upload = form.get("file")
            if not isinstance(upload, web.FileField):
                raise CloudApiRefusal(131008, "file is required")
            mime = upload.content_type
            if mime not in IMAGE_TYPES:
                raise CloudApiRefusal(131053, f"unsupported file type {mime!r}")
            if form.get("type") != mime:
                raise CloudApiRefusal(100, f"type {form.get('type')!r} does not match {mime!r}")
            data = upload.file.read()
            if not 0 < len(data) <= IMAGE_MAX_BYTES:
                raise CloudApiRefusal(131053, f"image size {len(data)} bytes, at most 5 MB")
            if not data.startswith(IMAGE_TYPES[mime]):
                raise CloudApiRefusal(131053, f"the file is not a {mime} image")
        except CloudApiRefusal as refusal:
            body = error_body(refusal.code, refusal.details)
            self.refused.append(({"upload": dict(form.items()) if form else {}}, body))
            return web.json_response(body, status=refusal.status)
        media_id = f"{next(self._ids):015d}"
        self.media[media_id] = Media(media_id, mime, upload.filename, data)
        return web.json_response({"id": media_id})

    def _injected(self, to: str) -> None:
        for index, (code, only) in enumerate(self.inject):
            if only is None or only == to:
                del self.inject[index]
                raise CloudApiRefusal(code, "injected")

    def fail_next(self, code: int, to: str | None = None, times: int = 1) -> None:
        """The next ``times`` sends (to ``to``, or to anyone) fail with ``code``."""
        self.inject.extend([(code, to)] * times)

    def expire_window(self, wa_id: str) -> None:
        """As if the user's last message were more than 24 hours ago."""
        self.windows.pop(wa_id, None)

    # -- the webhook side --------------------------------------------------------
    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.app_secret, body, hashlib.sha256).hexdigest()

    async def post_webhook(self, body: bytes, signature: str | None) -> int:
        assert self._session is not None and self.webhook_url is not None
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        async with self._session.post(self.webhook_url, data=body, headers=headers) as response:
            return response.status

    async def deliver(self, payload: JSONDict) -> int:
        """POST a signed update to the bot, as Meta does; returns the HTTP status."""
        for entry in payload["entry"]:
            for change in entry["changes"]:
                for message in change["value"].get("messages", []):
                    self.windows[message["from"]] = time.time()
        body = json.dumps(payload).encode()
        return await self.post_webhook(body, self.sign(body))

    def update(self, wa_id: str, message: JSONDict) -> JSONDict:
        """A webhook payload carrying one user message (gets a fresh message id)."""
        message = {
            "from": wa_id,
            "id": self.wamid(wa_id),
            "timestamp": str(int(time.time())),
            **message,
        }
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "WABA_ID",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "6281100000000",
                                    "phone_number_id": self.phone_id,
                                },
                                "contacts": [{"profile": {"name": "Budi"}, "wa_id": wa_id}],
                                "messages": [message],
                            },
                        }
                    ],
                }
            ],
        }

    def wamid(self, wa_id: str) -> str:
        """A message id shaped like Meta's: base64 that contains the sender's number."""
        raw = b"\x18\x0d" + wa_id.encode() + b"\x15\x02\x00\x12\x18\x14"
        raw += f"{next(self._ids):020X}".encode()
        message_id = "wamid." + base64.b64encode(raw).decode()
        self.inbound_ids.append(message_id)
        return message_id

    def failed_status(self, wa_id: str, code: int) -> JSONDict:
        """A status webhook: a message to ``wa_id`` failed with ``code`` (e.g. 131047)."""
        payload = self.update(wa_id, {})
        value = payload["entry"][0]["changes"][0]["value"]
        del value["messages"], value["contacts"]
        value["statuses"] = [
            {
                "id": f"wamid.out{next(self._ids)}",
                "status": "failed",
                "timestamp": str(int(time.time())),
                "recipient_id": wa_id,
                "errors": [{"code": code, "title": _ERROR_MESSAGES.get(code, "Error")}],
            }
        ]
        return payload

    @staticmethod
    def text(body: str) -> JSONDict:
        return {"type": "text", "text": {"body": body}}

    @staticmethod
    def reply(kind: str, reply_id: str, title: str) -> JSONDict:
        """A pressed reply button (kind "button") or chosen list row (kind "list")."""
        key = "button_reply" if kind == "button" else "list_reply"
        return {
            "type": "interactive",
            "interactive": {"type": key, key: {"id": reply_id, "title": title}},
        }

    # -- inspection ------------------------------------------------------------------
    def to(self, wa_id: str) -> list[Sent]:
        return [s for s in self.sent if s.to == wa_id]

    def transcript(self, wa_id: str) -> str:
        """What the user saw: texts, then each button or list row on its own line."""
        lines: list[str] = []
        for sent in self.to(wa_id):
            lines.append(f"--- {sent.kind}")
            if sent.kind == "template":
                template = sent.message["template"]
                lines.append(f"template {template['name']} ({template['language']['code']})")
            lines.append(sent.text)
            if sent.kind == "list":
                interactive = sent.message["interactive"]
                footer = interactive.get("footer", {}).get("text")
                lines.append(
                    f"  [{interactive['action']['button']}]" + (f" {footer}" if footer else "")
                )
            for reply_id, title, description in sent.choices():
                extra = f" — {description}" if description else ""
                lines.append(f"  ({reply_id}) {title}{extra}")
        return "\n".join(lines)
