"""Shared by the platform integration tests: pass/fail reporting, a
throw-away artifact root with the tiny teacher, the linearize-scheduler
process, and the JobService/WorkerService calls the tests make. Import it
after putting the generated Python stubs on sys.path."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import grpc
from linearize.v1 import common_pb2
from linearize.v1 import job_service_pb2 as jobs_pb
from linearize.v1 import job_service_pb2_grpc as jobs_grpc
from linearize.v1 import worker_service_pb2 as workers_pb
from linearize.v1 import worker_service_pb2_grpc as workers_grpc

failures = []


def check(name, ok, detail=""):
    print(("ok   - " if ok else "FAIL - ") + name + ("" if ok else ": " + str(detail)), flush=True)
    if not ok:
        failures.append(name)


def finish():
    print("%d failure(s)" % len(failures))
    sys.exit(1 if failures else 0)


def make_root(source_dir, prefix):
    """(tmp, root): a temporary folder and the artifact root inside it, with
    models/tiny (the fixture's config.json) and data/train.txt."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    root = os.path.join(tmp, "artifacts")
    os.makedirs(os.path.join(root, "models", "tiny"))
    shutil.copy(os.path.join(source_dir, "tests/fixtures/models/llama/config.json"),
                os.path.join(root, "models", "tiny", "config.json"))
    os.makedirs(os.path.join(root, "data"))
    with open(os.path.join(root, "data", "train.txt"), "w") as f:
        f.write("Some training text.\n")
    return tmp, root


class Scheduler:
    """A linearize-scheduler process on a free loopback port; `address` is
    where it listens, `metrics_port` where it serves /metrics. Leases last
    3 s so that tests see them expire."""

    def __init__(self, binary, tmp, root, store, extra=()):
        ready = os.path.join(tmp, "ready-%d.json" % time.monotonic_ns())
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
             "--ready-file", ready, "--store", store,
             "--artifact-root", root, "--lease-seconds", "3", "--heartbeat-seconds", "1",
             "--retry-backoff-seconds", "0"] + list(extra),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # "listening on 127.0.0.1:PORT"
        if not line.startswith("listening on "):
            raise RuntimeError("scheduler did not start: %r %s" % (line, self.proc.stderr.read()))
        self.address = line.split()[-1]
        deadline = time.monotonic() + 10
        while not os.path.exists(ready) and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(ready) as f:
            ports = json.load(f)
        if "127.0.0.1:%d" % ports["port"] != self.address:
            raise RuntimeError("ready file %s disagrees with %s" % (ports, self.address))
        self.metrics_port = ports["metrics_port"]
        # Drain stderr so the process never blocks on a full pipe.
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        self.channel = grpc.insecure_channel(self.address)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.jobs = jobs_grpc.JobServiceStub(self.channel)
        self.workers = workers_grpc.WorkerServiceStub(self.channel)

    def metrics(self):
        """The /metrics samples as {'name{labels}': value}."""
        url = "http://127.0.0.1:%d/metrics" % self.metrics_port
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return samples

    def kill9(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


def tenant(name="acme"):
    return [("x-linearize-tenant", name)]


def valid_request(request_id=""):
    r = jobs_pb.SubmitConversionRequest(request_id=request_id, display_name="tiny")
    r.spec.teacher.artifact_path = "models/tiny"
    r.spec.recipe.kind = common_pb2.RECIPE_KIND_LOLCATS
    r.spec.data.train.add(path="data/train.txt")
    r.spec.budget.cpu_only = True
    return r


def code_of(fn):
    try:
        fn()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def list_all(stub, who="acme"):
    jobs, token = [], ""
    while True:
        page = stub.ListJobs(jobs_pb.ListJobsRequest(page_size=17, page_token=token),
                             metadata=tenant(who))
        jobs.extend(page.jobs)
        token = page.next_page_token
        if not token:
            return jobs


def register(stub, name):
    r = workers_pb.RegisterWorkerRequest(hostname=name)
    r.resources.cpu_cores = 1
    r.resources.memory_bytes = 1 << 30
    return stub.RegisterWorker(r).worker_id


def lease(stub, worker_id, wait_s=5.0):
    r = workers_pb.LeaseTaskRequest(worker_id=worker_id)
    r.wait.FromNanoseconds(int(wait_s * 1e9))
    resp = stub.LeaseTask(r, timeout=wait_s + 10)
    return resp.task if resp.HasField("task") else None


def heartbeat(stub, task, step=0, checkpoint=""):
    r = workers_pb.HeartbeatRequest(lease_id=task.lease_id, fencing_token=task.fencing_token,
                                    checkpoint_path=checkpoint)
    if step:
        r.progress.step = step
        r.progress.total_steps = 100
    return stub.Heartbeat(r).action


def complete(stub, task):
    r = workers_pb.CompleteTaskRequest(lease_id=task.lease_id, fencing_token=task.fencing_token)
    r.outputs.output_path = task.output_path
    r.outputs.evaluation_report_id = task.evaluation_report_id
    if task.kind == common_pb2.STAGE_PUBLISH:
        r.outputs.artifact_path = task.output_path + "/model"
    stub.CompleteTask(r)
