"""The shared training engine: optimizer, loop, stopping rules, inference."""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from skae._distributed import Replicas
from skae._engine import Trainer, Validation, fit_loop
from skae._inference import predict_in_chunks
from skae._optim import Adam, make_optimizer
from skae._sources import StreamingSource, TensorSource
from skae._stopping import TrainingDivergedError


def _network(seed=0):
    torch.manual_seed(seed)  # tests may use the global generator
    return torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3),
                               torch.nn.Linear(3, 7))


def _train(optimizer_factory, steps=30):
    network = _network()
    optimizer = optimizer_factory(network)
    X = torch.randn(64, 7, generator=torch.Generator().manual_seed(1))
    for step in range(steps):
        optimizer.zero_grad()
        # The last layer's bias takes no part in the loss in odd steps.
        output = network[:3](X) @ network[3].weight.T
        if step % 2 == 0:
            output = output + network[3].bias
        ((output - X) ** 2).mean().backward()
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in network.parameters()])


def _torch_groups(network, alpha):
    weights = [p for n, p in network.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in network.named_parameters() if n.endswith("bias")]
    return [{"params": weights, "weight_decay": alpha}, {"params": biases, "weight_decay": 0.0}]


@pytest.mark.parametrize("alpha", [0.0, 0.05])
@pytest.mark.parametrize("fused", [True, False])
def test_adam_matches_torch_optim(alpha, fused, monkeypatch):
    """With torch's fused kernel, bitwise; without it (a torch build that
    lacks it), the plain formula to float rounding."""
    expected = _train(lambda n: torch.optim.Adam(_torch_groups(n, alpha), lr=0.01, fused=True))
    if not fused:
        monkeypatch.delattr(torch, "_fused_adam_")
    got = _train(lambda network: make_optimizer(network, 0.01, alpha))
    if fused:
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_adam_state_dict_round_trip_continues_identically():
    network, twin = _network(), _network()
    optimizer = make_optimizer(network, 0.01, 0.0)
    X = torch.randn(32, 7, generator=torch.Generator().manual_seed(2))

    def step(net, opt):
        opt.zero_grad()
        ((net(X) - X) ** 2).mean().backward()
        opt.step()

    for _ in range(3):
        step(network, optimizer)
    twin.load_state_dict(network.state_dict())
    twin_optimizer = make_optimizer(twin, 0.5, 0.0)  # lr comes back from the state
    twin_optimizer.load_state_dict(optimizer.state_dict())
    assert twin_optimizer.param_groups[0]["lr"] == 0.01
    for _ in range(3):
        step(network, optimizer)
        step(twin, twin_optimizer)
    for a, b in zip(network.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_creating_and_stepping_adam_does_not_import_dynamo():
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from skae._optim import make_optimizer\n"
        "net = torch.nn.Linear(3, 3)\n"
        "opt = make_optimizer(net, 0.01, 0.0)\n"
        "net(torch.ones(2, 3)).sum().backward(); opt.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def _trainer(network, loss_fn, batch_size=16, shuffle=True):
    return Trainer(network, loss_fn, Adam([{"params": list(network.parameters()),
                                            "weight_decay": 0.0}], lr=0.01),
                   batch_size=batch_size,
                   shuffle_generator=torch.Generator().manual_seed(0) if shuffle else None,
                   noise_generator=torch.Generator().manual_seed(0))


def _reconstruction(module, X, y, generator):
    return ((module(X) - X) ** 2).mean(), {"half": 0.5 * ((module(X) - X) ** 2).mean()}


def test_epoch_mean_loss_is_weighted_by_batch_size():
    network = torch.nn.Linear(7, 7)
    seen = []

    def loss_fn(module, X, y, generator):
        seen.append(X.shape[0])
        return torch.tensor(float(X.shape[0]), requires_grad=True), {}

    loss, _ = _trainer(network, loss_fn, batch_size=16).run_epoch(
        TensorSource(torch.zeros(40, 7)))
    assert seen == [16, 16, 8]
    assert loss == pytest.approx((16 * 16 + 16 * 16 + 8 * 8) / 40)


def test_every_row_is_seen_once_per_epoch_in_a_seeded_order():
    rows = torch.arange(50, dtype=torch.float32).unsqueeze(1)
    orders = []

    def loss_fn(module, X, y, generator):
        orders.extend(X[:, 0].tolist())
        return (module(X) ** 2).mean(), {}

    for _ in range(2):
        _trainer(torch.nn.Linear(1, 1), loss_fn).run_epoch(TensorSource(rows))
    first, second = orders[:50], orders[50:]
    assert sorted(first) == list(range(50))
    assert first == second  # same seed, same permutation
    assert first != list(range(50))


def test_non_finite_loss_raises():
    def loss_fn(module, X, y, generator):
        return (module(X) * math.inf).sum(), {}

    with pytest.raises(TrainingDivergedError, match="training loss became .* in epoch 1"):
        fit_loop(_trainer(torch.nn.Linear(3, 3), loss_fn), TensorSource(torch.ones(10, 3)),
                 max_iter=3, tol=0.0, n_iter_no_change=3)


def test_fit_loop_stops_like_mlp_and_records_parts():
    network = _network()
    X = torch.randn(64, 7, generator=torch.Generator().manual_seed(0))
    history = fit_loop(_trainer(network, _reconstruction), TensorSource(X), max_iter=500,
                       tol=1e9, n_iter_no_change=3, lr_reductions=0)
    # No epoch can improve by 1e9 times the best: stop once n_iter_no_change
    # is exceeded (the first epoch improves on nothing).
    assert history.n_epochs == 5 and history.stop_reason == "converged"
    assert history.parts_curves["half"] == pytest.approx([0.5 * v for v in history.loss_curve])


def test_a_stall_divides_the_learning_rate_once_then_stops():
    trainer = _trainer(_network(), _reconstruction)
    rates = []
    history = fit_loop(trainer, TensorSource(torch.randn(64, 7)), max_iter=500, tol=1e9,
                       n_iter_no_change=3, callbacks=[lambda r: rates.append(r.learning_rate)])
    # 1 epoch + 4 stalled at 0.01, then 4 stalled at 0.001.
    assert rates == pytest.approx([0.01] * 5 + [0.001] * 4)
    assert history.stop_reason == "converged"
    assert "at learning rate 0.001" in history.message


@pytest.mark.parametrize("scale", [1e-2, 1.0, 1e3])
def test_tol_is_relative_to_the_criterion(scale):
    """The same data at any scale stops after the same epochs."""
    def scaled(module, X, y, generator):
        loss, parts = _reconstruction(module, X, y, generator)
        return loss * scale, {}

    X = torch.randn(64, 7, generator=torch.Generator().manual_seed(0))
    history = fit_loop(_trainer(_network(), scaled), TensorSource(X), max_iter=300, tol=1e-2,
                       n_iter_no_change=2)
    assert history.stop_reason == "converged"
    reference = fit_loop(_trainer(_network(), _reconstruction), TensorSource(X), max_iter=300,
                         tol=1e-2, n_iter_no_change=2)
    assert history.n_epochs == reference.n_epochs


def test_fit_loop_restores_the_best_validation_weights():
    network = _network()
    X = torch.randn(64, 7, generator=torch.Generator().manual_seed(0))
    scores = iter([0.5, 1.0, 3.0, 2.0, 0.0, -1.0, -2.0])  # the first: before training
    states = []

    def score_fn(module, X_val, y_val, generator):
        states.append({k: v.clone() for k, v in module.state_dict().items()})
        return torch.full((X_val.shape[0],), next(scores))

    history = fit_loop(_trainer(network, _reconstruction), TensorSource(X), max_iter=6, tol=0.0,
                       n_iter_no_change=10,
                       validation=Validation(score_fn, TensorSource(X), batch_size=64))
    assert history.best_validation_score == 3.0 and history.best_epoch == 2
    assert history.initial_validation_score == 0.5
    for key, value in network.state_dict().items():
        assert torch.equal(value, states[2][key])


def test_the_starting_network_is_kept_when_no_epoch_beats_it():
    network = _network()
    start = {k: v.clone() for k, v in network.state_dict().items()}
    scores = iter([5.0, 1.0, 2.0, 3.0])

    def score_fn(module, X_val, y_val, generator):
        return torch.full((X_val.shape[0],), next(scores))

    X = torch.randn(64, 7, generator=torch.Generator().manual_seed(0))
    history = fit_loop(_trainer(network, _reconstruction), TensorSource(X), max_iter=3, tol=0.0,
                       n_iter_no_change=10,
                       validation=Validation(score_fn, TensorSource(X), batch_size=64))
    assert history.best_epoch == 0 and "kept the weights of the starting network" in \
        history.message
    for key, value in network.state_dict().items():
        assert torch.equal(value, start[key])


def test_callbacks_can_stop_training():
    history = fit_loop(_trainer(_network(), _reconstruction), TensorSource(torch.randn(20, 7)),
                       max_iter=50, tol=0.0, n_iter_no_change=50,
                       callbacks=[lambda record: record.epoch == 4])
    assert history.n_epochs == 4
    assert history.stop_reason == "callback"


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 13, 1000])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_predict_in_chunks_rows_do_not_depend_on_chunk_or_order(chunk_size, dtype, rtol):
    """Row results agree whatever the chunking and row order, to rounding (not
    bitwise: BLAS kernels choose their summation order by shape and CPU)."""
    network = torch.nn.Sequential(torch.nn.Linear(9, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))
    network = network.to(torch.float64 if dtype == np.float64 else torch.float32)
    X = np.random.RandomState(0).normal(size=(45, 9))
    reference = predict_in_chunks(network, X, "cpu", 4096, dtype)
    assert reference.dtype == dtype
    got = predict_in_chunks(network, X, "cpu", chunk_size, dtype)
    assert_allclose(got, reference, rtol=rtol, atol=rtol)
    assert_array_equal(predict_in_chunks(network, X, "cpu", chunk_size, dtype), got)
    shuffled = np.random.RandomState(1).permutation(45)
    assert_allclose(predict_in_chunks(network, X[shuffled], "cpu", chunk_size, dtype),
                    reference[shuffled], rtol=rtol, atol=rtol)


