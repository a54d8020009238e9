#include "common/model/decode_graph.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

#ifdef LINEARIZE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace linearize::model {

struct DecodeGraph::Impl {
  const LlamaModel* model = nullptr;
  Memory* memory = nullptr;
  at::Tensor ids;        // [B, 1] int64 on the GPU: the replay's input
  at::Tensor positions;  // [B] int64 on the GPU: each row's RoPE position
  at::Tensor logits;     // [B, V] float32, rewritten by every replay
#ifdef LINEARIZE_WITH_CUDA
  // Kept after instantiation so that its kernels can be counted.
  at::cuda::CUDAGraph graph{/*keep_graph=*/true};
#endif
  int64_t kernels = 0;
};

#ifdef LINEARIZE_WITH_CUDA
namespace {

int64_t CountKernels(cudaGraph_t graph) {
  size_t n = 0;
  if (cudaGraphGetNodes(graph, nullptr, &n) != cudaSuccess) return 0;
  std::vector<cudaGraphNode_t> nodes(n);
  if (cudaGraphGetNodes(graph, nodes.data(), &n) != cudaSuccess) return 0;
  int64_t kernels = 0;
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type;
    if (cudaGraphNodeGetType(node, &type) == cudaSuccess && type == cudaGraphNodeTypeKernel) {
      ++kernels;
    }
  }
  return kernels;
}

}  // namespace
#endif

DecodeGraph::DecodeGraph(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
int64_t DecodeGraph::kernels_per_step() const { return impl_->kernels; }
DecodeGraph::~DecodeGraph() = default;

absl::StatusOr<std::unique_ptr<DecodeGraph>> DecodeGraph::Capture(const LlamaModel& model,
                                                                  Memory* memory) {
#ifndef LINEARIZE_WITH_CUDA
  (void)model;
  (void)memory;
  return absl::UnimplementedError("DecodeGraph: this build has no CUDA");
#else
  if (!model.recurrent()) {
    return absl::FailedPreconditionError(
        "DecodeGraph: the model keeps a KV cache, whose length changes every step");
  }
  if (!model.device().is_cuda()) {
    return absl::FailedPreconditionError("DecodeGraph: the model is not on a CUDA device");
  }
  if (memory == nullptr || static_cast<int64_t>(memory->num_layers()) != model.num_layers()) {
    return absl::InvalidArgumentError("DecodeGraph: the memory was not made by this model");
  }
  auto impl = std::make_unique<Impl>();
  impl->model = &model;
  impl->memory = memory;
  const int64_t b = memory->batch();
  const auto longs = at::TensorOptions().dtype(at::kLong).device(model.device());
  impl->ids = at::zeros({b, 1}, longs);
  impl->positions = at::full({b}, memory->position(), longs);

  const at::NoGradGuard no_grad;
  const c10::cuda::CUDAGuard device_guard(model.device());
  // Capture needs a stream other than the legacy default one; it starts once
  // the current stream's work (the memory's last update) is done.
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
  at::cuda::CUDAEvent ready;
  ready.record(at::cuda::getCurrentCUDAStream());
  ready.block(side);
  const c10::cuda::CUDAStreamGuard stream_guard(side);
  bool capturing = false;
  try {
    // Lazy initialisation (cuBLAS workspaces, kernel attributes) must happen
    // before capture; a copy of the memory takes these steps.
    {
      std::unique_ptr<Memory> scratch = memory->Clone();
      for (int i = 0; i < 2; ++i) {
        model.LmHead(model.HiddenUnchecked(impl->ids, scratch.get(), impl->positions));
      }
      side.synchronize();
    }
    impl->graph.capture_begin();
    capturing = true;
    // Capture records the kernels without running them: the state does not
    // move, but the host-side position does (undone below).
    impl->logits =
        model.LmHead(model.HiddenUnchecked(impl->ids, memory, impl->positions)).view({b, -1});
    capturing = false;
    impl->graph.capture_end();
    impl->kernels = CountKernels(impl->graph.raw_cuda_graph());
    impl->graph.instantiate();
  } catch (const c10::Error& e) {
    if (capturing) {  // end the broken capture so the stream is usable again
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(side.stream(), &broken);
      if (broken != nullptr) cudaGraphDestroy(broken);
      (void)cudaGetLastError();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "DecodeGraph: the decode step cannot be captured: ", e.what_without_backtrace()));
  }
  memory->Advance(-1);
  at::cuda::getCurrentCUDAStream().synchronize();
  return std::unique_ptr<DecodeGraph>(new DecodeGraph(std::move(impl)));
#endif
}

absl::StatusOr<at::Tensor> DecodeGraph::Step(const at::Tensor& ids) {
  const int64_t b = impl_->memory->batch();
  if (!ids.defined() || ids.numel() != b || ids.scalar_type() != at::kLong) {
    return absl::InvalidArgumentError(
        absl::StrCat("DecodeGraph::Step: ids must be ", b, " int64 token ids"));
  }
#ifdef LINEARIZE_WITH_CUDA
  impl_->ids.view({-1}).copy_(ids.reshape({-1}));
  impl_->positions.fill_(impl_->memory->position());
  impl_->graph.replay();
  impl_->memory->Advance(1);
  return impl_->logits;
#else
  return absl::UnimplementedError("DecodeGraph: this build has no CUDA");
#endif
}

}  // namespace linearize::model
