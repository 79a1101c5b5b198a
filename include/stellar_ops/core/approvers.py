"""Who may answer an approval, written as the entries of an Airflow approval's ``assigned_users``.

Airflow keeps an approval's respondents as a list of ``{"id": ..., "name": ...}`` and refuses an
answer from anyone else (the UI and the API). The entries this package writes are of three kinds:

- ``role:<role>``: anyone with that role of the auth manager (``role:Platform lead``);
- ``user:<username>``: that person;
- ``not:<username>``: never that person, whatever their role. Four-eyes approvals exclude the one
  who triggered the run and everyone who already approved a step of it.

:func:`may_answer` is the rule the package's auth manager applies to those entries
(:mod:`stellar_ops.adapters.common.auth`). Nothing here imports Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ROLE = "role:"
USER = "user:"
NOT = "not:"


@dataclass(frozen=True)
class Approvers:
    """The people who may answer one approval."""

    roles: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def entries(self) -> list[dict[str, str]]:
        """Airflow's ``assigned_users`` list: ids carry the rule, names read well in the UI."""
        found = [{"id": ROLE + role, "name": f"any {role}"} for role in self.roles]
        found += [{"id": USER + user, "name": user} for user in self.users]
        found += [{"id": NOT + user, "name": f"not {user}"} for user in self.excluded]
        return found

    def describe(self) -> str:
        """``any Platform lead, or alice; not bob`` for messages and errors."""
        who = [f"any {role}" for role in self.roles] + list(self.users)
        text = ", or ".join(who) if who else "nobody"
        return f"{text}; not {', '.join(self.excluded)}" if self.excluded else text

    def excluding(self, users: Iterable[str | None]) -> Approvers:
        extra = [u for u in users if u and u not in self.excluded]
        return Approvers(self.roles, self.users, self.excluded + tuple(dict.fromkeys(extra)))

    @property
    def anyone_left(self) -> bool:
        """False when the rule names people only and every one of them is excluded."""
        return bool(self.roles) or any(user not in self.excluded for user in self.users)


def may_answer(assigned_ids: Iterable[str], *, user_id: str, username: str, roles: Iterable[str]) -> bool:
    """Whether this user may answer an approval assigned to ``assigned_ids``.

    An exclusion wins over everything. An id without a prefix is Airflow's own user id (or a
    username), so approvals written by other code keep their meaning.
    """
    ids = set(assigned_ids)
    if f"{NOT}{username}" in ids or f"{NOT}{user_id}" in ids:
        return False
    if {user_id, username, USER + username, USER + user_id} & ids:
        return True
    return any(ROLE + role in ids for role in roles)
