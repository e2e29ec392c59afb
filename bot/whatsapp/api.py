"""A thin Cloud API client on aiohttp: POST /{phone-id}/messages and its errors.

Why not pywa: its async client is built on httpx and its webhook side plugs into
FastAPI or Flask, while this process already runs aiohttp (the Telegram transport,
bot/http.py) and needs only three message shapes and one media upload. One HTTP
stack, one event loop, and the error codes the sender acts on (130429, 131047)
stay in plain sight.
"""

from __future__ import annotations

from typing import Any

import aiohttp

Payload = dict[str, Any]

RATE_LIMITED = 130429  # throughput of the business number exceeded
PAIR_RATE_LIMITED = 131056  # too many messages to one recipient in a short time
OUTSIDE_WINDOW = 131047  # re-engagement: more than 24 hours since the user's last message


class CloudApiError(Exception):
    """An error answer from the Cloud API (code as in Meta's error reference)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"WhatsApp API error {code} (HTTP {status}): {message}")
        self.status = status
        self.code = code
        self.message = message


class CloudApi:
    """Sends messages from one business phone number."""

    def __init__(self, base_url: str, phone_id: str, token: str, connections: int = 64) -> None:
        self.url = f"{base_url.rstrip('/')}/{phone_id}/messages"
        self.media_url = f"{base_url.rstrip('/')}/{phone_id}/media"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=30, connect=10),
                headers=self._headers,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, to: str, message: Payload) -> str:
        """Send one message (``message`` without recipient); returns its message id."""
        await self.start()
        assert self._session is not None
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
        body.update(message)
        async with self._session.post(self.url, json=body) as response:
            data = await response.json(content_type=None)
            if response.status >= 400 or "error" in data:
                error = data.get("error", {}) if isinstance(data, dict) else {}
                details = error.get("error_data", {}).get("details", "")
                text = error.get("message", response.reason or "unknown error")
                raise CloudApiError(
                    response.status,
                    int(error.get("code", 0)),
                    f"{text} {details}".strip(),
                )
            return str(data["messages"][0]["id"])

    async def upload_media(self, data: bytes, mime_type: str, filename: str) -> str:
        """Upload a file (multipart, as the Cloud API wants it); returns its media id."""
        await self.start()
        assert self._session is not None
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", mime_type)
        form.add_field("file", data, filename=filename, content_type=mime_type)
        async with self._session.post(self.media_url, data=form) as response:
            try:
                answer = await response.json(content_type=None)
            except ValueError:
                answer = {"error": {"message": f"not JSON: {(await response.text())[:80]}"}}
            if response.status >= 400 or not isinstance(answer, dict) or "id" not in answer:
                error = answer.get("error", {}) if isinstance(answer, dict) else {}
                details = error.get("error_data", {}).get("details", "")
                text = error.get("message", response.reason or "unknown error")
                raise CloudApiError(
                    response.status, int(error.get("code", 0)), f"{text} {details}".strip()
                )
            return str(answer["id"])
