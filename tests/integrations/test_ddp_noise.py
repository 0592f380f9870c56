"""The DDP communication hook of svag.integrations.ddp (issue 25): 2 gloo processes on the CPU, float64,
a linear model with B = 2 × 4 samples; the hook's (Ĝ, N̂) equals from_microbatches of the two ranks' local
gradients computed apart (1e-10), and the training step equals plain DDP's (1e-12)."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn


def _worker(rank, init, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    from svag.integrations.ddp import register_noise_hook
    from svag.noise import from_microbatches

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    plain = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    plain.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 1, generator=g, dtype=torch.float64)
    local = [list(torch.autograd.grad(nn.functional.mse_loss(model(x[r * 4 : r * 4 + 4]), y[r * 4 : r * 4 + 4]),
                                      list(model.parameters()))) for r in range(2)]  # fmt: skip
    want = from_microbatches(local)
    ddp = nn.parallel.DistributedDataParallel(model)
    noise = register_noise_hook(ddp)
    nn.functional.mse_loss(ddp(x[rank * 4 : rank * 4 + 4]), y[rank * 4 : rank * 4 + 4]).backward()
    got = noise.result(ddp.parameters())
    ref = nn.parallel.DistributedDataParallel(plain)
    nn.functional.mse_loss(ref(x[rank * 4 : rank * 4 + 4]), y[rank * 4 : rank * 4 + 4]).backward()
    same = all(
        torch.allclose(p.grad, q.grad, rtol=1e-12, atol=0) for p, q in zip(model.parameters(), plain.parameters())
    )
    out.put((rank, got, want, same))
    dist.barrier()  # neither rank tears gloo down while the other still talks to it (else: std::terminate at exit)
    dist.destroy_process_group()


def test_hook_gives_from_microbatches_of_the_ranks(tmp_path):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, f"file://{tmp_path}/store", out)) for r in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for _, got, want, same in results:
        assert tuple(got) == __import__("pytest").approx(want, rel=1e-10)
        assert same
