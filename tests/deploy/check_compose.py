#!/usr/bin/env python3
"""Checks deploy/docker-compose.yml without a container engine (ctest ComposeFileIsConsistent).

Checks: every file or directory the services mount and every build context and Dockerfile
exist; every depends_on names a service; each shardcast-N node is built from the Dockerfile,
is named shardcast-N with -s cluster.node, mounts deploy/cluster/shardcast.yaml (which points
at the nats service) and has a healthcheck; nginx's upstream and Prometheus's targets are
exactly the nodes; nginx publishes 80 and 443 and mounts a volume or directory where the
snippet's certificate and key are, and a service writes that volume before nginx starts; the Prometheus config passes `promtool check config` with the files laid
out as the container sees them; Grafana's dashboard lands where its provider looks, and its
data source is a service.
Python 3 with PyYAML (a dependency of yamllint). Exits 1 with one line per problem.
"""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from report import report

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
NODE = re.compile(r"shardcast-\d+")


def mounts(service):
    """(host path, container path) of each bind mount, host paths relative to the compose file."""
    result = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            result.append(((DEPLOY / source).resolve(), target))
    return result


def mounted_at(service, target):
    """The host file mounted at target, if it exists (check_files reports those that do not)."""
    return next((s for s, t in mounts(service) if t == target and s.exists()), None)


def check_files(services):
    problems = []
    for name, service in services.items():
        for source, target in mounts(service):
            if not source.exists():
                problems.append(f"{name}: mounts {source} at {target}, which does not exist")
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{name}: no {build.get('dockerfile')} in context {context}")
        for dependency in service.get("depends_on", []):
            if dependency not in services:
                problems.append(f"{name}: depends_on {dependency}, which is not a service")
    return problems


def check_nodes(services, nodes):
    problems = []
    if len(nodes) != 3:
        problems.append(f"expected 3 shardcast-N services, got {nodes}")
    for name in nodes:
        service = services[name]
        if service.get("build", {}).get("dockerfile") != "deploy/Dockerfile":
            problems.append(f"{name}: not built from deploy/Dockerfile")
        if f"cluster.node={name}" not in service.get("command", []):
            problems.append(f"{name}: command does not set -s cluster.node={name}")
        if "healthcheck" not in service:
            problems.append(f"{name}: no healthcheck")
        config = mounted_at(service, "/etc/shardcast/shardcast.yaml")
        if config != DEPLOY / "cluster/shardcast.yaml":
            problems.append(f"{name}: mounts {config} as its config, "
                            "not deploy/cluster/shardcast.yaml")
            continue
        url = yaml.safe_load(config.read_text()).get("cluster", {}).get("nats", {}).get("url")
        hosts = re.findall(r"nats://([^:/,]+)", url or "")
        if not hosts or any(host not in services for host in hosts):
            problems.append(f"{name}: cluster.nats.url {url!r} does not name a compose service")
    return problems


def check_nginx(services, nodes):
    nginx = services.get("nginx", {})
    main = mounted_at(nginx, "/etc/nginx/nginx.conf")
    if main is None:
        return ["nginx: no nginx.conf mounted at /etc/nginx/nginx.conf"]
    problems = []
    for include in re.findall(r"(?m)^\s*include\s+(\S+);", main.read_text()):
        snippet = mounted_at(nginx, include)
        if snippet is None:
            problems.append(f"nginx: nginx.conf includes {include}, which is not mounted")
            continue
        upstream = re.findall(r"(?m)^    server (\S+?)(?::8080)?[ ;]", snippet.read_text())
        if sorted(upstream) != nodes:
            problems.append(f"nginx: upstream servers {upstream} are not the nodes {nodes}")
        problems += check_certificates(services, nginx, snippet.read_text())
    for port in ("80:80", "443:443"):
        if port not in nginx.get("ports", []):
            problems.append(f"nginx: does not publish {port}")
    return problems


def check_certificates(services, nginx, snippet):
    """Each ssl_certificate(_key) path of the snippet lies in a volume nginx mounts; a named
    volume must be written by a service nginx waits for, as tls writes the certificate."""
    problems = []
    targets = {volume.split(":")[1]: volume.split(":")[0] for volume in nginx.get("volumes", [])}
    for path in re.findall(r"(?m)^\s*ssl_certificate(?:_key)?\s+(\S+);", snippet):
        mount = next((t for t in targets if path.startswith(t.rstrip("/") + "/")), None)
        if mount is None:
            problems.append(f"nginx: nothing is mounted where the snippet's {path} is")
            continue
        source = targets[mount]
        if source.startswith((".", "/")):
            continue  # a directory of the host: check_files reports one that is missing
        writers = [name for name in nginx.get("depends_on", [])
                   if any(v.split(":")[0] == source and "ro" not in v.split(":")[2:]
                          for v in services.get(name, {}).get("volumes", []))]
        if not writers:
            problems.append(f"nginx: the volume {source} at {mount} holds {path}, but no "
                            "service nginx depends on writes it")
    return problems


def check_prometheus(services, nodes):
    prometheus = services.get("prometheus", {})
    config = mounted_at(prometheus, "/etc/prometheus/prometheus.yml")
    if config is None:
        return ["prometheus: no config mounted at /etc/prometheus/prometheus.yml"]
    problems = []
    jobs = yaml.safe_load(config.read_text())["scrape_configs"]
    targets = sorted(t for job in jobs if job["job_name"] == "shardcast"
                     for static in job.get("static_configs", []) for t in static["targets"])
    if targets != [f"{node}:8080" for node in nodes]:
        problems.append(f"prometheus: job shardcast scrapes {targets}, not every node on :8080")

    # Lay the mounted files out as the container sees them, so rule_files resolve the same.
    with tempfile.TemporaryDirectory(prefix="shardcast-compose-") as root:
        for source, target in mounts(prometheus):
            if not source.is_file():
                continue
            copy = Path(root + target)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, copy)
        check = subprocess.run(["promtool", "check", "config",
                                root + "/etc/prometheus/prometheus.yml"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            problems.append(f"prometheus: promtool check config failed:\n{check.stdout}"
                            f"{check.stderr}")
    return problems


def check_grafana(services):
    grafana = services.get("grafana", {})
    providers = mounted_at(grafana, "/etc/grafana/provisioning")
    if providers is None:
        return ["grafana: provisioning is not mounted at /etc/grafana/provisioning"]
    paths = [p["options"]["path"]
             for f in sorted((providers / "dashboards").glob("*.yml"))
             for p in yaml.safe_load(f.read_text())["providers"]]
    targets = [t for _, t in mounts(grafana)]
    problems = []
    if not any(t.startswith(p + "/") and t.endswith(".json") for p in paths for t in targets):
        problems.append(f"grafana: no dashboard is mounted under the provider paths {paths}")
    for f in sorted((providers / "datasources").glob("*.yml")):
        for source in yaml.safe_load(f.read_text())["datasources"]:
            host = re.match(r"https?://([^:/]+)", source["url"]).group(1)
            if host not in services:
                problems.append(f"grafana: data source {source['name']} points at {host}, "
                                "which is not a service")
    return problems


def main():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    nodes = sorted(name for name in services if NODE.fullmatch(name))
    problems = (check_files(services) + check_nodes(services, nodes)
                + check_nginx(services, nodes) + check_prometheus(services, nodes)
                + check_grafana(services))
    report(problems, f"{COMPOSE}: {len(services)} services; mounts, dependencies, nodes, "
                     "nginx, Prometheus and Grafana check out")


if __name__ == "__main__":
    main()
