"""The webhook Meta calls: verification (GET) and signed updates (POST), on aiohttp.

Every POST must carry ``X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body
with the app secret>``; anything else is refused with 401 before the body is
parsed. Bodies over :data:`MAX_BODY` are refused with 413. A valid update is
acknowledged at once and handled in the background (see channel.py); a
redelivered message is recognised by its id in the engine's transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from aiohttp import web

from bot.whatsapp.channel import Inbound, WhatsAppChannel
from core.events import Choice, Command, Event, Text, Unsupported

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/whatsapp"
MAX_BODY = 1024 * 1024  # bytes; Meta batches updates, but text messages are small
SIGNATURE_HEADER = "X-Hub-Signature-256"
_IGNORED = frozenset({"reaction", "system", "ephemeral"})


def sign(app_secret: bytes, body: bytes) -> str:
    """The header value Meta sends for ``body``."""
    return "sha256=" + hmac.new(app_secret, body, hashlib.sha256).hexdigest()


def signature_ok(app_secret: bytes, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    return hmac.compare_digest(sign(app_secret, body).encode(), header.strip().encode())


def parse_event(message: dict[str, Any]) -> Event | None:
    """One Cloud API message as an engine event (None: nothing to answer, e.g. a reaction)."""
    kind = str(message.get("type", ""))
    if kind == "text":
        body = str(message.get("text", {}).get("body", ""))
        if body.startswith("/"):
            head, _, args = body.partition(" ")
            return Command(name=head[1:].strip().lower(), args=args.strip())
        return Text(text=body)
    if kind == "interactive":
        interactive = message.get("interactive", {})
        reply = interactive.get(str(interactive.get("type", "")), {})
        return Choice(token=str(reply.get("id", "")))
    if kind == "button":  # a template's quick-reply button
        return Choice(token=str(message.get("button", {}).get("payload", "")))
    if kind in _IGNORED:
        return None
    return Unsupported(kind=kind or "other")


def parse_update(data: Any) -> tuple[list[Inbound], list[tuple[str, int]]]:
    """User messages, and (recipient, error code) of failed-delivery statuses."""
    messages: list[Inbound] = []
    failures: list[tuple[str, int]] = []
    if not isinstance(data, dict):
        return messages, failures
    for entry in data.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            for message in value.get("messages") or []:
                event = parse_event(message)
                wa_id, message_id = message.get("from"), message.get("id")
                if event is not None and isinstance(wa_id, str) and isinstance(message_id, str):
                    messages.append(Inbound(wa_id=wa_id, message_id=message_id, event=event))
            for status in value.get("statuses") or []:
                if status.get("status") != "failed":
                    continue
                for error in status.get("errors") or []:
                    failures.append(
                        (str(status.get("recipient_id", "")), int(error.get("code", 0)))
                    )
    return messages, failures


def build_webhook(
    channel: WhatsAppChannel, app_secret: bytes, verify_token: str
) -> web.Application:
    async def verify(request: web.Request) -> web.Response:
        query = request.query
        token = query.get("hub.verify_token", "")
        if query.get("hub.mode") == "subscribe" and hmac.compare_digest(
            token.encode(), verify_token.encode()
        ):
            return web.Response(text=query.get("hub.challenge", ""))
        return web.Response(status=403, text="verification refused")

    async def receive(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="body too large")
        body = await request.read()
        if not signature_ok(app_secret, body, request.headers.get(SIGNATURE_HEADER)):
            log.warning("whatsapp webhook: request with a missing or wrong signature refused")
            return web.Response(status=401, text="bad signature")
        try:
            data = json.loads(body)
        except ValueError:
            return web.Response(status=400, text="not JSON")
        messages, failures = parse_update(data)
        for inbound in messages:
            channel.submit(inbound)
        for wa_id, code in failures:
            log.info("whatsapp: delivery failed with error %d", code)
            channel.on_status_error(wa_id, code)
        return web.Response(text="ok")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get(WEBHOOK_PATH, verify)
    app.router.add_post(WEBHOOK_PATH, receive)
    return app
