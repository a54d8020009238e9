"""The generated Python stubs of the linearize v1 API import and work.

Checks every service and method (with its streaming kind) against the agreed
API, round-trips representative messages, and calls a unary, a
server-streaming and a bidi-streaming RPC through a real grpc.server on a
loopback port.

Run by ctest (tests/unit/proto/CMakeLists.txt) with the project venv's python:
    python test_python_stubs.py <dir with the generated linearize/ package>
The directory may also come from $LINEARIZE_PYTHON_STUBS.
"""

import os
import sys
import unittest
from concurrent import futures

if __name__ == "__main__":
    _stubs = sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("LINEARIZE_PYTHON_STUBS")
    if not _stubs or not os.path.isdir(os.path.join(_stubs, "linearize", "v1")):
        sys.exit(f"no generated stubs in {_stubs!r}: build target linearize_proto_python")
    sys.path.insert(0, _stubs)

import grpc  # noqa: E402
from linearize.v1 import common_pb2  # noqa: E402
from linearize.v1 import conversion_pb2  # noqa: E402
from linearize.v1 import evaluation_service_pb2 as eval_pb2  # noqa: E402
from linearize.v1 import evaluation_service_pb2_grpc as eval_grpc  # noqa: E402
from linearize.v1 import inference_service_pb2 as inf_pb2  # noqa: E402
from linearize.v1 import inference_service_pb2_grpc as inf_grpc  # noqa: E402
from linearize.v1 import job_service_pb2 as job_pb2  # noqa: E402
from linearize.v1 import job_service_pb2_grpc as job_grpc  # noqa: E402
from linearize.v1 import worker_service_pb2 as worker_pb2  # noqa: E402
from linearize.v1 import worker_service_pb2_grpc as worker_grpc  # noqa: E402

UNARY, SERVER_STREAM, BIDI = "unary", "server-stream", "bidi"

EXPECTED = {
    (job_pb2, job_grpc, "JobService"): {
        "SubmitConversion": UNARY, "GetJob": UNARY, "ListJobs": UNARY,
        "WatchJob": SERVER_STREAM, "CancelJob": UNARY, "GetJobLogs": UNARY,
    },
    (worker_pb2, worker_grpc, "WorkerService"): {
        "RegisterWorker": UNARY, "LeaseTask": UNARY, "Heartbeat": UNARY,
        "CompleteTask": UNARY, "FailTask": UNARY, "DeregisterWorker": UNARY,
    },
    (eval_pb2, eval_grpc, "EvaluationService"): {
        "Evaluate": SERVER_STREAM, "GetReport": UNARY, "CancelEvaluation": UNARY,
    },
    (inf_pb2, inf_grpc, "InferenceService"): {
        "ListModels": UNARY, "LoadModel": UNARY, "UnloadModel": UNARY,
        "CreateSession": UNARY, "GetSession": UNARY, "ListSessions": UNARY,
        "ForkSession": UNARY, "SnapshotSession": UNARY, "RestoreSession": UNARY,
        "DeleteSession": UNARY, "Generate": SERVER_STREAM, "Chat": BIDI,
    },
}

CREATE_LIKE = [
    job_pb2.SubmitConversionRequest, eval_pb2.EvaluateRequest,
    worker_pb2.RegisterWorkerRequest, inf_pb2.LoadModelRequest,
    inf_pb2.CreateSessionRequest, inf_pb2.ForkSessionRequest,
    inf_pb2.RestoreSessionRequest,
]


def kind_of(method):
    if method.client_streaming and method.server_streaming:
        return BIDI
    if method.server_streaming:
        return SERVER_STREAM
    return "client-stream" if method.client_streaming else UNARY


