"""When a certificate is renewed, and when a short-lived one is reported: pure rules, no I/O.

A renewal is asked of a real CA, whose rate limits ban an account that renews too often. So the
renewal of a certificate (a certbot lineage) remembers when it last happened, in the bucket
(:class:`RenewalRecord`), and :func:`decide` applies, in this order:

1. an ``unreachable`` endpoint is never renewed: the new certificate could not be verified;
2. ``force_renewal`` renews, whatever the rest says;
3. ``tls.renew`` false, a state a renewal cannot fix, or at least ``tls.renew_below_days`` left:
   not due;
4. due, but the last renewal was less than ``tls.min_renewal_interval`` ago: not renewed;
5. due, but the last renewal showed that the CA issues certificates shorter than
   ``tls.renew_below_days`` (every new one would be due at once): renewed only under a third of
   that lifetime, until the threshold is lowered below it;
6. otherwise renewed.

A renewal whose new certificate is still under ``tls.renew_below_days`` is reported once per
(lifetime, threshold) pair: :func:`short_lifetime_alert_due`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from stellar_ops.tls.config import TlsConfig

# The states a renewal can fix, when under the threshold; invalid and unreachable only when forced
# (invalid) or never (unreachable: a renewal could not be verified).
RENEWABLE_STATES = ("ok", "warning", "critical", "expired")
# While the CA's certificates are shorter than tls.renew_below_days, renew when this share of
# their lifetime is left (certbot's own rule for short certificates).
SHORT_LIFETIME_SHARE = 1 / 3


@dataclass(frozen=True)
class ShortLifetimeAlert:
    """The alert sent because the CA's certificates are shorter than the renewal threshold."""

    lifetime_days: int
    renew_below_days: float
    sent_at: datetime

    def covers(self, lifetime_days: int, renew_below_days: float) -> bool:
        """Whether this alert already said what the same lifetime under the same threshold would."""
        return self.lifetime_days == lifetime_days and self.renew_below_days == renew_below_days


@dataclass(frozen=True)
class RenewalRecord:
    """The last renewal of one certificate (certbot lineage ``cert_name``), kept across runs.

    ``serial``, ``not_after`` and ``lifetime_days`` are those of the new certificate once it is
    served; they stay None when certbot renewed but the new certificate was not seen served.
    """

    cert_name: str
    domain: str
    renewed_at: datetime
    serial: str | None = None
    not_after: datetime | None = None
    lifetime_days: int | None = None
    short_lifetime_alert: ShortLifetimeAlert | None = None

    def as_dict(self) -> dict[str, Any]:
        alert = self.short_lifetime_alert
        return {
            "cert_name": self.cert_name,
            "domain": self.domain,
            "renewed_at": self.renewed_at.isoformat(),
            "serial": self.serial,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "lifetime_days": self.lifetime_days,
            "short_lifetime_alert": {
                "lifetime_days": alert.lifetime_days,
                "renew_below_days": alert.renew_below_days,
                "sent_at": alert.sent_at.isoformat(),
            }
            if alert
            else None,
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> RenewalRecord:
        """Parse :meth:`as_dict`'s form; a missing or malformed field raises ValueError naming it."""
        alert = document.get("short_lifetime_alert")
        try:
            return cls(
                cert_name=str(document["cert_name"]),
                domain=str(document.get("domain") or ""),
                renewed_at=_aware(document["renewed_at"], "renewed_at"),
                serial=document.get("serial"),
                not_after=_aware(document["not_after"], "not_after") if document.get("not_after") else None,
                lifetime_days=int(document["lifetime_days"])
                if document.get("lifetime_days") is not None
                else None,
                short_lifetime_alert=ShortLifetimeAlert(
                    lifetime_days=int(alert["lifetime_days"]),
                    renew_below_days=float(alert["renew_below_days"]),
                    sent_at=_aware(alert["sent_at"], "short_lifetime_alert.sent_at"),
                )
                if alert
                else None,
            )
        except KeyError as exc:
            raise ValueError(f"field {exc.args[0]} is missing") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None

    def served(
        self, serial: str | None, not_after: datetime | None, lifetime_days: int | None
    ) -> RenewalRecord:
        return replace(self, serial=serial, not_after=not_after, lifetime_days=lifetime_days)


def _aware(value: Any, name: str) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"{name} {value!r} has no time zone")
    return parsed


