"""The client options backups upload with: the parts' Content-MD5 alone protects them, and the
connection's own options survive."""

from __future__ import annotations

from botocore.config import Config

from stellar_ops.storage.s3 import _content_md5, client_config


def test_payload_hashing_and_default_checksums_are_off() -> None:
    config = client_config()
    assert config.s3 == {"payload_signing_enabled": False}
    assert config.request_checksum_calculation == "when_required"


def test_the_connections_options_are_kept() -> None:
    base = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 7}, connect_timeout=3)
    config = client_config(base)
    assert config.s3 == {"addressing_style": "path", "payload_signing_enabled": False}
    assert config.retries == {"max_attempts": 7}
    assert config.connect_timeout == 3


def test_content_md5_is_the_base64_of_the_digest() -> None:
    assert _content_md5(b"") == "1B2M2Y8AsgTpgAmY7PhCfg=="
    assert _content_md5(bytearray(b"stellar")) != _content_md5(b"stellaR")
