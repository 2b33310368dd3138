/* finercam explorer: the numerics (see finercam/explorer/__init__.py). No DOM, no network.
 * They follow the C core (finercam/kernels.py, finercam/_twins.py): half-pixel bilinear
 * resize; min-max with eps 1e-8, an all-equal map -> zeros, a non-finite map -> NaN. Linear
 * methods combine float64 per-class maps (sent as float32 hi + lo) in double, so that a map that
 * is the small difference of two large ones keeps its shape (a Score-CAM map whose raw values
 * span 0.0031-0.0070 is as exact as a steep one); Layer-CAM and Grad-CAM++ round the objective's
 * gradient to float32 where the core rounds it (Math.fround). */
(function (ns) {
  "use strict";
  var EPS = 1e-8;
  var fr = Math.fround;

  function decodeF32(b64) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }

  /* hi + lo, two float32 arrays, as one Float64Array (finercam.explorer.data._hi_lo) */
  function decodeHiLo(hi, lo) {
    var a = decodeF32(hi), b = lo ? decodeF32(lo) : null, out = new Float64Array(a.length);
    for (var i = 0; i < a.length; i++) out[i] = b ? a[i] + b[i] : a[i];
    return out;
  }

  /* --- the objective as coefficients over the stored classes (Explanation._coefficients), for a
   * target at position tpos and references at positions pos among the S stored classes --- */
  function coefficients(S, tpos, pos, gamma, aggregate, reverse, plain) {
    var T = pos.length, g = plain ? 0 : gamma;
    var perRef = aggregate !== "mean" && !plain, G = perRef ? T : 1;
    var coef = [], primary = [], gi, t, s;
    for (gi = 0; gi < G; gi++) { coef.push(new Float64Array(S)); primary.push(new Float64Array(S)); }
    for (t = 0; t < T; t++) {
      var k = perRef ? t : 0, share = perRef ? 1.0 : 1.0 / T;
      if (reverse && !plain) {
        coef[k][pos[t]] += share; primary[k][pos[t]] += share; coef[k][tpos] -= g * share;
      } else {
        coef[k][tpos] += share; primary[k][tpos] += share; coef[k][pos[t]] -= g * share;
      }
    }
    for (gi = 0; gi < G; gi++) for (s = 0; s < S; s++) { coef[gi][s] = fr(coef[gi][s]); primary[gi][s] = fr(primary[gi][s]); }
    return {coef: coef, primary: primary, aggregate: aggregate};
  }

  /* --- one group's signed map at the layer's grid (finercam.methods.signed_maps) --- */
  function linearGroup(L, c, p, out) {
    var n = L.h * L.w, S = c.length, s, i;
    for (i = 0; i < n; i++) out[i] = 0;
    for (s = 0; s < S; s++) {
      var cs = c[s];
      if (cs === 0) continue;
      var m = L.maps.subarray(s * n, (s + 1) * n);
      for (i = 0; i < n; i++) out[i] += cs * m[i];
    }
    if (L.asum) {  // Score-CAM, Eq. 9: the zero-input logit of the gamma-free part
      var b = 0;
      for (s = 0; s < S; s++) b += p[s] * L.baseline[s];
      for (i = 0; i < n; i++) out[i] -= b * L.asum[i];
    }
  }

  function gradientGroup(L, method, c, out) {
    var n = L.h * L.w, K = L.K, S = c.length, g = L.gbuf, k, s, i;
    for (i = 0; i < K * n; i++) g[i] = 0;
    for (s = 0; s < S; s++) {
      var cs = c[s];
      if (cs === 0) continue;
      var Gs = L.G.subarray(s * K * n, (s + 1) * K * n);
      for (i = 0; i < K * n; i++) g[i] += cs * Gs[i];
    }
    for (i = 0; i < K * n; i++) g[i] = fr(g[i]);
    for (i = 0; i < n; i++) out[i] = 0;
    if (method === "layercam") {  // sum_k relu(g) A_k, pixel-wise
      for (k = 0; k < K; k++) for (i = 0; i < n; i++) {
        var gv = g[k * n + i];
        if (gv > 0) out[i] += gv * L.A[k * n + i];
      }
    } else {  // gradcam++: w_k = sum relu(g) g^2 / (2 g^2 + sum(A_k) g^3 + 1e-6)
      for (k = 0; k < K; k++) {
        var wk = 0, sumA = L.sumA[k];
        for (i = 0; i < n; i++) {
          var x = g[k * n + i];
          if (x > 0) { var x2 = x * x; wk += x * (x2 / (2 * x2 + sumA * x2 * x + 1e-6)); }
        }
        wk = fr(wk);
        for (i = 0; i < n; i++) out[i] += wk * L.A[k * n + i];
      }
    }
    for (i = 0; i < n; i++) out[i] = fr(out[i]);
  }

  /* --- ReLU(aggregate over the groups) at the grid (Explanation._aggregate) --- */
  function layerRaw(L, method, co) {
    var n = L.h * L.w, G = co.coef.length, acc = new Float64Array(n), one = L.one, gi, i;
    for (gi = 0; gi < G; gi++) {
      if (L.kind === "linear") linearGroup(L, co.coef[gi], co.primary[gi], one);
      else gradientGroup(L, method, co.coef[gi], one);
      if (G === 1) { for (i = 0; i < n; i++) acc[i] = one[i]; }
      else if (co.aggregate === "max") { for (i = 0; i < n; i++) acc[i] = gi === 0 ? one[i] : Math.max(acc[i], one[i]); }
      else { for (i = 0; i < n; i++) acc[i] += one[i] > 0 ? one[i] : 0; }
    }
    if (G > 1 && co.aggregate !== "max") for (i = 0; i < n; i++) acc[i] = acc[i] / G;
    for (i = 0; i < n; i++) acc[i] = acc[i] > 0 ? acc[i] : 0;
    return acc;
  }

  /* --- half-pixel bilinear resize (align_corners=False), as finercam._twins.resize --- */
  function axis(nIn, nOut) {
    var i0 = new Int32Array(nOut), i1 = new Int32Array(nOut), lam = new Float64Array(nOut);
    var scale = nIn / nOut;
    for (var d = 0; d < nOut; d++) {
      var src = (d + 0.5) * scale - 0.5;
      if (src < 0) src = 0;
      var a = Math.floor(src);
      if (a > nIn - 1) a = nIn - 1;
      i0[d] = a; i1[d] = Math.min(a + 1, nIn - 1); lam[d] = src - a;
    }
    return {i0: i0, i1: i1, lam: lam};
  }

  function resize(m, h, w, H, W, ax, out) {
    var rows = ax.rows, cols = ax.cols, row = new Float64Array(w);
    for (var y = 0; y < H; y++) {
      var r0 = rows.i0[y] * w, r1 = rows.i1[y] * w, ly = rows.lam[y];
      for (var c = 0; c < w; c++) row[c] = m[r0 + c] + ly * (m[r1 + c] - m[r0 + c]);
      var o = y * W;
      for (var x = 0; x < W; x++) {
        var a = row[cols.i0[x]];
        out[o + x] = a + cols.lam[x] * (row[cols.i1[x]] - a);
      }
    }
  }

  function minmaxInPlace(u) {
    var lo = Infinity, hi = -Infinity, n = u.length, i;
    for (i = 0; i < n; i++) {
      var v = u[i];
      if (!isFinite(v)) { u.fill(NaN); return u; }
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (hi === lo) { u.fill(0); return u; }
    var scale = 1 / (hi - lo + EPS);
    for (i = 0; i < n; i++) u[i] = (u[i] - lo) * scale;
    return u;
  }

  /* Pearson correlation of two maps of one grid (finercam.diagnose.map_correlation): NaN where
   * either is constant or not finite */
  function pearson(a, b) {
    var n = a.length, ma = 0, mb = 0, i;
    for (i = 0; i < n; i++) { ma += a[i]; mb += b[i]; }
    ma /= n; mb /= n;
    var sab = 0, saa = 0, sbb = 0;
    for (i = 0; i < n; i++) {
      var x = a[i] - ma, y = b[i] - mb;
      sab += x * y; saa += x * x; sbb += y * y;
    }
    var den = Math.sqrt(saa * sbb);
    return den > 0 && isFinite(den) ? sab / den : NaN;
  }

  ns.numerics = {decodeF32: decodeF32, decodeHiLo: decodeHiLo, coefficients: coefficients, layerRaw: layerRaw,
                 axis: axis, resize: resize, minmax: minmaxInPlace, pearson: pearson};
})(window.finercamParts = window.finercamParts || {});
