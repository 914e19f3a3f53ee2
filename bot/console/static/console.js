// Agent console: plain JavaScript, no framework. All customer text goes through textContent.
(function () {
  "use strict";
  var body = document.body;
  var CSRF = body.dataset.csrf;
  var ME = body.dataset.agent;
  var current = null; // handoff id shown in the middle pane
  var currentData = null;
  var revealed = {}; // "handoff:index:field" / "handoff:slot:name" / "handoff:msg:id" -> value, kept across re-renders
  var shownAccount = null; // what renderAccount last drew (re-drawn when a reveal answers)

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmtWait(s) {
    s = Math.max(0, s | 0);
    if (s < 60) return s + " 秒";
    if (s < 3600) return Math.floor(s / 60) + " 分 " + (s % 60) + " 秒";
    return Math.floor(s / 3600) + " 小时 " + Math.floor((s % 3600) / 60) + " 分";
  }
  function fmtTime(iso) {
    try { return new Date(iso).toLocaleTimeString("zh-CN", { hour12: false }); } catch (e) { return ""; }
  }
  var CHANNELS = { rest: "网页", wechat: "微信", alipay: "支付宝", sms: "短信", email: "邮件" };
  var WO_TYPES = { repair: "抢修", outage: "停电", complaint: "投诉", feedback: "意见建议", violation: "举报", new_connection: "新装增容",
    solar: "光伏并网", ev_charging: "充电桩", account_change: "过户更名", invoice: "发票", appointment: "预约" };
  var WO_STATUS = { created: "已受理", dispatched: "已派单", in_progress: "处理中", resolved: "已处理", closed: "已办结" };
  function fmtDateTime(iso) {
    try { return new Date(iso).toLocaleString("zh-CN", { hour12: false, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }); } catch (e) { return ""; }
  }

  function api(method, path, data) {
    var opts = { method: method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (method !== "GET") {
      opts.headers["X-CSRF-Token"] = CSRF;
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(data || {});
    }
    return fetch(path, opts).then(function (r) {
      if (r.status === 401) { window.location.href = "/console/login"; throw new Error("unauthenticated"); }
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { var err = new Error(j.detail || j.message || j.error || ("HTTP " + r.status)); err.status = r.status; throw err; }
        return j;
      });
    });
  }

  function showError(msg) {
    var e = $("chat-error");
    e.textContent = msg || "";
    e.hidden = !msg;
  }

  // ------------------------------------------------------------ queue
  function loadQueue() {
    return api("GET", "/console/api/queue").then(function (data) {
      var ul = $("queue");
      ul.textContent = "";
      var waiting = 0;
      data.queue.forEach(function (q) {
        if (q.status === "waiting") waiting++;
        var li = el("li", "q-item prio-" + q.priority + (q.handoff_id === current ? " active" : "") + (q.status === "assigned" ? " assigned" : ""));
        li.dataset.id = q.handoff_id;
        li.dataset.conversation = q.conversation_id;
        var top = el("div", "q-top");
        top.appendChild(el("span", "tag prio", q.priority_label));
        top.appendChild(el("span", "tag", CHANNELS[q.channel] || q.channel));
        top.appendChild(el("span", "q-reason", q.reason_label));
        li.appendChild(top);
        li.appendChild(el("div", "q-who", q.display));
        li.appendChild(el("div", "q-last", q.last_message));
        var meta = el("div", "q-meta small muted");
        meta.appendChild(el("span", "", q.status === "waiting" ? "等待 " + fmtWait(q.waiting_seconds) : "处理中 · " + (q.agent || "")));
        li.appendChild(meta);
        if (q.visible) li.addEventListener("click", function () { open(q.handoff_id); });
        else li.classList.add("locked");
        ul.appendChild(li);
      });
      $("queue-count").textContent = String(waiting);
      $("queue-empty").hidden = data.queue.length > 0;
      $("online").textContent = data.agents_online.join("、") || "无";
    }).catch(function () {});
  }

  // ------------------------------------------------------------ conversation
  function open(id) {
    current = id;
    showError("");
    Array.prototype.forEach.call(document.querySelectorAll(".q-item"), function (li) {
      li.classList.toggle("active", Number(li.dataset.id) === id);
    });
    return loadConversation();
  }

  function canAct() { return !!(currentData && currentData.handoff.can_act); }

  // the "显示" button: the unmasked value from the audited reveal, then a redraw
  function revealButton(key, body, redraw) {
    var b = el("button", "link reveal", "显示");
    b.title = "显示完整信息（将记录审计日志）";
    b.addEventListener("click", function () {
      api("POST", "/console/api/handoffs/" + current + "/reveal", body).then(function (r) {
        revealed[key] = r.value;
        redraw();
      }).catch(function (e) { showError(e.message); });
    });
    return b;
  }

  function renderHistory(events) {
    var ol = $("history");
    ol.textContent = "";
    events.forEach(function (ev) {
      var li = el("li", "msg msg-" + ev.kind);
      var head = el("div", "msg-head small muted");
      var who = { customer: "客户", bot: "机器人", agent: "坐席 " + (ev.agent || ""), note: "内部备注 · " + (ev.agent || ""), system: "系统" }[ev.kind] || ev.kind;
      head.appendChild(el("span", "", who));
      head.appendChild(el("span", "", " " + fmtTime(ev.at)));
      li.appendChild(head);
      var key = current + ":msg:" + ev.id;
      var known = Object.prototype.hasOwnProperty.call(revealed, key);
      var text = el("div", "msg-text" + (known ? " revealed" : ""), known ? revealed[key] : ev.text);
      if (ev.masked && !known && canAct()) {
        text.appendChild(revealButton(key, { message: ev.id }, function () { renderHistory(currentData.events); }));
      }
      li.appendChild(text);
      if (ev.kind === "customer" && ev.intent) {
        var nlu = el("div", "nlu small");
        nlu.appendChild(el("span", "tag intent", ev.intent + (ev.confidence != null ? " " + Math.round(ev.confidence * 100) + "%" : "")));
        (ev.entities || []).forEach(function (e) { nlu.appendChild(el("span", "tag ent", e.entity + "=" + e.value)); });
        var slotKeys = Object.keys(ev.slots || {}).filter(function (k) { return k.charAt(0) !== "_" && ev.slots[k] !== null && ev.slots[k] !== "" && typeof ev.slots[k] !== "object"; });
        if (slotKeys.length) nlu.appendChild(el("span", "muted", " 槽位: " + slotKeys.join(", ")));
        li.appendChild(nlu);
      }
      ol.appendChild(li);
    });
    ol.scrollTop = ol.scrollHeight;
  }

  function renderAccount(info) {
    shownAccount = info;
    var box = $("account");
    box.textContent = "";
    box.className = "";
    if (!info || !info.found) {
      box.appendChild(el("p", "muted", info && info.error ? "核心系统暂不可用 (" + info.error + ")" : "未关联户号"));
      return;
    }
    info.accounts.forEach(function (acc) {
      var card = el("div", "acct");
      if (acc.error && !acc.masked) { card.appendChild(el("p", "error", "查询失败 " + acc.error)); box.appendChild(card); return; }
      var dl = el("dl", "kv");
      [["holder_name", "户名"], ["account_number", "户号"], ["phone", "电话"], ["address", "地址"]].forEach(function (f) {
        dl.appendChild(el("dt", "", f[1]));
        var dd = el("dd", "");
        var key = current + ":" + acc.index + ":" + f[0];
        var known = Object.prototype.hasOwnProperty.call(revealed, key);
        var span = el("span", known ? "revealed" : "masked", known ? revealed[key] : acc.masked[f[0]]);
        span.dataset.field = f[0];
        dd.appendChild(span);
        if (!known && canAct()) {
          // redraw what is on screen when the answer comes: the panel may have been redrawn
          // (a new message, a status change) while the request was out
          dd.appendChild(revealButton(key, { field: f[0], index: acc.index }, function () { renderAccount(shownAccount); }));
        }
        dl.appendChild(dd);
      });
      dl.appendChild(el("dt", "", "区域")); dl.appendChild(el("dd", "", acc.district + " · " + (acc.category === "commercial" ? "工商业" : "居民")));
      if (acc.arrears) { dl.appendChild(el("dt", "", "欠费")); dl.appendChild(el("dd", acc.arrears.amount_owed !== "0.00" && acc.arrears.amount_owed !== "0" ? "warn" : "", "¥" + acc.arrears.amount_owed + (acc.arrears.overdue_amount && Number(acc.arrears.overdue_amount) > 0 ? "（逾期 ¥" + acc.arrears.overdue_amount + "）" : ""))); }
      card.appendChild(dl);
      card.appendChild(el("h4", "", "近期账单 Bills"));
      var bills = el("ul", "mini");
      (acc.bills || []).forEach(function (b) { bills.appendChild(el("li", "", b.month + " · " + b.kwh + " kWh · ¥" + b.amount + " · " + ({ paid: "已缴", unpaid: "未缴", partial: "部分缴" }[b.status] || b.status))); });
      if (!(acc.bills || []).length) bills.appendChild(el("li", "muted", "无"));
      card.appendChild(bills);
      card.appendChild(el("h4", "", "未完结工单 Work orders"));
      var wos = el("ul", "mini");
      (acc.work_orders || []).forEach(function (w) { wos.appendChild(el("li", "", w.id + " · " + (WO_TYPES[w.type] || w.type) + " · " + (WO_STATUS[w.status] || w.status) + " · " + w.description)); });
      if (!(acc.work_orders || []).length) wos.appendChild(el("li", "muted", "无"));
      card.appendChild(wos);
      card.appendChild(el("h4", "", "所在区域停电 Outages"));
      var outs = el("ul", "mini");
      (acc.outages || []).forEach(function (o) { outs.appendChild(el("li", o.status === "active" ? "warn" : "", (o.kind === "planned" ? "计划" : "故障") + "停电 · " + o.scope + " · " + fmtDateTime(o.start_at) + (o.status === "active" ? " 起（进行中）" : " 起") + (o.cause ? " · " + o.cause : ""))); });
      if (!(acc.outages || []).length) outs.appendChild(el("li", "muted", "无"));
      card.appendChild(outs);
      box.appendChild(card);
    });
  }

  function renderSlots(slots, maskedSlots) {
    var dl = $("slots");
    dl.textContent = "";
    Object.keys(slots || {}).forEach(function (k) {
      var v = slots[k];
      if (v === null || v === "" || typeof v === "object" || k.charAt(0) === "_") return;
      dl.appendChild(el("dt", "", k));
      var key = current + ":slot:" + k;
      var known = Object.prototype.hasOwnProperty.call(revealed, key);
      var dd = el("dd", known ? "revealed" : "", known ? revealed[key] : v);
      if (!known && canAct() && (maskedSlots || []).indexOf(k) >= 0) {
        dd.appendChild(revealButton(key, { slot: k }, function () { renderSlots(currentData.slots, currentData.masked_slots); }));
      }
      dl.appendChild(dd);
    });
  }

  function loadConversation() {
    if (current == null) return Promise.resolve();
    var id = current;
    return api("GET", "/console/api/handoffs/" + id).then(function (d) {
      if (id !== current) return;
      currentData = d;
      var h = d.handoff;
      $("chat-empty").hidden = true;
      $("chat").hidden = false;
      $("chat-title").textContent = h.display;
      $("chat-channel").textContent = CHANNELS[h.channel] || h.channel;
      $("chat-priority").textContent = "优先级 " + h.priority_label;
      $("chat-priority").className = "tag prio-" + h.priority;
      $("chat-reason").textContent = h.reason_label;
      $("chat-status").textContent = { waiting: "排队中", assigned: "处理中 · " + (h.agent || ""), released: "已结束" }[h.status] || h.status;
      var mine = !!h.can_act;
      $("take-btn").hidden = h.status !== "waiting";
      $("close-btn").hidden = !mine;
      $("transfer-btn").hidden = !mine;
      $("transfer-to").hidden = !mine;
      $("reply-btn").disabled = !mine;
      $("reply-text").disabled = !mine;
      $("canned").disabled = !mine;
      renderHistory(d.events);
      renderAccount(d.account);
      renderSlots(d.slots, d.masked_slots);
      if (mine) loadAgents(h.agent);
    }).catch(function (e) { showError(e.message); });
  }

  function loadAgents(holder) {
    api("GET", "/console/api/agents").then(function (d) {
      var sel = $("transfer-to");
      sel.textContent = "";
      var others = d.agents.filter(function (a) { return a.name !== holder; });
      sel.hidden = others.length === 0;
      $("transfer-btn").hidden = others.length === 0;
      d.agents.forEach(function (a) {
        if (a.name === holder) return;
        var o = el("option", "", a.name + (a.online ? "（在线）" : "（离线）"));
        o.value = a.name;
        sel.appendChild(o);
      });
    }).catch(function () {});
  }

  function act(path, data, okMsg) {
    showError("");
    return api("POST", "/console/api/handoffs/" + current + "/" + path, data).then(function (r) {
      return Promise.all([loadQueue(), loadConversation()]).then(function () { return r; });
    }).catch(function (e) {
      showError(e.status === 409 ? "操作冲突：" + e.message : e.message);
      loadQueue(); loadConversation();
    });
  }

  $("take-btn").addEventListener("click", function () { act("take"); });
  $("close-btn").addEventListener("click", function () {
    if (window.confirm("结束会话并交还机器人？客户将收到满意度评价邀请。")) act("close");
  });
  $("transfer-btn").addEventListener("click", function () {
    var to = $("transfer-to").value;
    if (to) act("transfer", { agent: to });
  });
  function sendReply() {
    var t = $("reply-text").value.trim();
    if (!t) return;
    act("reply", { text: t }).then(function (r) { if (r) $("reply-text").value = ""; });
  }
  $("reply-btn").addEventListener("click", sendReply);
  $("reply-text").addEventListener("keydown", function (e) { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) sendReply(); });
  $("note-btn").addEventListener("click", function () {
    var t = $("reply-text").value.trim();
    if (!t) return;
    act("note", { text: t }).then(function (r) { if (r) $("reply-text").value = ""; });
  });
  $("canned").addEventListener("change", function () {
    if (this.value) { $("reply-text").value = this.value; this.value = ""; $("reply-text").focus(); }
  });
  api("GET", "/console/api/canned").then(function (d) {
    d.canned.forEach(function (t) { var o = el("option", "", t.length > 28 ? t.slice(0, 28) + "…" : t); o.value = t; $("canned").appendChild(o); });
  }).catch(function () {});

  // ------------------------------------------------------------ live updates
  var retry = 1000;
  function connect() {
    var proto = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(proto + window.location.host + "/console/ws");
    ws.onopen = function () { retry = 1000; $("conn").className = "conn on"; loadQueue(); loadConversation(); };
    ws.onmessage = function (m) {
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (ev.type === "hello" || ev.type === "pong") return;
      loadQueue();
      if (current != null && (ev.handoff_id === current || (currentData && ev.conversation_id === currentData.handoff.conversation_id))) loadConversation();
      if (ev.type === "queued" && document.hidden && window.Notification && Notification.permission === "granted") {
        new Notification("新的转人工会话", { body: ev.conversation_id || "" });
      }
    };
    ws.onclose = function () {
      $("conn").className = "conn off";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  connect();
  setInterval(loadQueue, 15000); // waiting times tick; also a safety net for missed events
  loadQueue();
})();
