// The chunked linear attention backward's d_q on wgmma
// (chunked_linear_wgmma.h): the forward's two-warpgroup pipeline
// (chunk_pipeline.cuh) with the d_q rows in place of the outputs.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/linear_attention/chunked_linear_bwd_params.h"
#include "kernels/linear_attention/sm90a/chunk_pipeline.cuh"
#include "kernels/linear_attention/sm90a/chunked_linear_wgmma.h"

namespace linearize::kernels {
namespace {

// The backward's d_q (chunked_linear_bwd_params.h) is the forward's two
// warpgroups with another outputs loop. The state warpgroup runs unchanged
// on the forward's keys and values: S = sum k^T v and z = sum k, decayed.
// The query tile holds d_num (bf16), or dy in the normalised form, which
// this warpgroup turns into d_num = dy / z in place; with d_den_i and
// q_dec_i = exp(b_i),
//   A'_ij = w_ij (d_num_i . v_j + d_den_i)            (j <= i)
//   d_q_i = q_dec_i (d_num_i S^T + d_den_i z) + sum_j A'_ij k_j.
// d_num and S are bf16 operands; d_den and z are added in float32, as the
// d_k / d_v kernel adds d_den and u: the products nearly cancel them in
// normalised attention, so their rounding would stay in full. The gates'
// gradient is the difference of q . d_q and that kernel's k . d_k, whose
// terms cancel only when both kernels round alike. (The mma.sync kernels
// still take d_den as a bf16 column; neither wgmma kernel runs beside them
// where both apply: BackwardCovered.)
struct DqArgs {
  // The forward's form: phi_q = d_num (or dy), workspace = the forward's
  // block states (blocks > 1), no outputs.
  ChunkedLinearParams fwd;
  const float* d_den;  // [B, H, T]
  const float* z;      // normalised: [B, H, T], else null
  const bf16* phi_q;   // [B, H, T, F], read for q_dot and logits
  void* d_q;           // [B, H, T, F] (F / 2 with logits), float32 or bf16 (d_q_bf16)
  bool d_q_bf16;
  float* q_dot;  // optional [B, H, T]: phi_q_i . d_q_i
  bool logits;   // d_q: the Hedgehog logits' gradient [B, H, T, F / 2]
};

// Warpgroup 0 of the d_q kernel: every chunk's d_q rows.
template <bool kGated>
__device__ void DqLoop(unsigned char* sm, const Ptrs& s, const DqArgs& args, int64_t bh) {
  const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const float* z_all = reinterpret_cast<const float*>(sm + kZ);
  for (int c = 0; c < s.n_chunks; ++c) {
    NextChunk<false>(sm, s, c);
    unsigned char* dout = sm + kQ + (c & 1) * kTile;
    const unsigned char* k = sm + kK + (c & 1) * kTile;
    const unsigned char* v = sm + kV + (c & 1) * kTile;
    const unsigned char* st = sm + kS + (c & 1) * kState;
    const float* z = z_all + (c & 1) * kF;
    const float* rows = reinterpret_cast<const float*>(sm + kRowScalars) + (c & 1) * 2 * kC;
    if (s.row_z != nullptr) {  // dy -> d_num, by this warpgroup alone
      DyToDnumInPlace(dout, rows + kC, 0, 128);
      wg::FenceProxyAsync();
      BarrierOutputs();
    }

    // A' = D V^T, then D S^T (both K-major over the value columns: V's
    // tile, and the state tile read as the K-major B [F][D]). d_den and z
    // are added in float32 (the header says why).
    float a[32], acc[64];
    IssueScoresAndStateT(a, acc, dout, v, st);
    float dd[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) dd[h] = rows[16 * warp + g + 8 * h];
    float q_dec[2] = {1.f, 1.f};
    float decays[kGated ? 32 : 1];  // the gates' weights, while the products run
    if constexpr (kGated) {
      ScoreDecays(reinterpret_cast<const float*>(sm + kGates) + (c & 1) * kC, decays, q_dec);
    }
    wg::Wait<1>();
    wg::FenceOperands(a);
#pragma unroll
    for (int i = 0; i < 32; ++i) a[i] += dd[(i / 2) % 2];
    if constexpr (kGated) ApplyDecays(a, decays);
    uint32_t af[4][4];
    MaskAndPack(a, af);
    wg::Wait<0>();
    wg::FenceOperands(acc);
#pragma unroll
    for (int j = 0; j < kF / 8; ++j) {
      const float2 zf = *reinterpret_cast<const float2*>(z + 8 * j + 2 * t);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float* x = acc + 4 * j + 2 * h;
        x[0] = q_dec[h] * fmaf(dd[h], zf.x, x[0]);
        x[1] = q_dec[h] * fmaf(dd[h], zf.y, x[1]);
      }
    }
    wg::FenceOperands(acc);
    wg::Fence();
#pragma unroll
    for (int kk = 0; kk < kC / 16; ++kk) {  // + A' K (K: MN-major, its rows the keys)
      wg::MmaAsyncRegAM64N128<1>(acc, af[kk], wg::Descriptor(k + kk * 16 * 128, kSlab, 1024), 1);
    }
    wg::Commit();
    wg::Wait<0>();
    wg::FenceOperands(acc);

    const unsigned char* phi_q = sm + kW + (c & 1) * kTile;
    if (args.logits) {
      int row[2];
      int64_t at[2];
      bool inside[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        row[h] = 16 * warp + g + 8 * h;
        const int64_t pos = (s.c_begin + c) * kC + row[h];
        inside[h] = pos < s.length;
        at[h] = (bh * s.length + pos) * (kF / 2);
      }
      StoreHedgehogLogits(acc, phi_q, args.d_q, args.d_q_bf16, row, at, inside, args.q_dot);
      continue;
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = 16 * warp + g + 8 * h;
      const int64_t pos = (s.c_begin + c) * kC + row;
      float dot = 0.f;
      if (pos < s.length) {
        const int64_t at = (bh * s.length + pos) * kF;
#pragma unroll
        for (int j = 0; j < kF / 8; ++j) {
          const float x0 = acc[4 * j + 2 * h], x1 = acc[4 * j + 2 * h + 1];
          tiles::StoreOut2(args.d_q, args.d_q_bf16, at + 8 * j + 2 * t, x0, x1);
          if (args.q_dot != nullptr) {
            const float2 f = TilePair(phi_q, row, 8 * j + 2 * t);
            dot += f.x * x0 + f.y * x1;
          }
        }
      }
      if (args.q_dot != nullptr) {
        dot += __shfl_xor_sync(0xffffffffu, dot, 1);
        dot += __shfl_xor_sync(0xffffffffu, dot, 2);
        if (pos < s.length && t == 0) args.q_dot[bh * s.length + pos] = dot;
      }
    }
  }
}

template <bool kGated>
__global__ void __launch_bounds__(kThreads, 1)
    ChunkedLinearDqWgmmaKernel(const __grid_constant__ DqArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  unsigned char* sm = Aligned1024(smem_raw);
  const ChunkedLinearParams& p = args.fwd;
  const int blk = blockIdx.x;
  const int64_t bh = int64_t(blockIdx.z) * p.heads + blockIdx.y;
  Ptrs s = PtrsOf(p, false, kGated);
  s.row_den = args.d_den + bh * p.length;
  s.row_z = args.z != nullptr ? args.z + bh * p.length : nullptr;
  s.q2 = args.q_dot != nullptr || args.logits ? args.phi_q + bh * p.length * kF : nullptr;
  IssueChunk(sm, s, 0, true, true, false);
  const bool entry = EntryStateToScratch(sm, p, bh, blk);
  BarrierAll();
  if (threadIdx.x < 128) {
    DqLoop<kGated>(sm, s, args, bh);
  } else {
    StateLoop<false, false, kGated>(sm, s, p, bh, blk, entry);
  }
#else
  __trap();  // wgmma needs the sm_90a target
#endif
}

}  // namespace

