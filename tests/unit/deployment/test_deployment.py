"""The production-like deployment files: docker-compose.yaml, Dockerfile, .ci/run (no Docker here)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_compose_runs_celery_with_two_workers_a_postgres_metadata_db_and_a_redis_broker():
    services = compose()["services"]
    assert {
        "postgres",
        "redis",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    } <= set(services)
    worker = services["airflow-worker"]
    assert worker["command"] == "celery worker"
    assert worker["deploy"]["replicas"] == 2
    for name, service in services.items():
        if not name.startswith("airflow-") or name == "airflow-cli":
            continue
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
            "postgresql+psycopg2://airflow:${AIRFLOW_DB_PASSWORD}@postgres/"
        )
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        # every component must share these, or tasks fail to authenticate to the API server
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "${AIRFLOW_JWT_SECRET}", name
        assert env["AIRFLOW__API__BASE_URL"] == "http://airflow-apiserver:8080", name


def test_compose_secrets_come_from_the_env_file_with_an_example_for_each():
    text = (REPO / "docker-compose.yaml").read_text()
    example = (REPO / ".env.example").read_text()
    import re

    for name in set(re.findall(r"\$\{(\w+)\}", text)):
        assert f"{name}=" in example, f".env.example lacks {name}"


def test_the_image_installs_the_pinned_requirements_and_the_package():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "pip install --no-cache-dir -r /opt/stellar-ops/requirements.txt" in dockerfile
    assert "postgresql-client-15" in dockerfile
    requirements = (REPO / "requirements.txt").read_text()
    assert "apache-airflow==3.3.2" in requirements


def test_ci_runs_the_readme_test_command():
    script = (REPO / ".ci" / "run").read_text()
    assert "make test" in script
    assert (REPO / ".ci" / "run").stat().st_mode & 0o111
    assert "make test" in (REPO / "README.md").read_text()


def test_compose_has_certbot_and_nginx_sharing_the_certificates_for_tls_cert_check():
    services = compose()["services"]
    certbot, nginx = services["certbot"], services["nginx"]
    # tls_cert_check's docker mode runs commands in these containers by name
    assert certbot["container_name"] == "certbot" and nginx["container_name"] == "nginx"
    assert "letsencrypt:/etc/letsencrypt" in certbot["volumes"]
    assert "letsencrypt:/etc/letsencrypt:ro" in nginx["volumes"]
    assert "acme-webroot:/var/www/certbot" in certbot["volumes"]
    assert "acme-webroot:/var/www/certbot:ro" in nginx["volumes"]
    template = (REPO / "deploy" / "nginx" / "templates" / "escrow.conf.template").read_text()
    assert "/etc/letsencrypt/live/escrow/fullchain.pem" in template
    assert "root /var/www/certbot" in template
    assert {"letsencrypt", "acme-webroot"} <= set(compose()["volumes"])
