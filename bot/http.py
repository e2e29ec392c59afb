"""An aiohttp-based request class for python-telegram-bot.

PTB's default HTTPX client scans its whole connection pool on every request;
with the pool of 256 connections that many concurrent respondents need, that
scan became most of the bot's CPU time in `bench/load.py`. aiohttp's connector
hands out pooled connections in constant time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from contextvars import ContextVar

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData
from tornado.httpserver import HTTPServer

# Telegram's updates are a few KiB; anything near this size is not from Telegram.
WEBHOOK_MAX_BODY = 1 << 20
WEBHOOK_BODY_TIMEOUT = 10.0


def limit_webhook_requests() -> None:
    """Cap every webhook request before its secret header is even looked at.

    PTB's webhook server is a tornado ``HTTPServer`` built inside the Updater, which
    would buffer up to 100 MiB of an unauthenticated body before checking the secret.
    ``HTTPServer`` is a tornado ``Configurable``: these defaults apply to every server
    built afterwards, which refuses a larger Content-Length (400) before reading the
    body and drops a body that trickles in for longer than the timeout.
    """
    HTTPServer.configure(None, max_body_size=WEBHOOK_MAX_BODY, body_timeout=WEBHOOK_BODY_TIMEOUT)


# A body already encoded by ``post_json``, on its way through PTB's ``post`` to
# ``do_request``. A context variable is local to the calling task, so concurrent
# requests never see each other's body.
_PREPARED_BODY: ContextVar[bytes | None] = ContextVar("prepared_body", default=None)


class AiohttpRequest(BaseRequest):
    def __init__(
        self,
        connection_limit: int = 256,
        read_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        pool_timeout: float = 10.0,
        media_write_timeout: float = 30.0,
    ) -> None:
        self._limit = connection_limit
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def post_json(self, url: str, payload: Mapping[str, object]) -> object:
        """POST a payload already shaped as the Bot API's JSON, and return its raw result.

        PTB's own methods wrap each parameter in an object, encode each one and then the
        body, and parse the message Telegram returns into objects again; on the answer
        path, where nothing reads that message, this was a tenth of the bot's CPU per
        press. The body is encoded once here and then goes through PTB's public ``post``,
        so status codes still become the same ``BadRequest``, ``Forbidden`` or
        ``RetryAfter`` as every other call.
        """
        token = _PREPARED_BODY.set(json.dumps(payload).encode())
        try:
            return await self.post(url)
        finally:
            _PREPARED_BODY.reset(token)

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        read = _seconds(read_timeout, self._read_timeout)
        connect = _seconds(connect_timeout, self._connect_timeout)
        pool = _seconds(pool_timeout, self._pool_timeout)
        data: aiohttp.FormData | bytes | None = None
        headers: dict[str, str] = {}
        if request_data is not None and request_data.contains_files:
            form = aiohttp.FormData()
            for name, value in request_data.json_parameters.items():
                form.add_field(name, value)
            for name, (filename, content, mimetype) in request_data.multipart_data.items():
                form.add_field(name, content, filename=filename, content_type=mimetype)
            data = form
            if read is not None:
                read = max(read, self._media_write_timeout)
        elif request_data is not None:
            data = request_data.json_payload
            headers["Content-Type"] = "application/json"
        elif (prepared := _PREPARED_BODY.get()) is not None:
            data = prepared
            headers["Content-Type"] = "application/json"
        timeout = _timeout(read, (connect or 0) + (pool or 0) or None)
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{exc.__class__.__name__}: {exc}") from exc


@functools.lru_cache(maxsize=64)
def _timeout(read: float | None, connect: float | None) -> aiohttp.ClientTimeout:
    """One ClientTimeout per distinct setting: building one cost 3 % of the bot's CPU."""
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read)


def _seconds(value: object, default: float) -> float | None:
    """PTB passes DEFAULT_NONE for "use the default" and None for "no timeout"."""
    if value is BaseRequest.DEFAULT_NONE:
        return default
    if value is None or isinstance(value, int | float):
        return value
    return default
