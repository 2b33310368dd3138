/* finercam explorer: the view of an Explanation, recombined in the browser (see
 * finercam/explorer/__init__.py). No network access: everything the page shows comes from the
 * JSON element #finercam-data (or, in `finercam app`, from the app's own /api/explain answer).
 * The numerics are static/numerics.js, the colour maps static/colormaps.js, the URL fragment and
 * the PNG download static/share.js, window.finercam static/api.js. */
(function () {
  "use strict";
  var P = window.finercamParts, NUM = P.numerics, CMAPS = P.COLORMAPS, CMAP_NAMES = P.COLORMAP_NAMES;
  var AGGREGATES = ["mean", "max", "mean_after_relu"], FUSED = "fused";

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }

  function joinOr(names) {
    return names.length === 1 ? names[0] : names.slice(0, -1).join(", ") + " or " + names[names.length - 1];
  }

  /* what a map compares, in words (finercam.explorer.comparison_words) */
  function words(target, refs, reverse, base) {
    if (base) return target;
    return reverse ? joinOr(refs) + ", not " + target : target + ", not " + joinOr(refs);
  }

  /* the colour index matplotlib gives a value in [0, 1]: floor(256 v), 1 -> 255 */
  function lutIndex(v) { return v <= 0 ? 0 : v >= 1 ? 255 : Math.floor(v * 256); }

  /* ================================ the explorer ================================ */
  function Explorer(root, data, options) {
    this.root = root;
    this.data = data;
    this.H = data.size[0]; this.W = data.size[1];
    this.fixed = data.objective === "pgc";
    this.images = data.images.map(this.prepare, this);
    this.targets = data.images.map(function (im) { return im.target; });
    this.refs = data.images.map(function (im) { return im.references.slice(); });
    var layer = data.layer || (data.layers.length > 1 ? FUSED : data.layers[0]);
    this.st = {image: 0, gamma: data.gamma, aggregate: data.aggregate, base: !!data.base, reverse: !!data.reverse,
               layer: this.fixed ? FUSED : layer, cmap: data.cmap || "jet", opacity: 0.5};
    this.current = new Float64Array(this.H * this.W);
    this.baseMap = new Float64Array(this.H * this.W);
    this.correlation = NaN;
    var restore = !options || options.restore !== false, link = window.location.hash;
    this.keepHash = false;          // the link's state is read before the first render writes one
    this.build();
    this.render();
    this.keepHash = true;
    if (restore) this.restoreFromHash(link);
    else this.writeHash();
  }

  Explorer.prototype.prepare = function (im) {
    var self = this, out = {src: im};
    if (im.fixed) {
      out.fixed = {map: NUM.decodeF32(im.fixed.map), base: NUM.decodeF32(im.fixed.base)};
      return out;
    }
    out.layers = im.layers.map(function (l) {
      var n = l.h * l.w, L = {kind: l.kind, h: l.h, w: l.w, one: new Float64Array(n),
        ax: {rows: NUM.axis(l.h, self.H), cols: NUM.axis(l.w, self.W)}};
      if (l.kind === "linear") {
        L.maps = NUM.decodeHiLo(l.maps, l.maps_lo);
        if (l.asum) { L.asum = NUM.decodeHiLo(l.asum, l.asum_lo); L.baseline = l.baseline; }
      } else {
        L.K = l.K; L.A = NUM.decodeF32(l.A); L.G = NUM.decodeF32(l.G); L.gbuf = new Float64Array(l.K * n);
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

  /* the normalised map of the current state (plain: its base map) into out, (H*W) doubles
   * (Explanation._normalise; one layer, or the fusion of all) */
  Explorer.prototype.compute = function (out, plain) {
    var st = this.st, im = this.images[st.image], i;
    if (im.fixed) { out.set(plain || st.base ? im.fixed.base : im.fixed.map); return out; }
    var cand = im.src.candidates, refs = this.refs[st.image];
    var pos = refs.map(function (r) { return cand.indexOf(r); });
    var co = NUM.coefficients(cand.length, cand.indexOf(this.targets[st.image]), pos, st.gamma, st.aggregate,
                              st.reverse, plain || st.base);
    var method = this.data.method;
    var layers = st.layer === FUSED ? im.layers : [im.layers[this.data.layers.indexOf(st.layer)]];
    if (layers.length === 1) {
      var L = layers[0];
      NUM.resize(NUM.layerRaw(L, method, co), L.h, L.w, this.H, this.W, L.ax, out);
      return NUM.minmax(out);
    }
    var tmp = new Float64Array(out.length);
    out.fill(0);
    layers.forEach(function (L) {
      NUM.resize(NUM.layerRaw(L, method, co), L.h, L.w, this.H, this.W, L.ax, tmp);
      NUM.minmax(tmp);
      for (i = 0; i < tmp.length; i++) out[i] += tmp[i];
    }, this);
    for (i = 0; i < out.length; i++) out[i] /= layers.length;
    return NUM.minmax(out);
  };

  /* ---------------------------------- state ---------------------------------- */
  Explorer.prototype.words = function () {
    var self = this, st = this.st;
    return words(this.name(this.targets[st.image]), this.refs[st.image].map(function (r) { return self.name(r); }),
                 st.reverse, st.base);
  };

  Explorer.prototype.state = function () {
    var st = this.st;
    return {image: st.image, target: this.targets[st.image], references: this.refs[st.image].slice(),
            gamma: st.gamma, aggregate: st.aggregate, layer: st.layer, base: st.base, reverse: st.reverse,
            cmap: st.cmap, opacity: st.opacity, method: this.data.method, objective: this.data.objective,
            words: this.words(), correlation: isFinite(this.correlation) ? this.correlation : null};
  };

  Explorer.prototype.set = function (s) {
    if (s === null || typeof s !== "object") throw new TypeError("finercam.set takes an object");
    var next = Object.assign({}, this.st), target = null, refs = null;
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
    if ("layer" in s) {
      if (s.layer !== FUSED && this.data.layers.indexOf(s.layer) < 0)
        throw new RangeError("layer must be one of " + this.data.layers.concat([FUSED]).join(", ") + ", got " + s.layer);
      next.layer = s.layer;
    }
    if ("cmap" in s) {
      if (CMAP_NAMES.indexOf(s.cmap) < 0) throw new RangeError("cmap must be one of " + CMAP_NAMES.join(", ") + ", got " + s.cmap);
      next.cmap = s.cmap;
    }
    if ("opacity" in s) {
      if (typeof s.opacity !== "number" || !(s.opacity >= 0 && s.opacity <= 1))
        throw new RangeError("opacity must be a number in [0, 1], got " + s.opacity);
      next.opacity = s.opacity;
    }
    ["base", "reverse"].forEach(function (k) {
      if (k in s) {
        if (typeof s[k] !== "boolean") throw new TypeError(k + " must be a boolean");
        next[k] = s[k];
      }
    });
    var cand = this.data.images[next.image].candidates;
    if ("target" in s) {
      if (!Number.isInteger(s.target) || cand.indexOf(s.target) < 0)
        throw new RangeError("target must be a stored class, got " + s.target + " (stored: " + cand.join(", ") + ")");
      target = s.target;
    }
    var newTarget = target === null ? this.targets[next.image] : target;
    if ("references" in s) refs = this.checkRefs(next.image, newTarget, s.references);
    else if (target !== null && target !== this.targets[next.image]) {
      // a new target: it leaves the references, the old target takes its place there
      var old = this.targets[next.image];
      refs = this.refs[next.image].map(function (r) { return r === target ? old : r; });
    }
    if (this.fixed && (next.gamma !== this.st.gamma || refs || (target !== null && target !== this.targets[next.image]) ||
                       next.aggregate !== this.st.aggregate || next.reverse !== this.st.reverse || next.layer !== this.st.layer))
      throw new Error("an objective='pgc' explanation cannot be recombined: only image, base, colour map and opacity can change");
    this.st = next;
    if (target !== null) this.targets[next.image] = target;
    if (refs) this.refs[next.image] = refs;
    this.sync();
    this.render();
    return this.state();
  };

  Explorer.prototype.checkRefs = function (image, target, refs) {
    var cand = this.data.images[image].candidates;
    if (!Array.isArray(refs) || refs.length === 0) throw new TypeError("references must be a non-empty array of class ids");
    refs.forEach(function (r, i) {
      if (!Number.isInteger(r) || cand.indexOf(r) < 0)
        throw new RangeError("references holds class " + r + ", whose weights were not stored (stored: " + cand.join(", ") + ")");
      if (r === target) throw new RangeError("references holds the target " + r);
      if (refs.indexOf(r) !== i) throw new RangeError("references holds duplicates");
    });
    return refs.slice();
  };

  Explorer.prototype.mapObject = function () {
    return {width: this.W, height: this.H, data: Array.from(this.current)};
  };

  /* ---------------------------------- view ---------------------------------- */
  Explorer.prototype.build = function () {
    var self = this, d = this.data, uid = Math.random().toString(36).slice(2, 8);
    this.root.innerHTML = "";
    var head = el("div", {class: "fc-head"}, [
      el("h1", {text: d.title}),
      el("p", {class: "fc-sub", text: "method " + d.method + (this.fixed ? " (objective pgc: fixed map)" : "") +
        " \u00b7 layer" + (d.layers.length > 1 ? "s " : " ") + d.layers.join(", ") + " \u00b7 " + this.W + " \u00d7 " + this.H +
        " \u00b7 recombined in this page, no model call"})]);
    this.thumbs = el("div", {class: "fc-thumbs"});
    if (this.images.length > 1) d.images.forEach(function (im, i) {
      var b = el("button", {type: "button", class: "fc-thumb", "data-image": String(i), title: self.name(im.target)});
      if (im.image) b.appendChild(el("img", {src: im.image, alt: ""}));
      b.appendChild(el("span", {text: i + ": " + self.name(im.target)}));
      b.addEventListener("click", function () { self.set({image: i}); });
      self.thumbs.appendChild(b);
    });
    this.photo = el("img", {class: "fc-photo", alt: "the photo"});
    this.photo2 = el("img", {class: "fc-photo", alt: ""});
    this.canvas = el("canvas", {class: "fc-overlay", width: String(this.W), height: String(this.H),
                                role: "img", "aria-label": "the map over the photo"});
    this.ctx = this.canvas.getContext("2d");
    this.pixels = this.ctx.createImageData(this.W, this.H);
    var stage = el("div", {class: "fc-stage"}, [this.photo2, this.canvas]), aspect = this.H / this.W;
    var figs = el("div", {class: "fc-figs"}, [
      el("figure", {}, [el("div", {class: "fc-stage"}, [this.photo]), el("figcaption", {text: "photo"})]),
      el("figure", {}, [stage, el("figcaption", {text: "map over the photo"})])]);
    [].forEach.call(figs.querySelectorAll(".fc-stage"), function (s) { s.style.aspectRatio = String(1 / aspect); });
    this.caption = el("p", {class: "fc-caption", "aria-live": "polite"});
    this.formula = el("p", {class: "fc-formula"});
    this.corr = el("p", {class: "fc-corr"});
    this.why = el("p", {class: "fc-why"});
    this.bar = el("canvas", {class: "fc-colorbar", width: "256", height: "10", role: "img"});

    this.gamma = el("input", {type: "range", min: "0", max: "3", step: "0.01", id: "fc-gamma", "aria-label": "gamma"});
    this.gammaOut = el("output", {for: "fc-gamma", class: "fc-value"});
    this.gamma.addEventListener("input", function () {
      var t0 = performance.now();
      self.slide({gamma: parseFloat(self.gamma.value)});
      self.lastLatency = performance.now() - t0;
    });
    this.alpha = el("input", {type: "range", min: "0", max: "1", step: "0.05", id: "fc-alpha", "aria-label": "map opacity"});
    this.alpha.addEventListener("input", function () { self.slide({opacity: parseFloat(self.alpha.value)}); });
    this.classBox = el("div", {class: "fc-classes", role: "group", "aria-label": "stored classes"});
    this.layerBox = el("div", {class: "fc-radios", role: "radiogroup", "aria-label": "layer"});
    var layerNames = d.layers.length > 1 ? d.layers.concat([FUSED]) : d.layers;
    layerNames.forEach(function (name, i) {
      var r = el("input", {type: "radio", name: "fc-layer-" + uid, value: name, id: name === FUSED ? "fc-layer-fused" : "fc-layer-" + i});
      r.addEventListener("change", function () { if (r.checked) self.set({layer: name}); });
      self.layerBox.appendChild(el("label", {class: "fc-radio"}, [r, " " + (name === FUSED ? "fusion of all" : name)]));
    });
    this.aggs = el("div", {class: "fc-radios", role: "radiogroup", "aria-label": "aggregation"});
    AGGREGATES.forEach(function (a) {
      var r = el("input", {type: "radio", name: "fc-aggregate-" + uid, value: a, id: "fc-agg-" + a});
      r.addEventListener("change", function () { if (r.checked) self.set({aggregate: a}); });
      self.aggs.appendChild(el("label", {class: "fc-radio"}, [r, " " + a]));
    });
    this.cmapSel = el("select", {id: "fc-cmap", "aria-label": "colour map"});
    CMAP_NAMES.forEach(function (c) {
      self.cmapSel.appendChild(el("option", {value: c, text: c === "jet" ? "jet (the paper's)" :
        c === "cividis" ? "cividis (colour-blind safe)" : "viridis (perceptually uniform)"}));
    });
    this.cmapSel.addEventListener("change", function () { self.set({cmap: self.cmapSel.value}); });
    this.baseBox = el("input", {type: "checkbox", id: "fc-base"});
    this.baseBox.addEventListener("change", function () { self.set({base: self.baseBox.checked}); });
    this.revBox = el("input", {type: "checkbox", id: "fc-reverse"});
    this.revBox.addEventListener("change", function () { self.set({reverse: self.revBox.checked}); });
    this.downloadButton = el("button", {type: "button", id: "fc-download", class: "fc-button",
                                        text: "download PNG"});
    this.downloadButton.addEventListener("click", function () { self.download(); });
    this.message = el("p", {class: "fc-message", role: "status"});
    var rows = [
      el("label", {class: "fc-row"}, [el("span", {text: "gamma"}), this.gamma, this.gammaOut]),
      el("div", {class: "fc-row fc-top"}, [el("span", {text: "classes"}), el("div", {class: "fc-cell"}, [
        el("div", {class: "fc-classhead"}, [el("span", {text: "target"}), el("span", {text: "compare with"}),
                                            el("span", {text: "stored class (logit)"})]), this.classBox])]),
      el("div", {class: "fc-row" + (layerNames.length > 1 ? "" : " fc-hidden")}, [el("span", {text: "layer"}), this.layerBox]),
      el("div", {class: "fc-row"}, [el("span", {text: "aggregation"}), this.aggs]),
      el("label", {class: "fc-row"}, [el("span", {text: "base method"}), this.baseBox,
        el("small", {text: "the plain " + d.method + " map (gamma = 0, target only)"})]),
      el("label", {class: "fc-row"}, [el("span", {text: "reverse"}), this.revBox,
        el("small", {text: "mean_t y_t - gamma y_c (App. C.3): what the references have"})]),
      el("label", {class: "fc-row"}, [el("span", {text: "colour map"}), this.cmapSel]),
      el("label", {class: "fc-row"}, [el("span", {text: "opacity"}), this.alpha]),
      el("div", {class: "fc-row"}, [el("span", {text: "keep"}), this.downloadButton,
        el("small", {text: "the overlay at the photo's size; the address bar holds this view"})]),
      this.message];
    var controls = el("div", {class: "fc-controls"}, rows);
    [this.gamma, this.revBox].concat([].slice.call(this.aggs.querySelectorAll("input")),
                                     [].slice.call(this.layerBox.querySelectorAll("input"))).forEach(function (c) {
      c.disabled = self.fixed;
    });
    this.root.appendChild(el("div", {class: "fc-view"}, [head, this.thumbs,
      el("div", {class: "fc-main"}, [el("div", {class: "fc-left"}, [figs, this.caption, this.formula, this.corr,
        el("div", {class: "fc-bar"}, [el("span", {text: "0"}), this.bar, el("span", {text: "1 (min-max normalised)"})]),
        this.why]), controls])]));
    this.uid = uid;
    this.sync();
  };

  Explorer.prototype.drawColorbar = function () {
    var g = this.bar.getContext("2d"), img = g.createImageData(256, 10), lut = CMAPS[this.st.cmap];
    for (var y = 0; y < 10; y++) for (var x = 0; x < 256; x++) {
      var o = 4 * (y * 256 + x);
      img.data[o] = lut[3 * x]; img.data[o + 1] = lut[3 * x + 1]; img.data[o + 2] = lut[3 * x + 2]; img.data[o + 3] = 255;
    }
    g.putImageData(img, 0, 0);
    this.bar.setAttribute("aria-label", "colour bar: " + this.st.cmap);
  };

  /* controls follow the state (after set() or an image change) */
  Explorer.prototype.sync = function () {
    var self = this, st = this.st, im = this.data.images[st.image], target = this.targets[st.image];
    this.gamma.value = String(Math.min(st.gamma, 3));
    this.gammaOut.textContent = st.gamma.toFixed(2);
    this.alpha.value = String(st.opacity);
    this.canvas.style.opacity = String(st.opacity);
    this.baseBox.checked = st.base; this.revBox.checked = st.reverse;
    this.cmapSel.value = st.cmap;
    [].forEach.call(this.aggs.querySelectorAll("input"), function (r) { r.checked = r.value === st.aggregate; });
    [].forEach.call(this.layerBox.querySelectorAll("input"), function (r) { r.checked = r.value === st.layer; });
    [].forEach.call(this.thumbs.children, function (b, i) { b.classList.toggle("fc-on", i === st.image); });
    this.photo.src = this.photo2.src = im.image || "";
    this.photo.style.visibility = this.photo2.style.visibility = im.image ? "visible" : "hidden";
    var refs = this.refs[st.image], focused = document.activeElement && document.activeElement.id;
    this.classBox.innerHTML = "";
    im.candidates.forEach(function (c, j) {
      var radio = el("input", {type: "radio", name: "fc-target-" + self.uid, value: String(c), id: "fc-target-" + c,
                               "aria-label": "explain " + self.name(c)});
      radio.checked = c === target;
      radio.disabled = self.fixed;
      radio.addEventListener("change", function () { if (radio.checked) self.pickTarget(c); });
      var box = el("input", {type: "checkbox", value: String(c), id: "fc-ref-" + c, "aria-label": "compare with " + self.name(c)});
      box.checked = refs.indexOf(c) >= 0;
      box.disabled = self.fixed || c === target;
      box.addEventListener("change", function () { self.toggle(c, box); });
      var row = el("div", {class: "fc-class" + (c === target ? " fc-target" : box.checked ? " fc-ref" : "")}, [
        radio, box, el("label", {class: "fc-chip", for: "fc-ref-" + c, title: self.name(c) + " (class " + c + "), logit " + im.logits[j].toFixed(3),
                                 text: self.name(c)}),
        el("span", {class: "fc-logit", text: im.logits[j].toFixed(2)})]);
      self.classBox.appendChild(row);
    });
    if (focused && /^fc-(target|ref)-/.test(focused)) {  // rebuilt rows keep the keyboard's place
      var again = document.getElementById(focused);
      if (again) again.focus();
    }
    this.drawColorbar();
  };

  Explorer.prototype.pickTarget = function (c) {
    this.message.textContent = "";
    this.set({target: c});
  };

  Explorer.prototype.toggle = function (c, box) {
    var refs = this.refs[this.st.image].filter(function (r) { return r !== c; });
    if (box.checked) refs.push(c);
    if (refs.length === 0) { box.checked = true; this.message.textContent = "keep at least one reference class"; return; }
    this.message.textContent = "";
    this.set({references: refs});
  };

  Explorer.prototype.render = function () {
    var u = this.compute(this.current, false), px = this.pixels.data, n = u.length, lut = CMAPS[this.st.cmap];
    for (var i = 0; i < n; i++) {
      var v = u[i], j = 4 * i;
      if (v !== v) { px[j] = px[j + 1] = px[j + 2] = 128; px[j + 3] = 255; continue; }
      var q = 3 * lutIndex(v);
      px[j] = lut[q]; px[j + 1] = lut[q + 1]; px[j + 2] = lut[q + 2]; px[j + 3] = 255;
    }
    this.ctx.putImageData(this.pixels, 0, 0);
    var st = this.st, im = this.data.images[st.image], self = this, target = this.name(this.targets[st.image]);
    var refs = this.refs[st.image].map(function (r) { return self.name(r); });
    this.caption.textContent = this.words();
    var mean = refs.length > 1 ? "mean of y(" + refs.join(", ") + ")" : "y(" + refs[0] + ")";
    var layer = st.layer === FUSED ? "fusion of " + this.data.layers.join(" + ") : "layer " + st.layer;
    this.formula.textContent = (st.base ? "base " + this.data.method + ": y(" + target + ")"
      : (st.reverse ? mean + " \u2212 " + st.gamma.toFixed(2) + " \u00d7 y(" + target + ")"
                    : "y(" + target + ") \u2212 " + st.gamma.toFixed(2) + " \u00d7 " + mean) + ", " + st.aggregate) +
      " \u00b7 " + layer;
    if (st.base) this.correlation = 1;
    else {
      // the base map depends on the image, the target and the layer only: kept between slider moves
      var key = st.image + "|" + this.targets[st.image] + "|" + st.layer;
      if (this.baseKey !== key) { this.compute(this.baseMap, true); this.baseKey = key; }
      this.correlation = NUM.pearson(this.current, this.baseMap);
    }
    this.corr.textContent = st.base ? "the base map itself" : isFinite(this.correlation)
      ? "r = " + this.correlation.toFixed(3) + " with the base map of " + target + " (Pearson, on the " + this.W +
        " \u00d7 " + this.H + " input grid)"
      : "no correlation: a map is empty (the ReLU removed every value)";
    this.why.textContent = im.why && !this.fixed ? "As loaded (" + this.name(im.target) + ", gamma " + this.data.gamma.toFixed(2) +
      "), why the map moved as much as it did: " + im.why : "";
    this.scheduleHash();
  };

  /* the address bar follows the state: at once, or after a slider stops moving (Chromium
   * throttles a page that replaces its URL hundreds of times in a few seconds) */
  Explorer.prototype.scheduleHash = function () {
    var self = this;
    if (this.hashTimer) { clearTimeout(this.hashTimer); this.hashTimer = null; }
    if (!this.sliding) { this.writeHash(); return; }
    this.hashTimer = setTimeout(function () { self.hashTimer = null; self.writeHash(); }, 200);
  };

  Explorer.prototype.slide = function (s) {
    this.sliding = true;
    try { this.set(s); } finally { this.sliding = false; }
  };

  P.Explorer = Explorer;
  P.el = el;
  P.lutIndex = lutIndex;
  P.words = words;
})();
