"""An IAM user's S3 access keys: a second key beside the first, then the old one retired.

IAM allows two access keys per user, which is the transition window: create the new key (its
secret is returned once, by :meth:`IamAccessKeys.create`, and never again), switch the
consumers, deactivate the old key (the rollback is :meth:`IamAccessKeys.reactivate`), and
delete it once nothing has failed.

Every step but the creation is idempotent: deactivating an Inactive key, reactivating an
Active one or deleting a key that is gone does nothing. A creation cannot be repeated
harmlessly, because IAM never shows a secret twice: the caller stores the returned credential
(as pending) before anything else, and a user found with two keys refuses another, naming them,
so a key whose secret was lost in a crash is seen (:meth:`IamAccessKeys.strangers`) and deleted
rather than piling up.

The access key id is not secret (IAM lists it) and names a key in messages; the secret access
key is named only by its fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stellar_ops.rotation.credentials import Credential, CredentialError

MAX_KEYS = 2  # IAM's limit of access keys per user
REFUSED_CODES = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "InvalidAccessKeyId"})


class AccessKeyError(CredentialError):
    """IAM refused a call, or the change asked for would break the user's consumers."""


@dataclass(frozen=True)
class AccessKey:
    id: str
    status: str  # "Active" or "Inactive"
    created: datetime

    def __str__(self) -> str:
        return f"{self.id} ({self.status} since {self.created:%Y-%m-%d %H:%M} UTC)"


class IamAccessKeys:
    """The access keys of the IAM user ``user``, through ``iam`` (a boto3 IAM client that may
    manage them). :meth:`accepts` asks STS at ``sts_endpoint_url`` (boto3's default when None;
    the same URL as IAM's for a local endpoint such as moto's)."""

    def __init__(self, iam: Any, user: str, *, sts_endpoint_url: str | None = None) -> None:
        self.iam = iam
        self.user = user
        self.sts_endpoint_url = sts_endpoint_url

    def __repr__(self) -> str:
        return f"IamAccessKeys(user={self.user!r})"

    def keys(self) -> list[AccessKey]:
        """The user's keys, oldest first."""
        found: list[AccessKey] = []
        for page in self._call(
            "list the access keys",
            lambda: list(self.iam.get_paginator("list_access_keys").paginate(UserName=self.user)),
        ):
            for meta in page["AccessKeyMetadata"]:
                found.append(AccessKey(meta["AccessKeyId"], meta["Status"], meta["CreateDate"]))
        return sorted(found, key=lambda key: key.created)

    def key(self, key_id: str) -> AccessKey | None:
        return next((key for key in self.keys() if key.id == key_id), None)

    def strangers(self, known: Iterable[str]) -> list[AccessKey]:
        """The user's keys whose ids are not in ``known`` (what the password store holds): after
        a crash between a creation and storing its secret, the key nobody can use."""
        wanted = set(known)
        return [key for key in self.keys() if key.id not in wanted]

    def create(self) -> Credential:
        """A new Active key; refuses when the user has two already, naming them."""
        held = self.keys()
        if len(held) >= MAX_KEYS:
            raise AccessKeyError(
                f"IAM user {self.user!r} already has {len(held)} access keys "
                f"({', '.join(str(key) for key in held)}): delete the one no consumer uses "
                "before creating another"
            )
        made = self._call("create an access key", lambda: self.iam.create_access_key(UserName=self.user))
        key = made["AccessKey"]
        return Credential(key["AccessKeyId"], key["SecretAccessKey"])

    def accepts(self, credential: Credential) -> bool:
        """Whether STS ``GetCallerIdentity`` signed with ``credential`` answers as this user.

        False when the key is refused (unknown, deleted, inactive or a wrong secret). AWS makes a
        new key usable within seconds, not at once: poll this for a while after :meth:`create`."""
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        sts = boto3.client(
            "sts",
            endpoint_url=self.sts_endpoint_url,
            region_name=self.iam.meta.region_name,
            aws_access_key_id=credential.identity,
            aws_secret_access_key=credential.secret,
        )
        try:
            arn = str(sts.get_caller_identity()["Arn"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in REFUSED_CODES:
                return False
            raise AccessKeyError(f"STS could not check access key {credential}: {_error(exc)}") from None
        except BotoCoreError as exc:
            raise AccessKeyError(f"STS could not check access key {credential}: {exc}") from None
        if not arn.endswith(f"/{self.user}"):
            raise AccessKeyError(f"access key {credential} belongs to {arn}, not to IAM user {self.user!r}")
        return True

    def last_used(self, key_id: str) -> datetime | None:
        """When AWS last saw the key used (it records this hours late: a hint, not a proof)."""
        answer = self._call(
            f"read when access key {key_id} was last used",
            lambda: self.iam.get_access_key_last_used(AccessKeyId=key_id),
        )
        used = answer.get("AccessKeyLastUsed", {}).get("LastUsedDate")
        return used if isinstance(used, datetime) else None

    def deactivate(self, key_id: str) -> bool:
        """Make the key Inactive; False when it was already. Refuses the user's last Active key."""
        key = self._own(key_id)
        if key.status == "Inactive":
            return False
        others = [k for k in self.keys() if k.status == "Active" and k.id != key_id]
        if not others:
            raise AccessKeyError(
                f"access key {key} is the only Active key of IAM user {self.user!r}: create and switch "
                "to its successor before deactivating it"
            )
        self._set_status(key_id, "Inactive")
        return True

    def reactivate(self, key_id: str) -> bool:
        """Make the key Active again (the rollback of :meth:`deactivate`); False when it was."""
        if self._own(key_id).status == "Active":
            return False
        self._set_status(key_id, "Active")
        return True

    def delete(self, key_id: str) -> bool:
        """Delete an Inactive key; False when it is gone already. An Active key is refused."""
        key = self.key(key_id)
        if key is None:
            return False
        if key.status != "Inactive":
            raise AccessKeyError(
                f"access key {key} of IAM user {self.user!r} is still Active: deactivate it, and wait "
                "until nothing failed, before deleting it"
            )
        self._call(
            f"delete access key {key_id}",
            lambda: self.iam.delete_access_key(UserName=self.user, AccessKeyId=key_id),
        )
        return True

    def _own(self, key_id: str) -> AccessKey:
        key = self.key(key_id)
        if key is None:
            raise AccessKeyError(f"IAM user {self.user!r} has no access key {key_id}")
        return key

    def _set_status(self, key_id: str, status: str) -> None:
        self._call(
            f"make access key {key_id} {status}",
            lambda: self.iam.update_access_key(UserName=self.user, AccessKeyId=key_id, Status=status),
        )

    def _call(self, what: str, call: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            raise AccessKeyError(f"IAM user {self.user!r}: could not {what}: {_error(exc)}") from None
        except BotoCoreError as exc:
            raise AccessKeyError(f"IAM user {self.user!r}: could not {what}: {exc}") from None


def _error(exc: Any) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', '?')}: {error.get('Message', '')}"