def test_predict_in_chunks_reads_read_only_and_strided_input():
    network = torch.nn.Linear(3, 2).to(torch.float64)
    X = np.arange(24.0).reshape(6, 4)[:, ::1][:, :3]
    X.flags.writeable = False
    expected = X @ network.weight.detach().numpy().T + network.bias.detach().numpy()
    assert_allclose(predict_in_chunks(network, X, "cpu", 4, np.float64), expected, rtol=1e-12)


def test_streaming_source_gives_the_batches_of_a_tensor_source():
    X = torch.randn(37, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(37)
    streamed, in_memory = StreamingSource.from_array(X, y, "cpu"), TensorSource(X, y)
    for generator_seed in (None, 3):
        def batches(source, seed=generator_seed):
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            return list(source.batches(8, generator))

        for (X_a, y_a), (X_b, y_b) in zip(batches(streamed), batches(in_memory), strict=True):
            assert torch.equal(X_a, X_b) and torch.equal(y_a, y_b)
    kept, held_out = streamed.split(0.25, torch.Generator().manual_seed(1))
    twin_kept, twin_held_out = in_memory.split(0.25, torch.Generator().manual_seed(1))
    assert torch.equal(kept.X, twin_kept.X) and torch.equal(held_out.y, twin_held_out.y)


def test_bfloat16_autocast_trains_with_float32_weights():
    network = _network()
    trainer = _trainer(network, _reconstruction)
    trainer.autocast_dtype = torch.bfloat16
    dtypes = []
    network[0].register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    X = torch.randn(64, 7, generator=torch.Generator().manual_seed(0))
    losses = [trainer.run_epoch(TensorSource(X))[0] for _ in range(30)]
    assert dtypes[0] == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in network.parameters())
    assert losses[-1] < 0.5 * losses[0]


