// The page: a drawing pad and a file input -> prepare.js -> model.onnx in onnxruntime-web
// (wasm, one thread: no SharedArrayBuffer, so no COOP/COEP headers; every file local).
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const pad = $("pad"), fed = $("fed"), status = $("status");
  const MAX_PIXELS = 64000000; // as images.py: larger pictures are refused
  let session = null, info = null, queue = Promise.resolve();

  function say(text, error) {
    status.textContent = text;
    status.className = error ? "error" : "";
  }

  // ---- the model ------------------------------------------------------------------
  async function start() {
    if (location.protocol === "file:") {
      say("open this page through a web server: python -m http.server --directory " +
          "<this folder>, then http://127.0.0.1:8000/", true);
      return;
    }
    ort.env.wasm.numThreads = 1; // no threads: works without cross-origin isolation
    ort.env.wasm.wasmPaths = new URL("ort/", location.href).href; // never a CDN
    info = await (await fetch("model.json")).json();
    session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
    const acc = info.test_accuracy == null ? "" :
      ` · ${(100 * info.test_accuracy).toFixed(2)}% on the ${info.test_images.toLocaleString("en")} test images`;
    $("info").textContent = `${info.model} from ${info.run}${acc} · onnxruntime-web ` +
      `${info.ort_version}, offline`;
    clearPad();
    say("ready: draw, or drop a picture");
    document.body.dataset.ready = "1";
  }

  // ---- one picture -> prediction ----------------------------------------------------
  function classify(rgba, width, height, source) {
    queue = queue.then(async () => { // one run at a time: a session is not re-entrant
      const prepared = FmnistPrepare.preparePicture(rgba, width, height);
      showFed(prepared.pixels);
      const input = new ort.Tensor("uint8", prepared.pixels, [1, 28, 28]);
      const out = await session.run({ [info.input_name]: input });
      showProbabilities(Array.from(out.probabilities.data), source);
    }).catch((err) => say(`could not classify: ${err.message || err}`, true));
    return queue;
  }

  function showFed(pixels) {
    const ctx = fed.getContext("2d");
    const img = ctx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      img.data.set([pixels[i], pixels[i], pixels[i], 255], 4 * i);
    }
    ctx.putImageData(img, 0, 0);
  }

  function showProbabilities(probs, source) {
    const best = probs.indexOf(Math.max(...probs));
    const name = info.class_names[best];
    const top = $("top");
    top.textContent = `${name} (${(100 * probs[best]).toFixed(1)}%)`;
    top.dataset.label = name;
    top.dataset.source = source;
    const bars = $("bars");
    bars.replaceChildren();
    probs.forEach((p, i) => {
      const label = document.createElement("span");
      label.textContent = info.class_names[i];
      const bar = document.createElement("div");
      bar.className = i === best ? "bar top" : "bar";
      const fill = document.createElement("div");
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      bar.appendChild(fill);
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = `${(100 * p).toFixed(1)}%`;
      bars.append(label, bar, pct);
    });
    say(`${source}: ${name}`);
  }

  // ---- drawing: black ink on white paper, prepared like a photo of a drawing ----------
  function clearPad() {
    const ctx = pad.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
  }

  let drawing = false, last = null;
  function point(e) {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
  }
  pad.addEventListener("pointerdown", (e) => {
    drawing = true;
    last = point(e);
    pad.setPointerCapture(e.pointerId);
  });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const ctx = pad.getContext("2d"), p = point(e);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 22;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(last[0], last[1]);
    ctx.lineTo(p[0], p[1]);
    ctx.stroke();
    last = p;
  });
  function penUp() {
    if (!drawing || !session) { drawing = false; return; }
    drawing = false;
    const data = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height);
    classify(data.data, pad.width, pad.height, "drawing");
  }
  pad.addEventListener("pointerup", penUp);
  pad.addEventListener("pointercancel", penUp);
  $("clear").addEventListener("click", clearPad);

  // ---- a picture file: decoded at full size, its raw pixels (no colour conversion) ----
  async function openFile(file) {
    if (!session) return;
    try {
      const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none",
                                                     premultiplyAlpha: "none" });
      const w = bitmap.width, h = bitmap.height;
      if (w * h > MAX_PIXELS) throw new Error(`${w} x ${h} pixels; shrink it first`);
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(bitmap, 0, 0);
      const data = ctx.getImageData(0, 0, w, h);
      // show it on the pad, fitted, on white paper
      clearPad();
      const k = Math.min(pad.width / w, pad.height / h);
      pad.getContext("2d").drawImage(bitmap, (pad.width - w * k) / 2, (pad.height - h * k) / 2, w * k, h * k);
      await classify(data.data, w, h, file.name);
    } catch (err) {
      say(`${file.name}: not a picture this browser can read (${err.message || err})`, true);
    }
  }
  $("file").addEventListener("change", (e) => {
    if (e.target.files.length) openFile(e.target.files[0]);
    e.target.value = ""; // the same file chosen again fires again
  });
  const drop = $("drop");
  for (const target of [drop, pad]) {
    target.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    target.addEventListener("dragleave", () => drop.classList.remove("over"));
    target.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files.length) openFile(e.dataTransfer.files[0]);
    });
  }

  start().catch((err) => say(`the model did not load: ${err.message || err}`, true));
})();
