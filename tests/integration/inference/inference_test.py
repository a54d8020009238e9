"""Integration test of linearize-inference as real processes on loopback.

1. A bounded load test: linearize-loadgen runs N concurrent streaming sessions
   for S seconds against the server; zero errors; TTFT and inter-token latency
   percentiles are written to the result JSON.
2. `linearize chat` keeps its session across turns (two replies, context grows).
3. kill -9 mid-stream, restart: sessions persisted before the kill resume with
   the same state (two sessions with identical states give identical greedy
   continuations after the restart, and tokens_seen is what it was).
4. Prometheus metrics (vLLM names) are exposed on /metrics.

usage: inference_test.py BUILD_DIR PYTHON_STUBS_DIR SESSIONS SECONDS [RESULT_JSON]
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

build, stubs, sessions, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
result_path = sys.argv[5] if len(sys.argv) > 5 else None
sys.path.insert(0, stubs)
import grpc  # noqa: E402
from linearize.v1 import inference_service_pb2 as pb  # noqa: E402
from linearize.v1 import inference_service_pb2_grpc as pb_grpc  # noqa: E402

SERVER = os.path.join(build, "services/inference/linearize-inference")
LOADGEN = os.path.join(build, "bench/linearize-loadgen")
WRITER = os.path.join(build, "tests/integration/write_tiny_model")
CLI = os.path.join(build, "services/cli/linearize")

tmp = tempfile.mkdtemp(prefix="inference_it_")
root = os.path.join(tmp, "root")
os.makedirs(os.path.join(root, "tiny"))
subprocess.run([WRITER, os.path.join(root, "tiny"), "lolcats"], check=True)
state = os.path.join(tmp, "state")


def start():
    ready = os.path.join(tmp, "ready.json")
    if os.path.exists(ready):
        os.remove(ready)
    log = open(os.path.join(tmp, "server.log"), "a")
    proc = subprocess.Popen(
        [SERVER, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
         "--artifact-root", root, "--state-dir", state, "--load", "tiny=" + os.path.join(root, "tiny"),
         "--persist-seconds", "1", "--ready-file", ready],
        stdout=log, stderr=log)
    for _ in range(600):
        if os.path.exists(ready):
            ports = json.load(open(ready))
            return proc, ports["port"], ports["metrics_port"]
        if proc.poll() is not None:
            sys.exit("server exited early:\n" + open(os.path.join(tmp, "server.log")).read())
        time.sleep(0.1)
    sys.exit("server did not become ready")


def generate(stub, session, prompt, n=8):
    req = pb.GenerateRequest(session_id=session, prompt=prompt,
                             sampling=pb.SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
    ids, end = [], None
    for msg in stub.Generate(req, timeout=60):
        if msg.HasField("delta"):
            ids.extend(msg.delta.token_ids)
        else:
            end = msg.end
    return ids, end


failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


proc, port, metrics_port = start()
addr = f"127.0.0.1:{port}"

# 1. Load.
load_json = os.path.join(tmp, "load.json")
rc = subprocess.run([LOADGEN, "--server", addr, "--model", "tiny", "--sessions", str(sessions),
                     "--seconds", str(seconds), "--out", load_json]).returncode
load = json.load(open(load_json))
check(rc == 0 and load["errors"] == 0, f"load: {load['requests']} generations, {load['errors']} errors")
check(load["time_to_first_token_seconds"]["count"] > 0, "load: TTFT recorded")
if result_path:
    with open(result_path, "w") as f:
        json.dump(load, f, indent=2)

# 2. The chat CLI keeps its session.
chat = subprocess.run([CLI, "chat", "tiny", "--server", addr, "--max-tokens", "6"],
                      input="hello there\nand again\n", capture_output=True, text=True, timeout=120)
contexts = [int(line.split("context ")[1].split(" ")[0]) for line in chat.stderr.splitlines()
            if "context " in line]
check(chat.returncode == 0 and len(contexts) == 2 and contexts[1] > contexts[0],
      f"chat CLI: two turns on one session, context {contexts}")

# 4. Metrics.
text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
for name in ["linearize_inference_time_to_first_token_seconds_bucket",
             "linearize_inference_inter_token_latency_seconds_bucket",
             "linearize_inference_generation_tokens_total", "linearize_inference_batch_size_bucket",
             'linearize_inference_state_bytes{where="resident"}']:
    check(name in text, "metrics: " + name)

# 3. kill -9 mid-stream, restart, resume.
channel = grpc.insecure_channel(addr)
stub = pb_grpc.InferenceServiceStub(channel)
a = stub.CreateSession(pb.CreateSessionRequest(model_name="tiny"), timeout=30)
generate(stub, a.session_id, "remember this")
b = stub.ForkSession(pb.ForkSessionRequest(session_id=a.session_id), timeout=30)
seen = stub.GetSession(pb.GetSessionRequest(session_id=a.session_id)).tokens_seen
time.sleep(2.5)  # persisted (every second)
c = stub.CreateSession(pb.CreateSessionRequest(model_name="tiny"), timeout=30)
streaming = threading.Event()


def long_stream():
    try:
        req = pb.GenerateRequest(session_id=c.session_id, prompt="go",
                                 sampling=pb.SamplingParams(max_tokens=100000, ignore_eos=True))
        for _ in stub.Generate(req, timeout=60):
            streaming.set()
    except grpc.RpcError:
        pass


t = threading.Thread(target=long_stream)
t.start()
streaming.wait(30)
proc.send_signal(signal.SIGKILL)
proc.wait()
t.join()
channel.close()
proc, port, metrics_port = start()
channel = grpc.insecure_channel(f"127.0.0.1:{port}")
stub = pb_grpc.InferenceServiceStub(channel)
after = stub.GetSession(pb.GetSessionRequest(session_id=a.session_id))
check(after.tokens_seen == seen and after.state == pb.SESSION_STATE_SPILLED,
      f"restart: session persisted before kill -9 is back (tokens_seen {after.tokens_seen} == {seen})")
ids_a, _ = generate(stub, a.session_id, " next")
ids_b, _ = generate(stub, b.session_id, " next")
check(len(ids_a) == 8 and ids_a == ids_b, "restart: resumed sessions continue identically")
proc.send_signal(signal.SIGTERM)
check(proc.wait(timeout=60) == 0, "SIGTERM: graceful exit 0")
if failures:
    print(open(os.path.join(tmp, "server.log")).read()[-3000:])
    sys.exit(f"{len(failures)} checks failed")
subprocess.run(["rm", "-rf", tmp])
print("all inference integration checks passed")
