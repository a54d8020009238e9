#!/usr/bin/env python3
"""Two linearize-scheduler replicas on one PostgreSQL (Debian's server,
started by scripts/pg-test-server): the scheduler keeps no state outside the
store, so either replica serves any job.

  replicas_test.py SCHEDULER_BINARY PYTHON_STUB_DIR SOURCE_DIR

1. 200 concurrent submits with 50 request ids, spread over both replicas:
   each request id makes exactly one job, and both replicas list the same 50.
2. A worker leases through replica A and heartbeats through B; it goes
   silent, and after its lease expires another worker leasing through B gets
   the task (attempt 2, larger fencing token, the checkpoint to resume
   from); the first worker can commit through neither replica.
3. kill -9 of replica A: B still serves every job and takes the commit.
"""
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

scheduler_bin, stub_dir, source_dir = sys.argv[1:4]
sys.path.insert(0, stub_dir)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from linearize.v1 import common_pb2  # noqa: E402
from linearize.v1 import job_service_pb2 as jobs_pb  # noqa: E402
from linearize.v1 import worker_service_pb2 as workers_pb  # noqa: E402

from platform_util import (Scheduler, check, code_of, complete, finish, heartbeat,  # noqa: E402
                           lease, list_all, make_root, register, tenant, valid_request)

tmp, root = make_root(source_dir, "linearize-replicas-it-")
os.chmod(tmp, 0o755)  # the server runs as the postgres user under root
pg = os.path.join(tmp, "pg")
pg_server = os.path.join(source_dir, "scripts", "pg-test-server")
url = subprocess.run([pg_server, "start", pg], check=True, capture_output=True,
                     text=True).stdout.strip().splitlines()[-1]
replicas = []
try:
    a = Scheduler(scheduler_bin, tmp, root, url)
    b = Scheduler(scheduler_bin, tmp, root, url)
    replicas = [a, b]

    # 1. Idempotent submits across replicas.
    ids = ["req-%02d" % (i % 50) for i in range(200)]
    results, errors = {}, []
    lock = threading.Lock()

    def submit(i):
        rid = ids[i]
        try:
            job = replicas[i % 2].jobs.SubmitConversion(valid_request(rid), metadata=tenant(),
                                                        timeout=60)
            with lock:
                results.setdefault(rid, set()).add(job.job_id)
        except grpc.RpcError as e:
            with lock:
                errors.append("%s: %s %s" % (rid, e.code(), e.details()))

    with ThreadPoolExecutor(max_workers=40) as pool:
        list(pool.map(submit, range(len(ids))))
    check("200 concurrent submits over two replicas succeed", not errors, errors[:3])
    check("each request id made exactly one job",
          len(results) == 50 and all(len(v) == 1 for v in results.values()),
          {k: v for k, v in results.items() if len(v) != 1})
    on_a, on_b = list_all(a.jobs), list_all(b.jobs)
    check("both replicas list the same 50 jobs",
          len(on_a) == 50 and {j.job_id for j in on_a} == {j.job_id for j in on_b},
          (len(on_a), len(on_b)))

    # Only one job goes on (cancelled through either replica).
    keep = on_a[0].job_id
    for i, j in enumerate(on_a[1:]):
        replicas[i % 2].jobs.CancelJob(jobs_pb.CancelJobRequest(job_id=j.job_id, reason="test"),
                                       metadata=tenant())

    # 2. Leases and fencing across replicas.
    w1 = register(a.workers, "w1")
    task = lease(a.workers, w1)
    check("a worker leases the remaining job's task through replica A",
          task is not None and task.job_id == keep)
    ckpt = task.output_path + "/ckpt-5"
    check("its heartbeat through replica B extends the lease",
          heartbeat(b.workers, task, 5, ckpt) == workers_pb.HEARTBEAT_ACTION_CONTINUE)
    job = b.jobs.GetJob(jobs_pb.GetJobRequest(job_id=task.job_id), metadata=tenant())
    check("replica B shows the progress reported through it",
          job.state == jobs_pb.JOB_STATE_RUNNING and job.progress.step == 5,
          (jobs_pb.JobState.Name(job.state), job.progress.step))
    w2 = register(b.workers, "w2")
    silent_since = time.monotonic()
    again = lease(b.workers, w2, wait_s=15)  # w1's lease lasts 3 s
    waited = time.monotonic() - silent_since
    check("nothing to lease while w1's lease is live", waited > 2.5, "%.2f s" % waited)
    check("after the lease expires, a worker on replica B gets the task",
          again is not None and again.task_id == task.task_id, again)
    if again is not None:
        check("attempt 2 with a larger fencing token and the checkpoint",
              again.attempt == 2 and again.fencing_token > task.fencing_token
              and again.resume_checkpoint_path == ckpt,
              (again.attempt, again.fencing_token, task.fencing_token,
               again.resume_checkpoint_path))
        for name, replica in (("A", a), ("B", b)):
            code, detail = code_of(lambda: complete(replica.workers, task))
            check("the stale worker cannot commit through replica " + name,
                  code == grpc.StatusCode.FAILED_PRECONDITION, (code, detail))

        # 3. Replica A dies; B carries on.
        a.kill9()
        replicas = [b]
        check("after kill -9 of replica A, B lists all 50 jobs", len(list_all(b.jobs)) == 50)
        code, detail = code_of(lambda: complete(b.workers, again))
        check("the current lease commits through replica B", code == grpc.StatusCode.OK,
              (code, detail))
        nxt = lease(b.workers, w2)
        check("the job's next stage is leased through replica B",
              nxt is not None and nxt.job_id == keep and nxt.kind == common_pb2.STAGE_FINETUNE,
              nxt)
finally:
    for r in replicas:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()
    subprocess.run([pg_server, "stop", pg], capture_output=True)

finish()
