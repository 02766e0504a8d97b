"""HTTP/1.1 to one DynamoDB endpoint on kept-alive connections: the least a signed JSON POST needs.

httpx (with httpcore and anyio under it) was half of the request path's DynamoDB cost (bench
--profile): a general client's request and response models, header normalisation and
cancellation scopes, for two small POSTs a request to a server that always answers with a
Content-Length. This writes the request in one buffer and reads the answer by its length (or its
chunks), on asyncio's streams, over TLS where the endpoint is https. A connection goes back to
the pool only after a whole answer was read on it; any failure closes it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import Mapping
from urllib.parse import urlsplit

IDLE_SECONDS = 30.0  # a connection idle longer than this is not reused (servers close theirs after about a minute)
MAX_IDLE = 64


class HTTPError(Exception):
    """No answer: the connection failed, closed or timed out."""


class Answer:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class Pool:
    def __init__(self, url: str, connect_timeout: float, read_timeout: float) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.netloc = parts.netloc
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._ssl = ssl.create_default_context() if self.tls else None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self._idle:
            since, reader, writer = self._idle.pop()
            if now - since < IDLE_SECONDS and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        async with asyncio.timeout(self.connect_timeout):
            return await asyncio.open_connection(
                self.host, self.port, ssl=self._ssl, server_hostname=self.host if self.tls else None
            )

    async def post(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """POST `body` to `/`; the answer whatever its status. HTTPError when there was none."""
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = f"POST / HTTP/1.1\r\nhost: {self.netloc}\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body
        try:
            reader, writer = await self._connection()
        except (OSError, TimeoutError) as exc:
            raise HTTPError(f"connect: {exc!r}") from exc
        try:
            async with asyncio.timeout(self.read_timeout):
                writer.write(request)
                answer, keep = await _read(reader)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            writer.close()
            raise HTTPError(f"exchange: {exc!r}") from exc
        except BaseException:  # cancelled: the connection is mid-answer, so it cannot be reused
            writer.close()
            raise
        if keep and len(self._idle) < MAX_IDLE:
            self._idle.append((time.monotonic(), reader, writer))
        else:
            writer.close()
        return answer

    def close(self) -> None:
        for _, _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def _read(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """One answer, and whether its connection may carry another."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += await reader.readexactly(size + 2)
            del body[-2:]
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields, up to the empty line
            pass
        body = bytes(body)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:  # delimited by the connection's end
        return Answer(int(status), headers, await reader.read()), False
    crc = headers.get("x-amz-crc32")
    if crc is not None and int(crc) != zlib.crc32(body):  # DynamoDB's checksum of the body: botocore retries too
        raise ValueError("x-amz-crc32 does not match the body")
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    return Answer(int(status), headers, body), keep
