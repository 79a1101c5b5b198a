"""stellar_ops.config: defaults, parsing, error messages naming the field, overrides, reference docs."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import BaseModel, ValidationError

from stellar_ops.backup.config import BackupConfig, RetentionConfig
from stellar_ops.changes.config import ChangesConfig
from stellar_ops.core.approvals import ApprovalsConfig
from stellar_ops.core.config import VARIABLE_NAME, AlertsConfig, ConnectionIds, MetricsConfig
from stellar_ops.core.errors import ConfigError
from stellar_ops.dr.config import DrConfig
from stellar_ops.health.config import HealthConfig
from stellar_ops.maintenance.config import MaintenanceConfig
from stellar_ops.perf.config import PerfConfig
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.registry import StellarOpsConfig, parse_config, reference_markdown
from stellar_ops.rotation.config import RotationConfig
from stellar_ops.tls.config import TlsConfig

# -- defaults -------------------------------------------------------------------------------------


def test_defaults_of_every_section() -> None:
    config = StellarOpsConfig()

    assert config.connections.db == "stellar_db"
    assert config.connections.s3 == "stellar_s3"
    assert config.connections.api == "stellar_api"
    assert config.connections.alerts == "slack_alerts"
    assert config.backup.bucket == "stellar-backups"
    assert config.backup.prefix == "backups/"
    assert config.backup.format == "custom"
    assert config.backup.compression_level == 2
    assert config.backup.part_size_mb == 8
    assert config.backup.server_side_encryption == "AES256"
    assert config.backup.kms_key_id is None
    assert config.backup.local_dir is None
    assert config.backup.retention_days == 30
    assert config.backup.local_retention_days == 7
    assert config.backup.min_keep == 7
    assert config.backup.stale_upload_hours == 24
    assert config.dr.scratch_backend == "local"
    assert config.dr.key_tables == ["trades", "events"]
    assert config.dr.min_tables == 3
    assert len(config.dr.sanity_queries) == 3
    assert all(q.upper().startswith("SELECT") for q in config.dr.sanity_queries)
    assert config.maintenance.tables == []
    assert (config.maintenance.window_start_utc, config.maintenance.window_end_utc) == ("02:00", "06:00")
    assert config.alerts.runbook_url_template is None
    assert config.alerts.mention is None
    assert config.metrics.job == "stellar_ops"


@pytest.mark.parametrize("raw", [None, "", "   ", "\n\t", {}])
def test_empty_input_gives_all_defaults(raw: object) -> None:
    assert parse_config(raw) == StellarOpsConfig()  # type: ignore[arg-type]


def test_default_lists_are_not_shared_between_instances() -> None:
    one, two = StellarOpsConfig(), StellarOpsConfig()
    assert one.dr.key_tables == two.dr.key_tables
    assert one.dr.key_tables is not two.dr.key_tables


def test_config_is_frozen() -> None:
    config = StellarOpsConfig()
    with pytest.raises(ValidationError):
        config.backup.retention_days = 3  # type: ignore[misc]


# -- parsing --------------------------------------------------------------------------------------


def test_json_string_is_laid_over_the_defaults() -> None:
    raw = json.dumps(
        {
            "backup": {"retention_days": 14, "format": "plain", "compression_level": 6},
            "dr": {"key_tables": ["escrows"]},
        }
    )

    config = parse_config(raw)

    assert config.backup.retention_days == 14
    assert config.backup.format == "plain"
    assert config.backup.compression_level == 6
    assert config.dr.key_tables == ["escrows"]
    # Untouched fields keep their defaults, in the same and in other sections.
    assert config.backup.min_keep == 7
    assert config.backup.bucket == "stellar-backups"
    assert config.maintenance == MaintenanceConfig()


def test_dict_input_is_equivalent_to_its_json() -> None:
    raw = {"backup": {"bucket": "prod.backups-1", "prefix": ""}, "alerts": {"mention": "<!here>"}}

    from_dict = parse_config(raw)

    assert from_dict == parse_config(json.dumps(raw))
    assert from_dict.backup.bucket == "prod.backups-1"
    assert from_dict.backup.prefix == ""
    assert from_dict.alerts.mention == "<!here>"


def test_numeric_strings_are_coerced() -> None:
    config = parse_config({"backup": {"retention_days": "12"}})
    assert config.backup.retention_days == 12


def test_nullable_connections_accept_null() -> None:
    config = parse_config({"connections": {"api": None, "alerts": None, "pushgateway": None}})
    assert config.connections.api is None
    assert config.connections.alerts is None
    assert config.connections.pushgateway is None


def test_aws_kms_with_a_key_is_valid() -> None:
    config = parse_config({"backup": {"server_side_encryption": "aws:kms", "kms_key_id": "alias/backups"}})
    assert config.backup.kms_key_id == "alias/backups"


def test_absolute_local_dir_is_valid() -> None:
    assert parse_config({"backup": {"local_dir": "/var/backups"}}).backup.local_dir == "/var/backups"


@pytest.mark.parametrize("level", [1, 9])
def test_plain_format_accepts_gzip_levels(level: int) -> None:
    assert (
        parse_config({"backup": {"format": "plain", "compression_level": level}}).backup.compression_level
        == level
    )


def test_custom_format_accepts_zstd_level_19() -> None:
    assert parse_config({"backup": {"compression_level": 19}}).backup.compression_level == 19


# -- errors ---------------------------------------------------------------------------------------


def _error(raw: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)  # type: ignore[arg-type]
    return str(info.value)


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"backup": {"retention_days": 0}}, "backup.retention_days", "greater than or equal to 1"),
        ({"backup": {"retention_days": "abc"}}, "backup.retention_days", "valid integer"),
        ({"backup": {"min_keep": 0}}, "backup.min_keep", "greater than or equal to 1"),
        ({"backup": {"compression_level": 20}}, "backup.compression_level", "less than or equal to 19"),
        ({"backup": {"part_size_mb": 4}}, "backup.part_size_mb", "greater than or equal to 5"),
        ({"backup": {"format": "tar"}}, "backup.format", "'custom' or 'plain'"),
        ({"backup": {"server_side_encryption": "kms"}}, "backup.server_side_encryption", "AES256"),
        ({"dr": {"scratch_backend": "k8s"}}, "dr.scratch_backend", "'local' or 'docker'"),
        ({"dr": {"key_tables": "trades"}}, "dr.key_tables", "valid list"),
        ({"dr": {"startup_timeout_seconds": 1}}, "dr.startup_timeout_seconds", "greater than or equal to 5"),
        ({"maintenance": {"bloat_warn_dead_ratio": 1.5}}, "maintenance.bloat_warn_dead_ratio", "less than"),
        ({"metrics": {"timeout_seconds": 0}}, "metrics.timeout_seconds", "greater than 0"),
        ({"alerts": {"mention": 5}}, "alerts.mention", "valid string"),
    ],
)
def test_bad_value_names_the_dotted_field(raw: dict[str, object], field: str, fragment: str) -> None:
    message = _error(raw)

    assert message.startswith(f"Invalid {VARIABLE_NAME}: ")
    assert f"{field}: " in message
    assert fragment in message


def test_bad_value_shows_what_was_given() -> None:
    assert "(got 0)" in _error({"backup": {"retention_days": 0}})
    assert "(got 'abc')" in _error({"backup": {"retention_days": "abc"}})


def test_unknown_field_is_named_with_its_section() -> None:
    message = _error({"backup": {"retentoin_days": 3}})

    assert "backup.retentoin_days: unknown field" in message
    assert "docs/configuration.md" in message


def test_unknown_section_is_named() -> None:
    assert "bakup: unknown field" in _error({"bakup": {"retention_days": 3}})


def test_section_that_is_not_an_object() -> None:
    message = _error({"backup": 5})
    assert "backup: " in message
    assert "valid dictionary" in message


def test_nested_dict_value_error_names_the_key() -> None:
    assert "dr.scratch_settings.work_mem: " in _error({"dr": {"scratch_settings": {"work_mem": 64}}})


def test_every_problem_is_reported_at_once() -> None:
    message = _error({"backup": {"retention_days": 0, "min_keep": 0}, "dr": {"typo": 1}})

    assert "backup.retention_days" in message
    assert "backup.min_keep" in message
    assert "dr.typo: unknown field" in message
    assert message.count("; ") == 2


@pytest.mark.parametrize(
    ("raw", "kind"),
    [("[1, 2]", "list"), ('"text"', "str"), ("5", "int"), ("null", "NoneType"), ("true", "bool")],
)
def test_json_that_is_not_an_object(raw: str, kind: str) -> None:
    assert _error(raw) == f"{VARIABLE_NAME} must be a JSON object, got {kind}"


def test_non_mapping_python_value_is_refused() -> None:
    assert _error([("backup", {})]) == f"{VARIABLE_NAME} must be a JSON object, got list"


def test_invalid_json_reports_line_and_column() -> None:
    raw = '{\n  "backup": {\n    "retention_days": ,\n  }\n}'

    message = _error(raw)

    assert message.startswith(f"{VARIABLE_NAME} is not valid JSON")
    assert "line 3, column 23" in message
    assert "Expecting value" in message


def test_invalid_json_on_first_line() -> None:
    assert "(line 1, column 2: " in _error("{backup: 1}")


# -- cross-field and shape checks -----------------------------------------------------------------


def test_plain_format_refuses_zstd_only_levels() -> None:
    message = _error({"backup": {"format": "plain", "compression_level": 12}})
    assert "backup.compression_level: gzip (format 'plain') takes 1-9" in message


def test_aws_kms_without_a_key_names_kms_key_id() -> None:
    message = _error({"backup": {"server_side_encryption": "aws:kms"}})
    assert "backup.kms_key_id: required when server_side_encryption is 'aws:kms'" in message


def test_aws_kms_with_empty_key_is_refused() -> None:
    assert "backup.kms_key_id" in _error({"backup": {"server_side_encryption": "aws:kms", "kms_key_id": ""}})


def test_relative_local_dir_is_refused() -> None:
    assert "backup.local_dir: must be an absolute path" in _error({"backup": {"local_dir": "rel/dir"}})


@pytest.mark.parametrize(
    ("prefix", "fragment"),
    [("/backups/", "must not start with '/'"), ("backups", "must be empty or end with '/'")],
)
def test_prefix_shape(prefix: str, fragment: str) -> None:
    message = _error({"backup": {"prefix": prefix}})
    assert f"backup.prefix: {fragment}" in message
    assert f"(got {prefix!r})" in message


@pytest.mark.parametrize("prefix", ["", "backups/", "a/b/c/"])
def test_good_prefixes(prefix: str) -> None:
    assert parse_config({"backup": {"prefix": prefix}}).backup.prefix == prefix


@pytest.mark.parametrize("bucket", ["My-Bucket", "under_score", "-dash-first", "dash-last-", "has space"])
def test_bucket_shape_is_checked(bucket: str) -> None:
    message = _error({"backup": {"bucket": bucket}})
    assert "backup.bucket: must be lower-case letters, digits, '.' and '-'" in message


@pytest.mark.parametrize("bucket", ["ab", "x" * 64])
def test_bucket_length_is_checked(bucket: str) -> None:
    assert "backup.bucket: String should have at" in _error({"backup": {"bucket": bucket}})


@pytest.mark.parametrize("bucket", ["abc", "stellar-backups", "prod.backups.2025", "x" * 63])
def test_good_buckets(bucket: str) -> None:
    assert parse_config({"backup": {"bucket": bucket}}).backup.bucket == bucket


@pytest.mark.parametrize("value", ["24:00", "2:00", "02:60", "0200", "02:00:00", "ab:cd", ""])
@pytest.mark.parametrize("field", ["window_start_utc", "window_end_utc"])
def test_maintenance_window_must_be_hh_mm(field: str, value: str) -> None:
    message = _error({"maintenance": {field: value}})
    assert f"maintenance.{field}: must be HH:MM" in message
    assert repr(value) in message


def test_maintenance_window_message_shows_the_value_once() -> None:
    assert _error({"maintenance": {"window_start_utc": "24:00"}}).count("'24:00'") == 1


@pytest.mark.parametrize(("start", "end"), [("00:00", "23:59"), ("22:30", "04:15")])
def test_good_maintenance_windows(start: str, end: str) -> None:
    config = parse_config({"maintenance": {"window_start_utc": start, "window_end_utc": end}})
    assert (config.maintenance.window_start_utc, config.maintenance.window_end_utc) == (start, end)


@pytest.mark.parametrize("name", ["bad-name", "a.b.c", "1trades", "trades;drop", "public.", ".trades", ""])
def test_maintenance_tables_must_be_identifiers(name: str) -> None:
    message = _error({"maintenance": {"tables": ["trades", name]}})
    assert "maintenance.tables: " in message
    assert f"{name!r} is not a table name" in message


def test_good_maintenance_tables() -> None:
    tables = ["trades", "public.events", "_private", "audit.log$2025"]
    assert parse_config({"maintenance": {"tables": tables}}).maintenance.tables == tables


# -- with_overrides -------------------------------------------------------------------------------


def test_with_overrides_deep_merges_and_keeps_the_rest() -> None:
    base = parse_config({"backup": {"retention_days": 14, "bucket": "base-bucket"}, "dr": {"min_tables": 5}})

    merged = base.with_overrides({"backup": {"retention_days": 60}, "alerts": {"mention": "<!here>"}})

    assert merged.backup.retention_days == 60
    assert merged.backup.bucket == "base-bucket"
    assert merged.dr.min_tables == 5
    assert merged.alerts.mention == "<!here>"
    # The original is untouched.
    assert base.backup.retention_days == 14
    assert base.alerts.mention is None


def test_with_overrides_merges_nested_mappings() -> None:
    base = parse_config({"dr": {"scratch_settings": {"work_mem": "64MB"}}})

    merged = base.with_overrides({"dr": {"scratch_settings": {"fsync": "off"}}})

    assert merged.dr.scratch_settings == {"work_mem": "64MB", "fsync": "off"}


def test_with_overrides_replaces_lists() -> None:
    merged = StellarOpsConfig().with_overrides({"dr": {"key_tables": ["escrows"]}})
    assert merged.dr.key_tables == ["escrows"]


def test_with_no_overrides_is_equal() -> None:
    config = parse_config({"backup": {"min_keep": 3}})
    assert config.with_overrides({}) == config


def test_with_overrides_revalidates_values() -> None:
    with pytest.raises(ConfigError, match=r"backup\.retention_days"):
        StellarOpsConfig().with_overrides({"backup": {"retention_days": 0}})


def test_with_overrides_revalidates_cross_field_checks() -> None:
    plain = parse_config({"backup": {"format": "plain", "compression_level": 9}})
    with pytest.raises(ConfigError, match=r"backup\.compression_level: gzip"):
        plain.with_overrides({"backup": {"compression_level": 10}})
    with pytest.raises(ConfigError, match=r"backup\.kms_key_id"):
        plain.with_overrides({"backup": {"server_side_encryption": "aws:kms"}})


def test_with_overrides_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError, match=r"backup\.retentoin_days: unknown field"):
        StellarOpsConfig().with_overrides({"backup": {"retentoin_days": 3}})


# -- reference_markdown ---------------------------------------------------------------------------

SECTIONS: dict[str, type[BaseModel]] = {
    "connections": ConnectionIds,
    "backup": BackupConfig,
    "retention": RetentionConfig,
    "dr": DrConfig,
    "maintenance": MaintenanceConfig,
    "health": HealthConfig,
    "pitr": PitrConfig,
    "tls": TlsConfig,
    "perf": PerfConfig,
    "rotation": RotationConfig,
    "changes": ChangesConfig,
    "alerts": AlertsConfig,
    "approvals": ApprovalsConfig,
    "metrics": MetricsConfig,
}


def test_reference_lists_every_section() -> None:
    text = reference_markdown()
    assert set(StellarOpsConfig.model_fields) == set(SECTIONS)
    headings = re.findall(r"^## `(\w+)`$", text, flags=re.MULTILINE)
    assert headings == list(StellarOpsConfig.model_fields)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_reference_lists_every_field_with_default_and_description(section: str) -> None:
    text = reference_markdown()
    model = SECTIONS[section]
    defaults = getattr(StellarOpsConfig(), section)
    rows = {
        match[0]: (match[1], match[2])
        for match in re.findall(rf"^\| `{section}\.(\w+)` \| `(.*?)` \| (.*) \|$", text, flags=re.MULTILINE)
    }

    assert set(rows) == set(model.model_fields)
    for name, field in model.model_fields.items():
        default, description = rows[name]
        assert json.loads(default) == defaults.model_dump(mode="json")[name]
        assert description == field.description
        assert description  # every field is documented


def test_reference_names_the_variable_and_cli_env() -> None:
    text = reference_markdown()
    assert text.startswith("# Configuration reference\n")
    assert f"`{VARIABLE_NAME}`" in text
    assert "STELLAR_OPS_CONFIG" in text
