"""Endpoints a procedure calls: an HTTP base URL and its secret, a Redis server; secrets never shown."""

from __future__ import annotations

from dataclasses import dataclass, field


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
