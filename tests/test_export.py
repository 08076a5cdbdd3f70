"""fmnist export: ONNX parity for every registered model, the file's contract, refusal of a
graph that disagrees, safetensors round trip, predict --onnx without torch, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fmnist import api
from fmnist.cli import main
from fmnist.config import RunConfig
from fmnist.models import MODELS

EXTRA = "the export extra is not installed (pip install 'fmnist[export]')"
onnx = pytest.importorskip("onnx", reason=EXTRA)
ort = pytest.importorskip("onnxruntime", reason=EXTRA)
pytest.importorskip("onnxscript", reason=EXTRA)

from fmnist.export.onnx import INPUT, OPSET, TOLERANCE, export_onnx  # noqa: E402


def toy_run(tmp_path: Path, model: str = "mlp", epochs: int = 1, precision: str = "fp32",
            **train) -> api.Run:
    """A run on the learnable toy data set; epochs=0: the untrained weights, scored."""
    config = RunConfig().replace(
        data={"dataset": "toy", "val_size": 100}, model={"name": model},
        optim={"name": "adam", "lr": 3e-3},
        train={"epochs": epochs, "batch_size": 50, "eval_subset": 200, "threads": 1,
               "precision": precision, **train})
    return api.train(config, out=tmp_path / f"run-{model}", plots=False)


def test_pixel_model_matches_the_runs_own_predictions(toy, tmp_path):
    from fmnist.export.onnx import pixel_model

    run = toy_run(tmp_path)
    x = toy.arrays["test_images"]
    probs = pixel_model(run)(torch.from_numpy(x))[1].detach().double().numpy()
    assert np.allclose(probs, run.predict(x), atol=1e-6)  # the scaling is the run's


@pytest.mark.parametrize("model", sorted(MODELS.names()))
def test_every_registered_model_exports_and_agrees_with_torch(toy, tmp_path, model):
    # untrained (epochs=0) and in the precision training would use here (bf16 on CPUs that
    # have it): the export is fp32 either way
    run = toy_run(tmp_path, model, epochs=0, precision="auto")
    x, y = toy.arrays["test_images"], toy.arrays["test_labels"].astype(np.int64)
    path, check = export_onnx(run, tmp_path / "out" / "model.onnx", x, y)
    assert check.ok and check.max_diff <= TOLERANCE and check.n == len(x)
    assert check.agree == len(x)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no side file


def test_onnx_file_contract(toy, tmp_path):
    run = toy_run(tmp_path, tta=True, tta_shifts=True)  # test-time views go into the graph
    x, y = toy.arrays["test_images"], toy.arrays["test_labels"].astype(np.int64)
    path, check = export_onnx(run, tmp_path / "model.onnx", x, y)
    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"]) == [f"class{i}" for i in range(10)]
    assert json.loads(meta["test_accuracy"]) == pytest.approx(run.metrics["test_acc"])
    assert meta["fmnist_version"] and "uint8" in meta["input"] and meta["tta"] == "true"
    assert meta["tta_shifts"] == "true"
    (inp,) = model.graph.input
    assert inp.name == INPUT and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert inp.type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch dimension
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        logits, probs = sess.run(None, {INPUT: x[:n]})
        assert logits.shape == probs.shape == (n, 10)
        assert np.allclose(probs, run.predict(x[:n]), atol=1e-5)
    assert check.accuracy == pytest.approx(run.metrics["test_acc"])


def test_a_graph_that_disagrees_is_refused_and_nothing_written(toy, tmp_path, monkeypatch):
    import fmnist.export.onnx as ex

    real = ex.export_proto

    def wrong_scaling(module):  # the graph a bug would make: a different std inside
        return real(ex.PixelModel(module.model, module.mean, module.std * 1.01))
    monkeypatch.setattr(ex, "export_proto", wrong_scaling)
    run = toy_run(tmp_path)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(Exception, match="not written: .*max \\|logit difference\\|"):
        export_onnx(run, out, toy.arrays["test_images"], toy.arrays["test_labels"])
    assert not out.exists()


def test_cli_export_prints_parity_and_writes_both_formats(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    assert main(["export", str(run.dir), "--out", str(tmp_path / "x"), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "max |logit difference|" in out and "agree on 100/100" in out
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "model.json", "model.onnx", "model.safetensors"]
    # default folder: RUN_DIR/export
    assert main(["export", str(run.dir), "--format", "safetensors"]) == 0
    assert (run.dir / "export" / "model.safetensors").is_file()


def test_safetensors_round_trip_without_pickle(toy, tmp_path):
    from fmnist.export.weights import export_safetensors, load_safetensors

    run = toy_run(tmp_path, "cnn", precision="auto", tta_shifts=True)  # bf16 where it can
    paths, checked = export_safetensors(run, tmp_path / "w", toy.arrays["test_images"])
    # the read-back check ran the card's views: the shifts, which the card records
    assert json.loads(paths[1].read_text())["tta_shifts"] is True
    assert "without pickle" in checked and "on 100 test images" in checked
    blob = paths[0].read_bytes()
    header = int.from_bytes(blob[:8], "little")
    assert blob[8:9] == b"{" and json.loads(blob[8:8 + header])["__metadata__"]["fmnist_card"]
    model, card = load_safetensors(paths[0])
    assert card == json.loads(paths[1].read_text())
    assert card["model"] == "cnn" and card["class_names"][0] == "class0"
    assert card["accuracy"]["value"] == run.metrics["test_acc"]
    assert card["accuracy"]["split"] == "test"
    assert card["input"]["mean"] == run.facts.mean and card["input"]["std"] == run.facts.std
    floats = [t for t in model.state_dict().values() if t.is_floating_point()]
    assert all(t.dtype == torch.float32 for t in floats)
    x = torch.from_numpy(toy.arrays["test_images"][:8]).unsqueeze(1).float() / 255
    x = (x - run.facts.mean) / run.facts.std
    with torch.no_grad():
        want = run.model.eval().float()(x.to(memory_format=torch.channels_last))
        assert torch.allclose(model(x), want, atol=1e-5)


def test_predict_onnx_does_not_import_torch_and_agrees(toy, tmp_path):
    from PIL import Image

    run = toy_run(tmp_path)
    main(["export", str(run.dir), "--format", "onnx", "--out", str(tmp_path / "x"), "--threads", "1"])
    pictures = []
    for i in range(3):
        pictures.append(tmp_path / f"p{i}.png")
        Image.fromarray(toy.arrays["test_images"][i]).save(pictures[-1])
    code = ("import sys; from fmnist.cli import main; "
            f"rc = main(['predict', '--onnx', {str(tmp_path / 'x' / 'model.onnx')!r}, '--images', "
            f"*{[str(p) for p in pictures]!r}, '--out', {str(tmp_path / 'o.csv')!r}]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert main(["predict", str(run.dir), "--images", *map(str, pictures), "--out",
                 str(tmp_path / "t.csv"), "--device", "cpu"]) == 0
    onnx_rows = (tmp_path / "o.csv").read_text().splitlines()
    torch_rows = (tmp_path / "t.csv").read_text().splitlines()
    assert [r.split(",")[2] for r in onnx_rows] == [r.split(",")[2] for r in torch_rows]  # pred


def test_predict_onnx_on_a_split(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    main(["export", str(run.dir), "--format", "onnx", "--out", str(tmp_path / "x"), "--threads", "1"])
    capsys.readouterr()
    assert main(["predict", "--onnx", str(tmp_path / "x" / "model.onnx")]) == 0
    want = f"accuracy {100 * run.metrics['test_acc']:.2f}% on 100 labelled images"
    assert want in capsys.readouterr().out


def _one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("fmnist: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


def test_bad_input_is_one_line(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    assert main(["export", str(tmp_path / "nope")]) == 1
    _one_line_error(capsys, "nope")
    assert main(["export", str(run.dir), "--format", "onnx,pdf"]) == 1
    _one_line_error(capsys, "onnx, safetensors")
    (tmp_path / "afile").write_text("x")
    assert main(["export", str(run.dir), "--out", str(tmp_path / "afile")]) == 1
    _one_line_error(capsys, "afile", "is a file")
    with pytest.raises(SystemExit):  # argparse: exit 2 with its usage line
        main(["export", str(run.dir), "--tolerance", "-1"])
    capsys.readouterr()
    # predict: neither or both sources, a picture posing as a model, a foreign ONNX file
    assert main(["predict"]) == 1
    _one_line_error(capsys, "RUN_DIR", "--onnx")
    assert main(["predict", str(run.dir), "--onnx", "m.onnx"]) == 1
    _one_line_error(capsys, "not both")
    assert main(["predict", "--onnx", "m.onnx", "--device", "cpu"]) == 1
    _one_line_error(capsys, "--device")
    (tmp_path / "fake.onnx").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert main(["predict", "--onnx", str(tmp_path / "fake.onnx")]) == 1
    _one_line_error(capsys, "fake.onnx", "not an ONNX model")
    h = onnx.helper
    graph = h.make_graph([h.make_node("Identity", ["x"], ["y"])], "g",
                         [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    other = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    onnx.save(other, str(tmp_path / "other.onnx"))
    assert main(["predict", "--onnx", str(tmp_path / "other.onnx")]) == 1
    _one_line_error(capsys, "other.onnx", "not a model written by `fmnist export`")


def test_a_missing_extra_is_named(toy, tmp_path, capsys, monkeypatch):
    run = toy_run(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import raises ImportError
    assert main(["export", str(run.dir), "--out", str(tmp_path / "x")]) == 1
    _one_line_error(capsys, "onnxscript", "fmnist[export]")
    assert not (tmp_path / "x" / "model.onnx").exists()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["predict", "--onnx", str(tmp_path / "m.onnx")]) == 1
    _one_line_error(capsys, "onnxruntime", "fmnist[export]")


def test_safetensors_whose_card_does_not_reproduce_the_run_are_refused(toy, tmp_path, monkeypatch):
    import fmnist.export.weights as w

    real = w.model_card

    def wrong_card(run):  # a card that would feed the model differently
        card = real(run)
        card["input"]["std"] *= 2
        return card
    monkeypatch.setattr(w, "model_card", wrong_card)
    run = toy_run(tmp_path)
    with pytest.raises(Exception, match="not written: the weights read back"):
        w.export_safetensors(run, tmp_path / "w", toy.arrays["test_images"])
    assert not (tmp_path / "w").exists()


# ------------------------------------------------------------------ files that lie
def _fmnist_meta(model, class_names='["a", "b"]') -> None:
    onnx.helper.set_model_props(model, {"class_names": class_names, "input_name": INPUT})


def _graph(nodes, inp, out, inits=()):
    h = onnx.helper
    return h.make_model(h.make_graph(nodes, "g", [inp], [out], list(inits)),
                        opset_imports=[h.make_opsetid("", 18)])


def test_predict_onnx_refuses_another_graph_under_fmnist_metadata(tmp_path, capsys):
    from PIL import Image

    h, T = onnx.helper, onnx.TensorProto
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(picture)
    csv = tmp_path / "o.csv"
    cases = {  # the file -> what the error names
        "float-input.onnx": (_graph([h.make_node("Identity", [INPUT], ["probabilities"])],
                                    h.make_tensor_value_info(INPUT, T.FLOAT, ["N", 3]),
                                    h.make_tensor_value_info("probabilities", T.FLOAT, ["N", 3])),
                             "not uint8 (N, 28, 28)"),
        "no-probabilities.onnx": (_graph([h.make_node("Identity", [INPUT], ["y"])],
                                         h.make_tensor_value_info(INPUT, T.UINT8, ["N", 28, 28]),
                                         h.make_tensor_value_info("y", T.UINT8, ["N", 28, 28])),
                                  "no 'probabilities' output"),
    }
    for name, (model, needle) in cases.items():
        _fmnist_meta(model)
        onnx.save(model, str(tmp_path / name))
        assert main(["predict", "--onnx", str(tmp_path / name), "--images", str(picture),
                     "--out", str(csv)]) == 1
        _one_line_error(capsys, name, "not a model written by `fmnist export`", needle)
        assert not csv.exists()
    # the signature of ours, but the graph fails on real input: onnxruntime's error, one line
    shape = h.make_tensor("shape", T.INT64, [2], [1, 2])
    model = _graph([h.make_node("Cast", [INPUT], ["x"], to=T.FLOAT),
                    h.make_node("Reshape", ["x", "shape"], ["probabilities"])],
                   h.make_tensor_value_info(INPUT, T.UINT8, ["N", 28, 28]),
                   h.make_tensor_value_info("probabilities", T.FLOAT, ["N", 2]), [shape])
    _fmnist_meta(model)
    onnx.save(model, str(tmp_path / "fails.onnx"))
    assert main(["predict", "--onnx", str(tmp_path / "fails.onnx"), "--images", str(picture),
                 "--out", str(csv)]) == 1
    _one_line_error(capsys, "fails.onnx", "onnxruntime could not run it")
    assert not csv.exists()


def test_predict_onnx_refuses_class_names_that_do_not_fit_the_outputs(toy, tmp_path, capsys):
    from PIL import Image

    run = toy_run(tmp_path)
    main(["export", str(run.dir), "--format", "onnx", "--out", str(tmp_path / "x"), "--threads", "1"])
    model = onnx.load(str(tmp_path / "x" / "model.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {**meta, "class_names": '["a", "b"]'})
    onnx.save(model, str(tmp_path / "two.onnx"))
    Image.fromarray(toy.arrays["test_images"][0]).save(tmp_path / "p.png")
    capsys.readouterr()
    for source in (["--images", str(tmp_path / "p.png")], ["--split", "test"]):
        assert main(["predict", "--onnx", str(tmp_path / "two.onnx"), *source]) == 1
        _one_line_error(capsys, "two.onnx", "2 class names", "10 outputs")
    assert not list(tmp_path.glob("predictions-*.csv"))  # refused before any CSV


def test_export_refuses_hand_edited_run_files_with_one_line(toy, tmp_path, capsys):
    run = toy_run(tmp_path)
    metrics, config = run.dir / "metrics.json", run.dir / "config.json"
    good_metrics, good_config = metrics.read_text(), config.read_text()
    metrics.write_text(json.dumps({**json.loads(good_metrics), "split": 5}))
    assert main(["export", str(run.dir), "--out", str(tmp_path / "x")]) == 1
    _one_line_error(capsys, "metrics.json", "split must be a name")
    metrics.write_text(good_metrics)
    c = json.loads(good_config)
    c["resolved"]["precision"] = 5
    config.write_text(json.dumps(c))
    assert main(["export", str(run.dir), "--out", str(tmp_path / "x")]) == 1
    _one_line_error(capsys, "config.json", "precision")
    assert not (tmp_path / "x").exists()


def _retag(blob: bytes, change) -> bytes:
    """A safetensors file with its JSON header passed through `change` (the data untouched)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    change(header)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]