class _OneOfTwo(Replicas):
    """The shares of replica ``rank`` of two, without a process group."""

    def __init__(self, rank):
        self.rank, self.world_size = rank, 2


def test_replica_shards_cover_every_row_in_equal_counts():
    positions = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    shards = [_OneOfTwo(rank).shard(positions) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 6  # padded with a repeated first row
    assert sorted(torch.cat(shards).tolist()) == sorted([*positions.tolist(),
                                                         positions[0].item()])
    # Batch k of both replicas together is batch k of the global order.
    assert set(shards[0][:2].tolist() + shards[1][:2].tolist()) == set(positions[:4].tolist())
    exact = [_OneOfTwo(rank).shard_without_padding(positions) for rank in (0, 1)]
    assert sorted(torch.cat(exact).tolist()) == list(range(11))


def test_validation_draws_the_same_numbers_at_every_scoring():
    X = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    seen = []

    def score_fn(module, X_val, y_val, generator):
        seen.append(generator)
        return torch.rand(X_val.shape[0], generator=generator)

    validation = Validation(score_fn, TensorSource(X), batch_size=16,
                            generator_factory=lambda: torch.Generator().manual_seed(7))
    network = _network()
    first, second = validation.score(network), validation.score(network)
    assert first == second
    assert len({id(generator) for generator in seen[:4]}) == 1  # one per scoring
    assert seen[0] is not seen[-1]
    assert Validation(lambda m, x, y, g: torch.zeros(x.shape[0]) if g is None else None,
                      TensorSource(X), batch_size=16).score(network) == 0.0


@pytest.mark.parametrize("relative_tol", [True, False])
def test_absolute_tol_stops_a_criterion_falling_towards_zero(relative_tol):
    # A cross-entropy on separable labels halves towards 0: each epoch beats
    # the best by half of it (relative progress forever), by ever less in
    # absolute terms.
    errors = iter(0.5 ** np.arange(100))

    def score_fn(module, X_val, y_val, generator):
        return torch.full((X_val.shape[0],), -next(errors))

    X = torch.randn(32, 7, generator=torch.Generator().manual_seed(0))
    history = fit_loop(_trainer(_network(), _reconstruction), TensorSource(X), max_iter=40,
                       tol=1e-3, n_iter_no_change=2, relative_tol=relative_tol,
                       validation=Validation(score_fn, TensorSource(X), batch_size=64))
    if relative_tol:
        assert history.stop_reason == "max_iter"
    else:
        # 0.5**k - 0.5**(k+1) = 0.5**(k+1) < 1e-3 from k = 9 on; two stalls of
        # three epochs each (the first lowers the learning rate) end it.
        assert history.stop_reason == "converged" and history.n_epochs == 15
        assert "tol=0.001 for" in history.message
