"""Credentials, new secrets, and which PostgreSQL twin a rotation may set."""

from __future__ import annotations

import dataclasses
import re

import pytest

from stellar_ops.rotation import keys
from stellar_ops.rotation.credentials import Credential, generate_secret
from stellar_ops.rotation.twins import (
    Acceptance,
    Twin,
    TwinError,
    TwinState,
    idle_twin,
    scram_matches,
    twin_names,
)


def test_a_credential_shows_its_identity_and_fingerprint_never_its_secret():
    credential = Credential("stellar_blue", "s3cret-value")
    assert "s3cret" not in repr(credential) and "s3cret" not in str(credential)
    assert credential.fingerprint == keys.fingerprint("s3cret-value")
    assert str(credential) == f"stellar_blue (secret {credential.fingerprint})"
    with pytest.raises(dataclasses.FrozenInstanceError):
        credential.secret = "other"  # type: ignore[misc]
    assert credential == Credential("stellar_blue", "s3cret-value")


def test_new_secrets_are_url_safe_random_and_long_enough():
    made = {generate_secret() for _ in range(50)}
    assert len(made) == 50
    for secret in made:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret), "32 bytes as unpadded URL-safe base64"
    assert len(generate_secret(48)) == 64
    with pytest.raises(ValueError, match="nbytes"):
        generate_secret(8)


def _state(*, group: bool, blue: bool | None, green: bool | None) -> TwinState:
    """``None``: the twin does not exist yet."""
    names = twin_names("stellar")
    twins = tuple(
        Twin(name, exists=login is not None, can_login=bool(login), sessions=0, valid_until=None)
        for name, login in zip(names, (blue, green), strict=True)
    )
    return TwinState("stellar", group, 0, twins)  # type: ignore[arg-type]


def test_the_idle_twin_is_the_one_no_consumer_can_be_using():
    assert twin_names("stellar") == ("stellar_blue", "stellar_green")
    assert idle_twin(_state(group=True, blue=False, green=False)) == "stellar_blue"  # first rotation
    assert idle_twin(_state(group=False, blue=True, green=False)) == "stellar_green"
    assert idle_twin(_state(group=False, blue=False, green=True)) == "stellar_blue"


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (_state(group=True, blue=None, green=None), "not set up"),
        (_state(group=False, blue=True, green=True), "under way"),
        (_state(group=True, blue=True, green=False), "under way"),  # the first rotation's window
        (_state(group=False, blue=False, green=False), "no consumer can connect"),
    ],
)
def test_no_idle_twin_is_guessed(state, message):
    with pytest.raises(TwinError, match=message):
        idle_twin(state)


def test_state_names_its_logins_and_refuses_an_unknown_twin():
    state = _state(group=True, blue=True, green=False)
    assert state.logins == ["stellar", "stellar_blue"]
    assert state.twin("stellar_green").can_login is False
    with pytest.raises(TwinError, match="'other' is not a twin of 'stellar'"):
        state.twin("other")


def test_an_acceptance_is_truthy_only_when_the_login_worked():
    assert Acceptance(True, "logged in") and not Acceptance(False, "refused")


# libpq's PQencryptPasswordConn("correct-horse", "stellar_blue", "scram-sha-256")
LIBPQ_VERIFIER = (
    "SCRAM-SHA-256$4096:jD5qifUDs7qRejiRhgqGJQ==$7TfBHu7DGwPKTGPVEaEjHl3aBMPRJks8HanK+bzfb+8="
    ":zS5R8Lc/KETTyvnSrshuRbryVAs6avz4yd7Vo40y0Zc="
)


def test_a_scram_verifier_is_checked_against_a_password_without_a_login():
    assert scram_matches(LIBPQ_VERIFIER, "correct-horse")
    assert not scram_matches(LIBPQ_VERIFIER, "correct-horsf")
    assert not scram_matches("md5c0ffee", "correct-horse"), "anything but SCRAM is no match"
