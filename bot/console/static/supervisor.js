// Supervisor page: figures, per-agent table, SLA breaches, 24-hour trend and the queue (take or
// assign from here); refreshed every 10 s and on live events.
(function () {
  "use strict";
  var CSRF = document.body.dataset.csrf;
  var SVG = "http://www.w3.org/2000/svg";
  function $(id) { return document.getElementById(id); }
  function set(id, v) { var e = $(id); if (e) e.textContent = v; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmtWait(s) { // the same as the queue's
    s = Math.max(0, s | 0);
    if (s < 60) return s + " 秒";
    if (s < 3600) return Math.floor(s / 60) + " 分 " + (s % 60) + " 秒";
    return Math.floor(s / 3600) + " 小时 " + Math.floor((s % 3600) / 60) + " 分";
  }
  function api(method, path, data) {
    var opts = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method !== "GET") { opts.headers["X-CSRF-Token"] = CSRF; opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(data || {}); }
    return fetch(path, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) throw new Error(j.detail || j.message || ("HTTP " + r.status));
        return j;
      });
    });
  }
  function showError(msg) { $("sup-error").textContent = msg || ""; $("sup-error").hidden = !msg; }

  function chart(trend) {
    var box = $("trend");
    box.textContent = "";
    var w = 480, h = 150, pad = 18, max = 1;
    trend.forEach(function (t) { max = Math.max(max, t.conversations, t.escalations); });
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("class", "chart");
    svg.setAttribute("aria-hidden", "true");
    var bw = (w - pad) / trend.length;
    trend.forEach(function (t, i) {
      [["conversations", "bar", 0], ["escalations", "bar2", 1]].forEach(function (k) {
        var v = t[k[0]], bh = (h - pad - 4) * v / max;
        var r = document.createElementNS(SVG, "rect");
        r.setAttribute("class", k[1]);
        r.setAttribute("x", String(pad + i * bw + k[2] * bw / 2));
        r.setAttribute("y", String(h - pad - bh));
        r.setAttribute("width", String(Math.max(1, bw / 2 - 1)));
        r.setAttribute("height", String(bh));
        var title = document.createElementNS(SVG, "title");
        title.textContent = new Date(t.hour).getHours() + ":00 " + k[0] + " " + v;
        r.appendChild(title);
        svg.appendChild(r);
      });
      if (i % 4 === 0) {
        var tx = document.createElementNS(SVG, "text");
        tx.setAttribute("x", String(pad + i * bw));
        tx.setAttribute("y", String(h - 4));
        tx.textContent = new Date(t.hour).getHours() + "时";
        svg.appendChild(tx);
      }
    });
    var mx = document.createElementNS(SVG, "text");
    mx.setAttribute("x", "0"); mx.setAttribute("y", "10");
    mx.textContent = String(max);
    svg.appendChild(mx);
    box.appendChild(svg);
    var total = trend.reduce(function (a, t) { return a + t.conversations; }, 0);
    var esc = trend.reduce(function (a, t) { return a + t.escalations; }, 0);
    box.setAttribute("aria-label", "近 24 小时：会话 " + total + "，转人工 " + esc + " · last 24 h: " + total + " conversations, " + esc + " escalations");
    box.dataset.total = String(total);
  }

  var agents = [];
  function renderQueue(items) {
    var tb = $("sup-queue").querySelector("tbody");
    tb.textContent = "";
    items.forEach(function (q) {
      var tr = el("tr", q.sla_breached ? "breach" : "");
      tr.dataset.id = q.handoff_id;
      tr.appendChild(el("td", "", q.priority_label));
      tr.appendChild(el("td", "", q.channel_label || q.channel));
      tr.appendChild(el("td", "q-who", q.customer_label || q.display));
      tr.appendChild(el("td", "", q.reason_label));
      tr.appendChild(el("td", "", q.status === "waiting" ? "排队中" : "处理中 · " + (q.agent || "")));
      tr.appendChild(el("td", "", fmtWait(q.waiting_seconds) + (q.sla_breached ? " · 超时" : "")));
      var td = el("td", "");
      if (q.status === "waiting") {
        var take = el("button", "primary", "接入 Take");
        take.type = "button";
        take.addEventListener("click", function () {
          api("POST", "/console/api/handoffs/" + q.handoff_id + "/take").then(function () {
            window.location.href = "/console";
          }).catch(function (e) { showError(e.message); refresh(); });
        });
        td.appendChild(take);
      }
      var sel = el("select", "assign-to");
      sel.setAttribute("aria-label", "分配给 Assign to");
      sel.appendChild(el("option", "", "分配给… Assign to"));
      agents.forEach(function (a) {
        if (a.name === q.agent) return;
        var o = el("option", "", a.name + (a.online ? "（在线）" : "（离线）"));
        o.value = a.name;
        sel.appendChild(o);
      });
      sel.addEventListener("change", function () {
        if (!sel.value) return;
        api("POST", "/console/api/handoffs/" + q.handoff_id + "/assign", { agent: sel.value })
          .then(function () { showError(""); refresh(); }).catch(function (e) { showError(e.message); refresh(); });
      });
      td.appendChild(sel);
      tr.appendChild(td);
      tb.appendChild(tr);
    });
    if (!items.length) { var tr = el("tr"); var td = el("td", "muted", "暂无排队会话 Queue empty"); td.colSpan = 7; tr.appendChild(td); tb.appendChild(tr); }
  }

  function renderAgents(s) {
    var tb = $("agents").querySelector("tbody");
    tb.textContent = "";
    s.per_agent.forEach(function (a) {
      var tr = el("tr");
      tr.dataset.agent = a.agent;
      tr.appendChild(el("td", "", a.agent));
      tr.appendChild(el("td", "", s.agents_online.indexOf(a.agent) >= 0 ? "在线" : "离线"));
      tr.appendChild(el("td", "", a.load));
      tr.appendChild(el("td", "", a.handled));
      tr.appendChild(el("td", "", a.average_handle_seconds == null ? "—" : fmtWait(a.average_handle_seconds)));
      tr.appendChild(el("td", "", a.satisfaction_average == null ? "—" : a.satisfaction_average + " / 5（" + a.satisfaction_count + "）"));
      tb.appendChild(tr);
    });
  }

  function refresh() {
    api("GET", "/console/api/stats").then(function (s) {
      set("s-queue", s.queue_length);
      set("s-progress", s.in_progress);
      set("s-avg", fmtWait(s.average_wait_seconds));
      set("s-max", fmtWait(s.longest_wait_seconds));
      set("s-online", s.agents_online_count);
      set("s-auto", s.containment_rate == null ? "—" : (s.containment_rate * 100).toFixed(1) + "%");
      set("s-csat", s.satisfaction_average == null ? "—" : s.satisfaction_average + " / 5");
      set("s-convs", s.conversations); set("s-esc", s.conversations_escalated);
      set("s-with", s.conversations_with_agent); set("s-contained", s.conversations_contained);
      set("sla-count", s.sla_breaches.length);
      var ul = $("sla");
      ul.textContent = "";
      s.sla_breaches.forEach(function (b) {
        ul.appendChild(el("li", "", b.priority_label + " · " + b.display + " · 等待 " + fmtWait(b.waiting_seconds) + "（时限 " + Math.round(b.sla_seconds / 60) + " 分）"));
      });
      if (!s.sla_breaches.length) ul.appendChild(el("li", "muted", "无 None"));
      chart(s.trend);
      renderAgents(s);
    }).catch(function () {});
    api("GET", "/console/api/agents").then(function (d) {
      agents = d.agents;
      return api("GET", "/console/api/queue");
    }).then(function (d) { renderQueue(d.queue); }).catch(function () {});
  }
  function connect() {
    var proto = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(proto + window.location.host + "/console/ws");
    var conn = $("conn");
    ws.onopen = function () { if (conn) conn.className = "conn on"; };
    ws.onmessage = refresh;
    ws.onclose = function () { if (conn) conn.className = "conn off"; setTimeout(connect, 3000); };
  }
  connect();
  refresh();
  setInterval(refresh, 10000);
})();
