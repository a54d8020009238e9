#!/usr/bin/env python3
"""linearize-scheduler end to end, as a separate process on loopback.

  scheduler_test.py SCHEDULER_BINARY PYTHON_STUB_DIR SOURCE_DIR

1. 200 concurrent SubmitConversion calls with 50 request ids, each used 4
   times: every call succeeds, each request id maps to one job, and exactly
   50 jobs exist.
2. kill -9 mid-job, restart on the same SQLite file: every job is still
   there, the running job's progress too, and its worker's lease still
   works against the new process.
3. Fencing: worker A stops heartbeating; after its lease expires worker B
   gets the task (attempt 2, larger fencing token, A's checkpoint to resume
   from); A can neither heartbeat nor complete; B completes.
4. Bad requests get the exact status code and a message naming the field;
   without auth, a call without the tenant header is tenant "default".
5. /metrics serves the platform metrics (linearize_jobs{state},
   linearize_queue_depth, ...) with the store's numbers.
6. SIGTERM stops the scheduler cleanly.
7. With a tokens file: a missing or wrong token is UNAUTHENTICATED, a user
   token calling WorkerService is PERMISSION_DENIED (and changes nothing),
   a worker token calling JobService too; the right roles get through.
"""
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

scheduler_bin, stub_dir, source_dir = sys.argv[1:4]
sys.path.insert(0, stub_dir)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from linearize.v1 import common_pb2, conversion_pb2  # noqa: E402,F401
from linearize.v1 import job_service_pb2 as jobs_pb  # noqa: E402
from linearize.v1 import worker_service_pb2 as workers_pb  # noqa: E402

from platform_util import (Scheduler as SchedulerProcess, check, code_of, complete,  # noqa: E402
                           finish, heartbeat, lease, list_all, make_root, register, tenant,
                           valid_request)

tmp, root = make_root(source_dir, "linearize-sched-it-")
db = os.path.join(tmp, "jobs.db")


def Scheduler(store=db, extra=()):
    return SchedulerProcess(scheduler_bin, tmp, root, "sqlite://" + store, extra)


