/* finercam explorer: recombines an Explanation in the browser (see finercam/explorer.py).
 * No network access: everything the page shows comes from the JSON element #finercam-data (or,
 * in `finercam app`, from the app's own /api/explain answer).
 * Numerics follow the C core (finercam/kernels.py, finercam/_reference.py): sums in double,
 * rounded to float32 (Math.fround) where the core rounds; half-pixel bilinear resize; min-max
 * with eps 1e-8, an all-equal map -> zeros, a non-finite map -> NaN. */
(function () {
  "use strict";
  var EPS = 1e-8;
  var AGGREGATES = ["mean", "max", "mean_after_relu"];
  var fr = Math.fround;

  function decodeF32(b64) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }

  /* --- the objective as coefficients over the stored classes (Explanation._coefficients) --- */
  function coefficients(S, pos, gamma, aggregate, reverse, plain) {
    var T = pos.length, g = plain ? 0 : gamma;
    var perRef = aggregate !== "mean" && !plain, G = perRef ? T : 1;
    var coef = [], primary = [];
    for (var gi = 0; gi < G; gi++) { coef.push(new Float64Array(S)); primary.push(new Float64Array(S)); }
    for (var t = 0; t < T; t++) {
      var k = perRef ? t : 0, share = perRef ? 1.0 : 1.0 / T;
      if (reverse && !plain) {
        coef[k][pos[t]] += share; primary[k][pos[t]] += share; coef[k][0] -= g * share;
      } else {
        coef[k][0] += share; primary[k][0] += share; coef[k][pos[t]] -= g * share;
      }
    }
    for (gi = 0; gi < G; gi++) for (var s = 0; s < S; s++) { coef[gi][s] = fr(coef[gi][s]); primary[gi][s] = fr(primary[gi][s]); }
    return {coef: coef, primary: primary};
  }

  /* --- one group's signed map at the layer's grid (finercam.methods.method_groups) --- */
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
      b = fr(b);
      for (i = 0; i < n; i++) out[i] -= b * L.asum[i];
    }
    for (i = 0; i < n; i++) out[i] = fr(out[i]);
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
    if (method === "layercam") {  // sum_k relu(g_k) A_k, pixel-wise
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
    if (G > 1 && co.aggregate !== "max") for (i = 0; i < n; i++) acc[i] = fr(acc[i] / G);
    for (i = 0; i < n; i++) acc[i] = acc[i] > 0 ? acc[i] : 0;
    return acc;
  }

  /* --- half-pixel bilinear resize (align_corners=False), as finercam._reference.resize --- */
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

  /* --- colour: the jet map of matplotlib (piecewise linear), 256 entries --- */
  var JET = (function () {
    var lut = new Uint8Array(256 * 3);
    function seg(x, pts) {
      for (var i = 1; i < pts.length; i++) if (x <= pts[i][0]) {
        var a = pts[i - 1], b = pts[i];
        return a[1] + (b[1] - a[1]) * (x - a[0]) / (b[0] - a[0]);
      }
      return pts[pts.length - 1][1];
    }
    var R = [[0, 0], [0.35, 0], [0.66, 1], [0.89, 1], [1, 0.5]];
    var Gc = [[0, 0], [0.125, 0], [0.375, 1], [0.64, 1], [0.91, 0], [1, 0]];
    var B = [[0, 0.5], [0.11, 1], [0.34, 1], [0.65, 0], [1, 0]];
    for (var i = 0; i < 256; i++) {
      var x = i / 255;
      lut[3 * i] = Math.round(255 * seg(x, R)); lut[3 * i + 1] = Math.round(255 * seg(x, Gc));
      lut[3 * i + 2] = Math.round(255 * seg(x, B));
    }
    return lut;
  })();

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }

  /* ================================ the explorer ================================ */
  function Explorer(root, data) {
    this.root = root;
    this.data = data;
    this.H = data.size[0]; this.W = data.size[1];
    this.fixed = data.objective === "pgc";
    this.images = data.images.map(this.prepare, this);
    this.refs = data.images.map(function (im) { return im.references.slice(); });
    this.st = {image: 0, gamma: data.gamma, aggregate: data.aggregate, base: !!data.base, reverse: !!data.reverse};
    this.current = new Float64Array(this.H * this.W);
    this.build();
    this.render();
  }

  Explorer.prototype.prepare = function (im) {
    var self = this, out = {src: im};
    if (im.fixed) {
      out.fixed = {map: decodeF32(im.fixed.map), base: decodeF32(im.fixed.base)};
      return out;
    }
    out.layers = im.layers.map(function (l) {
      var n = l.h * l.w, L = {kind: l.kind, h: l.h, w: l.w, one: new Float64Array(n),
        ax: {rows: axis(l.h, self.H), cols: axis(l.w, self.W)}};
      if (l.kind === "linear") {
        L.maps = decodeF32(l.maps);
        if (l.asum) { L.asum = decodeF32(l.asum); L.baseline = l.baseline; }
      } else {
        L.K = l.K; L.A = decodeF32(l.A); L.G = decodeF32(l.G); L.gbuf = new Float64Array(l.K * n);
        L.sumA = new Float64Array(l.K);
        for (var k = 0; k < l.K; k++) { var s = 0; for (var i = 0; i < n; i++) s += L.A[k * n + i]; L.sumA[k] = s; }
      }
      return L;
    });
    return out;
  };

  Explorer.prototype.name = function (id) {
    var n = this.data.names[String(id)];
    return n === undefined ? "class " + id : n;
  };

  /* the normalised map of the current state, (H*W) doubles (Explanation._normalise) */
  Explorer.prototype.compute = function () {
    var im = this.images[this.st.image], out = this.current, i;
    if (im.fixed) { out.set(this.st.base ? im.fixed.base : im.fixed.map); return out; }
    var cand = im.src.candidates, refs = this.refs[this.st.image];
    var pos = refs.map(function (r) { return cand.indexOf(r); });
    var co = coefficients(cand.length, pos, this.st.gamma, this.st.aggregate, this.st.reverse, this.st.base);
    co.aggregate = this.st.aggregate;
    var layers = im.layers, method = this.data.method;
    if (layers.length === 1) {
      var L = layers[0];
      resize(layerRaw(L, method, co), L.h, L.w, this.H, this.W, L.ax, out);
      return minmaxInPlace(out);
    }
    var tmp = new Float64Array(out.length);
    out.fill(0);
    layers.forEach(function (L) {
      resize(layerRaw(L, method, co), L.h, L.w, this.H, this.W, L.ax, tmp);
      minmaxInPlace(tmp);
      for (i = 0; i < tmp.length; i++) out[i] += tmp[i];
    }, this);
    for (i = 0; i < out.length; i++) out[i] /= layers.length;
    return minmaxInPlace(out);
  };

  /* ---------------------------------- state ---------------------------------- */
  Explorer.prototype.state = function () {
    var im = this.data.images[this.st.image];
    return {image: this.st.image, gamma: this.st.gamma, references: this.refs[this.st.image].slice(),
            aggregate: this.st.aggregate, base: this.st.base, reverse: this.st.reverse,
            target: im.target, method: this.data.method, objective: this.data.objective};
  };

  Explorer.prototype.set = function (s) {
    if (s === null || typeof s !== "object") throw new TypeError("finercam.set takes an object");
    var next = Object.assign({}, this.st), refs = null;
    if ("image" in s) {
      if (!Number.isInteger(s.image) || s.image < 0 || s.image >= this.images.length)
        throw new RangeError("image must be an integer in [0, " + this.images.length + "), got " + s.image);
      next.image = s.image;
    }
    if ("gamma" in s) {
      if (typeof s.gamma !== "number" || !isFinite(s.gamma) || s.gamma < 0)
        throw new RangeError("gamma must be a finite number >= 0, got " + s.gamma);
      next.gamma = s.gamma;
    }
    if ("aggregate" in s) {
      if (AGGREGATES.indexOf(s.aggregate) < 0) throw new RangeError("aggregate must be one of " + AGGREGATES.join(", "));
      next.aggregate = s.aggregate;
    }
    ["base", "reverse"].forEach(function (k) {
      if (k in s) {
        if (typeof s[k] !== "boolean") throw new TypeError(k + " must be a boolean");
        next[k] = s[k];
      }
    });
    if ("references" in s) refs = this.checkRefs(next.image, s.references);
    if (this.fixed && (next.gamma !== this.st.gamma || refs || next.aggregate !== this.st.aggregate || next.reverse !== this.st.reverse))
      throw new Error("an objective='pgc' explanation cannot be recombined: only image and base can change");
    this.st = next;
    if (refs) this.refs[next.image] = refs;
    this.sync();
    this.render();
    return this.state();
  };

  Explorer.prototype.checkRefs = function (image, refs) {
    var cand = this.data.images[image].candidates, stored = cand.slice(1);
    if (!Array.isArray(refs) || refs.length === 0) throw new TypeError("references must be a non-empty array of class ids");
    refs.forEach(function (r, i) {
      if (!Number.isInteger(r) || stored.indexOf(r) < 0)
        throw new RangeError("references holds class " + r + ", whose weights were not stored (stored: " + stored.join(", ") + ")");
      if (refs.indexOf(r) !== i) throw new RangeError("references holds duplicates");
    });
    return refs.slice();
  };

  Explorer.prototype.mapObject = function () {
    return {width: this.W, height: this.H, data: Array.from(this.current)};
  };

  /* ---------------------------------- view ---------------------------------- */
  Explorer.prototype.build = function () {
    var self = this, d = this.data;
    this.root.innerHTML = "";
    var head = el("div", {class: "fc-head"}, [
      el("h1", {text: d.title}),
      el("p", {class: "fc-sub", text: "method " + d.method + (this.fixed ? " (objective pgc: fixed map)" : "") +
        " \u00b7 layer" + (d.layers.length > 1 ? "s " : " ") + d.layers.join(", ") + " \u00b7 " + this.W + " \u00d7 " + this.H +
        " \u00b7 recombined in this page, no model call"})]);
    this.thumbs = el("div", {class: "fc-thumbs"});
    if (this.images.length > 1) d.images.forEach(function (im, i) {
      var b = el("button", {class: "fc-thumb", "data-image": String(i), title: self.name(im.target)});
      if (im.image) b.appendChild(el("img", {src: im.image, alt: "image " + i}));
      b.appendChild(el("span", {text: i + ": " + self.name(im.target)}));
      b.addEventListener("click", function () { self.set({image: i}); });
      self.thumbs.appendChild(b);
    });
    this.photo = el("img", {class: "fc-photo", alt: "photo"});
    this.photo2 = el("img", {class: "fc-photo", alt: "photo under the map"});
    this.canvas = el("canvas", {class: "fc-overlay", width: String(this.W), height: String(this.H)});
    this.ctx = this.canvas.getContext("2d");
    this.pixels = this.ctx.createImageData(this.W, this.H);
    var stage = el("div", {class: "fc-stage"}, [this.photo2, this.canvas]);
    var stages = [stage], aspect = this.H / this.W;
    this.caption = el("p", {class: "fc-caption"});
    this.why = el("p", {class: "fc-why"});
    var figs = el("div", {class: "fc-figs"}, [
      el("figure", {}, [el("div", {class: "fc-stage"}, [this.photo]), el("figcaption", {text: "photo"})]),
      el("figure", {}, [stage, el("figcaption", {text: "map over the photo"})])]);
    stages.push(figs.querySelector(".fc-stage"));
    stages.forEach(function (s) { s.style.height = Math.round(300 * aspect) + "px"; });  // the input's shape

    this.gamma = el("input", {type: "range", min: "0", max: "3", step: "0.01", id: "fc-gamma", "aria-label": "gamma"});
    this.gammaOut = el("output", {for: "fc-gamma", class: "fc-value"});
    this.gamma.addEventListener("input", function () {
      var t0 = performance.now();
      self.set({gamma: parseFloat(self.gamma.value)});
      self.lastLatency = performance.now() - t0;
    });
    this.alpha = el("input", {type: "range", min: "0", max: "1", step: "0.05", value: "0.5", id: "fc-alpha", "aria-label": "map opacity"});
    this.alpha.addEventListener("input", function () { self.canvas.style.opacity = self.alpha.value; });
    this.canvas.style.opacity = "0.5";
    this.aggs = el("div", {class: "fc-radios", role: "radiogroup"});
    AGGREGATES.forEach(function (a) {
      var r = el("input", {type: "radio", name: "fc-aggregate-" + self.uid(), value: a, id: "fc-agg-" + a});
      r.addEventListener("change", function () { if (r.checked) self.set({aggregate: a}); });
      self.aggs.appendChild(el("label", {class: "fc-radio"}, [r, document.createTextNode(" " + a)]));
    });
    this.baseBox = el("input", {type: "checkbox", id: "fc-base"});
    this.baseBox.addEventListener("change", function () { self.set({base: self.baseBox.checked}); });
    this.revBox = el("input", {type: "checkbox", id: "fc-reverse"});
    this.revBox.addEventListener("change", function () { self.set({reverse: self.revBox.checked}); });
    this.refBox = el("div", {class: "fc-refs"});
    this.message = el("p", {class: "fc-message", role: "status"});
    var controls = el("div", {class: "fc-controls"}, [
      el("label", {class: "fc-row"}, [el("span", {text: "gamma"}), this.gamma, this.gammaOut]),
      el("div", {class: "fc-row"}, [el("span", {text: "references"}), this.refBox]),
      el("div", {class: "fc-row"}, [el("span", {text: "aggregation"}), this.aggs]),
      el("label", {class: "fc-row"}, [el("span", {text: "base method"}), this.baseBox,
        el("small", {text: "the plain " + d.method + " map (gamma = 0, target only)"})]),
      el("label", {class: "fc-row"}, [el("span", {text: "reverse"}), this.revBox,
        el("small", {text: "mean_t y_t - gamma y_c (App. C.3)"})]),
      el("label", {class: "fc-row"}, [el("span", {text: "opacity"}), this.alpha]),
      this.message]);
    [this.gamma, this.revBox].concat([].slice.call(this.aggs.querySelectorAll("input"))).forEach(function (c) {
      c.disabled = self.fixed;
    });
    this.root.appendChild(el("div", {class: "fc-view"}, [head, this.thumbs,
      el("div", {class: "fc-main"}, [el("div", {}, [figs, this.caption, this.colorbar(), this.why]), controls])]));
    this.sync();
  };

  Explorer.prototype.uid = function () {
    if (!this._uid) this._uid = Math.random().toString(36).slice(2, 8);
    return this._uid;
  };

  Explorer.prototype.colorbar = function () {
    var c = el("canvas", {class: "fc-colorbar", width: "256", height: "10"}), g = c.getContext("2d");
    var img = g.createImageData(256, 10);
    for (var y = 0; y < 10; y++) for (var x = 0; x < 256; x++) {
      var o = 4 * (y * 256 + x);
      img.data[o] = JET[3 * x]; img.data[o + 1] = JET[3 * x + 1]; img.data[o + 2] = JET[3 * x + 2]; img.data[o + 3] = 255;
    }
    g.putImageData(img, 0, 0);
    return el("div", {class: "fc-bar"}, [el("span", {text: "0"}), c, el("span", {text: "1 (min-max normalised)"})]);
  };

  /* controls follow the state (after set() or an image change) */
  Explorer.prototype.sync = function () {
    var self = this, st = this.st, im = this.data.images[st.image];
    this.gamma.value = String(Math.min(st.gamma, 3));
    this.gammaOut.textContent = st.gamma.toFixed(2);
    this.baseBox.checked = st.base; this.revBox.checked = st.reverse;
    [].forEach.call(this.aggs.querySelectorAll("input"), function (r) { r.checked = r.value === st.aggregate; });
    [].forEach.call(this.thumbs.children, function (b, i) { b.classList.toggle("fc-on", i === st.image); });
    this.photo.src = this.photo2.src = im.image || "";
    this.photo.style.visibility = this.photo2.style.visibility = im.image ? "visible" : "hidden";
    var refs = this.refs[st.image];
    this.refBox.innerHTML = "";
    im.candidates.slice(1).forEach(function (c, j) {
      var box = el("input", {type: "checkbox", value: String(c), id: "fc-ref-" + c});
      box.checked = refs.indexOf(c) >= 0;
      box.disabled = self.fixed;
      box.addEventListener("change", function () { self.toggle(c, box); });
      self.refBox.appendChild(el("label", {class: "fc-chip", title: "logit " + im.logits[j + 1].toFixed(3)},
        [box, document.createTextNode(" " + self.name(c))]));
    });
  };

  Explorer.prototype.toggle = function (c, box) {
    var refs = this.refs[this.st.image].filter(function (r) { return r !== c; });
    if (box.checked) refs.push(c);
    if (refs.length === 0) { box.checked = true; this.message.textContent = "keep at least one reference class"; return; }
    this.message.textContent = "";
    this.set({references: refs});
  };

  Explorer.prototype.render = function () {
    var u = this.compute(), px = this.pixels.data, n = u.length;
    for (var i = 0; i < n; i++) {
      var v = u[i], j = 4 * i;
      if (v !== v) { px[j] = px[j + 1] = px[j + 2] = 128; px[j + 3] = 255; continue; }
      var q = v <= 0 ? 0 : v >= 1 ? 255 : (v * 255 + 0.5) | 0;
      px[j] = JET[3 * q]; px[j + 1] = JET[3 * q + 1]; px[j + 2] = JET[3 * q + 2]; px[j + 3] = 255;
    }
    this.ctx.putImageData(this.pixels, 0, 0);
    var st = this.st, im = this.data.images[st.image], self = this;
    var refs = this.refs[st.image].map(function (r) { return self.name(r); }).join(", ");
    this.caption.textContent = st.base ? "base " + this.data.method + ": " + this.name(im.target)
      : (st.reverse ? "mean of [" + refs + "] \u2212 " + st.gamma.toFixed(2) + " \u00d7 " + this.name(im.target)
                    : this.name(im.target) + " \u2212 " + st.gamma.toFixed(2) + " \u00d7 mean of [" + refs + "]") +
        " (" + st.aggregate + ")";
    this.why.textContent = im.why ? "As loaded (gamma " + this.data.gamma.toFixed(2) + "), why the map moved as " +
      "much as it did: " + im.why : "";
  };

  /* ------------------------------- public API -------------------------------- */
  var current = null;
  var api = {
    mount: function (root, data) { current = new Explorer(root, data); return current.state(); },
    set: function (s) { if (!current) throw new Error("no explanation loaded"); return current.set(s); },
    state: function () { return current ? current.state() : null; },
    map: function () { if (!current) throw new Error("no explanation loaded"); return current.mapObject(); },
    lastLatency: function () { return current ? current.lastLatency : null; },
    _internals: {coefficients: coefficients, axis: axis, resize: resize, minmax: minmaxInPlace}
  };
  window.finercam = api;

  function start() {
    var node = document.getElementById("finercam-data");
    var data = node ? JSON.parse(node.textContent) : null;
    var root = document.getElementById("finercam-root");
    if (data && root) api.mount(root, data);
    if (window.finercamApp) window.finercamApp(api);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
