"""GradNorm's closed-form norms on a last shared nn.Linear (mtldiag.engine.linear_norms).

Each value is checked against a peer computation: the per-task partial ``autograd.grad`` the
step core used before (``_partial_norms``), the plain backward's ``.grad`` and GradNorm's
weights trajectory with the hook removed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtldiag import GradientProbe, methods
from mtldiag.engine import step as step_module
from mtldiag.engine.linear_norms import linear_capture, linear_norm_pass, squared_norms
from mtldiag.engine.step import _partial_norms


class Net(nn.Module):
    """Trunk ending in ``trunk.2`` (the layer GradNorm normalises on), three heads."""

    def __init__(self, bias: bool = True, last: nn.Module | None = None, d_in: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        end = last if last is not None else nn.Linear(12, 8, bias=bias)
        self.trunk = nn.Sequential(nn.Linear(d_in, 12), nn.ReLU(), end, nn.ReLU())
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 1)) for _ in range(3)
        )

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        h = self.trunk(x)
        return [
            ((hd(h).squeeze(-1) - y[:, i]) ** 2).mean() * (i + 1) for i, hd in enumerate(self.heads)
        ]


def data(n: int, seed: int = 0, d_in: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g), torch.randn(n, 3, generator=g)


def last_params(net: Net) -> list[torch.Tensor]:
    layer = net.trunk[2]
    return [p for p in (layer.weight, layer.bias) if p is not None]


def shared_and_heads(net: Net) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return list(net.trunk.parameters()), list(net.heads.parameters())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n", [3, 9, 12, 40])  # N < in, N ~ in, N = in, N > in (direct form)
def test_norms_and_update_equal_the_partial_path(bias: bool, n: int) -> None:
    net = Net(bias)
    shared, heads = shared_and_heads(net)
    cap = linear_capture(net, last_params(net), [*shared, *heads])
    assert cap is not None
    w = torch.tensor([0.6, 1.7, 0.7])
    losses = net.losses(*data(n))
    assert cap.usable()
    expected = _partial_norms(losses, last_params(net))
    got = linear_norm_pass(cap, losses, w, heads)
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=0)
    assert not cap.usable()  # consumed: the next step's forward captures afresh
    fast = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    (w * torch.stack(net.losses(*data(n)))).sum().backward()
    for a, b in zip(fast, net.parameters(), strict=True):
        assert torch.equal(a, b.grad)  # the plain step's update, bit for bit


@pytest.mark.parametrize("n", [20, 64, 150])  # one block, exactly one, a partial last block
def test_block_triangle_equals_the_direct_products(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, 256, generator=g).relu()
    gs = [torch.randn(n, 256, generator=g) for _ in range(3)]
    assert n * (256 + 3 * 256) < 3 * 256 * 256  # the N x N branch is the one taken
    direct = torch.stack([(gi.double().t() @ x.double()).pow(2).sum() for gi in gs])
    torch.testing.assert_close(squared_norms(x, gs), direct, rtol=1e-5, atol=0)


class Scaled(nn.Linear):
    """A Linear subclass whose forward differs: the closed form would be wrong for it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


@pytest.mark.parametrize(
    "last", [nn.Bilinear(12, 12, 8), Scaled(12, 8)], ids=["not_linear", "subclass"]
)
def test_no_capture_on_a_layer_that_is_not_exactly_linear(last: nn.Module) -> None:
    net = Net()
    net.trunk[2] = last
    params = [p for p in last.parameters()]
    assert linear_capture(net, params, list(net.parameters())) is None


def test_no_capture_when_a_parameter_is_neither_shared_nor_a_head() -> None:
    net = Net()
    shared, heads = shared_and_heads(net)
    # The head passes would leave the first head's parameters without .grad.
    covered = [*shared, *heads[4:]]
    assert linear_capture(net, last_params(net), covered) is None


