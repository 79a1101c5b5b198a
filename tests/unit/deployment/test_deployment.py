"""The production deployment: docker-compose.yaml as a real compose parser reads it, the Dockerfile
linted, and the points that need no Docker engine: queues and the socket, networks, secrets, the
image's PostgreSQL majors, health checks, the auth manager and the set-up of the roles and first
users. (No Docker engine runs here.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stellar_ops.adapters.common.roles import (
    ADMIN,
    PASSWORDS_FILE_VARIABLE,
    PLACEHOLDER,
    first_users,
    password_variable,
)
from stellar_ops.backup.config import BackupConfig
from stellar_ops.core.approvals import ON_CALL, PLATFORM_LEAD
from stellar_ops.core.config import ConnectionIds
from stellar_ops.registry import parse_config

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SOCKET = "/var/run/docker.sock"
AIRFLOW_COMPONENTS = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-docker",
}
AUTH_MANAGER = "stellar_ops.adapters.common.auth.StellarAuthManager"
SET_UP_ROLES = ["python", "-m", "stellar_ops.adapters.common.roles"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$|^AIRFLOW_CONN_")


def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value.strip("'")
    return values


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The deployment's files with .env.example as its .env, as an operator first sets it up."""
    root = tmp_path_factory.mktemp("deployment")
    for name in ("docker-compose.yaml", "Dockerfile", ".env.example"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "deploy", root / "deploy")
    shutil.copy(REPO / ".env.example", root / ".env")
    return root