sched = None
try:
    sched = Scheduler()

    # 1. Concurrent submits with repeated request ids.
    ids = ["req-%02d" % (i % 50) for i in range(200)]
    results, errors = {}, []
    lock = threading.Lock()

    def submit(rid):
        try:
            job = sched.jobs.SubmitConversion(valid_request(rid), metadata=tenant(), timeout=60)
            with lock:
                results.setdefault(rid, set()).add(job.job_id)
        except grpc.RpcError as e:
            with lock:
                errors.append("%s: %s %s" % (rid, e.code(), e.details()))

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=40) as pool:
        list(pool.map(submit, ids))
    elapsed = time.monotonic() - start
    check("200 concurrent submits succeed", not errors, errors[:3])
    check("each request id made exactly one job",
          len(results) == 50 and all(len(v) == 1 for v in results.values()),
          {k: v for k, v in results.items() if len(v) != 1})
    listed = list_all(sched.jobs)
    check("exactly 50 jobs exist", len(listed) == 50, len(listed))
    check("another tenant sees none of them", len(list_all(sched.jobs, "globex")) == 0)
    print("     (200 submits in %.2f s)" % elapsed)

    # 2. kill -9 mid-job, restart: nothing lost.
    worker_a = register(sched.workers, "a")
    task = lease(sched.workers, worker_a)
    check("a worker leases a task", task is not None)
    check("heartbeat before the crash", heartbeat(sched.workers, task, 7,
                                                  task.output_path + "/ckpt-7")
          == workers_pb.HEARTBEAT_ACTION_CONTINUE)
    sched.kill9()
    sched = Scheduler()
    after = list_all(sched.jobs)
    check("after kill -9 and restart all 50 jobs are there", len(after) == 50, len(after))
    check("the same job ids", {j.job_id for j in after} == {j.job_id for j in listed})
    running = sched.jobs.GetJob(jobs_pb.GetJobRequest(job_id=task.job_id), metadata=tenant())
    check("the running job kept its state and progress",
          running.state == jobs_pb.JOB_STATE_RUNNING and running.progress.step == 7,
          "%s step %d" % (jobs_pb.JobState.Name(running.state), running.progress.step))
    again = sched.jobs.SubmitConversion(valid_request("req-00"), metadata=tenant())
    check("request ids still deduplicate after the restart",
          again.job_id in results["req-00"], again.job_id)
    check("the worker's lease survives the restart",
          heartbeat(sched.workers, task, 8) == workers_pb.HEARTBEAT_ACTION_CONTINUE)
    complete(sched.workers, task)

    # Only job X goes on; the others are cancelled.
    cancelled = 0
    for j in after:
        if j.job_id != task.job_id:
            c = sched.jobs.CancelJob(jobs_pb.CancelJobRequest(job_id=j.job_id, reason="test"),
                                     metadata=tenant())
            cancelled += c.state == jobs_pb.JOB_STATE_CANCELLED
    check("the other 49 jobs are cancelled", cancelled == 49, cancelled)

    # 3. Fencing with two workers: A goes silent, B takes over.
    task_a = lease(sched.workers, worker_a)  # the job's next stage
    check("worker A leases the next stage", task_a is not None and task_a.job_id == task.job_id)
    ckpt = task_a.output_path + "/ckpt-40"
    heartbeat(sched.workers, task_a, 40, ckpt)
    worker_b = register(sched.workers, "b")
    silent_since = time.monotonic()
    task_b = lease(sched.workers, worker_b, wait_s=15)  # A's lease lasts 3 s
    waited = time.monotonic() - silent_since
    check("B got nothing while A's lease was live", waited > 2.5, "%.2f s" % waited)
    check("worker B gets A's task after A's lease expires", task_b is not None)
    if task_b is not None:
        check("attempt 2 with a larger fencing token",
              task_b.attempt == 2 and task_b.fencing_token > task_a.fencing_token,
              (task_b.attempt, task_b.fencing_token, task_a.fencing_token))
        check("B resumes from A's last checkpoint", task_b.resume_checkpoint_path == ckpt,
              task_b.resume_checkpoint_path)
        check("A's heartbeat is told the lease is lost",
              heartbeat(sched.workers, task_a) == workers_pb.HEARTBEAT_ACTION_LEASE_LOST)
        code, detail = code_of(lambda: complete(sched.workers, task_a))
        check("A cannot commit (FAILED_PRECONDITION)",
              code == grpc.StatusCode.FAILED_PRECONDITION, (code, detail))
        code, detail = code_of(lambda: complete(sched.workers, task_b))
        check("B commits", code == grpc.StatusCode.OK, (code, detail))

    # 4. Bad requests.
    def bad(name, mutate, want, field, who="acme"):
        r = valid_request()
        mutate(r)
        code, detail = code_of(lambda: sched.jobs.SubmitConversion(r, metadata=tenant(who)))
        check(name, code == want and field in detail, (code, detail))

    bad("unknown recipe", lambda r: setattr(r.spec.recipe, "kind", 42),
        grpc.StatusCode.INVALID_ARGUMENT, "spec.recipe.kind")
    bad("missing teacher", lambda r: r.spec.ClearField("teacher"),
        grpc.StatusCode.INVALID_ARGUMENT, "spec.teacher")
    bad("negative budget", lambda r: setattr(r.spec.budget, "max_tokens", -5),
        grpc.StatusCode.INVALID_ARGUMENT, "spec.budget.max_tokens")
    bad("oversized display name", lambda r: setattr(r, "display_name", "x" * 1000),
        grpc.StatusCode.INVALID_ARGUMENT, "display_name")
    bad("path escaping the artifact root",
        lambda r: setattr(r.spec.data.train[0], "path", "../jobs.db"),
        grpc.StatusCode.INVALID_ARGUMENT, "spec.data.train[0].path")
    code, detail = code_of(lambda: sched.jobs.GetJob(
        jobs_pb.GetJobRequest(job_id=task.job_id), metadata=tenant("globex")))
    check("another tenant's job is NOT_FOUND", code == grpc.StatusCode.NOT_FOUND
          and "job_id" in detail, (code, detail))
    code, detail = code_of(lambda: sched.jobs.GetJob(jobs_pb.GetJobRequest(job_id=task.job_id)))
    check("auth off: no tenant header is tenant \"default\", which sees nothing of acme's",
          code == grpc.StatusCode.NOT_FOUND, (code, detail))

    # 5. /metrics: the store's numbers (refreshed every few seconds).
    deadline = time.monotonic() + 15
    while True:
        samples = sched.metrics()
        if (samples.get('linearize_jobs{state="cancelled"}') == 49
                and samples.get("linearize_lease_expiries_total") == 1) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    check("/metrics: linearize_jobs counts the 49 cancelled jobs",
          samples.get('linearize_jobs{state="cancelled"}') == 49,
          {k: v for k, v in samples.items() if k.startswith("linearize_jobs")})
    check("/metrics: linearize_jobs has a series per state",
          all('linearize_jobs{state="%s"}' % s in samples
              for s in ("queued", "running", "succeeded", "failed", "cancelled")))
    check("/metrics: linearize_queue_depth", "linearize_queue_depth" in samples)
    check("/metrics: A's expired lease is counted",
          samples.get("linearize_lease_expiries_total") == 1,
          samples.get("linearize_lease_expiries_total"))
    check("/metrics: heartbeats per worker",
          samples.get('linearize_worker_heartbeats_total{worker="%s"}' % worker_a, 0) >= 1,
          [k for k in samples if "heartbeats" in k])
    check("/metrics: per-RPC metrics from the shared server",
          any(k.startswith("linearize_grpc_server_handled_total") for k in samples))

    # 6. Clean shutdown.
    sched.channel.close()
    sched.proc.send_signal(signal.SIGTERM)
    rc = sched.proc.wait(timeout=15)
    check("SIGTERM exits 0", rc == 0, rc)
    sched = None

    # 7. Bearer tokens and roles.
    tokens = os.path.join(tmp, "tokens")
    with open(tokens, "w") as f:
        f.write("# token tenant role\n"
                "user-token-0123456789 acme user\n"
                "worker-token-0123456789 ops worker\n")
    sched = Scheduler(os.path.join(tmp, "auth.db"), ["--tokens-file", tokens])
    user = [("authorization", "Bearer user-token-0123456789")]
    worker = [("authorization", "Bearer worker-token-0123456789")]
    code, detail = code_of(lambda: sched.jobs.ListJobs(jobs_pb.ListJobsRequest()))
    check("missing token -> UNAUTHENTICATED", code == grpc.StatusCode.UNAUTHENTICATED,
          (code, detail))
    code, detail = code_of(lambda: sched.jobs.ListJobs(
        jobs_pb.ListJobsRequest(), metadata=[("authorization", "Bearer wrong-token-0123456789")]))
    check("wrong token -> UNAUTHENTICATED", code == grpc.StatusCode.UNAUTHENTICATED,
          (code, detail))
    code, detail = code_of(lambda: sched.jobs.ListJobs(jobs_pb.ListJobsRequest(),
                                                       metadata=tenant()))
    check("the tenant header is no token", code == grpc.StatusCode.UNAUTHENTICATED,
          (code, detail))
    job = sched.jobs.SubmitConversion(valid_request(), metadata=user)
    check("a user token submits for its tenant", job.tenant == "acme", job.tenant)
    reg = workers_pb.RegisterWorkerRequest(hostname="by-user", request_id="reg-1")
    reg.resources.cpu_cores = 1
    reg.resources.memory_bytes = 1 << 30
    code, detail = code_of(lambda: sched.workers.RegisterWorker(reg, metadata=user))
    check("a user token calling WorkerService -> PERMISSION_DENIED",
          code == grpc.StatusCode.PERMISSION_DENIED and "WorkerService" in detail, (code, detail))
    reg.hostname = "by-worker"
    code, detail = code_of(lambda: sched.workers.RegisterWorker(reg, metadata=worker))
    check("a worker token registers (the refused call registered nothing)",
          code == grpc.StatusCode.OK, (code, detail))
    code, detail = code_of(lambda: sched.jobs.GetJob(jobs_pb.GetJobRequest(job_id=job.job_id),
                                                     metadata=worker))
    check("a worker token calling JobService -> PERMISSION_DENIED",
          code == grpc.StatusCode.PERMISSION_DENIED, (code, detail))
    sched.channel.close()
    sched.proc.send_signal(signal.SIGTERM)
    rc = sched.proc.wait(timeout=15)
    check("SIGTERM exits 0 (with tokens)", rc == 0, rc)
    sched = None
finally:
    if sched is not None and sched.proc.poll() is None:
        sched.proc.kill()
        sched.proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)

finish()
