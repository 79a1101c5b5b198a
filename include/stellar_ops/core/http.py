"""Endpoints a procedure calls: an HTTP base URL and its secret, a Redis server; secrets never shown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HttpEndpoint:
    base_url: str
    secret: str | None = field(default=None, repr=False)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int = 6379
    db: int = 0
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    tls: bool = False

    def describe(self) -> str:
        return f"redis{'s' if self.tls else ''}://{self.host}:{self.port}/{self.db}"

    def client(self, timeout: float | None = None) -> Any:
        """A ``redis.Redis`` for this server; ``timeout`` bounds both the connect and each command."""
        import redis

        return redis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            username=self.username,
            password=self.password,
            ssl=self.tls,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
