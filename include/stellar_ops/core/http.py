"""An HTTP endpoint a procedure calls: its base URL and the secret it sends, never shown."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HttpEndpoint:
    base_url: str
    secret: str | None = field(default=None, repr=False)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")
