"""Operational rules of the deployment files that schemas cannot express; run by
scripts/check-ops.sh with the ops venv's Python (PyYAML comes with kubernetes-validate).

  check_ops.py k8s RENDERED.yaml        rules for `kustomize build deploy/k8s`
  check_ops.py runbooks ALERTS.yml OPERATIONS.md
                                         every alert's runbook anchor is a heading there

Prints one line per problem and exits 1 when there is any.
"""

from __future__ import annotations

import re
import sys

import yaml

# Admin ports (issue 18): not in any Service; /metrics, /stats, console, OpenAPI, /livez.
ADMIN = {
    "ws-gateway": ("WS_ADMIN_ADDR", 9102),
    "publisher": ("PUBLISHER_ADMIN_ADDR", 9101),
    "aggregator": ("AGGREGATOR_ADMIN_ADDR", 9104),
}
# The variable holding each service's shutdown grace, and (gateway) its drain delay.
GRACE = {"ws-gateway": "WS_SHUTDOWN_GRACE", "publisher": "SHUTDOWN_GRACE", "aggregator": "AGGREGATOR_SHUTDOWN_GRACE"}

problems: list[str] = []


def fail(msg: str) -> None:
    problems.append(msg)


def seconds(value: str) -> float:
    """`5s`, `500ms`, `2m`, `30` -> seconds (humantime-style values the services accept)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    n, unit = float(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def port_of(container: dict, ref) -> int | None:
    if isinstance(ref, int):
        return ref
    for p in container.get("ports", []):
        if p.get("name") == ref:
            return p["containerPort"]
    return None


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def check_k8s(path: str) -> None:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    services = by_kind.get("Service", [])
    pdbs = by_kind.get("PodDisruptionBudget", [])
    for name in ADMIN:
        if name not in deployments:
            fail(f"no Deployment {name}")
    for name, dep in deployments.items():
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        if not selects(spec["selector"]["matchLabels"], labels):
            fail(f"{name}: selector does not match its pod labels")
        (c,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        admin_env, admin_port = ADMIN.get(name, (None, None))
        # Admin listener: bound on the pod IP at the documented port, named `admin`.
        if admin_env:
            addr = env.get(admin_env, "")
            if not addr.endswith(f":{admin_port}"):
                fail(f"{name}: {admin_env}={addr!r}, expected port {admin_port}")
            if port_of(c, "admin") != admin_port:
                fail(f"{name}: container port `admin` is {port_of(c, 'admin')}, expected {admin_port}")
            ann = spec["template"]["metadata"].get("annotations", {})
            if ann.get("prometheus.io/port") != str(admin_port):
                fail(f"{name}: prometheus.io/port {ann.get('prometheus.io/port')} is not the admin port {admin_port}")
        # Probes: liveness /livez, readiness /readyz; the gateway's readiness on its client port.
        live = (c.get("livenessProbe") or {}).get("httpGet") or {}
        ready = (c.get("readinessProbe") or {}).get("httpGet") or {}
        if live.get("path") != "/livez":
            fail(f"{name}: livenessProbe is {live or 'missing'}, expected httpGet /livez")
        if ready.get("path") != "/readyz":
            fail(f"{name}: readinessProbe is {ready or 'missing'}, expected httpGet /readyz")
        if name == "ws-gateway" and port_of(c, ready.get("port")) != port_of(c, "client"):
            fail(f"ws-gateway: readiness must probe the client port (the load balancer's view), not {ready.get('port')}")
        if port_of(c, live.get("port")) is None:
            fail(f"{name}: livenessProbe port {live.get('port')} is not a container port")
        # Resources: requests and a memory limit (the OOM boundary the alerts compare with).
        res = c.get("resources", {})
        if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory") or not res.get("limits", {}).get("memory"):
            fail(f"{name}: needs cpu and memory requests and a memory limit, has {res}")
        image = c.get("image", "")
        if image.endswith(":latest"):
            fail(f"{name}: image {image} uses :latest (deploy by digest)")
        # Drain: preStop sleep, then the service's own drain and grace, inside the grace period.
        pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
        if len(pre) != 2 or pre[0] != "sleep":
            fail(f"{name}: preStop is {pre}, expected [sleep, N]")
            continue
        pre_s = seconds(pre[1])
        grace = seconds(env.get(GRACE[name]) or "10s")
        drain = 0.0
        if name == "ws-gateway":
            drain = seconds(env.get("WS_DRAIN_DELAY") or "5s")
            if pre_s != drain:
                fail(f"ws-gateway: preStop sleeps {pre_s}s, WS_DRAIN_DELAY is {drain}s: they must match")
            ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
            if str(ru.get("maxUnavailable")) != "0":
                fail(f"ws-gateway: rollingUpdate.maxUnavailable {ru.get('maxUnavailable')}, expected 0 (a new gateway is ready before an old one drains)")
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        if not tgps > pre_s + drain + grace:
            fail(f"{name}: terminationGracePeriodSeconds {tgps} must exceed preStop {pre_s} + drain {drain} + {GRACE[name]} {grace}")
        if name == "aggregator":
            count = int(env.get("INSTANCE_COUNT") or 1)
            if (spec.get("strategy") or {}).get("type") != "Recreate" or spec.get("replicas", 1) != 1:
                fail("aggregator: one replica with strategy Recreate (two pods with one INSTANCE_INDEX publish duplicates)")
            if count != 1:
                fail("aggregator: INSTANCE_COUNT > 1 needs one Deployment per INSTANCE_INDEX")
        # No Service may reach the admin port.
        for svc in services:
            if not selects(svc["spec"].get("selector"), labels):
                continue
            for p in svc["spec"].get("ports", []):
                target = port_of(c, p.get("targetPort", p["port"]))
                if target == admin_port or p["port"] == admin_port:
                    fail(f"Service {svc['metadata']['name']} exposes {name}'s admin port {admin_port}")
    for name in ("ws-gateway", "publisher"):
        dep = deployments.get(name)
        if dep and not any(selects(p["spec"]["selector"]["matchLabels"], dep["spec"]["template"]["metadata"]["labels"]) for p in pdbs):
            fail(f"no PodDisruptionBudget selects {name}")
    gw_svc = [s for s in services if s["metadata"]["name"] == "ws-gateway"]
    if not gw_svc:
        fail("no Service ws-gateway")


def github_anchor(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def check_runbooks(alerts_path: str, doc_path: str) -> None:
    rules = [r for g in yaml.safe_load(open(alerts_path))["groups"] for r in g["rules"] if "alert" in r]
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", open(doc_path).read(), re.M)
    anchors = {github_anchor(h): h for h in headings}
    for r in rules:
        link = r.get("annotations", {}).get("runbook", "")
        anchor = link.split("#", 1)[-1] if "#" in link else ""
        if not link.startswith(doc_path.split("/")[-1]) and not link.startswith(doc_path):
            fail(f"{r['alert']}: runbook {link!r} does not point into {doc_path}")
        if anchor not in anchors:
            fail(f"{r['alert']}: runbook anchor #{anchor} is no heading of {doc_path}")
        elif r["alert"] not in anchors[anchor]:
            fail(f"{r['alert']}: its runbook heading {anchors[anchor]!r} does not name it")
    if not rules:
        fail("no alerts found")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "k8s":
        check_k8s(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "runbooks":
        check_runbooks(sys.argv[2], sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
