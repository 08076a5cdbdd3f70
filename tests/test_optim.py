"""The optimizer registry and our optimizers (Balles & Hennig 2018, arXiv:1705.07774).

Our optimizers are checked against NumPy versions of the paper's equations written
here from the formulas, in float64, sharing no code with the implementation.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fmnist.errors import ConfigError, UnknownNameError
from fmnist.optim import (
    MSGD, MSSD, MSVAG, OPTIMIZERS, SSD, SVAG,
    OptimizerSpec, build_optimizer, optimizer_table, register_optimizer,
)

OURS = ["msgd", "mssd", "msvag", "ssd", "svag"]
SHAPES = [(3, 4), (5,)]  # two parameters, each in its own group
STEPS = 50


# --- the paper's equations in NumPy, one step at a time --------------------------------


def np_step(name: str, theta, g, st: dict, lr: float, beta: float, weight_decay: float):
    """theta after one step of optimizer `name` on gradient g; st holds m~, v~ and t."""
    st["t"] = t = st.get("t", 0) + 1
    st["m"] = beta * st.get("m", 0.0) + (1 - beta) * g  # m~_t
    st["v"] = beta * st.get("v", 0.0) + (1 - beta) * g**2  # v~_t
    m = st["m"] / (1 - beta**t)
    v = st["v"] / (1 - beta**t)
    rho = (1 - beta) ** 2 * (1 - beta ** (2 * t)) / ((1 - beta**t) ** 2 * (1 - beta**2))
    rho = min(rho, 0.999)  # the documented cap: rho_1 = 1
    s = (v - m**2) / (1 - rho)
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma_m = np.nan_to_num(np.clip(m**2 / (m**2 + rho * s), 0, 1), nan=0.0)
        gamma_g = np.nan_to_num(np.clip(m**2 / (m**2 + s), 0, 1), nan=0.0)
    direction = {
        "msgd": m,
        "mssd": np.sign(m),
        "ssd": np.sign(g),
        "msvag": gamma_m * m,
        "svag": gamma_g * g,
    }[name]
    return theta - lr * weight_decay * theta - lr * direction


def gradient_sequence(seed: int = 0) -> list[list[np.ndarray]]:
    """STEPS steps of gradients for SHAPES, with the awkward cases in them."""
    rng = np.random.default_rng(seed)
    steps = []
    for t in range(STEPS):
        grads = [rng.normal(size=shape) * rng.choice([1e-3, 1.0, 30.0]) for shape in SHAPES]
        for g in grads:
            g[rng.random(g.shape) < 0.3] = 0.0  # zero entries
        grads[0][0, 0] = 0.0  # an entry that is always 0: m = v = 0, gamma is 0 / 0
        grads[0][1, 1] = 2.5  # an entry that never changes: s = 0, gamma = 1
        if t in (4, 17, 18):
            grads = [np.zeros(shape) for shape in SHAPES]  # all-zero steps
        if t < 3:
            grads[1] = np.zeros(SHAPES[1])  # a parameter whose first steps are all zero
        steps.append(grads)
    return steps


def make_params(seed: int = 1) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.tensor(rng.normal(size=shape), dtype=torch.float64) for shape in SHAPES]


GROUPS = [dict(lr=0.1, beta=0.9, weight_decay=0.0), dict(lr=0.03, beta=0.7, weight_decay=0.05)]


def torch_groups(name: str, params: list[torch.Tensor]) -> list[dict]:
    takes_beta = "beta" in OPTIMIZERS.get(name).defaults
    return [
        {"params": [p], **{k: v for k, v in hp.items() if k != "beta" or takes_beta}}
        for p, hp in zip(params, GROUPS)
    ]


def run(opt: torch.optim.Optimizer, params: list[torch.Tensor], steps) -> None:
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g.copy())
        opt.step()


@pytest.mark.parametrize("name", OURS)
def test_matches_numpy_equations(name):
    steps = gradient_sequence()
    params = make_params()
    opt = build_optimizer(name, torch_groups(name, params))
    thetas = [p.numpy().copy() for p in params]
    states = [{} for _ in params]
    for t, grads in enumerate(steps):
        run(opt, params, [grads])
        for i, (g, hp) in enumerate(zip(grads, GROUPS)):
            thetas[i] = np_step(name, thetas[i], g, states[i], **hp)
            np.testing.assert_allclose(
                params[i].numpy(), thetas[i], rtol=0, atol=1e-6, err_msg=f"step {t + 1}"
            )


@pytest.mark.parametrize("name", OURS)
def test_first_step_and_zero_gradients_are_finite(name):
    p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(name, [p])
    for _ in range(3):
        p.grad = torch.zeros(4, dtype=torch.float64)
        opt.step()
        assert torch.equal(p.detach(), torch.zeros(4, dtype=torch.float64))  # no NaN, no move
    p.grad = torch.tensor([1.0, -1.0, 0.0, 1e-30], dtype=torch.float64)
    opt.step()
    assert torch.isfinite(p).all()


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_state_dict_round_trip(name):
    steps = gradient_sequence(seed=3)
    straight = make_params()
    opt = build_optimizer(name, torch_groups(name, straight))
    run(opt, straight, steps)

    first = make_params()
    opt = build_optimizer(name, torch_groups(name, first))
    run(opt, first, steps[:20])
    buffer = io.BytesIO()  # through bytes, as a checkpoint would go
    torch.save(opt.state_dict(), buffer)
    resumed = [p.detach().clone() for p in first]
    opt = build_optimizer(name, torch_groups(name, resumed))
    buffer.seek(0)
    opt.load_state_dict(torch.load(buffer, weights_only=True))
    run(opt, resumed, steps[20:])
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


# --- every registered optimizer, on a toy problem --------------------------------------

TOY_LR = {"adam": 0.05, "adamw": 0.05, "mssd": 0.02, "ssd": 0.02}  # others: their default


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_lowers_loss_on_linear_regression(name):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=gen)
    y = x @ torch.randn(8, 1, generator=gen) + 0.1 * torch.randn(256, 1, generator=gen)
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    full_loss = lambda: torch.nn.functional.mse_loss(model(x), y).item()  # noqa: E731
    before = full_loss()
    opt = build_optimizer(name, model.parameters(), lr=TOY_LR.get(name))  # None: the default
    for _ in range(150):
        batch = torch.randint(0, 256, (32,), generator=gen)  # noisy gradients, as in training
        loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = full_loss()
    assert np.isfinite(after) and after < 0.1 * before, (before, after)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_each_group_has_its_own_lr(name):
    frozen, moving = torch.ones(5, requires_grad=True), torch.ones(5, requires_grad=True)
    groups = [{"params": [frozen], "lr": 0.0}, {"params": [moving]}]
    opt = build_optimizer(name, groups, weight_decay=0.0)
    assert [g["lr"] for g in opt.param_groups] == [0.0, OPTIMIZERS.get(name).defaults["lr"]]
    for _ in range(3):
        opt.zero_grad()
        (frozen.sum() + moving.sum()).backward()
        opt.step()
    assert torch.equal(frozen.detach(), torch.ones(5))
    assert (moving.detach() < 1).all()


# --- the registry and its errors -------------------------------------------------------


def test_registry_entries_and_table():
    assert set(OPTIMIZERS.names()) >= {"sgd", "momentum", "nesterov", "adam", "adamw", *OURS}
    table = optimizer_table()
    assert [row[0] for row in table] == OPTIMIZERS.names()
    for name, defaults, description in table:
        assert "lr" in defaults and description and "\n" not in description
    assert dict((n, d["lr"]) for n, d, _ in table)["msvag"] == 0.1
    assert OPTIMIZERS.get("adamw").defaults["weight_decay"] == 0.01


def test_defaults_merge_with_overrides():
    p = [torch.zeros(2, requires_grad=True)]
    opt = build_optimizer("msvag", p, beta=0.8, lr=None)  # None: keep the default
    assert isinstance(opt, MSVAG) and opt.defaults["lr"] == 0.1 and opt.defaults["beta"] == 0.8
    assert build_optimizer("adam", p, beta2=0.99).defaults["betas"] == (0.9, 0.99)
    assert build_optimizer("nesterov", p).defaults["nesterov"] is True


@pytest.mark.parametrize(
    "name, hp, field",
    [
        ("sgd", {"lr": -0.1}, "lr"),
        ("sgd", {"lr": float("nan")}, "lr"),
        ("sgd", {"lr": "0.1"}, "lr"),
        ("momentum", {"momentum": 1.5}, "momentum"),
        ("nesterov", {"momentum": 0.0}, "[Nn]esterov"),  # torch's own check, as ConfigError
        ("adam", {"beta1": 1.0}, "beta1"),
        ("adamw", {"eps": 0.0}, "eps"),
        ("adamw", {"weight_decay": -1e-4}, "weight_decay"),
        ("msvag", {"beta": 1.0}, "beta"),
        ("svag", {"beta": -0.1}, "beta"),
        ("msgd", {"weight_decay": -1.0}, "weight_decay"),
        ("mssd", {"lr": True}, "lr"),
        ("ssd", {"lr": float("inf")}, "lr"),
    ],
)
def test_bad_values_raise_config_error(name, hp, field):
    with pytest.raises(ConfigError, match=field):
        build_optimizer(name, [torch.zeros(2, requires_grad=True)], **hp)


@pytest.mark.parametrize("cls", [MSGD, MSSD, MSVAG, SSD, SVAG])
def test_classes_check_their_arguments_and_groups(cls):
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ConfigError, match="lr"):
        cls([p], lr=-1.0)
    with pytest.raises(ConfigError, match="weight_decay"):
        cls([{"params": [p], "weight_decay": -1.0}])
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        cls([p], lr=-1.0)


def test_unknown_hyperparameter_names_it_and_the_accepted_ones():
    with pytest.raises(ConfigError, match="momentum") as err:
        build_optimizer("msvag", [torch.zeros(2, requires_grad=True)], momentum=0.9)
    assert "beta, lr, weight_decay" in str(err.value)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as err:
        build_optimizer("adagrad", [torch.zeros(2, requires_grad=True)])
    assert all(name in str(err.value) for name in OPTIMIZERS.names())


def test_registration_checks():
    with pytest.raises(ValueError, match="twice"):
        register_optimizer("sgd", MSGD, {"lr": 0.1}, "again")
    with pytest.raises(ValueError, match="momentum"):
        OptimizerSpec("x", SSD, {"lr": 0.1, "momentum": 0.9}, "SSD takes no momentum")
    with pytest.raises(ConfigError, match="lr"):
        OptimizerSpec("x", SSD, {"lr": -1.0}, "bad default")
