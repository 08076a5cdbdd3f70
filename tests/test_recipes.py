"""Recipes: every model trains by its own recipe, named recipes, flags over them; the
commands that list things start without torch; our optimizers never import torch._dynamo."""
import json
import subprocess
import sys

import pytest

from fmnist.build import check
from fmnist.cli import main
from fmnist.config import RunConfig
from fmnist.models import MODELS, build_model, count_parameters
from fmnist.recipes import MODEL_RECIPES, RECIPES, recipe_for

from conftest import REPO


def dry_run(capsys, *argv: str) -> RunConfig:
    assert main(["train", "--dry-run", *argv]) == 0
    out = capsys.readouterr()
    assert out.err.startswith("recipe ")  # which recipe it started from, on stderr
    return RunConfig.from_dict(json.loads(out.out))


@pytest.mark.parametrize("model", MODELS.names())
def test_every_model_has_its_own_recipe(model, capsys):
    recipe = recipe_for(model)
    assert model in MODEL_RECIPES and recipe.model == model
    config = dry_run(capsys, "--model", model)
    assert config == recipe.config()
    check(config)  # model and optimizer build with the recipe's settings


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_builds(name):
    recipe = RECIPES.get(name)
    check(recipe.config())
    assert recipe.description and "\n" not in recipe.description and recipe.expected


def test_model_recipe_differs_from_the_default(capsys):
    # the obvious command is the good one: --model mlp takes the mlp's recipe, not the cnn's
    mlp = dry_run(capsys, "--model", "mlp")
    assert mlp.optim.name == "adam" and mlp.optim.lr == 8e-3 and mlp.train.batch_size == 512
    default = dry_run(capsys)  # no flag: the default recipe, which --help shows as defaults
    assert default == RECIPES.get("default").config() and default.model.name == "cnn"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert f"(default: {default.train.epochs})" in capsys.readouterr().out


def test_flags_override_the_recipe(capsys):
    config = dry_run(capsys, "--model", "mlp", "--epochs", "3", "--lr", "1e-3")
    assert config == recipe_for("mlp").config().replace(train={"epochs": 3}, optim={"lr": 1e-3})
    # another optimizer than the recipe's: its own defaults, not the recipe's rate
    config = dry_run(capsys, "--model", "mlp", "--optimizer", "msgd")
    assert config.optim.name == "msgd" and config.optim.lr is None


def test_keras_tutorial_is_the_tutorial(capsys):
    c = dry_run(capsys, "--recipe", "keras-tutorial")
    assert (c.model.name, c.model.kwargs) == ("mlp2", {"hidden": [128]})
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay, c.optim.kwargs) == ("adam", 1e-3, 0.0, {"eps": 1e-7})
    assert (c.train.batch_size, c.train.epochs, c.train.schedule, c.train.label_smoothing,
            c.train.precision) == (32, 10, "constant", 0.0, "fp32")
    assert c.data.scaling == "unit" and c.data.augment is False
    # Flatten, Dense(128, relu), Dense(10): the tutorial's 101,770 weights, Keras' zero biases
    model = build_model(c.model.name, **c.model.kwargs)
    assert count_parameters(model) == 101_770
    biases = [m.bias.detach() for m in model if hasattr(m, "bias")]
    assert len(biases) == 2 and all(float(b.abs().sum()) == 0 for b in biases)


def test_another_model_drops_the_recipes_keywords(capsys):
    # keras-tutorial's hidden=[128] belongs to mlp2; with --model cnn it would be refused
    c = dry_run(capsys, "--recipe", "keras-tutorial", "--model", "cnn")
    assert c.model.name == "cnn" and c.model.kwargs == {}
    assert c.data.scaling == "unit"  # the rest of the recipe stays
    c = dry_run(capsys, "--recipe", "keras-tutorial", "--optimizer", "nesterov")
    assert c.optim.kwargs == {} and c.optim.lr is None


def test_a_keyword_flag_adds_to_the_recipes_keywords(capsys):
    # the same model and optimizer: their recipe keywords stay beside the flag's
    c = dry_run(capsys, "--recipe", "keras-tutorial", "--model-arg", "dropout=0.2", "--opt-arg", "eps=1e-6")
    assert c.model.kwargs == {"hidden": [128], "dropout": 0.2} and c.optim.kwargs == {"eps": 1e-6}
    c = dry_run(capsys, "--recipe", "fast", "--opt-arg", "beta1=0.8")
    assert c.optim.kwargs == {"beta2": 0.99, "beta1": 0.8}
    c = dry_run(capsys, "--recipe", "keras-tutorial", "--model-arg", "hidden=[64]")
    assert c.model.kwargs == {"hidden": [64]}  # a keyword given again is the flag's


def test_unknown_recipe_and_resume_with_recipe_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--recipe", "nope", "--dry-run"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--recipe", "fast"]) == 1
    assert "drop the other training flags" in capsys.readouterr().err


def test_recipes_command_lists_every_recipe(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in RECIPES:
        assert name in out
    assert "(default for mlp)" in out and "expected:" in out


def test_pinned_counts_are_the_built_ones():
    # `fmnist models` prints the registered counts without building (or importing torch)
    for name in MODELS:
        spec = MODELS.get(name)
        assert spec.params is None or spec.params == count_parameters(build_model(name)), name


@pytest.mark.parametrize("argv", [["--help"], ["models"], ["recipes"], ["train", "--help"]])
def test_listing_commands_do_not_import_torch(argv):
    code = ("import sys\nfrom fmnist.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n" % argv)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-500:]


def test_optimizers_train_without_importing_dynamo(tmp_path):
    # torch._dynamo (and sympy) cost as much to import as torch itself; plain training with
    # any registered optimizer (torch's included) and no bar must not pull them in
    code = """
import sys
import torch
from fmnist.build import param_groups
from fmnist.models import build_model
from fmnist.optim import build_optimizer
model = build_model("mlp")
from fmnist.optim import OPTIMIZERS
for name in OPTIMIZERS.names():
    opt = build_optimizer(name, param_groups(model))
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 28, 28)),
                                                 torch.arange(8))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    opt.load_state_dict(opt.state_dict())
assert "torch._dynamo" not in sys.modules, "torch._dynamo imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-500:]


def test_whitening_goes_with_the_model_that_asked_for_it(capsys):
    whitened = RunConfig().replace(model={"whiten": True})
    assert whitened.replace(model={"name": "resnet"}).model.whiten is False  # another model
    assert whitened.replace(model={"name": "resnet", "whiten": True}).model.whiten
    assert main(["train", "--dry-run", "--model", "mlp", "--whiten"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("fmnist: error: ") and "no conv layer" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, code", [(["train", "--dry-run"], 0), (["train", "--model", "nope"], 1)])
def test_quick_exit_keeps_the_output_and_the_status(argv, code):
    # train ends with os._exit (no interpreter teardown): what it printed must all arrive
    done = subprocess.run([sys.executable, "-m", "fmnist", *argv], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == code, done.stderr[-500:]
    if code == 0:
        assert json.loads(done.stdout)["model"]["name"] == "cnn"  # the whole JSON, flushed
    else:
        assert done.stderr.startswith("fmnist: error: ") and "nope" in done.stderr