class ServiceShapeTest(unittest.TestCase):
    def test_services_and_methods(self):
        for (module, _, service_name), methods in EXPECTED.items():
            service = module.DESCRIPTOR.services_by_name[service_name]
            self.assertEqual(service.full_name, "linearize.v1." + service_name)
            self.assertEqual(set(service.methods_by_name), set(methods), service_name)
            for name, kind in methods.items():
                self.assertEqual(kind_of(service.methods_by_name[name]), kind,
                                 f"{service_name}.{name}")

    def test_stub_and_servicer_classes_exist(self):
        for (_, grpc_module, service_name), methods in EXPECTED.items():
            servicer = getattr(grpc_module, service_name + "Servicer")
            for name in methods:
                self.assertTrue(callable(getattr(servicer, name)), f"{service_name}.{name}")
            self.assertTrue(callable(getattr(grpc_module, service_name + "Stub")))
            self.assertTrue(callable(getattr(grpc_module, f"add_{service_name}Servicer_to_server")))

    def test_create_like_requests_have_request_id(self):
        for message in CREATE_LIKE:
            field = message.DESCRIPTOR.fields_by_name.get("request_id")
            self.assertIsNotNone(field, message.DESCRIPTOR.full_name)
            self.assertEqual(field.type, field.TYPE_STRING, message.DESCRIPTOR.full_name)


class RoundTripTest(unittest.TestCase):
    def test_submit_conversion_request(self):
        req = job_pb2.SubmitConversionRequest(
            spec=conversion_pb2.ConversionSpec(
                teacher=common_pb2.ModelRef(model_name="smollm2-135m-instruct"),
                recipe=conversion_pb2.Recipe(
                    kind=common_pb2.RECIPE_KIND_LIZARD,
                    lizard=conversion_pb2.LizardParams(window_size=128, meta_memory_tokens=4),
                    finetune=conversion_pb2.FinetuneParams(
                        lora=conversion_pb2.LoraParams(rank=8, alpha=16.0, dropout=0.0,
                                                       target_modules=["q_proj", "k_proj"])),
                ),
                data=conversion_pb2.DataSpec(train=[common_pb2.TextSource(
                    path="datasets/a.jsonl", fields=common_pb2.JsonlFields(text="body"))]),
            ),
            priority=3, labels={"team": "research"}, request_id="req-1",
        )
        wire = req.SerializeToString()
        out = job_pb2.SubmitConversionRequest.FromString(wire)
        self.assertEqual(out, req)
        self.assertEqual(out.spec.recipe.WhichOneof("params"), "lizard")
        self.assertTrue(out.spec.recipe.finetune.lora.HasField("dropout"))
        self.assertFalse(out.spec.recipe.finetune.training.HasField("learning_rate"))
        self.assertEqual(out.labels["team"], "research")

    def test_generate_response_and_snapshot(self):
        resp = inf_pb2.GenerateResponse(end=inf_pb2.GenerationEnd(
            finish_reason=inf_pb2.FINISH_REASON_STOP, matched_stop="\n\n",
            usage=inf_pb2.Usage(prompt_tokens=5, completion_tokens=7, cached_tokens=100)))
        out = inf_pb2.GenerateResponse.FromString(resp.SerializeToString())
        self.assertEqual(out.WhichOneof("event"), "end")
        self.assertEqual(out.end.usage.cached_tokens, 100)
        blob = bytes(range(256)) * 64
        snap = inf_pb2.SessionSnapshot(format_version=1, data=blob, tokens_seen=42)
        self.assertEqual(inf_pb2.SessionSnapshot.FromString(snap.SerializeToString()).data, blob)

    def test_parses_hand_encoded_wire_bytes(self):
        # Bytes a C++ or any other proto3 encoder produces for
        # Job{job_id: "j", state: JOB_STATE_RUNNING}: field 1 (len) then
        # field 5 (varint 2).
        job = job_pb2.Job.FromString(b"\x0a\x01j\x28\x02")
        self.assertEqual(job.job_id, "j")
        self.assertEqual(job.state, job_pb2.JOB_STATE_RUNNING)