@dataclass(frozen=True)
class Decision:
    renew: bool
    reason: str  # the whole story, for the log and the renewal message
    summary: str  # a few words, for the grid label of the renewal task


def span(delta: timedelta) -> str:
    """A duration as the log says it: ``45 min``, ``23.9h``, ``3.5 days``."""
    seconds = delta.total_seconds()
    if abs(seconds) < 3600:
        return f"{seconds / 60:.0f} min"
    if abs(seconds) < 48 * 3600:
        return f"{round(seconds / 3600, 1):g}h"
    return f"{round(seconds / 86400, 1):g} days"


def short_lifetime(settings: TlsConfig, last: RenewalRecord | None) -> int | None:
    """The CA's certificate lifetime in days, when the last renewal showed it under the threshold."""
    if last is None or last.lifetime_days is None or last.lifetime_days <= 0:
        return None
    return last.lifetime_days if last.lifetime_days < settings.renew_below_days else None


def decide(
    settings: TlsConfig,
    before: Mapping[str, Any],
    last: RenewalRecord | None,
    *,
    now: datetime,
    force: bool,
) -> Decision:
    """Whether the certificate ``before`` (a probe as a dict) is renewed now, and why (module doc)."""
    state, days = before["state"], before.get("days_left")
    not_due = f"not due ({state})"
    if state == "unreachable":
        return Decision(False, "unreachable: a renewal could not be verified", not_due)
    if force:
        return Decision(True, "forced renewal", "forced renewal")
    if not settings.renew:
        return Decision(False, f"{state}: tls.renew is false (probes and alerts only)", not_due)
    if state not in RENEWABLE_STATES or days is None:
        return Decision(False, f"{state}: a renewal cannot fix it (force_renewal can try)", not_due)
    threshold = f"tls.renew_below_days ({settings.renew_below_days:g})"
    if days >= settings.renew_below_days:
        return Decision(False, f"{state}, {days:.1f} days left, not under {threshold}", not_due)
    due = f"{days:.1f} days left, under {threshold}"
    if last is not None:
        age = now - last.renewed_at
        if age < settings.min_renewal_interval:
            interval = span(settings.min_renewal_interval)
            return Decision(
                False,
                f"{due}, but it was renewed {span(age)} ago ({last.renewed_at.isoformat()}), within "
                f"tls.min_renewal_interval ({interval}); the next renewal is possible from "
                f"{(last.renewed_at + settings.min_renewal_interval).isoformat()} (force_renewal renews now)",
                f"not renewed: renewed {span(age)} ago, within tls.min_renewal_interval ({interval})",
            )
    lifetime = short_lifetime(settings, last)
    if lifetime is not None:
        floor = lifetime * SHORT_LIFETIME_SHARE
        if days >= floor:
            return Decision(
                False,
                f"{due}, but the CA issues {lifetime}-day certificates, so a new one would be under it "
                f"too: renewing under a third of the lifetime ({floor:.1f} days) until "
                f"tls.renew_below_days is lowered below {lifetime}",
                f"not renewed: the CA issues {lifetime}-day certificates",
            )
        return Decision(
            True,
            f"{days:.1f} days left, under a third ({floor:.1f} days) of the CA's {lifetime}-day lifetime",
            "due",
        )
    return Decision(True, due, "due")


def short_lifetime_alert_due(
    previous: ShortLifetimeAlert | None, lifetime_days: int, renew_below_days: float
) -> bool:
    """A new certificate under the threshold is alerted, unless the same situation already was."""
    return previous is None or not previous.covers(lifetime_days, renew_below_days)


def lifetime_days(probe: Mapping[str, Any]) -> int | None:
    """The served leaf's lifetime (notBefore to notAfter) in whole days, from a probe as a dict."""
    chain = probe.get("chain") or []
    if not chain:
        return None
    leaf = chain[0]
    start, end = datetime.fromisoformat(leaf["not_before"]), datetime.fromisoformat(leaf["not_after"])
    return round((end - start).total_seconds() / 86400)
