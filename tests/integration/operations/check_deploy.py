#!/usr/bin/env python3
"""Validates deploy/ and docker-compose.yml with the tools that run here.

- Prometheus: `promtool check config` on both configs, `promtool check rules`
  and `promtool test rules` (alert unit tests) on the alert rules.
- Grafana: the dashboard JSON parses, every query is valid PromQL (each is
  checked by promtool as a recording rule), uses only metrics the services
  export, and together the queries cover every metric of the platform.
- docker-compose.yml: `docker-compose config` (Debian's docker-compose parses
  and checks it against the compose schema without a Docker engine), plus
  structural checks: the services, GPU reservations, the shared artifact
  volume, build targets that exist in deploy/Dockerfile, mounted paths.
- Kubernetes: every manifest validates strictly against the Kubernetes 1.30
  schemas (kubernetes-validate from PyPI), and the references between them
  resolve: Service selectors and named ports, volumes' claims, secrets and
  config maps, the kustomization's files; GPU pods request nvidia.com/gpu.

usage: check_deploy.py REPO_ROOT PROMTOOL
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT, PROMTOOL = sys.argv[1], sys.argv[2]
DEPLOY = os.path.join(ROOT, "deploy")
failures = []
passes = 0

# Metric names the services register (the list, plus the per-RPC
# and process metrics of services/common and common/metrics).
PLATFORM_METRICS = {
    "linearize_jobs", "linearize_queue_depth", "linearize_task_duration_seconds",
    "linearize_lease_expiries_total", "linearize_worker_heartbeats_total",
    "linearize_training_tokens_per_second", "linearize_gpu_memory_bytes",
    "linearize_inference_time_to_first_token_seconds",
    "linearize_inference_inter_token_latency_seconds",
    "linearize_inference_e2e_request_latency_seconds",
    "linearize_inference_generation_tokens_total", "linearize_inference_prompt_tokens_total",
    "linearize_inference_sessions_running", "linearize_inference_sessions_waiting",
    "linearize_inference_state_bytes", "linearize_inference_batch_size",
}
HISTOGRAMS = {
    "linearize_task_duration_seconds", "linearize_inference_time_to_first_token_seconds",
    "linearize_inference_inter_token_latency_seconds",
    "linearize_inference_e2e_request_latency_seconds", "linearize_inference_batch_size",
    "linearize_grpc_server_handling_seconds",
}
KNOWN_METRICS = PLATFORM_METRICS | {
    "linearize_grpc_server_handled_total", "linearize_grpc_server_handling_seconds",
    "process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
    "process_start_time_seconds", "process_open_fds", "process_max_fds", "up",
}
GPU_SERVICES = ("worker", "evaluator", "inference")
LINEARIZE_SERVICES = ("scheduler", "worker", "evaluator", "inference")


def check(cond, what, detail=""):
    global passes
    if cond:
        passes += 1
        print("ok:", what)
    else:
        failures.append(what)
        print("FAIL:", what)
        if detail:
            print("  " + detail.replace("\n", "\n  "))


def run(args, cwd=None):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()


def metrics_in(expr):
    names = set()
    for name in re.findall(r"\b((?:linearize|process)_[a-z0-9_]+|up)\b", expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
                name = name[: -len(suffix)]
        names.add(name)
    return names


def check_prometheus():
    prom = os.path.join(DEPLOY, "prometheus")
    for config in ("prometheus.yml", "prometheus-k8s.yml"):
        rc, out = run([PROMTOOL, "check", "config", config], cwd=prom)
        check(rc == 0, f"promtool check config deploy/prometheus/{config}", out)
    rc, out = run([PROMTOOL, "check", "rules", "alerts.yml"], cwd=prom)
    check(rc == 0, "promtool check rules deploy/prometheus/alerts.yml", out)
    rc, out = run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=prom)
    check(rc == 0, "promtool test rules deploy/prometheus/alerts_test.yml", out)
    rules = yaml.safe_load(open(os.path.join(prom, "alerts.yml")))
    used = set()
    tested = {t["alertname"] for case in yaml.safe_load(
        open(os.path.join(prom, "alerts_test.yml")))["tests"] for t in case["alert_rule_test"]}
    for group in rules["groups"]:
        for rule in group["rules"]:
            used |= metrics_in(rule["expr"])
            check(rule.get("labels", {}).get("severity") in ("critical", "warning", "info")
                  and "summary" in rule.get("annotations", {}),
                  f"alert {rule['alert']} has a severity and a summary")
            check(rule["alert"] in tested, f"alert {rule['alert']} has a promtool unit test")
    unknown = used - KNOWN_METRICS
    check(not unknown, "alert rules use only exported metrics", f"unknown: {sorted(unknown)}")


def check_dashboard():
    path = os.path.join(DEPLOY, "grafana", "dashboards", "linearize.json")
    try:
        dash = json.load(open(path))
    except ValueError as e:
        check(False, "the Grafana dashboard is valid JSON", str(e))
        return
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dash["panels"]]
    check(len(ids) == len(set(ids)), "dashboard panel ids are unique")
    variables = {v["name"] for v in dash["templating"]["list"]}
    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    used = set()
    for p in panels:
        for t in p["targets"]:
            expr = t["expr"]
            for var in re.findall(r"\$(?:\{)?([A-Za-z_]+)", expr):
                check(var.startswith("__") or var in variables,
                      f"panel '{p['title']}' uses a defined variable ${var}")
            used |= metrics_in(expr)
            concrete = expr.replace("$__rate_interval", "5m").replace("$job", "linearize-.*")
            rules["groups"][0]["rules"].append(
                {"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": concrete})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
    rc, out = run([PROMTOOL, "check", "rules", f.name])
    os.unlink(f.name)
    check(rc == 0, f"all {len(rules['groups'][0]['rules'])} dashboard queries are valid PromQL", out)
    unknown = used - KNOWN_METRICS
    check(not unknown, "dashboard queries use only exported metrics", f"unknown: {sorted(unknown)}")
    missing = PLATFORM_METRICS - used
    check(not missing, "the dashboard shows every platform metric", f"missing: {sorted(missing)}")


def dockerfile_stages():
    """Stage name -> the image or stage it starts from."""
    text = open(os.path.join(DEPLOY, "Dockerfile")).read()
    return {stage: base for base, stage in re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text,
                                                      re.M | re.I)}


def check_compose():
    compose_file = os.path.join(ROOT, "docker-compose.yml")
    tool = shutil.which("docker-compose")
    if tool:
        rc, out = run([tool, "-f", compose_file, "config", "-q"], cwd=ROOT)
        check(rc == 0, "docker-compose config accepts docker-compose.yml", out)
    else:
        print("note: docker-compose not installed; structural checks only")
    compose = yaml.safe_load(open(compose_file))
    services = compose["services"]
    for name in LINEARIZE_SERVICES + ("prometheus", "grafana"):
        check(name in services, f"compose runs {name}")
    stages = dockerfile_stages()
    for name in LINEARIZE_SERVICES:
        svc = services.get(name, {})
        target = svc.get("build", {}).get("target")
        check(target in stages, f"compose {name} builds Dockerfile stage '{target}'")
        check(any(str(v).startswith("artifacts:/artifacts") for v in svc.get("volumes", [])),
              f"compose {name} mounts the shared artifact volume")
    for name in GPU_SERVICES:
        devices = (services.get(name, {}).get("deploy", {}).get("resources", {})
                   .get("reservations", {}).get("devices", []))
        check(any("gpu" in d.get("capabilities", []) for d in devices),
              f"compose {name} reserves a GPU")
    check("artifacts" in compose.get("volumes", {}), "compose declares the artifacts volume")
    for svc in services.values():
        for v in svc.get("volumes", []):
            host = str(v).split(":")[0]
            if host.startswith("./"):
                check(os.path.exists(os.path.join(ROOT, host)), f"compose mount {host} exists")


def check_dockerfile():
    stages = dockerfile_stages()
    for name in LINEARIZE_SERVICES + ("cli",):
        check(name in stages, f"deploy/Dockerfile has a '{name}' stage")
    for name in GPU_SERVICES + ("cli",):
        check(stages.get(name) == "runtime-torch", f"Dockerfile {name} runs on runtime-torch")
    check(stages.get("scheduler") == "runtime-base", "Dockerfile scheduler has no LibTorch")
    check(stages.get("runtime-base", "").endswith("-slim"), "runtime stages are debian slim")


def k8s_docs():
    docs = []
    k8s = os.path.join(DEPLOY, "k8s")
    for name in sorted(os.listdir(k8s)):
        if name.endswith(".yaml"):
            for doc in yaml.safe_load_all(open(os.path.join(k8s, name))):
                if doc:
                    docs.append((name, doc))
    return docs


def check_kubernetes():
    k8s = os.path.join(DEPLOY, "k8s")
    files = sorted(os.path.join(k8s, n) for n in os.listdir(k8s) if n.endswith(".yaml"))
    validator = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    if not os.path.exists(validator):
        check(False, "kubernetes-validate is installed (scripts/requirements.txt)")
        return
    rc, out = run([validator, "--strict", "--quiet", "-k", "1.30.0"] + files)
    check(rc == 0, f"kubernetes-validate --strict (1.30) on {len(files)} manifests", out)

    docs = k8s_docs()
    kust = yaml.safe_load(open(os.path.join(DEPLOY, "kustomization.yaml")))
    for res in kust["resources"]:
        check(os.path.exists(os.path.join(DEPLOY, res)), f"kustomization resource {res} exists")
    configmaps = set()
    for gen in kust.get("configMapGenerator", []):
        configmaps.add(gen["name"])
        for entry in gen.get("files", []):
            src = entry.split("=", 1)[-1]
            check(os.path.exists(os.path.join(DEPLOY, src)),
                  f"config map {gen['name']} file {src} exists")
    by_kind = {}
    for name, doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    claims = {d["metadata"]["name"] for d in by_kind.get("PersistentVolumeClaim", [])}
    secrets = {d["metadata"]["name"]: set(d.get("stringData", {})) | set(d.get("data", {}))
               for d in by_kind.get("Secret", [])}
    deployments = by_kind.get("Deployment", [])
    for d in deployments:
        name = d["metadata"]["name"]
        pod = d["spec"]["template"]
        check(all(pod["metadata"]["labels"].get(k) == v
                  for k, v in d["spec"]["selector"]["matchLabels"].items()),
              f"{name}: selector matches its pod labels")
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for c in pod["spec"]["containers"]:
            for m in c.get("volumeMounts", []):
                check(m["name"] in volumes, f"{name}: mount {m['name']} has a volume")
            gpus = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
            component = pod["metadata"]["labels"].get("app.kubernetes.io/component")
            if component in GPU_SERVICES:
                check(gpus is not None and int(gpus) >= 1, f"{name}: requests nvidia.com/gpu")
            for e in c.get("env", []):
                m = re.match(r"/etc/linearize/(tls|tokens)/(.+)", str(e.get("value", "")))
                if m:
                    secret = "linearize-tls" if m.group(1) == "tls" else "linearize-tokens"
                    check(m.group(2) in secrets.get(secret, set()),
                          f"{name}: {e['name']} names key {m.group(2)} of secret {secret}")
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                check(v["persistentVolumeClaim"]["claimName"] in claims,
                      f"{name}: claim {v['persistentVolumeClaim']['claimName']} is declared")
            if "secret" in v:
                check(v["secret"]["secretName"] in secrets,
                      f"{name}: secret {v['secret']['secretName']} is in secrets.example.yaml")
            if "configMap" in v:
                check(v["configMap"]["name"] in configmaps,
                      f"{name}: config map {v['configMap']['name']} is generated")
    for s in by_kind.get("Service", []):
        name = s["metadata"]["name"]
        matches = [d for d in deployments if all(
            d["spec"]["template"]["metadata"]["labels"].get(k) == v
            for k, v in s["spec"]["selector"].items())]
        check(len(matches) == 1, f"service {name} selects one deployment")
        ports = {p["name"] for d in matches for c in d["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            check(p["targetPort"] in ports, f"service {name} port {p['name']} targets a named port")
    components = {d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
                  for d in deployments}
    for name in LINEARIZE_SERVICES + ("prometheus", "grafana"):
        check(name in components, f"kubernetes runs {name}")
    prom = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "prometheus-k8s.yml")))
    services = {s["metadata"]["name"] for s in by_kind.get("Service", [])}
    for job in prom["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for dns in sd["names"]:
                check(dns.split(".")[0] in services, f"prometheus-k8s {job['job_name']}: {dns} is a service")


def main():
    check_prometheus()
    check_dashboard()
    check_compose()
    check_dockerfile()
    check_kubernetes()
    print(f"deploy_check: {passes} passed, {len(failures)} failed")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
