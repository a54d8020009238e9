#!/usr/bin/env python3
"""linearize-scheduler + linearize-worker + linearize-evaluator, end to end,
as separate processes on loopback with a SQLite store.

  worker_test.py SCHEDULER WORKER EVALUATOR LINEARIZE_CLI PYTHON_STUB_DIR SOURCE_DIR

LINEARIZE_CLI may be "-" (then the `linearize generate` check is skipped).

1. A LoLCATs conversion of the tiny llama3_scaled fixture teacher runs
   through every stage (attention transfer, fine-tuning, evaluation,
   publishing) to SUCCEEDED; WatchJob streams progress of both training
   stages; the job log carries the worker's lines; the worker's /metrics
   has its training throughput.
2. The EVALUATE stage's report: GetReport on the evaluator has perplexity,
   teacher perplexity, KL and top-1 agreement; report.json is in the
   artifact store.
3. The published checkpoint loads: EvaluationService.Evaluate on it
   streams started/progress/task_done/report, and `linearize generate
   --model <it>` continues a prompt. A linear-baseline conversion (no
   stage 1) succeeds too.
4. kill -9 of the worker in the middle of stage 1: after its lease expires
   a new worker takes attempt 2, which resumes from the last reported
   checkpoint (its first step is past 1, the log says so), and the job
   succeeds.
5. SIGTERM of a worker in the middle of a stage: it stops, reports its
   checkpoint, deregisters (the task is re-queued without counting an
   attempt) and exits 0; the next worker resumes from that checkpoint.
6. A worker frozen (SIGSTOP) past its lease is told LEASE_LOST when it
   wakes and commits nothing while its successor runs the task.
7. CancelJob: the running worker hears CANCEL and stops without
   committing.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

(scheduler_bin, worker_bin, evaluator_bin, cli_bin, stub_dir,
 source_dir) = sys.argv[1:7]
sys.path.insert(0, stub_dir)

import grpc  # noqa: E402
from linearize.v1 import common_pb2  # noqa: E402
from linearize.v1 import evaluation_pb2  # noqa: E402,F401
from linearize.v1 import evaluation_service_pb2 as eval_pb  # noqa: E402
from linearize.v1 import evaluation_service_pb2_grpc as eval_grpc  # noqa: E402
from linearize.v1 import job_service_pb2 as jobs_pb  # noqa: E402
from linearize.v1 import job_service_pb2_grpc as jobs_grpc  # noqa: E402

failures = []
T0 = time.monotonic()


def check(name, ok, detail=""):
    print(("ok   - " if ok else "FAIL - ") + name + ("" if ok else ": " + str(detail)),
          flush=True)
    if not ok:
        failures.append(name)
    return ok


def log(msg):
    print("     [%5.1f s] %s" % (time.monotonic() - T0, msg), flush=True)


tmp = tempfile.mkdtemp(prefix="linearize-worker-it-")
root = os.path.join(tmp, "artifacts")
os.makedirs(os.path.join(root, "data"))
shutil.copytree(os.path.join(source_dir, "tests/fixtures/models/llama3_scaled"),
                os.path.join(root, "models", "tiny"))
shutil.copy(os.path.join(source_dir, "tests/fixtures/text/english.txt"),
            os.path.join(root, "data", "eval.txt"))
words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "house", "big",
         "red", "blue", "tree", "sun"]
rng = random.Random(1)
with open(os.path.join(root, "data", "train.txt"), "w") as f:
    f.write(" ".join(rng.choice(words) + ("." if i % 12 == 11 else "") for i in range(6000)))

TENANT = [("x-linearize-tenant", "acme")]
procs = []


class Proc:
    """A service process whose stderr (structured logs) is kept."""

    def __init__(self, name, argv, ready=None):
        self.name = name
        self.ready_path = ready
        if ready and os.path.exists(ready):
            os.remove(ready)
        self.lines = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()
        procs.append(self)

    def _drain(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.ready_path):
                with open(self.ready_path) as f:
                    data = json.load(f)
                if data.get("worker_id", "x") != "":
                    return data
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited %s:\n%s" % (self.name, self.proc.returncode,
                                                         "\n".join(self.lines[-30:])))
            time.sleep(0.05)
        raise RuntimeError("%s not ready:\n%s" % (self.name, "\n".join(self.lines[-30:])))

    def grep(self, text):
        return [l for l in self.lines if text in l]


def start_scheduler():
    ready = os.path.join(tmp, "scheduler.json")
    p = Proc("scheduler", [scheduler_bin, "--listen", "127.0.0.1:0", "--metrics-listen",
                           "127.0.0.1:0", "--ready-file", ready, "--store",
                           "sqlite://" + os.path.join(tmp, "jobs.db"), "--artifact-root", root,
                           "--lease-seconds", "3", "--heartbeat-seconds", "0.5",
                           "--retry-backoff-seconds", "0"], ready)
    line = p.proc.stdout.readline()
    if not line.startswith("listening on "):
        raise RuntimeError("scheduler did not start: %r" % line)
    p.address = line.split()[-1]
    p.wait_ready(20)
    return p


def start_worker(name, scheduler):
    ready = os.path.join(tmp, name + ".json")
    p = Proc(name, [worker_bin, "--scheduler", scheduler.address, "--artifact-root", root,
                    "--metrics-listen", "127.0.0.1:0", "--ready-file", ready, "--threads", "1",
                    "--lease-wait-seconds", "2"], ready)
    info = p.wait_ready(60)
    p.worker_id = info["worker_id"]
    p.metrics_port = info["metrics_port"]
    return p


def start_evaluator(scheduler):
    ready = os.path.join(tmp, "evaluator.json")
    p = Proc("evaluator", [evaluator_bin, "--listen", "127.0.0.1:0", "--metrics-listen",
                           "127.0.0.1:0", "--scheduler", scheduler.address, "--artifact-root",
                           root, "--ready-file", ready, "--threads", "1",
                           "--lease-wait-seconds", "2"], ready)
    info = p.wait_ready(60)
    p.address = "127.0.0.1:%d" % info["port"]
    return p


def conversion(name, steps, batch=4, recipe=common_pb2.RECIPE_KIND_LOLCATS):
    """`steps` optimizer steps per stage (the pipeline splits one budget
    evenly between its stages), `batch` sequences of 64 tokens per step."""
    r = jobs_pb.SubmitConversionRequest(display_name=name)
    s = r.spec
    s.teacher.artifact_path = "models/tiny"
    s.recipe.kind = recipe
    if recipe == common_pb2.RECIPE_KIND_LOLCATS:
        s.recipe.lolcats.feature_dim = 16
        s.recipe.lolcats.window_size = 16
    for stage in (s.recipe.attention_transfer.training, s.recipe.finetune.training):
        stage.token_budget = steps * batch * 64
        stage.sequence_length = 64
        stage.batch_size = batch
        stage.checkpoint_interval_steps = 5
        stage.validation_interval_steps = 10
    s.recipe.attention_transfer.training.learning_rate = 0.05
    s.data.train.add(path="data/train.txt")
    s.data.validation_fraction = 0.1
    s.budget.cpu_only = True
    task = s.evaluation_tasks.add(name="ppl")
    task.perplexity.sources.add(path="data/eval.txt")
    task.perplexity.sequence_length = 128
    task.perplexity.max_tokens = 512
    s.output_model_name = name
    return r


def metrics(port):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def wait_job(jobs, job_id, timeout, pred=lambda j: j.state in (
        jobs_pb.JOB_STATE_SUCCEEDED, jobs_pb.JOB_STATE_FAILED, jobs_pb.JOB_STATE_CANCELLED)):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.GetJob(jobs_pb.GetJobRequest(job_id=job_id), metadata=TENANT)
        if pred(job):
            return job
        time.sleep(0.1)
    return jobs.GetJob(jobs_pb.GetJobRequest(job_id=job_id), metadata=TENANT)


def job_logs(jobs, job_id):
    lines, token = [], ""
    while True:
        page = jobs.GetJobLogs(jobs_pb.GetJobLogsRequest(job_id=job_id, page_size=10000,
                                                         page_token=token), metadata=TENANT)
        lines.extend(page.lines)
        if not page.next_page_token or not page.lines:
            return lines
        token = page.next_page_token


def state_name(job):
    return jobs_pb.JobState.Name(job.state) + (" " + job.failure.message if job.failure.message
                                               else "")


sched = None
try:
    sched = start_scheduler()
    channel = grpc.insecure_channel(sched.address)
    jobs = jobs_grpc.JobServiceStub(channel)
    evaluator = start_evaluator(sched)
    worker_a = start_worker("worker-a", sched)
    log("scheduler, evaluator and worker up")

    # 1. A conversion through every stage.
    job = jobs.SubmitConversion(conversion("tiny-lolcats", 60, batch=8), metadata=TENANT)
    events = []

    def watch():
        for e in jobs.WatchJob(jobs_pb.WatchJobRequest(job_id=job.job_id), metadata=TENANT,
                               timeout=170):
            events.append(e)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    throughput = []

    def sample_metrics():
        while watcher.is_alive():
            try:
                v = metrics(worker_a.metrics_port).get(
                    'linearize_training_tokens_per_second{worker="%s"}' % worker_a.worker_id)
                if v:
                    throughput.append(v)
            except OSError:
                pass
            time.sleep(0.05)

    threading.Thread(target=sample_metrics, daemon=True).start()
    done = wait_job(jobs, job.job_id, 150)
    watcher.join(timeout=10)
    log("job 1 %s" % state_name(done))
    check("the conversion SUCCEEDED", done.state == jobs_pb.JOB_STATE_SUCCEEDED, state_name(done))
    stages = {common_pb2.Stage.Name(s.stage): jobs_pb.StageState.Name(s.state) for s in done.stages}
    check("every stage SUCCEEDED", all(v == "STAGE_STATE_SUCCEEDED" for v in stages.values())
          and len(stages) == 4, stages)
    progress = [e.progress for e in events if e.HasField("progress")]
    at = [p for p in progress if p.stage == common_pb2.STAGE_ATTENTION_TRANSFER]
    ft = [p for p in progress if p.stage == common_pb2.STAGE_FINETUNE]
    # Progress is sent at most once a second per task: a short stage may show once.
    check("the stream carried stage-1 progress", at and all(p.total_steps == 60 for p in at)
          and at[-1].step > 0, [(p.step, p.total_steps) for p in at][-3:])
    check("the stream carried stage-2 progress with loss and throughput",
          ft and ft[-1].HasField("loss") and any(p.tokens_per_second > 0 for p in ft)
          and all(p.total_steps == 60 for p in ft), [(p.step, p.total_steps, p.loss) for p in ft][-3:])
    check("the stream ended with the SUCCEEDED state change",
          events and events[-1].HasField("state_change")
          and events[-1].state_change.state == jobs_pb.JOB_STATE_SUCCEEDED,
          events[-1] if events else None)
    check("stage 1 reported its final loss", any(
        s.stage == common_pb2.STAGE_ATTENTION_TRANSFER and s.HasField("final_loss")
        for s in done.stages))
    check("the model is published under its name", done.model_name == "tiny-lolcats"
          and done.artifact_path.endswith("/model"), (done.model_name, done.artifact_path))
    published = os.path.join(root, done.artifact_path)
    check("the published directory is a converted checkpoint",
          os.path.exists(os.path.join(published, "model.safetensors"))
          and "linear_attention" in json.load(open(os.path.join(published, "config.json"))),
          os.listdir(published) if os.path.isdir(published) else published)
    lines = job_logs(jobs, job.job_id)
    check("the job log has the worker's lines", any("first step of this attempt" in l.message
                                                    for l in lines),
          [l.message for l in lines][:10])
    check("the worker's /metrics reported training throughput", any(v > 0 for v in throughput),
          throughput[:5])

    # 1b. Stage 1 split into layer blocks: one ATTENTION_TRANSFER task per
    # layer (blockwise transfer), joined by the FINETUNE task.
    split = conversion("tiny-blocks", 10)
    split.spec.recipe.attention_transfer.layers_per_block = 1
    job_b = jobs.SubmitConversion(split, metadata=TENANT)
    done_b = wait_job(jobs, job_b.job_id, 120)
    check("a job with stage 1 in layer blocks SUCCEEDED",
          done_b.state == jobs_pb.JOB_STATE_SUCCEEDED,
          (state_name(done_b), [l.message for l in job_logs(jobs, job_b.job_id)][-5:]))
    at_b = [st for st in done_b.stages if st.stage == common_pb2.STAGE_ATTENTION_TRANSFER]
    check("stage 1 ran as one task per layer", at_b and at_b[0].tasks_total == 2,
          [(common_pb2.Stage.Name(st.stage), st.tasks_total) for st in done_b.stages])
    check("the FINETUNE task joined the blocks", any(
        "2 stage-1 blocks" in l.message for l in job_logs(jobs, job_b.job_id)))

    # 2. The EVALUATE stage's report.
    ev_channel = grpc.insecure_channel(evaluator.address)
    evals = eval_grpc.EvaluationServiceStub(ev_channel)
    report = evals.GetReport(eval_pb.GetReportRequest(report_id=done.evaluation_report_id),
                             metadata=TENANT)
    m = dict(report.tasks[0].metrics) if report.tasks else {}
    check("GetReport: the job's evaluation SUCCEEDED with teacher comparisons",
          report.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED
          and report.tasks[0].state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED
          and all(k in m for k in ("perplexity", "teacher_perplexity", "kl_to_teacher",
                                   "top1_agreement", "perplexity_ratio")), report)
    layer_errors = {k: v for k, v in m.items() if k.startswith("attention_error@layer")}
    check("the report gives each converted layer's attention error (0 < relative error < 2)",
          layer_errors and all(0 < v < 2 for v in layer_errors.values()), m)
    check("512 tokens were scored", report.tasks
          and report.tasks[0].perplexity.model.tokens_scored == 512,
          report.tasks[0].perplexity if report.tasks else None)
    check("the report's JSON is in the artifact store",
          report.json_path and os.path.exists(os.path.join(root, report.json_path)),
          report.json_path)
    code = None
    try:
        evals.GetReport(eval_pb.GetReportRequest(report_id=done.evaluation_report_id),
                        metadata=[("x-linearize-tenant", "globex")])
    except grpc.RpcError as e:
        code = e.code()
    check("another tenant cannot read it", code == grpc.StatusCode.NOT_FOUND, code)

    # 3. The published checkpoint loads and serves.
    req = eval_pb.EvaluateRequest(request_id="eval-published")
    req.model.model_name = "tiny-lolcats"
    req.teacher.artifact_path = "models/tiny"
    t = req.tasks.add()
    t.perplexity.sources.add(path="data/eval.txt")
    t.perplexity.sequence_length = 64
    t.perplexity.max_tokens = 256
    kinds = [e.WhichOneof("event") for e in evals.Evaluate(req, metadata=TENANT, timeout=60)]
    check("Evaluate on the published model (by name) streams started .. report",
          kinds and kinds[0] == "started" and kinds[-1] == "report" and "task_done" in kinds,
          kinds)
    again = [e.WhichOneof("event") for e in evals.Evaluate(req, metadata=TENANT, timeout=60)]
    check("repeating its request_id re-attaches to the finished evaluation",
          again == ["started", "report"], again)
    if cli_bin != "-" and os.path.exists(cli_bin):
        remote_out = os.path.join(tmp, "remote-eval")
        out = subprocess.run([cli_bin, "eval", done.artifact_path, "--server", evaluator.address,
                              "--teacher", "models/tiny", "--tasks", "ppl,kl,recall",
                              "--text", "data/eval.txt", "--chunk", "64", "--recall-lengths",
                              "64", "--recall-pairs", "4", "--recall-samples", "2", "--out",
                              remote_out], capture_output=True, text=True, timeout=120)
        saved = {}
        if os.path.exists(os.path.join(remote_out, "report.json")):
            with open(os.path.join(remote_out, "report.json")) as f:
                saved = json.load(f)
        names = [t.get("name") for t in saved.get("tasks", [])]
        check("`linearize eval --server` runs the tasks on the evaluator and saves its report",
              out.returncode == 0 and "| perplexity | kl_to_teacher |" in out.stdout
              and saved.get("state") == "EVALUATION_STATE_SUCCEEDED"
              and names == ["perplexity", "mqar-4-pairs"],
              (out.returncode, out.stdout[-800:], out.stderr[-800:], names))
        out = subprocess.run([cli_bin, "eval", done.artifact_path, "--server", evaluator.address,
                              "--tasks", "speed"], capture_output=True, text=True, timeout=60)
        check("`linearize eval --server --tasks speed` is refused, naming the task",
              out.returncode != 0 and "speed" in out.stderr, (out.returncode, out.stderr[-300:]))
    code = None
    try:
        bad = eval_pb.EvaluateRequest()
        bad.model.artifact_path = "models/tiny"
        list(evals.Evaluate(bad, metadata=TENANT, timeout=10))
    except grpc.RpcError as e:
        code = (e.code(), e.details())
    check("Evaluate without tasks is INVALID_ARGUMENT naming the field",
          code and code[0] == grpc.StatusCode.INVALID_ARGUMENT and "tasks" in code[1], code)
    # A long evaluation (one window per token), cancelled while it runs.
    long_req = eval_pb.EvaluateRequest()
    long_req.model.artifact_path = done.artifact_path
    long_req.teacher.artifact_path = "models/tiny"
    t = long_req.tasks.add(name="slow")
    for _ in range(8):
        t.perplexity.sources.add(path="data/eval.txt")
    t.perplexity.sequence_length = 16
    t.perplexity.stride = 1
    stream = evals.Evaluate(long_req, metadata=TENANT, timeout=120)
    first = next(stream)
    report_id = first.started.report_id
    running = evals.GetReport(eval_pb.GetReportRequest(report_id=report_id), metadata=TENANT)
    cancelled = evals.CancelEvaluation(eval_pb.CancelEvaluationRequest(report_id=report_id),
                                       metadata=TENANT)
    rest = list(stream)
    check("GetReport shows a running evaluation; CancelEvaluation stops it",
          running.state in (evaluation_pb2.EVALUATION_STATE_QUEUED,
                            evaluation_pb2.EVALUATION_STATE_RUNNING)
          and cancelled.state == evaluation_pb2.EVALUATION_STATE_CANCELLED
          and cancelled.tasks[0].state == evaluation_pb2.EVALUATION_STATE_CANCELLED,
          (running.state, cancelled.state, [t.state for t in cancelled.tasks]))
    check("the cancelled evaluation's stream ends with its CANCELLED report",
          rest and rest[-1].HasField("report")
          and rest[-1].report.state == evaluation_pb2.EVALUATION_STATE_CANCELLED,
          [e.WhichOneof("event") for e in rest][-3:])
    code = None
    try:
        evals.CancelEvaluation(eval_pb.CancelEvaluationRequest(report_id=done.evaluation_report_id),
                               metadata=TENANT)
    except grpc.RpcError as e:
        code = e.code()
    check("cancelling a finished report is FAILED_PRECONDITION",
          code == grpc.StatusCode.FAILED_PRECONDITION, code)
    if cli_bin != "-" and os.path.exists(cli_bin):
        out = subprocess.run([cli_bin, "generate", "--model", published, "-p", "the cat", "-n",
                              "3"], capture_output=True, text=True, timeout=60)
        check("`linearize generate` serves the published checkpoint",
              out.returncode == 0 and out.stdout.strip() != "", (out.returncode, out.stderr[-500:]))
    else:
        print("skip - `linearize generate` (no CLI binary)")

    # The linear baseline: no stage 1 to run.
    linear = jobs.SubmitConversion(
        conversion("tiny-linear", 20, recipe=common_pb2.RECIPE_KIND_LINEAR_BASELINE),
        metadata=TENANT)
    done_linear = wait_job(jobs, linear.job_id, 60)
    stages = {common_pb2.Stage.Name(s.stage): jobs_pb.StageState.Name(s.state)
              for s in done_linear.stages}
    linear_config = os.path.join(root, done_linear.artifact_path, "config.json")
    check("the linear baseline SUCCEEDED without a stage 1",
          done_linear.state == jobs_pb.JOB_STATE_SUCCEEDED
          and stages.get("STAGE_ATTENTION_TRANSFER") == "STAGE_STATE_SKIPPED"
          and os.path.exists(linear_config)
          and json.load(open(linear_config))["linear_attention"]["recipe"] == "linear",
          (state_name(done_linear), stages))

    # 4. kill -9 in the middle of stage 1; 5. SIGTERM in the middle of it.
    # Long enough a stage 1 that the kill and the SIGTERM land inside it.
    job2 = jobs.SubmitConversion(conversion("tiny-resume", 400, batch=8), metadata=TENANT)

    def stage1_step(j):
        return j.stage == common_pb2.STAGE_ATTENTION_TRANSFER and j.progress.step

    j = wait_job(jobs, job2.job_id, 60, lambda j: stage1_step(j) >= 12 or j.state > 2)
    killed_at = j.progress.step
    log("job 2 at stage-1 step %d: kill -9 worker A" % killed_at)
    worker_a.proc.send_signal(signal.SIGKILL)
    worker_a.proc.wait(timeout=10)
    check("job 2 was in stage 1 when the worker died",
          j.stage == common_pb2.STAGE_ATTENTION_TRANSFER and killed_at >= 12, state_name(j))
    worker_b = start_worker("worker-b", sched)
    j = wait_job(jobs, job2.job_id, 60, lambda j: j.status_message.find("attempt 2") >= 0
                 and stage1_step(j) >= killed_at + 20 or j.state > 2)
    log("job 2 at stage-1 step %d on worker B (%s): SIGTERM worker B"
        % (j.progress.step, j.status_message))
    worker_b.proc.send_signal(signal.SIGTERM)
    rc = worker_b.proc.wait(timeout=30)
    check("SIGTERM: worker B exits 0", rc == 0, (rc, worker_b.lines[-5:]))
    check("worker B stopped its task and handed it back",
          worker_b.grep("task.handed_back") and worker_b.grep("checkpoint"),
          worker_b.lines[-8:])
    worker_c = start_worker("worker-c", sched)
    done2 = wait_job(jobs, job2.job_id, 120)
    log("job 2 %s" % state_name(done2))
    check("job 2 SUCCEEDED after a crash and a shutdown", done2.state == jobs_pb.JOB_STATE_SUCCEEDED,
          state_name(done2))
    lines = job_logs(jobs, job2.job_id)
    resumed = [l for l in lines if l.message.startswith("resumed from")
               and l.stage == common_pb2.STAGE_ATTENTION_TRANSFER]
    firsts = [int(l.fields["first_step"]) for l in lines if "first_step" in l.fields
              and l.stage == common_pb2.STAGE_ATTENTION_TRANSFER]
    check("stage 1 ran three times: once fresh, twice resumed", len(firsts) == 3
          and len(resumed) == 2, ([l.message for l in resumed], firsts))
    if len(firsts) == 3 and len(resumed) == 2:
        r1, r2 = (int(l.fields["resumed_step"]) for l in resumed)
        # The checkpoint is the last one worker A reported before it died
        # (every 5 steps), so the new attempt starts past step 1.
        check("attempt 2 resumed from a checkpoint past step 1 (not all steps redone)",
              firsts[0] == 1 and r1 >= 5 and r1 % 5 == 0 and firsts[1] == r1 + 1
              and r1 < 400, (firsts, r1, killed_at))
        check("after SIGTERM the next worker resumed where B stopped",
              r2 > r1 + 10 and firsts[2] == r2 + 1, (firsts, r1, r2))
    check("the scheduler logged attempt 2 resuming from the checkpoint",
          any("attempt 2" in l.message and "resuming from" in l.message for l in lines),
          [l.message for l in lines if "leased" in l.message])
    check("the SIGTERM hand-back did not count an attempt",
          not any("attempt 3" in l.message for l in lines),
          [l.message for l in lines if "attempt" in l.message])
    at_stage = [s for s in done2.stages if s.stage == common_pb2.STAGE_ATTENTION_TRANSFER]
    check("stage 1 SUCCEEDED", at_stage and at_stage[0].state == jobs_pb.STAGE_STATE_SUCCEEDED,
          at_stage)

    # 6. LEASE_LOST: a worker frozen past its lease must not commit; its
    # successor goes on. 7. CANCEL: cancelling the job stops the successor.
    job3 = jobs.SubmitConversion(conversion("tiny-cancel", 400, batch=8), metadata=TENANT)
    j = wait_job(jobs, job3.job_id, 60, lambda j: stage1_step(j) >= 5 or j.state > 2)
    log("job 3 at stage-1 step %d: SIGSTOP worker C for longer than its lease" % j.progress.step)
    worker_c.proc.send_signal(signal.SIGSTOP)
    worker_d = start_worker("worker-d", sched)
    j = wait_job(jobs, job3.job_id, 30, lambda j: "attempt 2" in j.status_message or j.state > 2)
    worker_c.proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 15
    while not worker_c.grep("task.abandoned") and time.monotonic() < deadline:
        time.sleep(0.1)
    check("the frozen worker learns its lease is lost and abandons the task",
          any("HEARTBEAT_ACTION_LEASE_LOST" in l for l in worker_c.grep("task.abandoned")),
          worker_c.lines[-6:])
    j = wait_job(jobs, job3.job_id, 30, lambda j: stage1_step(j) >= 5
                 and "attempt 2" in j.status_message or j.state > 2)
    jobs.CancelJob(jobs_pb.CancelJobRequest(job_id=job3.job_id, reason="test"), metadata=TENANT)
    deadline = time.monotonic() + 15
    while not worker_d.grep("task.abandoned") and time.monotonic() < deadline:
        time.sleep(0.1)
    check("CancelJob stops the running worker at its next heartbeat",
          any("HEARTBEAT_ACTION_CANCEL" in l for l in worker_d.grep("task.abandoned")),
          worker_d.lines[-6:])
    j = jobs.GetJob(jobs_pb.GetJobRequest(job_id=job3.job_id), metadata=TENANT)
    check("job 3 is CANCELLED and nothing was committed",
          j.state == jobs_pb.JOB_STATE_CANCELLED and not any(
              job3.job_id in l for l in worker_c.grep("task.completed") + worker_d.grep(
                  "task.completed")), state_name(j))

    # Clean shutdown of the rest.
    for p in (worker_c, worker_d, evaluator, sched):
        p.proc.send_signal(signal.SIGTERM)
        rc = p.proc.wait(timeout=30)
        check("SIGTERM: %s exits 0" % p.name, rc == 0, (rc, p.lines[-5:]))
    sched = None
finally:
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()
    if failures:
        for p in procs:
            print("---- last lines of %s" % p.name)
            print("\n".join(p.lines[-25:]))
    shutil.rmtree(tmp, ignore_errors=True)

print("%d failure(s) in %.0f s" % (len(failures), time.monotonic() - T0))
sys.exit(1 if failures else 0)
