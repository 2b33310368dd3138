/* finercam explorer: the page's scripting interface, window.finercam (see
 * finercam/explorer/__init__.py), and the start: the view of the JSON element #finercam-data,
 * then the app's script when there is one (finercam app). */
(function (P) {
  "use strict";
  var Explorer = P.Explorer, NUM = P.numerics, CMAPS = P.COLORMAPS, CMAP_NAMES = P.COLORMAP_NAMES;

  /* ------------------------------- public API -------------------------------- */
  var current = null;
  var api = {
    mount: function (root, data, options) { current = new Explorer(root, data, options); return current.state(); },
    set: function (s) { if (!current) throw new Error("no explanation loaded"); return current.set(s); },
    state: function () { return current ? current.state() : null; },
    map: function () { if (!current) throw new Error("no explanation loaded"); return current.mapObject(); },
    download: function () { if (!current) throw new Error("no explanation loaded"); return current.download(); },
    lastLatency: function () { return current ? current.lastLatency : null; },
    colormaps: CMAP_NAMES.slice(),
    _internals: {coefficients: NUM.coefficients, axis: NUM.axis, resize: NUM.resize, minmax: NUM.minmax,
                 pearson: NUM.pearson, words: P.words, overlay: function () { return current.overlayCanvas(); },
                 colormaps: CMAPS}
  };
  window.finercam = api;

  window.addEventListener("hashchange", function () { if (current) current.restoreFromHash(); });

  function start() {
    var node = document.getElementById("finercam-data");
    var data = node ? JSON.parse(node.textContent) : null;
    var root = document.getElementById("finercam-root");
    if (data && root) api.mount(root, data);
    if (window.finercamApp) window.finercamApp(api);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})(window.finercamParts);