class JobServicer(job_grpc.JobServiceServicer):
    def GetJob(self, request, context):
        if request.job_id != "job-1":
            context.abort(grpc.StatusCode.NOT_FOUND, f"job_id: no job {request.job_id!r}")
        return job_pb2.Job(job_id="job-1", state=job_pb2.JOB_STATE_QUEUED)


class InferenceServicer(inf_grpc.InferenceServiceServicer):
    def Generate(self, request, context):
        for word in request.prompt.split():
            yield inf_pb2.GenerateResponse(delta=inf_pb2.TokenDelta(text=word.upper()))
        yield inf_pb2.GenerateResponse(end=inf_pb2.GenerationEnd(
            finish_reason=inf_pb2.FINISH_REASON_LENGTH))

    def Chat(self, request_iterator, context):
        turn = 0
        for req in request_iterator:
            which = req.WhichOneof("request")
            if turn == 0 and which != "start":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first ChatRequest must be start")
            if which == "start":
                yield inf_pb2.ChatResponse(turn=0, started=inf_pb2.Session(
                    session_id=req.start.session_id, state=inf_pb2.SESSION_STATE_ACTIVE))
                turn = 1
            elif which == "input":
                yield inf_pb2.ChatResponse(turn=turn, delta=inf_pb2.TokenDelta(
                    text=req.input.text[::-1]))
                yield inf_pb2.ChatResponse(turn=turn, end=inf_pb2.GenerationEnd(
                    finish_reason=inf_pb2.FINISH_REASON_STOP))
                turn += 1


class LoopbackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        job_grpc.add_JobServiceServicer_to_server(JobServicer(), cls.server)
        inf_grpc.add_InferenceServiceServicer_to_server(InferenceServicer(), cls.server)
        port = cls.server.add_insecure_port("127.0.0.1:0")
        assert port > 0
        cls.server.start()
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.stop(grace=None)

    def test_unary(self):
        stub = job_grpc.JobServiceStub(self.channel)
        job = stub.GetJob(job_pb2.GetJobRequest(job_id="job-1"), timeout=30)
        self.assertEqual(job.state, job_pb2.JOB_STATE_QUEUED)
        with self.assertRaises(grpc.RpcError) as err:
            stub.GetJob(job_pb2.GetJobRequest(job_id="nope"), timeout=30)
        self.assertEqual(err.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as err:
            stub.CancelJob(job_pb2.CancelJobRequest(job_id="job-1"), timeout=30)
        self.assertEqual(err.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_server_streaming(self):
        stub = inf_grpc.InferenceServiceStub(self.channel)
        events = list(stub.Generate(
            inf_pb2.GenerateRequest(session_id="s", prompt="a bc"), timeout=30))
        self.assertEqual([e.WhichOneof("event") for e in events], ["delta", "delta", "end"])
        self.assertEqual("".join(e.delta.text for e in events), "ABC")
        self.assertEqual(events[-1].end.finish_reason, inf_pb2.FINISH_REASON_LENGTH)

    def test_bidi_streaming(self):
        stub = inf_grpc.InferenceServiceStub(self.channel)
        requests = [
            inf_pb2.ChatRequest(start=inf_pb2.ChatStart(session_id="sess-1")),
            inf_pb2.ChatRequest(input=inf_pb2.ChatInput(text="abc")),
            inf_pb2.ChatRequest(input=inf_pb2.ChatInput(text="xy")),
        ]
        responses = list(stub.Chat(iter(requests), timeout=30))
        self.assertEqual([(r.turn, r.WhichOneof("event")) for r in responses],
                         [(0, "started"), (1, "delta"), (1, "end"), (2, "delta"), (2, "end")])
        self.assertEqual(responses[1].delta.text, "cba")
        with self.assertRaises(grpc.RpcError) as err:
            list(stub.Chat(iter([requests[1]]), timeout=30))
        self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


if __name__ == "__main__":
    unittest.main(verbosity=2)
