"""Two-process gloo checks: gathered NT-Xent equals the single-process loss on the global batch.

Gradient bookkeeping, the thing these tests pin down. Let ``W`` be the world size, ``L_r`` the
loss rank ``r`` returns (the mean over its own ``2 n_r`` anchors, computed against the gathered
global batch) and ``G`` the single-process loss on the concatenated batch of ``N = sum n_r``
images. The gather's backward sums contributions over ranks, so after ``L_r.backward()`` rank
``r``'s local inputs hold ``g_r = sum_{r'} dL_{r'}/dx_r``. Parameter gradients are ``J_r^T g_r``
and DDP *averages* them over ranks, so DDP is correct iff ``g_r / W == dG/dx_r``.

* Equal batches: ``G = (1/W) sum_r L_r``, hence ``dG/dx_r = g_r / W``: the check is
  ``g_r / W == slice_r(dG/dx)`` and ``mean_r L_r == G``. A gather without the sum (only the
  local slice's gradient) misses the cross-rank terms; one that sums and is then scaled by ``W``
  again is off by a factor ``W`` -- both fail here.
* Unequal batches: ``G = sum_r (n_r / N) L_r``. Each rank backpropagates ``W (n_r / N) L_r``
  (the sample-weighted loss a caller would use to make DDP's average exact), and again
  ``g_r / W == slice_r(dG/dx)``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_talos import distributed as dist_utils
from lightning_talos.losses.ntxent import NTXentLoss
from lightning_talos.modules.window import WindowMeans

WORLD = 2
TEMPERATURE = 0.1
CASES = {"equal": [3, 3], "unequal": [3, 2]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        data = torch.load(os.path.join(out_dir, "inputs.pt"))
        results: dict[str, object] = {"world": dist_utils.world_size(), "rank": dist_utils.rank()}
        for case, sizes in CASES.items():
            start, n = sum(sizes[:rank]), sizes[rank]
            z0 = data[case]["z0"][start : start + n].clone().requires_grad_(True)
            z1 = data[case]["z1"][start : start + n].clone().requires_grad_(True)
            loss = NTXentLoss(TEMPERATURE, gather_distributed=True)(z0, z1)
            weight = WORLD * n / sum(sizes)  # 1 for equal batches
            (weight * loss).backward()
            results[case] = {"loss": loss.detach(), "g0": z0.grad, "g1": z1.grad}
        # Raw gather with unequal sizes: values in rank order, gradient summed over ranks.
        n = CASES["unequal"][rank]
        x = torch.full((n, 2), float(rank + 1), requires_grad=True)
        gathered = dist_utils.gather(x)
        weights = data["gather_weights"]
        (gathered * weights).sum().backward()
        results["gather"] = {"out": gathered.detach(), "grad": x.grad}
        # Step scalars: window means on each rank, then averaged over ranks in one all-reduce.
        window = WindowMeans()
        for step in range(3):
            window.add(loss=torch.tensor(10.0 * rank + step), lam=float(rank))
        results["window"] = window.pop()
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict]]:
    out_dir: Path = tmp_path_factory.mktemp("ddp")
    gen = torch.Generator().manual_seed(0)
    data: dict = {}
    for case, sizes in CASES.items():
        n = sum(sizes)
        # Rank-asymmetric inputs: every sample is different.
        data[case] = {
            "z0": torch.randn(n, 4, generator=gen),
            "z1": torch.randn(n, 4, generator=gen),
        }
    data["gather_weights"] = torch.randn(sum(CASES["unequal"]), 2, generator=gen)
    torch.save(data, out_dir / "inputs.pt")
    mp.start_processes(
        _worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True, start_method="spawn"
    )
    return data, [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def _single_process(z0: torch.Tensor, z1: torch.Tensor) -> tuple[torch.Tensor, ...]:
    z0 = z0.clone().requires_grad_(True)
    z1 = z1.clone().requires_grad_(True)
    loss = NTXentLoss(TEMPERATURE)(z0, z1)
    loss.backward()
    return loss.detach(), z0.grad, z1.grad


@pytest.mark.ddp
@pytest.mark.parametrize("case", list(CASES))
def test_ddp_loss_and_gradients_match_single_process(case: str, ddp_results: tuple) -> None:
    data, results = ddp_results
    sizes = CASES[case]
    n = sum(sizes)
    loss, g0, g1 = _single_process(data[case]["z0"], data[case]["z1"])
    rank_losses = [results[r][case]["loss"] for r in range(WORLD)]
    assert not torch.allclose(rank_losses[0], rank_losses[1])  # ranks really differ
    weighted = sum(sizes[r] / n * rank_losses[r] for r in range(WORLD))
    torch.testing.assert_close(weighted, loss)
    for r in range(WORLD):
        start = sum(sizes[:r])
        sl = slice(start, start + sizes[r])
        # DDP averages over ranks: the effective gradient is g_r / W.
        torch.testing.assert_close(results[r][case]["g0"] / WORLD, g0[sl])
        torch.testing.assert_close(results[r][case]["g1"] / WORLD, g1[sl])


@pytest.mark.ddp
def test_gather_unequal_sizes(ddp_results: tuple) -> None:
    data, results = ddp_results
    sizes = CASES["unequal"]
    expected = torch.cat([torch.full((m, 2), float(r + 1)) for r, m in enumerate(sizes)])
    weights = data["gather_weights"]
    for r in range(WORLD):
        assert results[r]["world"] == WORLD and results[r]["rank"] == r
        torch.testing.assert_close(results[r]["gather"]["out"], expected)
        # Both ranks' losses depend on every rank's x; the backward sums them: W * weights.
        start = sum(sizes[:r])
        torch.testing.assert_close(
            results[r]["gather"]["grad"], WORLD * weights[start : start + sizes[r]]
        )


@pytest.mark.ddp
def test_window_means_are_averaged_over_ranks(ddp_results: tuple) -> None:
    _, results = ddp_results
    # rank 0 steps 0,1,2 (mean 1), rank 1 steps 10,11,12 (mean 11): 6 over ranks.
    for r in range(WORLD):
        assert set(results[r]["window"]) == {"loss", "lam"}
        assert float(results[r]["window"]["loss"]) == pytest.approx(6.0)
        assert float(results[r]["window"]["lam"]) == pytest.approx(0.5)


def test_single_process_helpers() -> None:
    assert dist_utils.world_size() == 1 and dist_utils.rank() == 0
    x = torch.randn(3, 2)
    assert dist_utils.gather(x) is x
