"""`fmnist explain`: every figure on a tiny run of each kind of model, the layers found
generically, what a model lacks said and the rest drawn, bad input as one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmnist import api, explain as E
from fmnist.cli import main
from fmnist.models import MODELS, build_model

from test_plots import assert_drawn
from test_train import toy_config

FAST = ["--per-class", "1", "--ig-steps", "4", "--tsne-iter", "250", "--pca-dims", "10"]


def toy_run(tmp_path, model: str):
    config = toy_config(epochs=1).replace(model={"name": model}, optim={"name": "adam", "lr": 3e-3})
    return api.train(config, out=tmp_path / model, plots=False)


def test_a_cnn_run_gets_every_figure_and_a_report_section(toy, tmp_path, capsys):
    run = toy_run(tmp_path, "cnn")
    assert main(["explain", str(run.dir), *FAST, "--quiet"]) == 0
    out = capsys.readouterr().out
    for name in ("explain-ig.png", "explain-occlusion.png", "explain-tsne.png", "explain-filters.png",
                 "explain-class-means.png", "report.html"):
        assert f"wrote {run.dir / name}" in out
        if name.endswith(".png"):
            assert_drawn(run.dir / name, colours=("#0072B2",) if name == "explain-ig.png" else ())
    record = json.loads((run.dir / "explain.json").read_text())
    assert record["skipped"] == {} and np.array(record["sample"]).shape == (10, 2)
    page = (run.dir / "report.html").read_text()
    assert 'id="explanations"' in page and page.count("data:image/png;base64,") == 5


@pytest.mark.parametrize("model, skipped", [("mlp", {"explain-filters.png"}),
                                            ("logreg", {"explain-filters.png", "explain-tsne.png"})])
def test_a_model_without_the_layer_says_so_and_draws_the_rest(toy, tmp_path, capsys, model, skipped):
    run = toy_run(tmp_path, model)
    (run.dir / "explain-filters.png").write_bytes(b"an older model's figure")
    assert main(["explain", str(run.dir), *FAST, "--quiet"]) == 0
    out = capsys.readouterr().out
    for name in skipped:
        assert f"{name}: not drawn: {model} has no" in out
        assert not (run.dir / name).exists()  # no figure of another model left to mislead
    assert (run.dir / "explain-ig.png").is_file() and (run.dir / "explain-class-means.png").is_file()
    assert set(json.loads((run.dir / "explain.json").read_text())["skipped"]) == skipped
    assert "Not drawn: " in (run.dir / "report.html").read_text()


def test_an_explain_stopped_midway_leaves_no_old_record(toy, tmp_path, monkeypatch):
    """The last explain's explain.json must not vouch for a mix of its figures and this one's."""
    from fmnist.plots import explain as P

    run = toy_run(tmp_path, "logreg")
    (run.dir / "explain.json").write_text(json.dumps({"settings": {"per_class": 9}, "skipped": {}}))

    def killed(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "class_means_figure", killed)  # the last figure drawn
    with pytest.raises(KeyboardInterrupt):
        E.explain_run(run.dir, cfg=E.ExplainConfig(per_class=1, ig_steps=4))
    assert (run.dir / "explain-ig.png").is_file() and not (run.dir / "explain.json").exists()


def test_the_first_filters_unfold_a_space_to_depth_stem():
    """cnn's PixelUnshuffle(2) + 3x3 conv equals one 6x6 stride-2 conv with the filters drawn."""
    model = build_model("cnn").eval()
    filters, block = E.first_filters(model)
    assert block == 2 and filters.shape == (16, 6, 6)
    x = torch.randn(3, 1, 28, 28)
    stem = model[1](model[0](x))  # (3, 16, 14, 14)
    same = torch.nn.functional.conv2d(x, torch.from_numpy(filters)[:, None], stride=2, padding=2)
    assert torch.allclose(stem, same, atol=1e-5)
    assert E.first_filters(build_model("2c2d"))[0].shape == (32, 5, 5)
    assert E.first_filters(build_model("mlp")) is None


@pytest.mark.parametrize("name", MODELS.names())
def test_penultimate_features_of_every_model(name):
    model = build_model(name).eval()
    layer = E.penultimate_layer(model)
    if name == "logreg":
        assert layer is None
        return
    logits, features = E.logits_and_features(model, torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10) and features.shape == (4, layer.in_features)
    assert torch.allclose(layer(features), logits, atol=1e-5)  # the last layer's input, exactly


def test_the_sample_is_stratified_and_fixed():
    labels = np.arange(200) % 10
    preds = np.where(np.arange(200) < 150, labels, (labels + 1) % 10)
    sample = E.stratified_sample(labels, preds, 2, seed=0, classes=10)
    assert sample.shape == (10, 4)
    assert (labels[sample] == np.arange(10)[:, None]).all()
    assert (preds[sample[:, :2]] == labels[sample[:, :2]]).all()
    assert (preds[sample[:, 2:]] != labels[sample[:, 2:]]).all()
    assert (sample == E.stratified_sample(labels, preds, 2, seed=0, classes=10)).all()
    few = E.stratified_sample(labels[:40], preds[:40], 2, seed=0, classes=11)  # all right, one class absent
    assert few.shape == (11, 4) and (few[:, 2:] == -1).all() and (few[10] == -1).all()


def test_bad_input_is_one_line(toy, tmp_path, capsys, monkeypatch):
    def error() -> str:
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fmnist: error: "), err
        return err[0]

    assert main(["explain", str(tmp_path / "nowhere")]) == 1
    assert "no such run directory" in error()
    run = toy_run(tmp_path, "mlp")
    for name in ("best.pt", "checkpoint.pt"):
        (run.dir / name).unlink()
    assert main(["explain", str(run.dir)]) == 1
    assert "no checkpoint" in error()
    assert main(["explain", str(run.dir), "--window", "2", "--stride", "3"]) == 1
    assert "stride=3" in error()
    import fmnist.extras

    real = fmnist.extras.import_module
    monkeypatch.setattr(fmnist.extras, "import_module", lambda m: (_ for _ in ()).throw(ImportError(m))
                        if m.startswith("captum") else real(m))
    assert main(["explain", str(run.dir)]) == 1
    assert "pip install -c constraints.txt 'fmnist[explain]'" in error()


def test_a_hand_edited_explain_json_is_named(toy, tmp_path, capsys):
    run = toy_run(tmp_path, "logreg")
    (run.dir / "explain.json").write_text('{"skipped": ["not a mapping"]}')
    assert main(["report", str(run.dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "explain.json" in err[0] and "fmnist explain" in err[0]
