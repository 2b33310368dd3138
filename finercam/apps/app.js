/* finercam app: the upload form above the interactive view (finercam/explorer.js).
 * One POST /api/explain per image (and per model or method change); everything else happens in
 * the page. Requests go to this server only. */
window.finercamApp = function (api) {
  "use strict";
  var box = document.getElementById("finercam-app"), root = document.getElementById("finercam-root");
  var lastFile = null, busy = false;
  box.className = "fc-upload";
  box.innerHTML =
    '<h1>finercam app</h1>' +
    '<div class="fc-form">' +
    '<label>model <select id="fc-model"></select></label>' +
    '<label>method <select id="fc-method"></select></label>' +
    '<label>image <input type="file" id="fc-file" accept="image/*"></label></div>' +
    '<div class="fc-drop" id="fc-drop" tabindex="0" role="button" aria-label="drop an image here, or press Enter to choose one">drop an image here (or choose one above): one model call, then explore ' +
    'gamma, references and aggregation in this page</div>' +
    '<p id="fc-status" role="status"></p><ul class="fc-preds" id="fc-preds" aria-label="top-5 predictions: pick the class to explain"></ul>';
  var model = box.querySelector("#fc-model"), method = box.querySelector("#fc-method");
  var file = box.querySelector("#fc-file"), drop = box.querySelector("#fc-drop");
  var status = box.querySelector("#fc-status"), preds = box.querySelector("#fc-preds");

  function mark() {  // the top-5 entry that is the target now
    var st = api.state();
    [].forEach.call(preds.querySelectorAll("button"), function (b) {
      b.classList.toggle("fc-on", st !== null && Number(b.getAttribute("data-class")) === st.target);
    });
  }
  function say(text, error) { status.textContent = text; status.className = error ? "fc-error" : ""; }
  function option(sel, value, text) { var o = document.createElement("option"); o.value = value; o.textContent = text; sel.appendChild(o); }

  fetch("/api/models").then(function (r) { return r.json(); }).then(function (c) {
    c.models.forEach(function (m) { option(model, m.name, m.name + " \u2014 " + m.description); });
    c.methods.forEach(function (m) { option(method, m, m); });
  }).catch(function (e) { say("cannot reach the app: " + e, true); });

  function explain(f) {
    if (!f || busy) return;
    lastFile = f; busy = true;
    say("explaining " + f.name + " with " + model.value + " / " + method.value + " \u2026");
    var t0 = performance.now();
    fetch("/api/explain?model=" + encodeURIComponent(model.value) + "&method=" + encodeURIComponent(method.value),
          {method: "POST", body: f, headers: {"Content-Type": f.type || "application/octet-stream"}})
      .then(function (r) { return r.json().then(function (j) { return {ok: r.ok, status: r.status, body: j}; }); })
      .then(function (a) {
        busy = false;
        if (!a.ok) { say(a.body.error || ("error " + a.status), true); return; }
        preds.innerHTML = "";
        api.mount(root, a.body.view, {restore: false});
        var stored = a.body.view.images[0].candidates;
        a.body.predictions.forEach(function (p) {
          // a top-5 entry is a button: it makes that class the target (any stored class can be)
          var li = document.createElement("li"), b = document.createElement("button");
          b.type = "button"; b.className = "fc-pred"; b.setAttribute("data-class", String(p.id));
          b.innerHTML = "<b></b> ";
          b.firstChild.textContent = (100 * p.probability).toFixed(1) + "%";
          b.appendChild(document.createTextNode(p.name));
          if (stored.indexOf(p.id) < 0) { b.disabled = true; b.title = "not among the stored classes"; }
          else b.title = "explain " + p.name + " (not the references)";
          b.addEventListener("click", function () { api.set({target: p.id}); mark(); });
          li.appendChild(b);
          preds.appendChild(li);
        });
        mark();
        window.finercamAppLast = {seconds: a.body.seconds, roundTripMs: performance.now() - t0, model: a.body.model, method: a.body.method};
        say(f.name + ": " + a.body.model + ", " + a.body.method + " (model call " + (1000 * a.body.seconds).toFixed(0) +
            " ms); top-5 below (click one to explain it), then explore without further model calls");
      })
      .catch(function (e) { busy = false; say("the request failed: " + e, true); });
  }
  file.addEventListener("change", function () { explain(file.files[0]); });
  drop.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); file.click(); } });
  root.addEventListener("change", mark);
  [model, method].forEach(function (s) { s.addEventListener("change", function () { explain(lastFile); }); });
  drop.addEventListener("dragover", function (e) { e.preventDefault(); drop.classList.add("fc-over"); });
  drop.addEventListener("dragleave", function () { drop.classList.remove("fc-over"); });
  drop.addEventListener("drop", function (e) {
    e.preventDefault(); drop.classList.remove("fc-over");
    if (e.dataTransfer.files.length) explain(e.dataTransfer.files[0]);
  });
};
