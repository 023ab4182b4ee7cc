{% raw %}
(function () {
  "use strict";
  // All untrusted text reaches the DOM through textContent / createTextNode only.
  var D = JSON.parse(document.getElementById("data").textContent);
  var PAGE = 50;
  var S = D.samples, M = D.models, STR = D.strings;
  var state = { q: "", filter: "all", sort: "order", page: 0, cmp: null, metric: D.primary };
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function prompt(s) { return s.p.map(function (i) { return STR[i]; }).join("\n\n"); }
  // A non-finite number arrives as the text "nan", "inf" or "-inf" (JSON has no such numbers): shown as it is.
  function fmt(v, d) { if (typeof v === "string") return v; return (v === null || v === undefined || !isFinite(v)) ? "–" : Number(v).toFixed(d === undefined ? 2 : d); }

  // Search text is built once per sample, lazily, lower-cased.
  var hay = new Array(S.length);
  function haystack(i) {
    if (hay[i] === undefined) {
      var s = S[i], parts = [s.id, prompt(s)].concat(s.r);
      if (s.o) parts = parts.concat(s.o.filter(function (x) { return x !== null; }));
      if (s.c) parts = parts.concat(s.c);
      if (s.sub !== undefined) parts.push(s.sub);
      hay[i] = parts.join("\u0000").toLowerCase();
    }
    return hay[i];
  }

  function score(i, m) {
    var s = S[i].s; if (!s || !s[m]) return null;
    var v = s[m][state.metric]; return v === undefined ? null : v;
  }
  // Delta of the compared model minus base, oriented so that positive means better.
  function delta(i) {
    if (D.base === null || state.cmp === null) return null;
    var a = score(i, state.cmp), b = score(i, D.base);
    if (a === null || b === null) return null;
    return D.higher[state.metric] ? a - b : b - a;
  }
  function pplDelta(i) {
    var s = S[i]; if (D.base === null || s.nll[D.base] === null) return null;
    var best = null;
    for (var m = 0; m < M.length; m++) {
      if (m === D.base || s.nll[m] === null || !s.tok[m]) continue;
      var d = Math.exp(s.nll[m] / s.tok[m]) - Math.exp(s.nll[D.base] / s.tok[D.base]);
      if (best === null || Math.abs(d) > Math.abs(best)) best = d;
    }
    return best;
  }

  function visible() {
    var q = state.q.toLowerCase(), out = [];
    for (var i = 0; i < S.length; i++) {
      if (q && haystack(i).indexOf(q) < 0) continue;
      if (D.kind === "generative" && state.filter !== "all" && D.base !== null && state.cmp !== null) {
        var s = S[i];
        if (state.filter === "changed" && s.o[state.cmp] === s.o[D.base]) continue;
        var d = delta(i);
        if (state.filter === "improved" && !(d > 0)) continue;
        if (state.filter === "regressed" && !(d < 0)) continue;
      }
      out.push(i);
    }
    if (state.sort !== "order") {
      var key = D.kind === "generative" ? delta : pplDelta;
      var sign = /desc$/.test(state.sort) ? -1 : 1;
      var k = {};
      out.forEach(function (i) { var v = key(i); k[i] = v === null ? (sign < 0 ? -Infinity : Infinity) : v; });
      out.sort(function (a, b) { return sign * (k[a] - k[b]) || a - b; });
    }
    return out;
  }

  // Character-level diff (LCS), computed only for rows on screen.
  function diff(a, b) {
    var A = Array.from(a), B = Array.from(b), n = A.length, m = B.length;
    var p = 0; while (p < n && p < m && A[p] === B[p]) p++;
    var q = 0; while (q < n - p && q < m - p && A[n - 1 - q] === B[m - 1 - q]) q++;
    var a2 = A.slice(p, n - q), b2 = B.slice(p, m - q), N = a2.length, Mm = b2.length, ops = [];
    if (N * Mm > 4000000) {
      ops.push(["-", a2.join("")], ["+", b2.join("")]);
    } else {
      var w = Mm + 1, T = new Uint32Array((N + 1) * w);
      for (var i = N - 1; i >= 0; i--) for (var j = Mm - 1; j >= 0; j--)
        T[i * w + j] = a2[i] === b2[j] ? T[(i + 1) * w + j + 1] + 1 : Math.max(T[(i + 1) * w + j], T[i * w + j + 1]);
      var x = 0, y = 0;
      while (x < N && y < Mm) {
        if (a2[x] === b2[y]) { ops.push(["=", a2[x]]); x++; y++; }
        else if (T[(x + 1) * w + y] >= T[x * w + y + 1]) { ops.push(["-", a2[x]]); x++; }
        else { ops.push(["+", b2[y]]); y++; }
      }
      while (x < N) ops.push(["-", a2[x++]]);
      while (y < Mm) ops.push(["+", b2[y++]]);
    }
    var merged = [];
    if (p) merged.push(["=", A.slice(0, p).join("")]);
    ops.forEach(function (o) {
      var last = merged[merged.length - 1];
      if (last && last[0] === o[0]) last[1] += o[1]; else merged.push([o[0], o[1]]);
    });
    if (q) merged.push(["=", A.slice(n - q).join("")]);
    return merged;
  }
  function diffNode(a, b) {
    var box = el("div", "text"), ops = diff(a, b), same = 0;
    ops.forEach(function (o) { if (o[0] === "=") same += Array.from(o[1]).length; });
    // Mostly rewritten: a diff would be all strike-through; show the output plainly.
    if (same * 3 < Math.max(Array.from(a).length, Array.from(b).length)) { box.textContent = b; box.title = "little in common with base"; return box; }
    ops.forEach(function (o) {
      if (!o[1]) return;
      if (o[0] === "=") box.appendChild(document.createTextNode(o[1]));
      else box.appendChild(el(o[0] === "+" ? "ins" : "del", null, o[1]));
    });
    return box;
  }

  function questionOf(text) {
    var parts = text.split("\n\n");
    var tail = parts.slice(-2).join("\n\n");
    return tail.length > 400 ? "…" + tail.slice(-400) : tail;
  }

  // A choice sample: each choice's log-likelihood per model, ✓ on the gold, ◀ on each model's pick
  // (its likeliest choice), ⁿ on its pick per character (acc_norm).
  function choiceTable(s) {
    var t = el("table", "choices"), hr = el("tr");
    ["", "choice"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
    M.forEach(function (m) { var th = el("th", null, m.name + " log-likelihood"); th.style.color = m.color; hr.appendChild(th); });
    t.appendChild(hr);
    s.c.forEach(function (choice, k) {
      var gold = s.g.indexOf(k) >= 0, tr = el("tr", gold ? "gold" : null);
      tr.appendChild(el("td", null, gold ? "✓ gold" : ""));
      tr.appendChild(el("td", "choice", choice === "" ? "(empty)" : choice));
      for (var m = 0; m < M.length; m++) {
        var ll = s.ll[m], mark = (s.pk[m] === k ? " ◀" : "") + (s.pn[m] === k ? " ⁿ" : "");
        tr.appendChild(el("td", s.pk[m] === k ? "pick" : null, ll ? fmt(ll[k], 3) + mark : "–"));
      }
      t.appendChild(tr);
    });
    return t;
  }

  function renderSample(i) {
    var s = S[i], box = el("article", "sample");
    box.setAttribute("data-id", s.id);
    var head = el("div", "head");
    head.appendChild(el("span", "sid", s.id));
    if (s.sub !== undefined) head.appendChild(el("span", "subject", s.sub));
    if (D.kind === "generative" && state.cmp !== null && D.base !== null) {
      var d = delta(i);
      if (d !== null) head.appendChild(el("span", d > 0 ? "improved" : d < 0 ? "regressed" : "muted",
        M[state.cmp].name + " Δ " + D.metrics[state.metric] + " " + (d > 0 ? "+" : "") + fmt(d) + (D.higher[state.metric] ? "" : " (lower is better)")));
    }
    box.appendChild(head);
    var body = el("div", "body"), text = prompt(s);
    var det = el("details");
    det.appendChild(el("summary", "muted", (D.kind === "generative" ? "prompt (" : "document (") + Array.from(text).length + " characters)"));
    det.appendChild(el("pre", null, text));
    body.appendChild(det);
    if (D.kind === "generative") {
      body.appendChild(el("div", "question", questionOf(text)));
      var refs = el("div", "refs");
      refs.appendChild(el("span", "muted", "gold: "));
      if (!s.r.length) refs.appendChild(el("span", "empty", "(none)"));
      s.r.forEach(function (r) { refs.appendChild(el("span", "ref", r)); });
      body.appendChild(refs);
      if (s.c) body.appendChild(choiceTable(s));
      var preds = el("div", "preds");
      for (var m = 0; m < M.length; m++) {
        var card = el("div", "pred"), out = s.o[m];
        card.style.borderTopColor = M[m].color;
        var sc = score(i, m), bs = D.base !== null ? score(i, D.base) : null;
        if (m !== D.base && sc !== null && bs !== null && sc !== bs)
          card.className += ((sc > bs) === D.higher[state.metric]) ? " better" : " worse";
        var sline = el("span", "score", D.metrics.length ? D.metrics.map(function (l, k) {
          var v = s.s[m] ? s.s[m][k] : null; return l + " " + fmt(v);
        }).join(" · ") : "");
        card.appendChild(sline);
        card.appendChild(el("span", "name", M[m].name));
        if (out === null || out === undefined) card.appendChild(el("div", "text empty", "(not in this run)"));
        else if (out === "") card.appendChild(el("div", "text empty", "(empty output)"));
        else if (D.base !== null && m !== D.base && s.o[D.base] !== null && s.o[D.base] !== out) card.appendChild(diffNode(s.o[D.base], out));
        else card.appendChild(el("div", "text", out));
        preds.appendChild(card);
      }
      body.appendChild(preds);
    } else {
      var t = el("table", "docs"), hr = el("tr");
      ["model", "nll (nats)", "tokens", "perplexity", "bits/byte"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
      t.appendChild(hr);
      for (var k = 0; k < M.length; k++) {
        var tr = el("tr"), nll = s.nll[k], tok = s.tok[k];
        tr.appendChild(el("th", null, M[k].name));
        tr.appendChild(el("td", null, fmt(nll, 1)));
        tr.appendChild(el("td", null, tok === null ? "–" : tok));
        tr.appendChild(el("td", null, nll !== null && tok ? fmt(Math.exp(nll / tok), 2) : "–"));
        tr.appendChild(el("td", null, nll !== null && s.bytes ? fmt(nll / Math.LN2 / s.bytes, 3) : "–"));
        t.appendChild(tr);
      }
      body.appendChild(t);
    }
    box.appendChild(body);
    return box;
  }

  var current = [];
  function render(recompute) {
    if (recompute) current = visible();
    var pages = Math.max(1, Math.ceil(current.length / PAGE));
    if (state.page >= pages) state.page = pages - 1;
    var rows = $("rows"), frag = document.createDocumentFragment();
    current.slice(state.page * PAGE, state.page * PAGE + PAGE).forEach(function (i) { frag.appendChild(renderSample(i)); });
    while (rows.firstChild) rows.removeChild(rows.firstChild);
    rows.appendChild(frag);
    if (!current.length) rows.appendChild(el("p", "empty", "no sample matches"));
    $("count").textContent = current.length + " of " + S.length + (D.kind === "generative" ? " samples" : " documents");
    $("page").textContent = "page " + (state.page + 1) + " / " + pages;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    document.body.setAttribute("data-rendered", String(rows.children.length));
  }

  function option(sel, value, text) { var o = el("option", null, text); o.value = String(value); sel.appendChild(o); }
  function init() {
    if (D.kind === "generative") {
      var cmp = $("compare"), met = $("metric");
      M.forEach(function (m, k) { if (k !== D.base) option(cmp, k, m.name); });
      if (cmp.options.length) state.cmp = Number(cmp.options[0].value); else cmp.disabled = true;
      D.metrics.forEach(function (l, k) { option(met, k, l); });
      if (D.metrics.length) met.value = String(D.primary); else met.disabled = true;
      if (D.base === null) { $("filter").disabled = true; }
      $("filter").addEventListener("change", function (e) { state.filter = e.target.value; state.page = 0; render(true); });
      cmp.addEventListener("change", function (e) { state.cmp = Number(e.target.value); state.page = 0; render(true); });
      met.addEventListener("change", function (e) { state.metric = Number(e.target.value); state.page = 0; render(true); });
    }
    var timer = null;
    $("q").addEventListener("input", function (e) {
      clearTimeout(timer);
      timer = setTimeout(function () { state.q = e.target.value; state.page = 0; render(true); }, 150);
    });
    $("sort").addEventListener("change", function (e) { state.sort = e.target.value; state.page = 0; render(true); });
    $("prev").addEventListener("click", function () { state.page--; render(false); $("controls").scrollIntoView(); });
    $("next").addEventListener("click", function () { state.page++; render(false); $("controls").scrollIntoView(); });
    render(true);
  }
  // Exposed for tests and the console: set filters without synthesizing UI events.
  window.harnessReport = {
    set: function (opts) { for (var k in opts) state[k] = opts[k]; state.page = opts.page || 0; render(true); return current.length; },
    state: state
  };
  init();
})();
{% endraw %}
