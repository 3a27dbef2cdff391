#!/usr/bin/env python3
"""Renders deploy/k8s with `kubectl kustomize` and checks the result (ctest KustomizeRenders).

Checks: the render succeeds without warnings; the Deployment runs 3 replicas as non-root, with
readiness on /readyz, liveness on /healthz, a preStop hook, and a termination grace period
longer than preStop + shutdown.drain_timeout + session.close_timeout from the rendered
ConfigMap; the ConfigMap it mounts exists; the Service and the PodMonitor select its pods; the
nats name the config connects to exists. Python 3 with PyYAML (a dependency of yamllint).
Exits 1 with one line per problem.
"""

import re
import subprocess
import sys
from pathlib import Path

import yaml

from report import report

K8S = Path(__file__).resolve().parents[2] / "deploy/k8s"
# The binary's defaults for the keys the shutdown budget depends on (deploy/shardcast.yaml).
DEFAULT_DRAIN_TIMEOUT = "5s"
DEFAULT_CLOSE_TIMEOUT = "2s"
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "": 1}


def seconds(duration):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|)", str(duration))
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def render():
    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAILED: kubectl kustomize {K8S}:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc], result.stderr.strip()


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def prestop_seconds(container):
    hook = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in hook:
        return hook["sleep"]["seconds"]
    command = hook.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] == "sleep":
        return seconds(command[1])
    return None


def check_auth_mounts(pod, container, config):
    """The config's key files must lie in a Secret volume the container mounts: a node
    without them admits no client and refuses the API."""
    auth = config.get("auth", {}) or {}
    files = [auth.get("api_keys_file"), (auth.get("jwt", {}) or {}).get("hmac_secret_file")]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", [])
               if "secret" in v}
    mounted = [m["mountPath"].rstrip("/") + "/" for m in container.get("volumeMounts", [])
               if m["name"] in secrets]
    problems = []
    for path in files:
        if not path:
            problems.append("the ConfigMap sets no auth.api_keys_file and auth.jwt."
                            "hmac_secret_file: the nodes would refuse every client and call")
        elif not any(path.startswith(prefix) for prefix in mounted):
            problems.append(f"{path} is not in a mounted Secret volume ({mounted})")
    return problems


def check(docs, warnings):
    problems = []
    if warnings:
        problems.append(f"kubectl kustomize printed warnings: {warnings}")
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        return problems + [f"expected one Deployment, got {len(deployments)}"]
    deployment = deployments[0]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    container = pod["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}

    if spec.get("replicas") != 3:
        problems.append(f"replicas is {spec.get('replicas')}, not 3")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path:
            problems.append(f"{probe} is not an HTTP GET on {path}: {container.get(probe)}")
        elif ports.get(get.get("port"), get.get("port")) != 8080:
            problems.append(f"{probe} does not probe port 8080: {get.get('port')}")
    nonroot = (pod.get("securityContext", {}).get("runAsNonRoot")
               or container.get("securityContext", {}).get("runAsNonRoot"))
    if nonroot is not True:
        problems.append("runAsNonRoot is not set on the pod or the container")

    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    mounted = [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
    config = {}
    if len(mounted) != 1 or mounted[0] not in configmaps:
        problems.append(f"the pod mounts ConfigMaps {mounted}; rendered: {sorted(configmaps)}")
    else:
        config = yaml.safe_load(configmaps[mounted[0]]["data"]["shardcast.yaml"]) or {}

    problems += check_auth_mounts(pod, container, config)

    sleep = prestop_seconds(container)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if sleep is None:
        problems.append("no preStop hook that sleeps (exec sleep N, or lifecycle sleep)")
    else:
        drain = seconds(config.get("shutdown", {}).get("drain_timeout", DEFAULT_DRAIN_TIMEOUT))
        close = seconds(config.get("session", {}).get("close_timeout", DEFAULT_CLOSE_TIMEOUT))
        if grace <= sleep + drain + close:
            problems.append(f"terminationGracePeriodSeconds {grace} does not exceed preStop "
                            f"{sleep}s + drain_timeout {drain}s + close_timeout {close}s")

    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    shardcast = services.get("shardcast", {}).get("spec", {})
    if not selects(shardcast.get("selector"), pod_labels):
        problems.append("Service shardcast does not select the Deployment's pods")
    if 8080 not in [p["port"] for p in shardcast.get("ports", [])]:
        problems.append("Service shardcast does not serve port 8080")

    nats_url = config.get("cluster", {}).get("nats", {}).get("url", "")
    for host in re.findall(r"nats://([^:/,]+)", nats_url):
        if host not in services:
            problems.append(f"cluster.nats.url names {host}, which no rendered Service is")
    if not nats_url:
        problems.append("the ConfigMap's cluster.nats.url is empty: the pods would not relay")

    monitors = by_kind.get("PodMonitor", [])
    if not any(selects(m["spec"].get("selector", {}).get("matchLabels"), pod_labels)
               and any(e.get("path", "/metrics") == "/metrics"
                       and ports.get(e.get("port")) == 8080
                       for e in m["spec"].get("podMetricsEndpoints", []))
               for m in monitors):
        problems.append("no PodMonitor scrapes /metrics on port 8080 of the Deployment's pods")
    return problems


def main():
    docs, warnings = render()
    problems = check(docs, warnings)
    report(problems, f"{K8S}: renders {len(docs)} objects; probes, preStop, grace period, "
                     "non-root, Service, NATS alias and PodMonitor check out")


if __name__ == "__main__":
    main()
