/* finercam explorer: share and keep. The view's state in the URL fragment (opening the URL
 * restores it) and the overlay as a PNG at the photo's own size. Methods of the Explorer of
 * static/explorer.js. */
(function (P) {
  "use strict";
  var Explorer = P.Explorer, NUM = P.numerics, CMAPS = P.COLORMAPS, el = P.el, lutIndex = P.lutIndex;
  var HASH_KEYS = {image: "int", target: "int", refs: "ints", gamma: "num", agg: "str", layer: "str",
                   cmap: "str", base: "bool", reverse: "bool", opacity: "num"};

  /* ----------------------------- the URL fragment ----------------------------- */
  Explorer.prototype.hash = function () {
    var st = this.st;
    return "#" + ["image=" + st.image, "target=" + this.targets[st.image], "refs=" + this.refs[st.image].join(","),
      "gamma=" + st.gamma, "agg=" + st.aggregate, "layer=" + encodeURIComponent(st.layer), "cmap=" + st.cmap,
      "base=" + (st.base ? 1 : 0), "reverse=" + (st.reverse ? 1 : 0), "opacity=" + st.opacity].join("&");
  };

  function parseHash(text) {
    var out = {};
    text.replace(/^#/, "").split("&").forEach(function (part) {
      if (!part) return;
      var kv = part.split("="), key = decodeURIComponent(kv[0]), raw = decodeURIComponent(kv.slice(1).join("="));
      var kind = HASH_KEYS[key], name = key === "refs" ? "references" : key === "agg" ? "aggregate" : key;
      if (!kind) return;
      if (kind === "int") out[name] = /^-?\d+$/.test(raw) ? parseInt(raw, 10) : raw;
      else if (kind === "ints") out[name] = raw.split(",").map(function (v) { return /^-?\d+$/.test(v) ? parseInt(v, 10) : v; });
      else if (kind === "num") out[name] = raw === "" ? raw : Number(raw);
      else if (kind === "bool") out[name] = raw === "1" || raw === "true";
      else out[name] = raw;
    });
    return out;
  }

  Explorer.prototype.restoreFromHash = function (link) {
    var h = link === undefined ? window.location.hash : link;
    if (!h || h.length < 2) { this.writeHash(); return; }
    try { this.set(parseHash(h)); this.message.textContent = ""; }
    catch (e) { this.message.textContent = "the link's view could not be restored: " + e.message; this.writeHash(); }
  };

  Explorer.prototype.writeHash = function () {
    if (!this.keepHash) return;
    try { window.history.replaceState(null, "", this.hash()); } catch (e) { /* a sandboxed frame: no URL to keep */ }
  };

  /* the overlay at the photo's own size, as finercam's viz.overlay computes it: the map resized
   * (half-pixel bilinear) to the photo, coloured, (1 - opacity) photo + opacity colour, rounded */
  Explorer.prototype.overlayCanvas = function () {
    var photo = this.photo, has = this.data.images[this.st.image].image && photo.naturalWidth > 0;
    var PW = has ? photo.naturalWidth : this.W, PH = has ? photo.naturalHeight : this.H;
    var m = this.current;
    if (PW !== this.W || PH !== this.H) {
      m = new Float64Array(PW * PH);
      NUM.resize(this.current, this.H, this.W, PH, PW, {rows: NUM.axis(this.H, PH), cols: NUM.axis(this.W, PW)}, m);
    }
    var c = el("canvas", {width: String(PW), height: String(PH)}), g = c.getContext("2d");
    if (has) g.drawImage(photo, 0, 0);
    var img = g.getImageData(0, 0, PW, PH), px = img.data, a = has ? this.st.opacity : 1, lut = CMAPS[this.st.cmap];
    for (var i = 0; i < PW * PH; i++) {
      var v = m[i], j = 4 * i;
      px[j + 3] = 255;
      if (v !== v) continue;
      var q = 3 * lutIndex(v);
      for (var ch = 0; ch < 3; ch++) px[j + ch] = Math.round((1 - a) * px[j + ch] + a * lut[q + ch]);
    }
    g.putImageData(img, 0, 0);
    return c;
  };

  Explorer.prototype.filename = function () {
    var safe = function (t) { return String(t).replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, ""); };
    var st = this.st;
    return "finercam-" + safe(this.name(this.targets[st.image])) + (st.base ? "" : "-not-" +
      this.refs[st.image].map(this.name, this).map(safe).join("_")) + "-" + safe(st.layer) + ".png";
  };

  Explorer.prototype.download = function () {
    var c = this.overlayCanvas(), name = this.filename(), self = this;
    return new Promise(function (resolve) {
      c.toBlob(function (blob) {
        var url = URL.createObjectURL(blob), a = el("a", {href: url, download: name});
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
        self.message.textContent = "";
        resolve(name);
      }, "image/png");
    });
  };

  P.parseHash = parseHash;
})(window.finercamParts);