def test_load_safetensors_refuses_a_tampered_card_or_tensor(toy, tmp_path):
    from fmnist.errors import FmnistError
    from fmnist.export.weights import export_safetensors, load_safetensors

    run = toy_run(tmp_path)
    paths, _ = export_safetensors(run, tmp_path / "w", toy.arrays["test_images"])
    blob = paths[0].read_bytes()

    def card_change(fn):
        def change(header):
            card = json.loads(header["__metadata__"]["fmnist_card"])
            fn(card)
            header["__metadata__"]["fmnist_card"] = json.dumps(card)
        return change

    def to_int32(header):
        name = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
        header[name]["dtype"] = "I32"

    cases = {
        "no-args": (card_change(lambda c: c.pop("model_args")), "model_args"),
        "list-args": (card_change(lambda c: c.update(model_args=[1, 2])), "model_args"),
        "no-names": (card_change(lambda c: c.update(class_names="abc")), "class_names"),
        "int32": (to_int32, "torch.int32"),
    }
    for name, (change, needle) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(_retag(blob, change))
        with pytest.raises(FmnistError, match=needle):
            load_safetensors(path)
    model, card = load_safetensors(paths[0])  # the untouched file still loads
    assert card["model"] == "mlp"


# ------------------------------------------------------------------ a full disk
def _full_disk_at(monkeypatch, prefix: str) -> None:
    """ENOSPC when a temp file whose name starts with `prefix` is flushed to disk."""
    import errno
    import os

    import fmnist.fsutil as fsutil

    real_fsync = os.fsync

    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(prefix):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)
    monkeypatch.setattr(fsutil.os, "fsync", fsync)


