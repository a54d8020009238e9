#!/usr/bin/env python3
"""End-to-end check of the operations plumbing with real processes on loopback.

Starts ops_test_server with TLS (a throwaway CA made with openssl) and bearer
tokens, then:
  1. grpc.health.v1 answers SERVING without a token (Python grpcio-health-checking);
  2. JobService.GetJob without a token, with an unknown one and with a
     malformed header fails UNAUTHENTICATED with a message saying which; with
     a good token it reaches the handler (NOT_FOUND);
  3. /metrics is served over HTTPS and verifies against the CA;
  4. a real Prometheus server (Debian's package) scrapes it every second, and
     PromQL queries over its HTTP API return the expected series, including
     the per-RPC counters of step 2 and a label value full of escapes;
  5. SIGTERM drains and stops the server with exit code 0.

usage: ops_test.py OPS_TEST_SERVER PYTHON_STUBS_DIR [PROMETHEUS]
"""
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc

SERVER, STUBS = sys.argv[1], sys.argv[2]
PROMETHEUS = sys.argv[3] if len(sys.argv) > 3 else shutil.which("prometheus")
sys.path.insert(0, STUBS)
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from prometheus_util import promql, start_prometheus, wait_for  # noqa: E402
from linearize.v1 import job_service_pb2, job_service_pb2_grpc  # noqa: E402

USER_TOKEN = "user-token-0123456789abcdef"


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what.split("\n")[0], flush=True)


def make_pki(d):
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    script = f"""
    openssl req -x509 {ec} -days 1 -subj /CN=ops-test-ca -keyout ca.key -out ca.pem
    openssl req {ec} -subj /CN=localhost -keyout server.key -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
        -extfile san.ext -out server.pem
    """
    subprocess.run(["sh", "-ec", script], cwd=d, check=True, capture_output=True)


def call_get_job(channel, metadata):
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    try:
        stub.GetJob(job_service_pb2.GetJobRequest(job_id="j-1"), metadata=metadata, timeout=10)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def main():
    work = tempfile.mkdtemp(prefix="ops_test_")
    procs = []
    try:
        make_pki(work)
        with open(os.path.join(work, "tokens"), "w") as f:
            f.write(f"# token tenant role\n{USER_TOKEN} acme user\n")
        ready = os.path.join(work, "ports.json")
        server_log = open(os.path.join(work, "server.log"), "w+")
        server = subprocess.Popen(
            [SERVER, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
             "--tls-cert", os.path.join(work, "server.pem"),
             "--tls-key", os.path.join(work, "server.key"),
             "--tokens-file", os.path.join(work, "tokens"), "--ready-file", ready],
            stdout=server_log, stderr=subprocess.STDOUT)
        procs.append(server)
        wait_for("the server's ready file", lambda: os.path.exists(ready), 20)
        ports = json.load(open(ready))
        target = f"127.0.0.1:{ports['port']}"
        ca = open(os.path.join(work, "ca.pem"), "rb").read()
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca))

        # 1. Health without a token.
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=10)
        check(health.status == health_pb2.HealthCheckResponse.SERVING,
              "grpc.health.v1 Check is SERVING over TLS without a token")
        plain = grpc.insecure_channel(target)
        try:
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
            check(False, "a plaintext client must not reach a TLS server")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAVAILABLE, "plaintext client is refused by TLS")

        # 2. Tokens.
        code, msg = call_get_job(channel, [])
        check(code == grpc.StatusCode.UNAUTHENTICATED and "missing bearer token" in msg,
              f"no token -> UNAUTHENTICATED ({msg})")
        code, msg = call_get_job(channel, [("authorization", "Bearer wrong-token-0123456789")])
        check(code == grpc.StatusCode.UNAUTHENTICATED and "invalid bearer token" in msg,
              f"wrong token -> UNAUTHENTICATED ({msg})")
        code, msg = call_get_job(channel, [("authorization", USER_TOKEN)])
        check(code == grpc.StatusCode.UNAUTHENTICATED and 'expected "Bearer <token>"' in msg,
              f"header without 'Bearer' -> UNAUTHENTICATED ({msg})")
        code, msg = call_get_job(channel, [("authorization", "Bearer " + USER_TOKEN)])
        check(code == grpc.StatusCode.NOT_FOUND and msg == 'job_id: no job "j-1"',
              f"good token reaches the handler -> NOT_FOUND ({msg})")

        # 3. /metrics over HTTPS, verified against the CA.
        context = ssl.create_default_context(cafile=os.path.join(work, "ca.pem"))
        url = f"https://127.0.0.1:{ports['metrics_port']}/metrics"
        with urllib.request.urlopen(url, context=context, timeout=5) as r:
            text = r.read().decode()
            content_type = r.headers["Content-Type"]
        check(content_type.startswith("text/plain; version=0.0.4"), "exposition content type")
        check('grpc_code="UNAUTHENTICATED",grpc_method="GetJob"' in text,
              "per-RPC counters in the HTTPS scrape")

        # 4. A real Prometheus scrapes it.
        check(PROMETHEUS is not None, "prometheus is installed (Debian package prometheus)")
        prom, prom_port = start_prometheus(PROMETHEUS, work, f"""  - job_name: ops
    scheme: https
    tls_config:
      ca_file: {os.path.join(work, 'ca.pem')}
    static_configs:
      - targets: ['127.0.0.1:{ports['metrics_port']}']
""")
        procs.append(prom)
        up = wait_for("up{job=\"ops\"} == 1",
                      lambda: [r for r in promql(prom_port, 'up{job="ops"}')
                               if r["value"][1] == "1"], 20)
        check(len(up) == 1, "Prometheus scraped the TLS /metrics endpoint: up == 1")
        series = wait_for("the GetJob counters", lambda: promql(
            prom_port, 'linearize_grpc_server_handled_total{job="ops",grpc_method="GetJob"}'), 10)
        by_code = {r["metric"]["grpc_code"]: float(r["value"][1]) for r in series}
        check(by_code == {"UNAUTHENTICATED": 3.0, "NOT_FOUND": 1.0},
              f"PromQL returns the per-RPC counters by code: {by_code}")
        jobs = promql(prom_port, "sum by (state) (linearize_jobs)")
        check({r["metric"]["state"]: r["value"][1] for r in jobs} == {"queued": "2", "running": "1"},
              "PromQL sum by (state) (linearize_jobs)")
        beats = promql(prom_port, "linearize_worker_heartbeats_total")
        check([r["metric"]["worker"] for r in beats] == ['w "1" \\ ünï'],
              "an escaped label value arrives intact")
        latency = promql(prom_port, 'histogram_quantile(0.5, sum by (le) '
                                    '(linearize_grpc_server_handling_seconds_bucket{grpc_method="GetJob"}))')
        check(len(latency) == 1 and float(latency[0]["value"][1]) > 0,
              "histogram_quantile over the latency histogram")
        check(len(promql(prom_port, "process_resident_memory_bytes > 0")) == 1,
              "process metrics are scraped")

        # 5. Graceful shutdown.
        server.send_signal(signal.SIGTERM)
        rc = server.wait(timeout=15)
        server_log.seek(0)
        log = server_log.read()
        check(rc == 0, f"SIGTERM -> exit code 0 (got {rc})")
        for event in ("event=shutdown.requested reason=SIGTERM", "event=server.draining",
                      "event=server.stopped"):
            check(event in log, f"log line {event}")
        print("ops_test: all checks passed")
    except Exception:
        for name in sorted(os.listdir(work)):
            if name.endswith(".log"):
                print(f"---- {name} ----")
                print(open(os.path.join(work, name)).read()[-3000:])
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
