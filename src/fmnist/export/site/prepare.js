// A picture -> the 28x28 uint8 image the model is fed: a port of fmnist's
// src/fmnist/data/images.py (read_picture, _shrink, _grey, prepare), step for step, so the
// page feeds the model what `fmnist predict --images` would. Pure functions of arrays, no
// DOM: node runs the same file in fmnist's tests against the Python original.
//
// Where the browser cannot match Pillow exactly (a test checks the rest bit for bit):
// - decoding: the browser's decoder (same pixels for PNG; JPEG decoders may differ by a
//   grey level or so), and no JPEG "draft" decoding at 1/2..1/8 scale for big photos;
// - transparency: canvas keeps premultiplied colours, so a half-transparent pixel's
//   colour may differ by a level from Pillow's before it is laid on white.
(function (root) {
  "use strict";

  const WORK_EDGE = 1024; // images.py: pictures are box-reduced to about this first
  const PRECISION_BITS = 22; // Pillow's Resample.c: 32 - 8 - 2 fixed-point bits

  // Pillow's RGBA-on-white (Image.alpha_composite onto opaque white), then RGB -> L with
  // its ITU-R 601-2 luma in 16-bit fixed point: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16
  function greyFromRGBA(rgba, width, height) {
    const n = width * height;
    const grey = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      let r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
      const a = rgba[4 * i + 3];
      if (a === 0) {
        r = g = b = 255;
      } else if (a !== 255) {
        r = onWhite(r, a); g = onWhite(g, a); b = onWhite(b, a);
      }
      grey[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
    }
    return grey;
  }

  // AlphaComposite.c with an opaque white destination (7-bit coefficients, /255 by shifts)
  function onWhite(c, a) {
    const coef1 = a * 128, coef2 = 255 * 128 - coef1;
    const t = c * coef1 + 255 * coef2 + (0x80 << 7);
    return (((t >>> 8) + t) >>> 8) >>> 7;
  }

  // images.py _shrink: reduce by an integer factor (box mean per channel) when the longest
  // edge is at least twice WORK_EDGE; a partial box at the edge averages what it covers
  function shrinkRGBA(rgba, width, height) {
    const factor = Math.floor(Math.max(width, height) / WORK_EDGE);
    if (factor < 2) return { rgba: rgba, width: width, height: height };
    const w = Math.ceil(width / factor), h = Math.ceil(height / factor);
    const out = new Uint8ClampedArray(w * h * 4);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const sums = [0, 0, 0, 0];
        let count = 0;
        for (let yy = y * factor; yy < Math.min((y + 1) * factor, height); yy++) {
          for (let xx = x * factor; xx < Math.min((x + 1) * factor, width); xx++) {
            const k = 4 * (yy * width + xx);
            for (let c = 0; c < 4; c++) sums[c] += rgba[k + c];
            count++;
          }
        }
        for (let c = 0; c < 4; c++) out[4 * (y * w + x) + c] = Math.floor((sums[c] + count / 2) / count);
      }
    }
    return { rgba: out, width: w, height: h };
  }

  // numpy's median: the mean of the two middle values for an even count
  function median(values) {
    const a = Float64Array.from(values).sort();
    const m = a.length >> 1;
    return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
  }

  function border(x, w, h) { // np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    const out = [];
    for (let c = 0; c < w; c++) out.push(x[c]);
    for (let c = 0; c < w; c++) out.push(x[(h - 1) * w + c]);
    for (let r = 0; r < h; r++) out.push(x[r * w]);
    for (let r = 0; r < h; r++) out.push(x[r * w + w - 1]);
    return out;
  }

  // Python's round(): halves to even
  function roundHalfEven(v) {
    const f = Math.floor(v), d = v - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  // Pillow's Image.resize(size, LANCZOS) for mode L: separable, horizontal pass first,
  // a Lanczos-3 window stretched by the scale when shrinking, coefficients in 22-bit fixed
  // point (Resample.c: precompute_coeffs, normalize_coeffs_8bpc, ImagingResample*_8bpc)
  function sinc(x) {
    if (x === 0) return 1;
    x *= Math.PI;
    return Math.sin(x) / x;
  }
  function lanczos(x) { return -3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0; }

  function coefficients(inSize, outSize) {
    const scale = inSize / outSize;
    const filterscale = Math.max(scale, 1);
    const support = 3 * filterscale;
    const ksize = Math.ceil(support) * 2 + 1;
    const bounds = new Int32Array(outSize * 2);
    const kk = new Float64Array(outSize * ksize);
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const ss = 1 / filterscale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      let ww = 0;
      for (let x = 0; x < xmax; x++) {
        const w = lanczos((x + xmin - center + 0.5) * ss);
        kk[xx * ksize + x] = w;
        ww += w;
      }
      for (let x = 0; x < xmax; x++) {
        if (ww !== 0) kk[xx * ksize + x] /= ww;
        const k = kk[xx * ksize + x] * (1 << PRECISION_BITS);
        kk[xx * ksize + x] = Math.trunc(k < 0 ? k - 0.5 : k + 0.5);
      }
      bounds[2 * xx] = xmin;
      bounds[2 * xx + 1] = xmax;
    }
    return { bounds: bounds, kk: kk, ksize: ksize };
  }

  function clip8(v) {
    if (v >= 2 ** (PRECISION_BITS + 8)) return 255;
    if (v <= 0) return 0;
    return Math.floor(v / 2 ** PRECISION_BITS);
  }

  function horizontalPass(src, w, h, outW) {
    const c = coefficients(w, outW);
    const out = new Uint8Array(outW * h);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < outW; xx++) {
        const xmin = c.bounds[2 * xx], xmax = c.bounds[2 * xx + 1];
        let s = 1 << (PRECISION_BITS - 1);
        for (let x = 0; x < xmax; x++) s += src[y * w + x + xmin] * c.kk[xx * c.ksize + x];
        out[y * outW + xx] = clip8(s);
      }
    }
    return out;
  }

  function verticalPass(src, w, h, outH) {
    const c = coefficients(h, outH);
    const out = new Uint8Array(w * outH);
    for (let yy = 0; yy < outH; yy++) {
      const ymin = c.bounds[2 * yy], ymax = c.bounds[2 * yy + 1];
      for (let x = 0; x < w; x++) {
        let s = 1 << (PRECISION_BITS - 1);
        for (let y = 0; y < ymax; y++) s += src[(y + ymin) * w + x] * c.kk[yy * c.ksize + y];
        out[yy * w + x] = clip8(s);
      }
    }
    return out;
  }

  // Each pass rounds to 8 bits, so the order matters: Pillow 13 runs the vertical pass
  // first when the height shrinks by more than twice as many pixels as the width (older
  // Pillow: always horizontal first, which can differ by a few grey levels)
  function resizeLanczos(src, w, h, outW, outH) {
    const verticalFirst = h - outH > 0 && h - outH > (w - outW) * 2;
    let cur = src;
    if (verticalFirst) {
      if (outH !== h) cur = verticalPass(cur, w, h, outH);
      if (outW !== w) cur = horizontalPass(cur, w, outH, outW);
    } else {
      if (outW !== w) cur = horizontalPass(cur, w, h, outW);
      if (outH !== h) cur = verticalPass(cur, outW, h, outH);
    }
    return cur;
  }

  // images.py prepare: (h, w) grey -> (28, 28), the object light on black, centred
  function prepare(grey, w, h, invert) {
    let x = Float64Array.from(grey);
    if (invert === undefined || invert === null) { // a light border: a light background
      invert = median(border(x, w, h)) > 127;
    }
    if (invert) x = x.map(function (v) { return 255 - v; });
    const background = median(border(x, w, h));
    x = x.map(function (v) { return Math.min(Math.max(v - background, 0), 255); });
    const rows = [], cols = [];
    for (let r = 0; r < h; r++) {
      let m = 0;
      for (let c = 0; c < w; c++) m = Math.max(m, x[r * w + c]);
      if (m > 25) rows.push(r);
    }
    for (let c = 0; c < w; c++) {
      let m = 0;
      for (let r = 0; r < h; r++) m = Math.max(m, x[r * w + c]);
      if (m > 25) cols.push(c);
    }
    let top = 0, left = 0, ch = h, cw = w;
    if (rows.length && cols.length) { // trim to the object
      top = rows[0]; ch = rows[rows.length - 1] - top + 1;
      left = cols[0]; cw = cols[cols.length - 1] - left + 1;
    }
    const crop = new Uint8Array(cw * ch); // float -> uint8 truncates, as numpy's astype
    for (let r = 0; r < ch; r++) {
      for (let c = 0; c < cw; c++) crop[r * cw + c] = Math.trunc(x[(r + top) * w + c + left]);
    }
    const scale = 28 / Math.max(ch, cw);
    const sw = Math.max(1, roundHalfEven(cw * scale)), sh = Math.max(1, roundHalfEven(ch * scale));
    const small = sw === cw && sh === ch ? crop : resizeLanczos(crop, cw, ch, sw, sh);
    const out = new Uint8Array(28 * 28);
    const oy = (28 - sh) >> 1, ox = (28 - sw) >> 1;
    let peak = 0;
    for (let r = 0; r < sh; r++) {
      for (let c = 0; c < sw; c++) {
        out[(r + oy) * 28 + c + ox] = small[r * sw + c];
        peak = Math.max(peak, small[r * sw + c]);
      }
    }
    if (peak > 0) { // stretch to the full range, as the data set's images use it
      const k = 255 / peak;
      for (let i = 0; i < out.length; i++) out[i] = roundHalfEven(out[i] * k);
    }
    return { pixels: out, inverted: invert };
  }

  // RGBA pixels of a picture (canvas ImageData order) -> what the model is fed
  function preparePicture(rgba, width, height, invert) {
    const small = shrinkRGBA(rgba, width, height);
    return prepare(greyFromRGBA(small.rgba, small.width, small.height), small.width, small.height, invert);
  }

  const api = { preparePicture: preparePicture, prepare: prepare, greyFromRGBA: greyFromRGBA,
                resizeLanczos: resizeLanczos, shrinkRGBA: shrinkRGBA };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.FmnistPrepare = api;
})(this);