@pytest.fixture(scope="module")
def compose(project) -> dict:
    """``docker compose config``: the real compose parser's model, interpolated from .env."""
    result = subprocess.run(
        [str(BIN / "docker-compose"), "--project-directory", str(project), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    """The file before interpolation: what is written in it."""
    import yaml

    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_compose_is_airflow_3s_layout_with_celery_postgres_redis_minio_nginx_and_certbot(compose):
    services = compose["services"]
    assert AIRFLOW_COMPONENTS | {"postgres", "redis", "minio", "minio-init", "nginx", "certbot"} <= set(
        services
    )
    assert services["airflow-worker"]["command"] == ["celery", "worker", "--queues", "default"]
    assert services["airflow-worker"]["deploy"]["replicas"] == 2
    for name in AIRFLOW_COMPONENTS:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:"), name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0", name
        # every component must share these, or tasks fail to authenticate to the API server
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == env_example()["AIRFLOW_JWT_SECRET"], name
        # workers reach the API server inside the network; people follow links to the public URL
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", (
            name
        )
        assert env["AIRFLOW__API__BASE_URL"] == env_example()["AIRFLOW_PUBLIC_URL"], name


def test_every_long_running_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        one_shot = service.get("restart") == "no" or service.get("profiles")
        if not one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_every_dependency_volume_and_network_a_service_names_is_defined(compose, raw_compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on undefined {dependency}"
        for mount in service.get("volumes", []):
            if mount["type"] == "volume":
                assert mount["source"] in raw_compose["volumes"], f"{name} mounts undefined {mount['source']}"
            elif mount["type"] == "bind" and not mount["source"].startswith("/var/run/"):
                assert Path(mount["source"]).exists(), f"{name} binds missing {mount['source']}"
        for network in service.get("networks", {}):
            assert network == "default" or network in raw_compose["networks"], f"{name}: {network}"


def test_every_variable_the_deployment_reads_is_in_env_example():
    example = env_example()
    texts = [(REPO / "docker-compose.yaml").read_text()]
    texts += [p.read_text() for p in (REPO / "deploy").rglob("*") if p.is_file()]
    names = set()
    for text in texts:
        names |= set(re.findall(r"(?<!\$)\$\{(\w+)(?::?[-?][^}]*)?\}", text))
    nginx_runtime = {"host", "request_uri", "proxy_add_x_forwarded_for"}  # nginx's own variables
    missing = sorted(names - set(example) - nginx_runtime)
    assert not missing, f".env.example lacks {missing}"


def test_no_secret_is_written_inline_and_the_example_holds_only_placeholders(raw_compose):
    common = raw_compose["x-airflow-common"]["environment"]
    services = [common] + [s.get("environment", {}) for s in raw_compose["services"].values()]
    for env in services:
        for name, value in env.items() if isinstance(env, dict) else []:
            if SECRET_NAME.search(name) and name != "STELLAR_OPS_DOCKER_QUEUE":
                assert re.fullmatch(r"\$\{\w+\}", str(value)), f"{name} is written inline: {value!r}"
    for name, value in env_example().items():
        if SECRET_NAME.search(name) and name.endswith(("PASSWORD", "SECRET", "SECRET_KEY", "FERNET_KEY")):
            assert value.startswith("change-me"), f".env.example's {name} is not a placeholder"


def test_the_config_it_passes_is_valid_and_puts_scratch_containers_on_the_workers_network(
    compose, raw_compose
):
    worker = compose["services"]["airflow-worker-docker"]
    config = parse_config(worker["environment"]["AIRFLOW_VAR_STELLAR_OPS_CONFIG"])
    network = config.dr.docker_network
    assert network is not None
    fixed_names = {key: n.get("name") for key, n in raw_compose["networks"].items()}
    (key,) = [k for k, name in fixed_names.items() if name == network]
    assert key in worker["networks"], "the docker-queue workers cannot reach the scratch containers"


def test_only_the_docker_queue_workers_mount_the_socket(compose):
    mounting = {
        name
        for name, service in compose["services"].items()
        if any(m.get("source") == SOCKET for m in service.get("volumes", []))
    }
    assert mounting == {"airflow-worker-docker"}
    worker = compose["services"]["airflow-worker-docker"]
    queue = worker["environment"]["STELLAR_OPS_DOCKER_QUEUE"]
    assert worker["command"] == ["celery", "worker", "--queues", queue]
    for name in AIRFLOW_COMPONENTS:  # the DAG processor must name the same queue as the workers
        assert compose["services"][name]["environment"]["STELLAR_OPS_DOCKER_QUEUE"] == queue, name
    assert queue not in compose["services"]["airflow-worker"]["command"]


def test_every_connection_the_dags_use_is_in_env_example():
    example = env_example()
    for field, conn_id in ConnectionIds().model_dump().items():
        if conn_id is None:
            continue
        value = example.get(f"AIRFLOW_CONN_{conn_id.upper()}")
        assert value is not None, f"connections.{field}: no AIRFLOW_CONN_{conn_id.upper()}"
        assert json.loads(value)["conn_type"], conn_id


def test_minio_creates_the_bucket_the_config_names(compose):
    init = compose["services"]["minio-init"]
    config = parse_config(
        compose["services"]["airflow-worker"]["environment"]["AIRFLOW_VAR_STELLAR_OPS_CONFIG"]
    )
    assert init["environment"]["BACKUP_BUCKET"] == config.backup.bucket
    assert "mc mb --ignore-existing" in " ".join(init["entrypoint"])
    s3 = json.loads(env_example()["AIRFLOW_CONN_STELLAR_S3"])
    assert s3["extra"]["endpoint_url"] == "http://minio:9000"


def test_nginx_and_certbot_share_the_certificates_and_tls_cert_check_renews_in_them(compose):
    def volumes(name: str) -> set[str]:
        return {m["source"] for m in compose["services"][name]["volumes"] if m["type"] == "volume"}

    services = compose["services"]
    assert {"letsencrypt", "acme-webroot"} <= volumes("nginx") & volumes("certbot")
    config = parse_config(services["airflow-worker-docker"]["environment"]["AIRFLOW_VAR_STELLAR_OPS_CONFIG"])
    tls = config.tls
    # docker mode runs certbot and the nginx reload in these containers, by name
    assert tls.executor == "docker"
    assert services["certbot"]["container_name"] == tls.certbot_container
    assert services["nginx"]["container_name"] == tls.nginx_container
    script = tls.certbot_command[-1]
    assert script.startswith("/deploy/certbot/")
    assert (REPO / "deploy" / "certbot" / Path(script).name).exists()
    (domain,) = tls.domains
    assert domain.server_name == env_example()["TLS_DOMAIN"] and domain.host == "nginx"
    webroot = tls.certbot_certonly_args[tls.certbot_certonly_args.index("-w") + 1]
    template = (REPO / "deploy" / "nginx" / "stellar.conf.template").read_text()
    assert f"root {webroot};" in template
    assert "/etc/letsencrypt/serving/fullchain.pem" in template
    assert "live/escrow" in (REPO / "deploy" / "certbot" / "certbot.sh").read_text()
    assert domain.cert_name == "escrow"


def dockerfile_majors() -> list[int]:
    (majors,) = re.findall(r'^ARG PG_MAJORS="([\d ]+)"', (REPO / "Dockerfile").read_text(), re.M)
    return [int(m) for m in majors.split()]


def test_the_image_has_client_and_server_programs_for_every_supported_major():
    assert set(BackupConfig().supported_server_majors) <= set(dockerfile_majors())
    text = (REPO / "Dockerfile").read_text()
    assert 'packages+=("postgresql-client-${major}" "postgresql-${major}")' in text
    assert "packages=(zstd certbot git)" in text  # git: migrations read from changes.git_dir
    assert "FROM apache/airflow:3.3.2-python3.11" in text
    # the runtime set only (tests/packaging checks what it holds and how the package is installed)
    assert "pip install --no-cache-dir -r /opt/stellar-ops/requirements-runtime.txt" in text
    assert "apache-airflow==3.3.2" in (REPO / "requirements-runtime.txt").read_text().splitlines()


def test_the_image_runs_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert users and users[-1] not in ("root", "0")


def test_the_dockerfile_passes_hadolint():
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    script = (REPO / ".ci" / "run").read_text()
    assert "make test" in script
    assert (REPO / ".ci" / "run").stat().st_mode & 0o111
    assert "make test" in (REPO / "README.md").read_text()


def test_the_helm_values_run_this_image_with_the_kubernetes_executor_and_no_secret_inline():
    import yaml

    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    assert values["executor"] == "KubernetesExecutor"
    assert values["images"]["airflow"]["repository"] != "apache/airflow"
    env = {item["name"]: item["value"] for item in values["env"]}
    config = parse_config(env["AIRFLOW_VAR_STELLAR_OPS_CONFIG"])
    mounts = {m["mountPath"] for m in values["workers"]["extraVolumeMounts"]}
    assert config.dr.work_dir in mounts, "the drill's scratch directory is not a volume of the pod"
    assert config.dr.scratch_backend == "local"  # no Docker socket under Kubernetes
    assert "secretRef" in values["extraEnvFrom"]
    assert not [name for name in env if SECRET_NAME.search(name)]


def test_every_airflow_component_runs_the_package_s_auth_manager():
    from importlib import import_module

    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

    module, _, name = AUTH_MANAGER.rpartition(".")
    assert issubclass(getattr(import_module(module), name), FabAuthManager)


def test_every_compose_component_has_the_auth_manager_and_init_sets_up_roles_after_migrating(compose):
    services = compose["services"]
    for name in AIRFLOW_COMPONENTS:
        assert services[name]["environment"]["AIRFLOW__CORE__AUTH_MANAGER"] == AUTH_MANAGER, name
    command = services["airflow-init"]["command"]
    assert command[:2] == ["bash", "-c"]
    # the roles only once the migration succeeded (FAB's tables come with it)
    assert command[2] == "airflow db migrate && " + " ".join(SET_UP_ROLES)
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_env_example_names_first_users_of_every_role_each_with_a_placeholder_password():
    example = env_example()
    users = first_users(example)
    by_role = {
        role: [u.username for u in users if role in u.roles] for role in (ADMIN, ON_CALL, PLATFORM_LEAD)
    }
    assert by_role[ADMIN] and by_role[ON_CALL], by_role
    assert len(by_role[PLATFORM_LEAD]) >= 2, "db_restore's second approval needs a second platform lead"
    for user in users:
        assert example.get(password_variable(user.username), "").startswith(PLACEHOLDER), user.username
        assert user.password == example[password_variable(user.username)]
    assert not [
        name
        for name in example
        if name.startswith("STELLAR_OPS_USER_")
        and name.endswith("_PASSWORD")
        and name not in {password_variable(u.username) for u in users}
    ], "a password for nobody"


def test_the_helm_values_run_the_auth_manager_and_set_up_users_from_a_secret_only_their_job_mounts():
    import yaml

    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    env = {item["name"]: item["value"] for item in values["env"]}
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == AUTH_MANAGER
    job = values["createUserJob"]
    assert job["args"] == SET_UP_ROLES and job["command"] is None
    job_env = {item["name"]: item["value"] for item in job["env"]}
    inline = [name for name in job_env if SECRET_NAME.search(name) and name != PASSWORDS_FILE_VARIABLE]
    assert not inline, f"passwords inline in the values: {inline}"
    users = first_users({k: v for k, v in job_env.items() if k != PASSWORDS_FILE_VARIABLE})
    assert {role for u in users for role in u.roles} == {ADMIN, ON_CALL, PLATFORM_LEAD}
    # the passwords file is on a volume of the job alone, from a Kubernetes secret
    (mount,) = [
        m
        for m in job["extraVolumeMounts"]
        if job_env[PASSWORDS_FILE_VARIABLE].startswith(m["mountPath"] + "/")
    ]
    (volume,) = [v for v in job["extraVolumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"]
    elsewhere = [*values.get("volumes", []), *values["workers"].get("extraVolumes", [])]
    assert not [v for v in elsewhere if "secret" in v], "another pod mounts the users' passwords"
