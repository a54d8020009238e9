# CPU emulation (float64, bf16 rounding where the kernels round) of the
# gated d_k / d_v kernel's d_k: Lizard's gated branch, normalised, Hedgehog
# features, two query heads on one kv head, chunks of 64, d_k through the
# map's backward. For each seed it gives d_k's relative error against float64
# (max |a - b| / max |b|, as the GPU tests judge) with every rounding of the
# kernel, and with one of them taken away:
#   d_den, u  the row terms added to the products (bf16 until session 35);
#   dS        the gradient state, a bf16 operand of V dS^T;
#   d_num     dy / z, a bf16 operand;
#   A'        the chunk's scores, a bf16 operand of A'^T Q.
#   .venv/bin/python bench/gated_dk_rounding_sim.py [seeds]
import math
import sys

import torch

torch.set_default_dtype(torch.float64)
bf = lambda x: x.to(torch.bfloat16).to(torch.float64)
D, FH, C, T, HQ = 128, 64, 64, 333, 2


def hedgehog(x, w):
    l = x @ w
    return torch.cat([torch.softmax(l, -1), torch.softmax(-l, -1)], -1)


def hedgehog_dx(phi, w, d_phi):  # through both softmaxes
    p1, p2, d1, d2 = phi[:, :FH], phi[:, FH:], d_phi[:, :FH], d_phi[:, FH:]
    dl = p1 * (d1 - (p1 * d1).sum(-1, keepdim=True)) - p2 * (d2 - (p2 * d2).sum(-1, keepdim=True))
    return dl @ w.T


def run(seed):
    g0 = torch.Generator().manual_seed(seed)
    randn = lambda *s: torch.randn(*s, generator=g0)
    k, v = bf(randn(T, D)), bf(randn(T, D))
    wk = randn(D, FH) / math.sqrt(D)
    qs = [(bf(randn(T, D)), randn(D, FH) / math.sqrt(D)) for _ in range(HQ)]
    gates = torch.nn.functional.logsigmoid(randn(T) + 3)
    dys = [randn(T, D) for _ in range(HQ)]
    G = torch.cumsum(gates, 0)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    dec = torch.where(causal, torch.exp(G[:, None] - G[None, :]), torch.zeros(()))
    phi_k = hedgehog(k, wk)

    def d_k(exact, round_dden=True, round_dS=True, round_dnum=True, round_a=True):
        pk = phi_k if exact else bf(phi_k)
        d_phi = torch.zeros(T, 2 * FH)
        for (q, wq), dy in zip(qs, dys):
            pq = hedgehog(q, wq) if exact else bf(hedgehog(q, wq))
            dy = dy if exact else bf(dy)
            s = (pq @ pk.T) * dec
            num, z = s @ v, s.sum(-1) + 1e-6
            d_num = dy / z[:, None]
            d_den = -(dy * num).sum(-1) / z**2
            if exact:
                d_phi += ((d_num @ v.T + d_den[:, None]) * dec).T @ pq
                continue
            if round_dnum:
                d_num = bf(d_num)
            dd = bf(d_den) if round_dden else d_den
            dS, u = torch.zeros(2 * FH, D), torch.zeros(2 * FH)
            for c in reversed(range((T + C - 1) // C)):
                lo, hi = c * C, min(T, c * C + C)
                k_dec = torch.exp(G[hi - 1] - G[lo:hi])
                S_op = bf(dS) if round_dS else dS
                u_op = bf(u) if round_dden else u
                a = (d_num[lo:hi] @ v[lo:hi].T + dd[lo:hi, None]) * dec[lo:hi, lo:hi]
                a = bf(a) if round_a else a
                d_phi[lo:hi] += k_dec[:, None] * (v[lo:hi] @ S_op.T + u_op) + a.T @ pq[lo:hi]
                g_start = G[lo - 1] if lo > 0 else torch.zeros(())
                q_t = bf(pq[lo:hi] * torch.exp(G[lo:hi] - g_start)[:, None])  # q~, bf16
                chunk_dec = torch.exp(G[hi - 1] - g_start)
                dS = dS * chunk_dec + q_t.T @ d_num[lo:hi]
                u = u * chunk_dec + q_t.T @ dd[lo:hi]
        return hedgehog_dx(phi_k if exact else bf(phi_k), wk, d_phi)

    ref = d_k(True)
    err = lambda x: ((x - ref).abs().max() / ref.abs().max()).item()
    return [err(d_k(False)), err(d_k(False, round_dden=False)), err(d_k(False, round_dS=False)),
            err(d_k(False, round_dnum=False)), err(d_k(False, round_a=False))]


if __name__ == "__main__":
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    cols = ["every rounding", "d_den, u float", "dS float", "d_num float", "A' float"]
    print("seed " + " ".join(f"{c:>15s}" for c in cols))
    rows = [run(s) for s in range(seeds)]
    for s, r in enumerate(rows):
        print(f"{s:4d} " + " ".join(f"{x:15.4g}" for x in r))
    for name, f in (("mean", lambda xs: sum(xs) / len(xs)), ("max", max)):
        print(f"{name:>4s} " + " ".join(f"{f([r[i] for r in rows]):15.4g}" for i in range(len(cols))))
