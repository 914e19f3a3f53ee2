// Supervisor page: refresh the figures every 10 s and on live events.
(function () {
  "use strict";
  function set(id, v) { var e = document.getElementById(id); if (e) e.textContent = v; }
  function refresh() {
    fetch("/console/api/stats", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) return;
        set("s-queue", s.queue_length);
        set("s-progress", s.in_progress);
        set("s-avg", s.average_wait_seconds + " 秒");
        set("s-max", s.longest_wait_seconds + " 秒");
        set("s-online", s.agents_online_count);
        set("s-auto", s.automation_rate == null ? "—" : (s.automation_rate * 100).toFixed(1) + "%");
        set("s-csat", s.satisfaction_average == null ? "—" : s.satisfaction_average + " / 5");
      }).catch(function () {});
  }
  function connect() {
    var proto = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(proto + window.location.host + "/console/ws");
    var conn = document.getElementById("conn");
    ws.onopen = function () { if (conn) conn.className = "conn on"; };
    ws.onmessage = refresh;
    ws.onclose = function () { if (conn) conn.className = "conn off"; setTimeout(connect, 3000); };
  }
  connect();
  setInterval(refresh, 10000);
})();