def test_capture_of_a_doubly_called_or_evaluation_forward_is_not_used() -> None:
    net = Net()
    cap = linear_capture(net, last_params(net), list(net.parameters()))
    assert cap is not None
    with torch.no_grad():
        net.losses(*data(4))
    assert not cap.usable()  # an evaluation forward is no training step's
    net.losses(*data(4))
    net.losses(*data(4))
    assert not cap.usable()  # two forwards before one step: which one is unknown
    cap.remove()
    net.losses(*data(4))
    assert not cap.usable()


def run_gradnorm(
    closed: bool, steps: int = 15, make: type[Net] | None = None
) -> tuple[list[list[float]], list[torch.Tensor]]:
    net = (make or Net)()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    trajectory = []
    with GradientProbe(net, every=4, method=methods.create("gradnorm")) as probe:
        for s in range(steps):
            opt.zero_grad()
            losses = dict(zip("abc", net.losses(*data(16, seed=s)), strict=True))
            step = probe.backward(losses)
            if s == 0:
                assert (probe.capture is not None) is True
                if not closed:
                    probe.capture.remove()
                    probe.capture = None
            opt.step()
            trajectory.append(list(probe.method.w))  # type: ignore[attr-defined]
            assert step.weights is not None
        capture = probe.capture
    if capture is not None:
        assert capture._handle is None  # the probe removed its hook on exit
    return trajectory, [p.detach().clone() for p in net.parameters()]


def test_gradnorm_trajectory_is_the_partial_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return linear_norm_pass(*args, **kwargs)

    monkeypatch.setattr(step_module, "linear_norm_pass", counted)
    fast, fast_params = run_gradnorm(closed=True)
    assert len(calls) == 11  # every plain step (the hook is set up on step 0, instrumented)
    exact, exact_params = run_gradnorm(closed=False)
    assert len(calls) == 11
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(exact), rtol=0, atol=1e-6)
    for a, b in zip(fast_params, exact_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_probe_falls_back_on_a_last_layer_that_is_not_linear() -> None:
    net = Net(last=nn.Bilinear(12, 12, 8))
    net.trunk[2].forward = lambda x, f=net.trunk[2].forward: f(x, x)  # type: ignore[method-assign]
    with GradientProbe(net, every=0, method=methods.create("gradnorm")) as probe:
        probe.backward(dict(zip("abc", net.losses(*data(8)), strict=True)))
        assert probe.capture is None
        probe.backward(dict(zip("abc", net.losses(*data(8, seed=1)), strict=True)))
        assert probe.method.w.sum().item() == pytest.approx(3.0)  # type: ignore[attr-defined]


def test_no_capture_on_a_weight_tied_into_a_second_module() -> None:
    net = Net()
    net.tied = nn.Linear(12, 8)  # type: ignore[assignment]
    net.tied.weight = net.trunk[2].weight  # its uses outside trunk.2 are not in Y
    assert linear_capture(net, last_params(net), list(net.parameters())) is None


class Around(Net):
    """A skip connection from the trunk around ``trunk.2`` into the heads."""

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        a = self.trunk[1](self.trunk[0](x))
        h = self.trunk[3](self.trunk[2](a) + a[:, :8])
        return [
            ((hd(h).squeeze(-1) - y[:, i]) ** 2).mean() * (i + 1) for i, hd in enumerate(self.heads)
        ]


class InPlace(Net):
    """An in-place ReLU on ``trunk.2``'s output: autograd's Y becomes the ReLU's."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk[3] = nn.ReLU(inplace=True)


@pytest.mark.parametrize("make", [Around, InPlace], ids=["skip", "in_place"])
def test_probe_falls_back_where_y_is_not_the_way_into_the_trunk(
    make: type[Net], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return linear_norm_pass(*args, **kwargs)

    monkeypatch.setattr(step_module, "linear_norm_pass", counted)
    hooked, hooked_params = run_gradnorm(closed=True, steps=6, make=make)
    assert calls == []  # the hook is installed, no step trusts it
    exact, exact_params = run_gradnorm(closed=False, steps=6, make=make)
    assert hooked == exact
    for a, b in zip(hooked_params, exact_params, strict=True):
        assert torch.equal(a, b)
