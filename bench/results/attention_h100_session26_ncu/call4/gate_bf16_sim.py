# CPU emulation (float64, bf16 rounding where the kernels round) of LoLCATs'
# hybrid: the saved y (bf16), Z and linear terms, and the window backward's
# closed form for the max's gradient, dc = dN . lin_num + dZ lin_den, which
# holds only while y Z = g sum a' v + lin_num. Compares d q's relative error
# against float64 autograd when the forward rounds the window weights as
# bf16(g a') (the fused training kernel up to session 25) or as g bf16(a')
# (the composed window kernel; the row max's weight a' = 1 stays exact), or
# as bf16(g a') with g itself rounded to bf16 first (gate-bf16: the fused
# training path since session 26; bf16(g 1) = g is exact again).
#   .venv/bin/python bench/lolcats_window_rounding_sim.py [seeds]
# Session 25: up to 2.5x worse d q from bf16(g a') (30 seeds, T = 333).
# Session 26, 30 seeds: mean / max d q error fused 0.135% / 0.265%,
# gate-after 0.117% / 0.206%, gate-bf16 0.119% / 0.163%.
import torch, math, sys
torch.set_default_dtype(torch.float64)
bf = lambda x: x.to(torch.bfloat16).to(torch.float64)

def hedgehog(x, w):
    l = x @ w
    return torch.cat([torch.softmax(l, -1), torch.softmax(-l, -1)], -1)

def run(seed, T=333, D=128, Fh=64, W=64, mode="fused"):
    g0 = torch.Generator().manual_seed(seed)
    q = bf(torch.randn(T, D, generator=g0)); k = bf(torch.randn(T, D, generator=g0)); v = bf(torch.randn(T, D, generator=g0))
    wq = bf(torch.randn(D, Fh, generator=g0) / math.sqrt(D)); wk = bf(torch.randn(D, Fh, generator=g0) / math.sqrt(D))
    gate = torch.sigmoid(torch.randn((), generator=g0))
    dy = torch.randn(T, D, generator=g0)
    scale = 1 / math.sqrt(D)
    i = torch.arange(T)[:, None]; j = torch.arange(T)[None, :]
    win = (j <= i) & (j > i - W); lin = j <= i - W
    # exact (float64 autograd)
    qe = q.clone().requires_grad_(True)
    s = scale * qe @ k.T
    c = s.masked_fill(~win, -math.inf).max(-1, keepdim=True).values
    a = torch.exp(s - c).masked_fill(~win, 0)
    pq, pk = hedgehog(qe, wq), hedgehog(k, wk)
    A = (pq @ pk.T).masked_fill(~lin, 0)
    y = (gate * a @ v + A @ v) / (gate * a.sum(-1, keepdim=True) + A.sum(-1, keepdim=True))
    (y * dy).sum().backward()
    dq_exact = qe.grad.clone()
    # simulated kernels: saved y (bf16), Z, lin terms; closed-form window backward
    with torch.no_grad():
        s = scale * q @ k.T
        c = s.masked_fill(~win, -math.inf).max(-1, keepdim=True).values
        ap = torch.exp(s - c).masked_fill(~win, 0)  # a'
        if mode == "gate-bf16":  # the kernels' gate rounded to bf16 first: bf16(g 1) = g
            gate = bf(gate)
        pqb, pkb = bf(hedgehog(q, wq)), bf(hedgehog(k, wk))
        A = (pqb @ pkb.T).masked_fill(~lin, 0)
        lin_num = bf(A @ v); lin_den = A.sum(-1, keepdim=True)
        if mode in ("fused", "gate-bf16"):
            num_w = bf(gate * ap) @ v
        else:
            num_w = gate * (bf(ap) @ v)
        Z = gate * ap.sum(-1, keepdim=True) + lin_den
        y = bf((num_w + lin_num) / Z)
        dN = dy / Z; dZ = -(dy * y).sum(-1, keepdim=True) / Z
        t = gate * ap * (dN @ v.T + dZ)
        dc = (dN * lin_num).sum(-1, keepdim=True) + dZ * lin_den
        am = s.masked_fill(~win, -math.inf).argmax(-1)
        ds = t.clone(); ds[torch.arange(T), am] += dc[:, 0]
        dq_win = scale * ds @ k
    # linear part: d of (dN . lin_num + dZ lin_den) through phi_q, dN, dZ fixed
    qe = q.clone().requires_grad_(True)
    A = (hedgehog(qe, wq) @ pkb.T).masked_fill(~lin, 0)
    ((dN * (A @ v)).sum() + (dZ * A.sum(-1, keepdim=True)).sum()).backward()
    dq = dq_win + qe.grad
    return ((dq - dq_exact).norm() / dq_exact.norm()).item()

for seed in range(int(sys.argv[1]) if len(sys.argv) > 1 else 6):
    print(seed, "fused %.5f  gate-after %.5f  gate-bf16 %.5f" %
          tuple(run(seed, mode=m) for m in ("fused", "after", "gate-bf16")))
