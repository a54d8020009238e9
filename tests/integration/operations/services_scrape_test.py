#!/usr/bin/env python3
"""A real Prometheus (Debian's package) scrapes every linearize service.

  services_scrape_test.py BUILD_DIR PYTHON_STUB_DIR SOURCE_DIR PROMETHEUS

linearize-scheduler, linearize-worker, linearize-evaluator and
linearize-inference run on loopback as deploy/ runs them; Prometheus scrapes
their /metrics every second, and PromQL finds every target up, the process
metrics of each, and each service's own series: the scheduler's job and
queue gauges, the worker's
throughput gauge, the evaluator's per-RPC counters after a health check, the
inference server's session gauges and lifecycle transitions after a session
is created and used.
"""
import json
import os
import shutil
import subprocess
import sys
import time

build, stub_dir, source_dir, prometheus = sys.argv[1:5]
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, stub_dir)
sys.path.insert(0, os.path.join(os.path.dirname(here), "platform"))
sys.path.insert(0, os.path.dirname(here))

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from linearize.v1 import inference_service_pb2 as inf_pb  # noqa: E402
from linearize.v1 import inference_service_pb2_grpc as inf_grpc  # noqa: E402

from platform_util import Scheduler, check, finish, make_root  # noqa: E402
from prometheus_util import promql, start_prometheus, wait_for  # noqa: E402

tmp, root = make_root(source_dir, "linearize-scrape-it-")
os.makedirs(os.path.join(root, "tiny-lolcats"))
subprocess.run([os.path.join(build, "tests/integration/write_tiny_model"),
                os.path.join(root, "tiny-lolcats"), "lolcats"], check=True)
procs = []


def start(name, argv):
    """Starts a service with --ready-file; returns (process, ready JSON)."""
    ready = os.path.join(tmp, name + ".json")
    log = open(os.path.join(tmp, name + ".log"), "w")
    p = subprocess.Popen(argv + ["--metrics-listen", "127.0.0.1:0", "--ready-file", ready],
                         stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    deadline = time.monotonic() + 60
    while not os.path.exists(ready):
        if p.poll() is not None or time.monotonic() > deadline:
            log.close()
            raise RuntimeError(name + " did not start:\n" + open(log.name).read()[-2000:])
        time.sleep(0.1)
    time.sleep(0.1)  # the ready file is written whole (renamed into place)
    return p, json.load(open(ready))


try:
    scheduler = Scheduler(os.path.join(build, "services/scheduler/linearize-scheduler"), tmp, root,
                          "sqlite://" + os.path.join(tmp, "jobs.db"))
    procs.append(scheduler.proc)
    _, worker = start("worker", [os.path.join(build, "services/worker/linearize-worker"),
                                 "--scheduler", scheduler.address, "--artifact-root", root,
                                 "--threads", "1", "--lease-wait-seconds", "2"])
    _, evaluator = start("evaluator", [
        os.path.join(build, "services/evaluator/linearize-evaluator"), "--listen", "127.0.0.1:0",
        "--scheduler", scheduler.address, "--artifact-root", root, "--threads", "1",
        "--lease-wait-seconds", "2"])
    _, inference = start("inference", [
        os.path.join(build, "services/inference/linearize-inference"), "--listen", "127.0.0.1:0",
        "--artifact-root", root, "--state-dir", os.path.join(tmp, "sessions"),
        "--load", "tiny=" + os.path.join(root, "tiny-lolcats")])

    # Traffic that each service's own series count.
    with grpc.insecure_channel("127.0.0.1:%d" % evaluator["port"]) as ch:
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
    with grpc.insecure_channel("127.0.0.1:%d" % inference["port"]) as ch:
        stub = inf_grpc.InferenceServiceStub(ch)
        session = stub.CreateSession(inf_pb.CreateSessionRequest(model_name="tiny"), timeout=30)
        for _ in stub.Generate(inf_pb.GenerateRequest(
                session_id=session.session_id, prompt="hello",
                sampling=inf_pb.SamplingParams(temperature=0, max_tokens=4)), timeout=60):
            pass

    targets = {"scheduler": scheduler.metrics_port, "worker": worker["metrics_port"],
               "evaluator": evaluator["metrics_port"], "inference": inference["metrics_port"]}
    config = "".join(f"  - job_name: {job}\n    static_configs:\n"
                     f"      - targets: ['127.0.0.1:{port}']\n" for job, port in targets.items())
    prom, port = start_prometheus(prometheus, tmp, config)
    procs.append(prom)

    up = wait_for("every target up", lambda: len(
        [r for r in promql(port, "up == 1") if r["metric"]["job"] in targets]) == 4 and
        promql(port, "up == 1"), 30)
    check("Prometheus scrapes all four services (up == 1)",
          sorted(r["metric"]["job"] for r in up) == sorted(targets), up)
    rss = promql(port, "process_resident_memory_bytes > 0")
    check("each service exports its process metrics",
          sorted(r["metric"]["job"] for r in rss) == sorted(targets), rss)

    def series(query, job):
        return wait_for(f"{query} from {job}", lambda: [
            r for r in promql(port, query) if r["metric"].get("job") == job], 15)

    check("scheduler: linearize_queue_depth", series("linearize_queue_depth", "scheduler"))
    jobs = series("linearize_jobs", "scheduler")
    check("scheduler: linearize_jobs by state",
          {"queued", "running", "succeeded"} <= {r["metric"]["state"] for r in jobs}, jobs)
    check("worker: linearize_training_tokens_per_second",
          series("linearize_training_tokens_per_second", "worker"))
    handled = series('linearize_grpc_server_handled_total{grpc_method="Check"}', "evaluator")
    check("evaluator: the health check counted by method and code",
          handled[0]["metric"].get("grpc_code") == "OK", handled)
    check("inference: session gauges", series("linearize_inference_sessions", "inference"))
    moves = series("linearize_inference_session_transitions_total", "inference")
    pairs = {(r["metric"]["from"], r["metric"]["to"]) for r in moves}
    check("inference: lifecycle transitions of the session",
          {("CREATED", "IDLE"), ("IDLE", "ACTIVE"), ("ACTIVE", "IDLE")} <= pairs, pairs)
    tokens = series("linearize_inference_generation_tokens_total", "inference")
    check("inference: the generated tokens", float(tokens[0]["value"][1]) >= 1, tokens)
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)

finish()
