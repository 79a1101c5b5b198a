"""stellar_ops_dev.demo_data.parse_size."""

from __future__ import annotations

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops_dev.demo_data import parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500MB", 500 * 2**20),
        ("1GB", 2**30),
        ("1gb", 2**30),
        (" 2 kb ", 2048),
        ("1.5GB", int(1.5 * 2**30)),
        ("0.5KB", 512),
        ("123", 123),
        ("123B", 123),
        ("0MB", 0),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "lots", "1TB", "-5MB", "1,5GB", "5 M B", "1e3MB"])
def test_parse_size_rejects_garbage(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_size(text)
    assert str(info.value) == f"--size must look like 500MB or 1GB, got {text!r}"


@pytest.mark.parametrize(("text", "expected"), [("500M", 500 * 2**20), ("2G", 2 * 2**30), ("1K", 1024)])
def test_parse_size_unit_without_b(text: str, expected: int) -> None:
    assert parse_size(text) == expected