bool ChunkedLinearDqWgmmaSupported(const ChunkedLinearBwdParams& p) {
  return BackwardCovered(p) && p.d_q != nullptr;
}

const char* LaunchChunkedLinearDqWgmma(const ChunkedLinearBwdParams& p) {
  if (!ChunkedLinearDqWgmmaSupported(p)) {
    return "ChunkedLinearDqWgmma: not covered (ChunkedLinearDqWgmmaSupported)";
  }
  const bool normalised = p.d_num == nullptr;
  DqArgs args{};
  args.fwd = ForwardFormOf(p, normalised ? p.dy : p.d_num);
  args.fwd.workspace = const_cast<float*>(p.fwd_block_states);
  args.d_den = p.d_den;
  args.z = normalised ? p.z : nullptr;
  args.phi_q = static_cast<const bf16*>(p.phi_q);
  args.d_q = p.d_q;
  args.d_q_bf16 = p.d_q_bf16;
  args.q_dot = p.q_dot_dq;
  args.logits = p.hedgehog_logits;
  return LaunchBackward(
      p.log_gamma != nullptr ? ChunkedLinearDqWgmmaKernel<true> : ChunkedLinearDqWgmmaKernel<false>,
      args, p, kThreads, kBwdBytes);
}

}  // namespace linearize::kernels
