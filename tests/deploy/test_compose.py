"""deploy/compose.yaml, read rather than run (no Docker daemon here).

It must parse, name only real settings with valid values, wire two kefu nodes to
PostgreSQL and Redis by their service names, trust exactly the network nginx
reaches them on, health-check every service, and give nginx deploy/nginx.conf
with its upstreams pointed at the two nodes.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kefu.settings import Settings
from support.servers import REPO

DEPLOY = REPO / "deploy"
NODES = ("kefu1", "kefu2")

# ${NAME}, ${NAME:?message}, ${NAME:-default}: what Compose fills in from deploy/.env
VARIABLE = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def filled(value: str) -> str:
    """`value` as Compose would pass it, with a placeholder for each variable."""
    return VARIABLE.sub(lambda m: f"from-env-{m.group(1).lower()}", value)


def test_two_nodes_and_their_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*NODES, "postgres", "redis", "nginx"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for needed in service.get("depends_on") or {}:
            assert needed in services, (name, needed)
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image: {image}"
    for node in NODES:
        build = services[node]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile"
        deps = services[node]["depends_on"]
        assert deps == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
        assert services[node]["stop_signal"] == "SIGTERM"
        check = " ".join(services[node]["healthcheck"]["test"])
        assert "/healthz" in check, check
    assert set(services["nginx"]["depends_on"]) == set(NODES)


def test_every_kefu_setting_is_real_and_valid(compose: dict[str, Any]) -> None:
    seen = 0
    for name, service in compose["services"].items():
        env = {k: filled(v) for k, v in environment(service).items() if k.startswith("KEFU_")}
        unknown = [k for k in env if k.removeprefix("KEFU_").lower() not in Settings.model_fields]
        assert not unknown, f"{name} sets what is no setting: {unknown}"
        if env:
            Settings.model_validate({k.removeprefix("KEFU_").lower(): v for k, v in env.items()})
            seen += 1
    assert seen == len(NODES)


def test_nodes_reach_postgres_and_redis_by_name(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres = environment(services["postgres"])
    for node in NODES:
        env = {k: filled(v) for k, v in environment(services[node]).items()}
        db = urlsplit(env["KEFU_DATABASE_URL"])
        assert db.scheme == "postgresql" and db.hostname == "postgres", db
        assert db.username == postgres["POSTGRES_USER"] and db.path == "/" + postgres["POSTGRES_DB"]
        assert db.password == filled(postgres["POSTGRES_PASSWORD"])
        broker = urlsplit(env["KEFU_BROKER_URL"])
        assert broker.scheme == "redis" and broker.hostname == "redis", broker
        assert env["KEFU_SECRET"] == "from-env-kefu_secret", "the key comes from deploy/.env"
        for other in ("postgres", "redis"):
            shared = set(services[node]["networks"]) & set(services[other]["networks"])
            assert shared, f"{node} cannot reach {other}"


def test_trusted_proxies_are_the_network_nginx_comes_from(compose: dict[str, Any]) -> None:
    services = compose["services"]
    (edge,) = services["nginx"]["networks"]
    subnets = [c["subnet"] for c in compose["networks"][edge]["ipam"]["config"]]
    for node in NODES:
        assert edge in services[node]["networks"]
        trusted = environment(services[node])["KEFU_TRUSTED_PROXIES"]
        assert [str(ipaddress.ip_network(t.strip())) for t in trusted.split(",")] == subnets
    # nobody else is on that network: trusting it trusts nginx (and the nodes) only
    on_edge = {n for n, s in services.items() if edge in (s.get("networks") or [])}
    assert on_edge == {"nginx", *NODES}
    assert "ports" not in services["kefu1"] and "ports" not in services["kefu2"]
    assert compose["networks"]["back"].get("internal") is True


def test_nginx_gets_deploy_nginx_conf_pointed_at_the_nodes(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    nginx = compose["services"]["nginx"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in nginx["volumes"]}
    assert (DEPLOY / mounts["/etc/kefu/nginx.conf"]).resolve() == DEPLOY / "nginx.conf"
    script = nginx["command"][2]
    render, _, run = script.partition(" && ")
    assert run == "exec nginx -g 'daemon off;'", run
    out = tmp_path / "default.conf"
    render = render.replace("/etc/kefu/nginx.conf", str(DEPLOY / "nginx.conf"))
    render = render.replace("/etc/nginx/conf.d/default.conf", str(out))
    subprocess.run(["sh", "-c", render], check=True, timeout=10)
    conf = out.read_text()
    upstream = re.search(r"upstream kefu \{(.*?)\}", conf, re.S)
    assert upstream is not None, conf
    servers = re.findall(r"^\s*server\s+(\S+)", upstream.group(1), re.M)
    assert servers == [f"{node}:8080" for node in NODES], servers
    code = re.sub(r"#.*", "", conf)
    assert "127.0.0.1" not in code, "an upstream on the nginx container itself is left"
    port = nginx["ports"][0].split(":")[-1]
    assert re.search(rf"^\s*listen {port};", conf, re.M), "nginx listens where it is published"