def test_export_writes_all_its_files_or_none(toy, tmp_path, capsys, monkeypatch):
    run = toy_run(tmp_path)
    out = tmp_path / "x"
    out.mkdir()
    names = ("model.onnx", "model.safetensors", "model.json")
    for name in names:  # an earlier export
        (out / name).write_text("old")
    _full_disk_at(monkeypatch, ".model.json.")  # the last file of the set
    assert main(["export", str(run.dir), "--out", str(out), "--threads", "1"]) == 1
    _one_line_error(capsys, "model.json", "No space left on device", "none of", "intact")
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temp file left
    assert all((out / name).read_text() == "old" for name in names)  # no mixed set
    # a new folder: not left behind, and the message does not claim an earlier export
    assert main(["export", str(run.dir), "--out", str(tmp_path / "new" / "x"), "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert "none of model.onnx, model.safetensors, model.json was written; free some space" in err
    assert "intact" not in err and not (tmp_path / "new").exists()


def test_a_set_of_files_whose_rename_fails_puts_the_old_set_back(tmp_path, monkeypatch):
    import errno
    import os

    import fmnist.fsutil as fsutil
    from fmnist.errors import WriteError

    (tmp_path / "a").write_text("old a")
    (tmp_path / "b").write_text("old b")
    real_replace = os.replace

    def replace(src, dst):
        if str(dst) == str(tmp_path / "b") and ".tmp" in str(src) and not str(src).endswith(".old"):
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst)
    monkeypatch.setattr(fsutil.os, "replace", replace)
    with pytest.raises(WriteError, match="none of a, b, c was written; the earlier ones are intact"):
        fsutil.atomic_write_files({tmp_path / "a": b"new a", tmp_path / "b": b"new b",
                                   tmp_path / "c": b"new c"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert (tmp_path / "a").read_text() == "old a" and (tmp_path / "b").read_text() == "old b"
    monkeypatch.setattr(fsutil.os, "replace", real_replace)
    fsutil.atomic_write_files({tmp_path / "a": b"new a", tmp_path / "d" / "e": b"new e"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "d"]
    assert (tmp_path / "a").read_text() == "new a" and (tmp_path / "d" / "e").read_text() == "new e"


def test_a_comparison_run_without_weights_says_to_keep_them(tmp_path, capsys):
    from conftest import write_member_run
    from fmnist import runs

    comp = tmp_path / "comp"
    cell = write_member_run(comp, "sgd", 0.1, 0, [{"epoch": 0, "val_acc": 0.1}], 0.5)
    runs.save_plan(comp, {"model": "mlp"})
    from fmnist.export.demo import ORT_FILES
    dist = tmp_path / "ort"  # stand-ins, so that the demo gets as far as the run
    dist.mkdir()
    for name in ORT_FILES:
        (dist / name).write_text("// stand-in")
    for command in (["export"], ["demo", "--ort-dir", str(dist)]):
        assert main([*command, str(cell), "--out", str(tmp_path / "out")]) == 1
        _one_line_error(capsys, str(cell), "weights were not kept", "--keep-checkpoints")
    # a run directory outside a comparison keeps the usual message
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "metrics.json"):
        (plain / name).write_bytes((cell / name).read_bytes())
    assert main(["export", str(plain)]) == 1
    _one_line_error(capsys, "no checkpoint")
