/* Zyra live run page: draws the run's DAG (SVG) and follows its events over
 * the WebSocket ws/runs/<id>/?after=<seq>. No build step, no dependencies. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var boot = JSON.parse(document.getElementById("zyra-run-boot").textContent);
  var layout = boot.layout;
  var W = layout.node_w, H = layout.node_h;
  var lastSeq = boot.after;
  var runStatus = boot.status;
  var nodes = {};      // id -> {def, el, status, attempt, last (event data)}
  var edges = {};      // id -> {def, el}
  var selected = null;
  var socket = null;
  var retryMs = 500;
  var finished = false;
  var TERMINAL = ["succeeded", "partially_succeeded", "failed", "cancelled", "timed_out"];

  function $(id) { return document.getElementById(id); }
  function el(name, attrs, parent) {
    var e = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(e);
    return e;
  }

  function draw() {
    var svg = $("dag");
    svg.setAttribute("width", layout.width);
    svg.setAttribute("height", layout.height);
    svg.setAttribute("viewBox", "0 0 " + layout.width + " " + layout.height);
    var byId = {};
    layout.nodes.forEach(function (n) { byId[n.id] = n; });
    layout.edges.forEach(function (e) {
      var s = byId[e.source], t = byId[e.target];
      var x1 = s.x + W, y1 = s.y + H / 2, x2 = t.x, y2 = t.y + H / 2;
      var mx = (x1 + x2) / 2;
      var p = el("path", {"class": "edge" + (e.state ? " " + e.state : ""), "data-edge-id": e.id,
        d: "M" + x1 + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + x2 + "," + y2}, svg);
      edges[e.id] = {def: e, el: p};
    });
    layout.nodes.forEach(function (n) {
      var g = el("g", {"class": "node", "data-node-id": n.id, transform: "translate(" + n.x + "," + n.y + ")"}, svg);
      el("rect", {width: W, height: H, rx: 6}, g);
      var label = el("text", {x: 8, y: 20}, g);
      label.textContent = n.label.length > 22 ? n.label.slice(0, 21) + "…" : n.label;
      var sub = el("text", {x: 8, y: 40, "class": "sub"}, g);
      nodes[n.id] = {def: n, el: g, sub: sub, status: n.status, attempt: n.attempt, last: null};
      g.addEventListener("click", function () { select(n.id); });
      paintNode(n.id);
    });
  }

  function paintNode(id) {
    var n = nodes[id];
    n.el.setAttribute("class", "node st-" + n.status + (selected === id ? " selected" : ""));
    n.el.setAttribute("data-status", n.status);
    n.sub.textContent = n.def.type + " · " + n.status + (n.attempt > 1 ? " #" + n.attempt : "");
  }

  function setRunStatus(status) {
    runStatus = status;
    var s = $("run-status");
    s.textContent = status;
    s.setAttribute("data-status", status);
  }

  function setProgress(p) {
    if (!p || !p.total) return;
    $("progress-text").textContent = p.done + "/" + p.total;
    $("progress-bar").style.width = Math.round(100 * p.done / p.total) + "%";
  }

  function log(text) {
    var box = $("log");
    var line = document.createElement("div");
    line.textContent = text;
    box.insertBefore(line, box.firstChild);
    while (box.childNodes.length > 200) box.removeChild(box.lastChild);
  }

  function apply(ev) {
    if (typeof ev.seq !== "number" || ev.seq <= lastSeq) return;
    lastSeq = ev.seq;
    var data = ev.data || {};
    var kind = ev.type.split(".")[0], what = ev.type.slice(kind.length + 1);
    if (kind === "node" && nodes[ev.node_id]) {
      var n = nodes[ev.node_id];
      n.status = data.status || what;
      if (data.attempt) n.attempt = data.attempt;
      n.last = data;
      paintNode(ev.node_id);
      if (selected === ev.node_id) showDetails(ev.node_id, null);
    } else if (kind === "run") {
      setRunStatus(data.status || (what === "started" || what === "resumed" ? "running" : what));
    } else if (kind === "edge") {
      var eid = data.edge_id || data.edge || ev.node_id;
      var e = edges[eid];
      if (!e) {
        Object.keys(edges).forEach(function (k) {
          var d = edges[k].def;
          if (d.source === (data.source || ev.node_id) && d.target === data.target) e = edges[k];
        });
      }
      if (e) e.el.setAttribute("class", "edge " + what);
    }
    setProgress(data.progress);
    log("#" + ev.seq + " " + ev.type + (ev.node_id ? " " + ev.node_id : "") + (data.error && data.error.code ? " " + data.error.code : ""));
  }

  function field(dl, name, value) {
    var dt = document.createElement("dt"); dt.textContent = name;
    var dd = document.createElement("dd");
    if (value !== null && typeof value === "object") {
      var pre = document.createElement("pre"); pre.textContent = JSON.stringify(value, null, 2); dd.appendChild(pre);
    } else {
      dd.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
    }
    dd.setAttribute("data-field", name);
    dl.appendChild(dt); dl.appendChild(dd);
  }

  function showDetails(id, detail) {
    var n = nodes[id];
    var d = detail || {};
    var last = n.last || {};
    $("detail-title").textContent = n.def.label + " (" + id + ")";
    $("detail-hint").textContent = detail ? "" : "loading details…";
    var dl = $("detail-body");
    dl.innerHTML = "";
    field(dl, "type", n.def.type);
    field(dl, "status", d.status || n.status);
    field(dl, "attempts", d.attempt || last.attempt || n.attempt);
    field(dl, "duration_ms", d.duration_ms !== undefined ? d.duration_ms : last.duration_ms);
    field(dl, "error", d.error !== undefined ? d.error : last.error);
    field(dl, "output", d.output !== undefined ? d.output : last.output);
    if (d.attempts && d.attempts.length) field(dl, "attempt history", d.attempts);
  }

  function select(id) {
    var prev = selected;
    selected = id;
    if (prev && nodes[prev]) paintNode(prev);
    paintNode(id);
    showDetails(id, null);
    fetch(boot.api_path, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (run) {
        var found = (run.nodes || []).filter(function (x) { return x.node_id === id; })[0];
        if (selected === id) showDetails(id, found || {});
        if (run.status) setRunStatus(run.status);
      })
      .catch(function (err) { if (selected === id) $("detail-hint").textContent = "details unavailable: " + err.message; });
  }

  function connect() {
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    // batch=1: events that are ready together come in one {"type": "batch", "events": [...]} frame.
    socket = new WebSocket(proto + location.host + boot.ws_path + "?batch=1&after=" + lastSeq);
    $("conn").textContent = "connecting…";
    socket.onopen = function () { $("conn").textContent = "live"; retryMs = 500; };
    socket.onmessage = function (msg) {
      var ev;
      try { ev = JSON.parse(msg.data); } catch (e) { return; }
      if (ev.type === "batch") { ev.events.forEach(apply); return; }
      if (ev.type === "heartbeat" || ev.type === "replay.done" || ev.type === "pong") return;
      apply(ev);
    };
    socket.onclose = function (e) {
      if (e.code === 1000) {
        finished = TERMINAL.indexOf(runStatus) >= 0;
        $("conn").textContent = finished ? "run finished" : "closed";
        if (finished) return;
      }
      if (e.code >= 4400 && e.code < 4500) {
        $("conn").textContent = "refused (" + e.code + " " + (e.reason || "") + ")";
        return;
      }
      $("conn").textContent = "reconnecting…";
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    };
  }

  draw();
  setRunStatus(runStatus);
  setProgress(boot.progress);
  connect();
})();
