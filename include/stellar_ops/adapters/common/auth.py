"""The package's auth manager: FAB's users and roles, with two rules of the operations manual.

Set ``[core] auth_manager = stellar_ops.adapters.common.auth.StellarAuthManager``
(``AIRFLOW__CORE__AUTH_MANAGER``) on every Airflow component; the roles and the first users come
from :mod:`stellar_ops.adapters.common.roles`.

- **Who may answer an approval.** Approvals are assigned to entries like ``role:Platform lead``,
  ``user:alice`` and ``not:bob`` (:mod:`stellar_ops.core.approvers`); FAB alone would compare
  them with the user's numeric id, and nobody could answer. Airflow asks this only of approvals
  that name someone; an approval that names nobody is open to whoever may edit approvals (the
  ``HITL Detail`` permission).
- **Changing a DAG itself** (pausing or unpausing it, reparsing its file, deleting it) needs
  ``can_edit`` on ``DAG Settings`` besides FAB's ``can_edit`` on ``DAGs``, which FAB also asks for
  every change below a DAG (triggering, clearing, answering). So an on-call engineer triggers and
  clears, and only a platform lead pauses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

from stellar_ops.adapters.common.roles import RESOURCE_DAG_SETTINGS
from stellar_ops.core.approvers import may_answer

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails


def _username(user: Any) -> str:
    return str(user.get_name() or getattr(user, "username", "") or "")


def _role_names(user: Any) -> list[str]:
    return [role.name for role in (getattr(user, "roles", None) or [])]


class StellarAuthManager(FabAuthManager):  # type: ignore[misc]
    """FAB's auth manager; approvals answered by assignment, DAG settings by the lead."""

    def is_authorized_hitl_task(self, *, assigned_users: set[str], user: Any) -> bool:
        return may_answer(
            assigned_users,
            user_id=str(user.get_id()),
            username=_username(user),
            roles=_role_names(user),
        )

    def is_authorized_dag(
        self,
        *,
        method: ResourceMethod,
        user: Any,
        access_entity: DagAccessEntity | None = None,
        details: DagDetails | None = None,
    ) -> bool:
        allowed = bool(
            super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        )
        if not allowed or access_entity is not None or method == "GET":
            return allowed
        return bool(self._is_authorized(method="PUT", resource_type=RESOURCE_DAG_SETTINGS, user=user))
