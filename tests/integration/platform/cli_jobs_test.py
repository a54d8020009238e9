#!/usr/bin/env python3
"""The `linearize` job commands against a real linearize-scheduler.

  cli_jobs_test.py LINEARIZE_BINARY SCHEDULER_BINARY PYTHON_STUB_DIR SOURCE_DIR

The scheduler runs with a tokens file (and, for the last part, TLS); the
CLI is the user, and a simulated worker (Python stubs, worker token) moves
jobs along:
 1. submit twice with one --request-id -> the same job id; list, get, logs;
 2. submit --watch, then cancel from another command: the watch exits 1
    naming the cancellation; watch of a job that runs to SUCCEEDED shows
    progress and exits 0; `models` lists its published model; watch of a
    job whose task fails exits 1 with the failure;
 3. errors are the server's status, verbatim: a bad recipe
    (INVALID_ARGUMENT), an unknown job (NOT_FOUND), a missing or wrong
    token (UNAUTHENTICATED);
 4. --tls-ca reaches a TLS scheduler;
 5. a watch survives a scheduler restart (the stream ends UNAVAILABLE and
    the CLI watches again).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

cli_bin, scheduler_bin, stub_dir, source_dir = sys.argv[1:5]
sys.path.insert(0, stub_dir)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from linearize.v1 import common_pb2  # noqa: E402
from linearize.v1 import job_service_pb2 as jobs_pb  # noqa: E402
from linearize.v1 import job_service_pb2_grpc as jobs_grpc  # noqa: E402
from linearize.v1 import worker_service_pb2 as workers_pb  # noqa: E402
from linearize.v1 import worker_service_pb2_grpc as workers_grpc  # noqa: E402

USER_TOKEN = "user-token-0123456789abcdef"
WORKER_TOKEN = "worker-token-0123456789abcdef"
USER = [("authorization", "Bearer " + USER_TOKEN)]
WORKER = [("authorization", "Bearer " + WORKER_TOKEN)]

from platform_util import check, finish, make_root  # noqa: E402

tmp, root = make_root(source_dir, "linearize-cli-it-")
tokens_file = os.path.join(tmp, "tokens")
with open(tokens_file, "w") as f:
    f.write(f"{USER_TOKEN} acme user\n{WORKER_TOKEN} ops worker\n")


class Scheduler:
    def __init__(self, name, extra=(), port=0):
        self.proc = subprocess.Popen(
            [scheduler_bin, "--listen", "127.0.0.1:%d" % port, "--metrics-listen", "",
             "--store", "sqlite://" + os.path.join(tmp, name + ".db"), "--artifact-root", root,
             "--tokens-file", tokens_file, "--retry-backoff-seconds", "0"] + list(extra),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError("scheduler did not start: %r %s" % (line, self.proc.stderr.read()))
        self.address = line.split()[-1]
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


def cli(*args, token=USER_TOKEN, server=None, env_extra=None, timeout=60):
    """Runs `linearize ARGS`; returns (exit code, stdout, stderr)."""
    env = dict(os.environ)
    env.pop("LINEARIZE_TOKEN", None)
    env["LINEARIZE_SERVER"] = server or sched.address
    if token:
        env["LINEARIZE_TOKEN"] = token
    env.update(env_extra or {})
    p = subprocess.run([cli_bin] + list(args), capture_output=True, text=True, env=env,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def cli_background(*args):
    env = dict(os.environ, LINEARIZE_SERVER=sched.address, LINEARIZE_TOKEN=USER_TOKEN)
    return subprocess.Popen([cli_bin] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def server_error(fn):
    """The (code, message) the server answers a call with."""
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def wait_for(what, predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    check(what, False, "timed out")
    return False


class Worker:
    """A simulated worker: leases tasks and reports on them."""

    def __init__(self, channel):
        self.stub = workers_grpc.WorkerServiceStub(channel)
        r = workers_pb.RegisterWorkerRequest(hostname="sim")
        r.resources.cpu_cores = 1
        r.resources.memory_bytes = 1 << 30
        self.worker_id = self.stub.RegisterWorker(r, metadata=WORKER).worker_id

    def lease(self):
        r = workers_pb.LeaseTaskRequest(worker_id=self.worker_id)
        r.wait.FromSeconds(5)
        resp = self.stub.LeaseTask(r, metadata=WORKER, timeout=15)
        return resp.task if resp.HasField("task") else None

    def heartbeat(self, task, step, total):
        r = workers_pb.HeartbeatRequest(lease_id=task.lease_id, fencing_token=task.fencing_token)
        r.progress.stage = task.kind
        r.progress.step = step
        r.progress.total_steps = total
        r.progress.loss = 2.5 / step
        r.progress.tokens_per_second = 1000.0 + step
        r.progress.eta.FromSeconds(total - step)
        r.logs.add(severity=common_pb2.LOG_SEVERITY_INFO, task_id=task.task_id, stage=task.kind,
                   message="step %d of %d" % (step, total))
        return self.stub.Heartbeat(r, metadata=WORKER).action

    def complete(self, task):
        r = workers_pb.CompleteTaskRequest(lease_id=task.lease_id,
                                           fencing_token=task.fencing_token)
        r.outputs.output_path = task.output_path
        r.outputs.evaluation_report_id = task.evaluation_report_id
        if task.kind == common_pb2.STAGE_PUBLISH:
            r.outputs.artifact_path = task.output_path + "/model"
        self.stub.CompleteTask(r, metadata=WORKER)

    def fail(self, task, message):
        r = workers_pb.FailTaskRequest(lease_id=task.lease_id, fencing_token=task.fencing_token,
                                       code=common_pb2.FAILURE_CODE_INVALID_INPUT,
                                       message=message, retryable=False)
        self.stub.FailTask(r, metadata=WORKER)


sched = None
try:
    sched = Scheduler("jobs")
    channel = grpc.insecure_channel(sched.address)
    jobs = jobs_grpc.JobServiceStub(channel)
    submit = ["submit", "--teacher", "models/tiny", "--recipe", "lolcats",
              "--data", "data/train.txt", "--cpu-only", "--tokens", "4096"]

    # 1. submit (idempotent), list, get, logs.
    rc1, out1, err1 = cli(*submit, "--request-id", "cli-req-1", "--name", "tiny-a")
    rc2, out2, err2 = cli(*submit, "--request-id", "cli-req-1", "--name", "tiny-a")
    job_a = out1.strip()
    check("submit prints the job id", rc1 == 0 and job_a != "" and "\n" not in job_a,
          (rc1, out1, err1))
    check("the same --request-id gives the same job", rc2 == 0 and out2.strip() == job_a,
          (out1, out2, err2))
    got = jobs.GetJob(jobs_pb.GetJobRequest(job_id=job_a), metadata=USER)
    check("the job is the tenant's, with the flags applied",
          got.tenant == "acme" and got.spec.output_model_name == "tiny-a"
          and got.spec.budget.cpu_only
          and got.spec.recipe.attention_transfer.training.token_budget == 2048
          and got.spec.recipe.finetune.training.token_budget == 2048
          and [s.path for s in got.spec.data.train] == ["data/train.txt"], got)
    rc, out, err = cli("list")
    check("list shows the job, QUEUED", rc == 0 and any(
        line.split()[:2] == [job_a, "QUEUED"] for line in out.splitlines()), (rc, out, err))
    rc, out, err = cli("list", "--json", "--state", "queued", "--page-size", "5")
    listed = json.loads(out) if rc == 0 else {}
    check("list --json --state queued", [j["job_id"] for j in listed.get("jobs", [])] == [job_a],
          (rc, out, err))
    rc, out, err = cli("list", "--state", "succeeded")
    check("list --state succeeded: only the header", rc == 0 and len(out.splitlines()) == 1,
          (rc, out, err))
    rc, out, err = cli("get", job_a)
    check("get shows state, recipe and teacher",
          rc == 0 and "QUEUED" in out and "lolcats" in out and "models/tiny" in out,
          (rc, out, err))
    rc, out, err = cli("get", job_a, "--json")
    check("get --json", rc == 0 and json.loads(out)["state"] == "JOB_STATE_QUEUED",
          (rc, out, err))
    rc, out, err = cli("logs", job_a)
    check("logs prints the scheduler's lines", rc == 0 and len(out.splitlines()) >= 1,
          (rc, out, err))

    # 2. submit --watch + cancel; a job to SUCCEEDED; a job that FAILS.
    watcher = cli_background(*submit, "--watch", "--name", "tiny-b")
    job_b = watcher.stdout.readline().strip()
    check("submit --watch prints the job id first", job_b.startswith("job"), job_b)
    rc, out, err = cli("cancel", job_b, "--reason", "changed my mind")
    check("cancel", rc == 0 and out.strip() == "job %s CANCELLED" % job_b, (rc, out, err))
    try:
        w_out, w_err = watcher.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        watcher.kill()
        w_out, w_err = watcher.communicate()
    check("the watch of a cancelled job exits 1 with the reason",
          watcher.returncode == 1 and w_err.strip() ==
          "linearize: job %s CANCELLED (cancelled: changed my mind)" % job_b,
          (watcher.returncode, w_out, w_err))
    check("the watch showed the state change", "CANCELLED" in w_out, w_out)

    rc, out, err = cli("cancel", job_a)
    worker = Worker(channel)
    rc, out, err = cli(*submit, "--name", "tiny-c", "--skip-evaluation")
    job_c = out.strip()
    watcher = cli_background("watch", job_c, "--logs")
    stages = []
    while True:
        task = worker.lease()
        if task is None or task.job_id != job_c:
            check("the worker gets job c's tasks", False, task)
            break
        stages.append(task.kind)
        # Progress reaches watchers at most once a second per task: stage 1
        # reports twice, slowly enough for both to show; the rest once.
        for step in (1, 2) if task.kind == common_pb2.STAGE_ATTENTION_TRANSFER else (1,):
            worker.heartbeat(task, step, 2)
            if task.kind == common_pb2.STAGE_ATTENTION_TRANSFER:
                time.sleep(1.05)
        worker.complete(task)
        if task.kind == common_pb2.STAGE_PUBLISH:
            break
    try:
        w_out, w_err = watcher.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        watcher.kill()
        w_out, w_err = watcher.communicate()
    print("     " + w_out.replace("\n", "\n     ").rstrip())
    check("watch exits 0 when the job SUCCEEDED", watcher.returncode == 0,
          (watcher.returncode, w_out, w_err))
    check("watch ends naming the model",
          "job %s SUCCEEDED: model tiny-c at" % job_c in w_out, w_out)
    check("watch shows progress (stage, step/total, loss, tokens/s, ETA)",
          any("attention transfer [" in line and "2/2" in line and "tok/s" in line
              and "loss" in line and "ETA" in line for line in w_out.splitlines()), w_out)
    check("watch --logs shows the worker's log lines", "step 2 of 2" in w_out, w_out)
    rc, out, err = cli("models")
    check("models lists the published model",
          rc == 0 and any(line.split()[:2] == ["tiny-c", job_c] for line in out.splitlines())
          and "tiny-a" not in out, (rc, out, err))
    rc, out, err = cli("logs", job_c, "--follow", timeout=20)
    check("logs --follow ends once the job has ended, with the worker's lines",
          rc == 0 and "step 1 of 2" in out, (rc, out, err))

    rc, out, err = cli(*submit, "--name", "tiny-d")
    job_d = out.strip()
    watcher = cli_background("watch", job_d)
    task = worker.lease()
    worker.fail(task, "data/train.txt: no usable documents")
    w_out, w_err = watcher.communicate(timeout=30)
    check("watch exits 1 when the job FAILED, printing the failure",
          watcher.returncode == 1
          and w_err.startswith("linearize: job %s FAILED (INVALID_INPUT, attention transfer): "
                               % job_d)
          and w_err.strip().endswith("data/train.txt: no usable documents"),
          (watcher.returncode, w_err))

    # 3. Errors are the server's, verbatim.
    rc, out, err = cli("submit", "--teacher", "models/tiny", "--recipe", "transformer++",
                       "--data", "data/train.txt")
    bad = jobs_pb.SubmitConversionRequest()
    bad.spec.teacher.artifact_path = "models/tiny"
    bad.spec.recipe.SetInParent()  # kind unset, as the CLI sends an unknown name
    bad.spec.data.train.add(path="data/train.txt")
    code, message = server_error(lambda: jobs.SubmitConversion(bad, metadata=USER))
    check("a bad recipe prints the server's INVALID_ARGUMENT",
          rc == 1 and code == grpc.StatusCode.INVALID_ARGUMENT
          and err.strip() == "linearize: INVALID_ARGUMENT: " + message
          and "spec.recipe.kind" in message, (rc, err, message))
    rc, out, err = cli("submit", "--teacher", "models/missing", "--recipe", "lizard")
    check("a missing teacher prints the server's NOT_FOUND",
          rc == 1 and err.startswith("linearize: NOT_FOUND: spec.teacher"), (rc, err))
    rc, out, err = cli("get", "job-does-not-exist")
    code, message = server_error(lambda: jobs.GetJob(
        jobs_pb.GetJobRequest(job_id="job-does-not-exist"), metadata=USER))
    check("an unknown job prints the server's NOT_FOUND",
          rc == 1 and err.strip() == "linearize: NOT_FOUND: " + message, (rc, err, message))
    rc, out, err = cli("list", token=None)
    code, message = server_error(lambda: jobs.ListJobs(jobs_pb.ListJobsRequest()))
    check("no token prints the server's UNAUTHENTICATED",
          rc == 1 and code == grpc.StatusCode.UNAUTHENTICATED
          and err.strip() == "linearize: UNAUTHENTICATED: " + message, (rc, err, message))
    rc, out, err = cli("get", job_a, "--token", "not-a-token-0123456789", token=None)
    check("a wrong --token is UNAUTHENTICATED",
          rc == 1 and err.startswith("linearize: UNAUTHENTICATED: "), (rc, err))
    rc, out, err = cli("list", "--state", "sleeping")
    check("a bad --state prints the server's INVALID_ARGUMENT",
          rc == 1 and err.startswith("linearize: INVALID_ARGUMENT: states"), (rc, err))
    rc, out, err = cli("list", server="127.0.0.1:1")
    check("no server: UNAVAILABLE, exit 1",
          rc == 1 and err.startswith("linearize: UNAVAILABLE: "), (rc, err))
    channel.close()
    check("the scheduler stops cleanly", sched.stop() == 0)
    sched = None

    # 4. TLS: --tls-ca.
    pki = os.path.join(tmp, "pki")
    os.makedirs(pki)
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    subprocess.run(["sh", "-ec", f"""
        openssl req -x509 {ec} -days 1 -subj /CN=cli-test-ca -keyout ca.key -out ca.pem
        openssl req {ec} -subj /CN=localhost -keyout server.key -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
            -extfile san.ext -out server.pem"""], cwd=pki, check=True, capture_output=True)
    sched = Scheduler("tls", ["--tls-cert", os.path.join(pki, "server.pem"),
                              "--tls-key", os.path.join(pki, "server.key")])
    rc, out, err = cli(*submit, "--tls-ca", os.path.join(pki, "ca.pem"))
    check("submit over TLS with --tls-ca", rc == 0 and out.strip().startswith("job"),
          (rc, out, err))
    rc, out, err = cli("list", env_extra={"LINEARIZE_TLS_CA": os.path.join(pki, "ca.pem")})
    check("list over TLS with $LINEARIZE_TLS_CA", rc == 0 and "QUEUED" in out, (rc, out, err))
    rc, out, err = cli("list")
    check("plaintext to a TLS server fails", rc == 1 and err.startswith("linearize: "), (rc, err))
    check("the TLS scheduler stops cleanly", sched.stop() == 0)
    sched = None

    # 5. A watch across a scheduler restart on the same port and store.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sched = Scheduler("restart", port=port)
    rc, out, err = cli(*submit)
    job_e = out.strip()
    watcher = cli_background("watch", job_e)
    time.sleep(1)
    check("the scheduler drains with a watch open", sched.stop() == 0)
    sched = Scheduler("restart", port=port)
    time.sleep(1)
    rc, out, err = cli("cancel", job_e, "--reason", "after the restart")
    try:
        w_out, w_err = watcher.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        watcher.kill()
        w_out, w_err = watcher.communicate()
    check("the watch outlives the restart and sees the cancellation",
          watcher.returncode == 1 and "watching again" in w_err
          and w_err.strip().endswith("CANCELLED (cancelled: after the restart)"),
          (watcher.returncode, w_out, w_err))
    check("the restarted scheduler stops cleanly", sched.stop() == 0)
    sched = None
finally:
    if sched is not None and sched.proc.poll() is None:
        sched.proc.kill()
        sched.proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)

finish()
