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
  var shownQueue = []; // the items of the list on screen, in order (J/K walk it)
  var view = "all";
  var mode = "reply"; // the composer: "reply" goes to the customer, "note" stays internal
  var canned = [];
  var LABELS = { intents: {}, slots: {} };
  var BASE_TITLE = document.title;
  var SEEN_KEY = "pb-console-seen:" + ME; // handoff id -> customer messages seen
  var seen = {};
  try { seen = JSON.parse(window.localStorage.getItem(SEEN_KEY) || "{}") || {}; } catch (e) { seen = {}; }
  var lang = "zh";
  try { lang = window.localStorage.getItem("pb-console-lang") || ((navigator.language || "zh").slice(0, 2) === "en" ? "en" : "zh"); } catch (e) { /* private mode */ }

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
  var STATUS = { waiting: "排队中", assigned: "处理中", released: "已结束", bot: "机器人" };
  function fmtDateTime(iso) {
    try { return new Date(iso).toLocaleString("zh-CN", { hour12: false, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }); } catch (e) { return ""; }
  }
  function label(kind, name) {
    var l = (LABELS[kind] || {})[name];
    return l ? (l[lang] || l.zh || name) : name;
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

  // ------------------------------------------------------------ alerts: title badge, sound, notifications
  function unreadOf(q) {
    if (!q.visible) return 0;
    var n = (q.customer_messages || 0) - (seen[q.handoff_id] || 0);
    return n > 0 ? n : 0;
  }
  function markSeen(id, n) {
    seen[id] = n;
    try { window.localStorage.setItem(SEEN_KEY, JSON.stringify(seen)); } catch (e) { /* private mode */ }
  }
  var totalUnread = 0;
  function setTitle() {
    document.title = (totalUnread > 0 ? "(" + totalUnread + ") " : "") + BASE_TITLE;
  }
  var audio = null;
  function beep() {
    if (!$("sound-on").checked) return;
    body.dataset.beeps = String((Number(body.dataset.beeps) || 0) + 1);
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      var o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880; g.gain.value = 0.08;
      o.connect(g); g.connect(audio.destination);
      o.start(); o.stop(audio.currentTime + 0.18);
    } catch (e) { /* no audio device */ }
  }
  function notify(title, text, id) {
    if (!window.Notification || Notification.permission !== "granted") return;
    try {
      var n = new Notification(title, { body: text || "", tag: "pb-" + (id || "") });
      n.onclick = function () { window.focus(); if (id) open(id); };
    } catch (e) { /* some browsers only allow notifications from a service worker */ }
  }
  function updateNotifyButton() {
    var b = $("notify-btn");
    if (!window.Notification) { b.hidden = true; return; }
    b.hidden = Notification.permission === "granted";
    b.disabled = Notification.permission === "denied";
  }
  $("notify-btn").addEventListener("click", function () {
    if (!window.Notification) return;
    var p = Notification.requestPermission(updateNotifyButton);
    if (p && p.then) p.then(updateNotifyButton);
  });
  updateNotifyButton();

  // ------------------------------------------------------------ queue, views, filters, search
  function queueQuery(v) {
    var p = ["view=" + encodeURIComponent(v)];
    var s = $("f-status").value, c = $("f-channel").value, pr = $("f-priority").value, q = $("search").value.trim();
    if (s) p.push("status=" + encodeURIComponent(s));
    if (c) p.push("channel=" + encodeURIComponent(c));
    if (pr) p.push("priority=" + encodeURIComponent(pr));
    if (q) p.push("q=" + encodeURIComponent(q));
    return "/console/api/queue?" + p.join("&");
  }

  function setView(v) {
    view = v;
    Array.prototype.forEach.call(document.querySelectorAll(".view-btn"), function (b) {
      b.setAttribute("aria-pressed", b.dataset.view === v ? "true" : "false");
    });
    loadQueue();
  }
  Array.prototype.forEach.call(document.querySelectorAll(".view-btn"), function (b) {
    b.addEventListener("click", function () { setView(b.dataset.view); });
  });
  ["f-channel", "f-priority", "f-status"].forEach(function (id) { $(id).addEventListener("change", function () { loadQueue(); }); });
  var searchTimer = null;
  $("search").addEventListener("input", function () { clearTimeout(searchTimer); searchTimer = setTimeout(loadQueue, 250); });
  $("filters").addEventListener("submit", function (e) { e.preventDefault(); loadQueue(); });

  var firstLoad = true;
  var known = {}; // handoff id -> customer messages, to sound/notify on what is new
  function loadQueue() {
    // the counts of the three views come from one unfiltered read of the open conversations
    var all = api("GET", "/console/api/queue").then(function (data) {
      var mine = 0, unassigned = 0, waiting = 0, unread = 0, fresh = [];
      data.queue.forEach(function (q) {
        if (q.status === "waiting") { waiting++; unassigned++; }
        if (q.agent === ME && q.status === "assigned") mine++;
        unread += unreadOf(q);
        var before = known[q.handoff_id];
        if (!firstLoad && q.visible && (before === undefined || q.customer_messages > before) && q.handoff_id !== current) fresh.push(q);
        known[q.handoff_id] = q.customer_messages;
      });
      $("count-mine").textContent = String(mine);
      $("count-unassigned").textContent = String(unassigned);
      $("count-all").textContent = String(data.queue.length);
      $("queue-count").textContent = String(waiting);
      $("online").textContent = data.agents_online.join("、") || "无";
      totalUnread = unread;
      setTitle();
      if (fresh.length) {
        beep();
        fresh.forEach(function (q) {
          notify(q.status === "waiting" ? "新的转人工会话 New conversation" : "客户新消息 New message",
                 (q.customer_label || q.display) + "：" + (q.last_message || ""), q.handoff_id);
        });
      }
      firstLoad = false;
    });
    var list = api("GET", queueQuery(view)).then(function (data) {
      $("search-note").hidden = data.name_search !== "unavailable";
      renderQueue(data.queue);
    });
    return Promise.all([all, list]).catch(function () {});
  }

  function renderQueue(items) {
    var ul = $("queue");
    ul.textContent = "";
    shownQueue = items;
    items.forEach(function (q) {
      var li = el("li", "q-item prio-" + q.priority + (q.handoff_id === current ? " active" : "") + " st-" + q.status + (q.sla_breached ? " breach" : ""));
      li.dataset.id = q.handoff_id;
      li.dataset.conversation = q.conversation_id;
      var top = el("div", "q-top");
      top.appendChild(el("span", "tag prio", q.priority_label));
      top.appendChild(el("span", "tag", q.channel_label || CHANNELS[q.channel] || q.channel));
      top.appendChild(el("span", "q-reason", q.reason_label));
      var n = unreadOf(q);
      if (n > 0 && q.handoff_id !== current) {
        var badge = el("span", "badge unread", n);
        badge.setAttribute("aria-label", n + " 条未读 unread");
        top.appendChild(badge);
      }
      li.appendChild(top);
      if (q.customer_label) li.appendChild(el("div", "q-name", q.customer_label));
      li.appendChild(el("div", "q-who", q.display));
      li.appendChild(el("div", "q-last", q.last_message));
      var meta = el("div", "q-meta small muted");
      var st = q.status === "waiting" ? "等待 " + fmtWait(q.waiting_seconds) + (q.sla_breached ? " · 超时 SLA" : "")
        : q.status === "assigned" ? "处理中 · " + (q.agent || "") : "已结束 · " + (q.agent || "");
      meta.appendChild(el("span", "", st));
      li.appendChild(meta);
      if (q.visible) {
        li.tabIndex = 0;
        li.setAttribute("aria-label", (q.channel_label || q.channel) + " " + (q.customer_label ? q.customer_label + " " : "") + q.display + " " + q.reason_label + " " + st + (n ? "，" + n + " 条未读" : ""));
        li.addEventListener("click", function () { open(q.handoff_id); });
        li.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(q.handoff_id); } });
      } else li.classList.add("locked");
      ul.appendChild(li);
    });
    $("queue-empty").hidden = items.length > 0;
  }

  // ------------------------------------------------------------ conversation
  function open(id) {
    current = id;
    showError("");
    Array.prototype.forEach.call(document.querySelectorAll(".q-item"), function (li) {
      li.classList.toggle("active", Number(li.dataset.id) === id);
      if (Number(li.dataset.id) === id) { var b = li.querySelector(".unread"); if (b) b.remove(); }
    });
    return loadConversation().then(function () {
      // on a phone the panes are stacked: bring the conversation into view
      if (window.matchMedia && window.matchMedia("(max-width: 760px)").matches && !$("chat").hidden) $("chat").scrollIntoView();
    });
  }

  function canAct() { return !!(currentData && currentData.handoff.can_act); }

  // the "显示" button: the unmasked value from the audited reveal, then a redraw
  function revealButton(key, body, redraw) {
    var b = el("button", "link reveal", "显示");
    b.type = "button";
    b.title = "显示完整信息（将记录审计日志）";
    b.setAttribute("aria-label", "显示完整信息 Reveal (audited)");
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
      var isKnown = Object.prototype.hasOwnProperty.call(revealed, key);
      var text = el("div", "msg-text" + (isKnown ? " revealed" : ""), isKnown ? revealed[key] : ev.text);
      if (ev.masked && !isKnown && canAct()) {
        text.appendChild(revealButton(key, { message: ev.id }, function () { renderHistory(currentData.events); }));
      }
      li.appendChild(text);
      if (ev.kind === "customer" && ev.intent) {
        var nlu = el("div", "nlu small");
        var it = el("span", "tag intent", label("intents", ev.intent) + (ev.confidence != null ? " " + Math.round(ev.confidence * 100) + "%" : ""));
        it.title = ev.intent;
        it.dataset.intent = ev.intent;
        nlu.appendChild(it);
        (ev.entities || []).forEach(function (e) { nlu.appendChild(el("span", "tag ent", label("slots", e.entity) + "=" + e.value)); });
        var slotKeys = Object.keys(ev.slots || {}).filter(function (k) { return k.charAt(0) !== "_" && ev.slots[k] !== null && ev.slots[k] !== "" && typeof ev.slots[k] !== "object"; });
        if (slotKeys.length) nlu.appendChild(el("span", "muted", (lang === "en" ? " Slots: " : " 槽位: ") + slotKeys.map(function (k) { return label("slots", k); }).join(", ")));
        li.appendChild(nlu);
      }
      ol.appendChild(li);
    });
    ol.scrollTop = ol.scrollHeight;
  }

  function renderCustomer(c, h) {
    var box = $("customer");
    box.textContent = "";
    box.className = "customer";
    var dl = el("dl", "kv");
    function row(k, v, cls) { dl.appendChild(el("dt", "", k)); var dd = el("dd", cls || "", v); dl.appendChild(dd); return dd; }
    row("姓名", c.name || "未核实 Unverified", c.name ? "cust-name" : "muted").id = "cust-name";
    row("户号", c.account || "—").id = "cust-account";
    row("渠道", c.channel_label).id = "cust-channel";
    row("身份", c.verified ? "已核实 Verified" : "未核实 Unverified", c.verified ? "ok" : "muted");
    row("会话", c.display, "q-who");
    box.appendChild(dl);
    var ul = $("earlier");
    ul.textContent = "";
    (c.earlier || []).forEach(function (e) {
      var li = el("li", "earlier-item");
      var text = fmtDateTime(e.created_at) + " · " + e.channel_label + " · " + e.reason_label + " · " + (STATUS[e.status] || e.status) + (e.agent ? " · " + e.agent : "");
      if (e.visible && e.handoff_id) {
        var b = el("button", "link", text);
        b.type = "button";
        b.addEventListener("click", function () { open(e.handoff_id); });
        li.appendChild(b);
      } else li.appendChild(el("span", "muted", text));
      ul.appendChild(li);
    });
    if (!(c.earlier || []).length) ul.appendChild(el("li", "muted", "无 None"));
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
        var isKnown = Object.prototype.hasOwnProperty.call(revealed, key);
        var span = el("span", isKnown ? "revealed" : "masked", isKnown ? revealed[key] : acc.masked[f[0]]);
        span.dataset.field = f[0];
        dd.appendChild(span);
        if (!isKnown && canAct()) {
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
      var dt = el("dt", "", label("slots", k));
      dt.title = k;
      dl.appendChild(dt);
      var key = current + ":slot:" + k;
      var isKnown = Object.prototype.hasOwnProperty.call(revealed, key);
      var dd = el("dd", isKnown ? "revealed" : "", isKnown ? revealed[key] : v);
      if (!isKnown && canAct() && (maskedSlots || []).indexOf(k) >= 0) {
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
      var customers = d.events.filter(function (e) { return e.kind === "customer"; }).length;
      var q = shownQueue.filter(function (x) { return x.handoff_id === id; })[0];
      markSeen(id, q ? Math.max(q.customer_messages || 0, customers) : customers);
      $("chat-empty").hidden = true;
      $("chat").hidden = false;
      var c = d.customer || {};
      $("chat-title").textContent = c.name ? c.name + (c.account ? " · " + c.account : "") : h.display;
      $("chat-id").textContent = h.display;
      $("chat-channel").textContent = CHANNELS[h.channel] || h.channel;
      $("chat-priority").textContent = "优先级 " + h.priority_label;
      $("chat-priority").className = "tag prio-" + h.priority;
      $("chat-reason").textContent = h.reason_label;
      $("chat-status").textContent = { waiting: "排队中", assigned: "处理中 · " + (h.agent || ""), released: "已结束" }[h.status] || h.status;
      var mine = !!h.can_act;
      $("take-btn").hidden = h.status !== "waiting";
      $("reopen-btn").hidden = h.status !== "released" || !!(q && q.reopenable === false);
      $("close-btn").hidden = !mine;
      $("transfer-btn").hidden = !mine;
      $("transfer-to").hidden = !mine;
      $("reply-btn").disabled = !mine;
      $("reply-text").disabled = !mine;
      $("mode-reply").disabled = !mine;
      $("mode-note").disabled = !mine;
      renderHistory(d.events);
      renderCustomer(c, h);
      renderAccount(d.account);
      renderSlots(d.slots, d.masked_slots);
      if (mine) loadAgents(h.agent);
      loadQueue();
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

  function act(path, data) {
    showError("");
    return api("POST", "/console/api/handoffs/" + current + "/" + path, data).then(function (r) {
      return Promise.all([loadQueue(), loadConversation()]).then(function () { return r; });
    }).catch(function (e) {
      showError(e.status === 409 ? "操作冲突：" + e.message : e.message);
      loadQueue(); loadConversation();
    });
  }

  function take() { if (currentData && currentData.handoff.status === "waiting") act("take"); }
  function closeConv() {
    if (!canAct()) return;
    if (window.confirm("结束会话并交还机器人？客户将收到满意度评价邀请。")) act("close");
  }
  $("take-btn").addEventListener("click", take);
  $("reopen-btn").addEventListener("click", function () {
    showError("");
    api("POST", "/console/api/handoffs/" + current + "/reopen", {}).then(function (r) {
      setView("mine");
      return open(r.handoff_id);
    }).catch(function (e) { showError(e.message); });
  });
  $("close-btn").addEventListener("click", closeConv);
  $("transfer-btn").addEventListener("click", function () {
    var to = $("transfer-to").value;
    if (to) act("transfer", { agent: to });
  });

  // ------------------------------------------------------------ composer: Reply / Note
  function setMode(m) {
    mode = m;
    var note = m === "note";
    $("composer").classList.toggle("note-mode", note);
    $("mode-reply").setAttribute("aria-checked", note ? "false" : "true");
    $("mode-note").setAttribute("aria-checked", note ? "true" : "false");
    $("reply-text").placeholder = note ? "内部备注，客户看不到（Ctrl+Enter 保存）" : "回复客户（输入 / 选择常用语，Ctrl+Enter 发送）";
    $("reply-label").textContent = note ? "内部备注 Private note" : "回复客户 Reply to the customer";
    $("mode-hint").textContent = note ? "仅坐席可见，不会发送给客户 · Ctrl+Enter 保存备注" : "将发送给客户 · Ctrl+Enter 发送";
    $("reply-btn").textContent = "";
    $("reply-btn").appendChild(document.createTextNode(note ? "保存备注 " : "发送给客户 "));
    $("reply-btn").appendChild(el("span", "en", note ? "Add note" : "Send"));
    $("reply-btn").className = note ? "note" : "primary";
  }
  $("mode-reply").addEventListener("click", function () { setMode("reply"); $("reply-text").focus(); });
  $("mode-note").addEventListener("click", function () { setMode("note"); $("reply-text").focus(); });
  function submit() {
    var t = $("reply-text").value.trim();
    if (!t || !canAct()) return;
    var path = mode === "note" ? "note" : "reply"; // what the editor shows is what happens
    act(path, { text: t }).then(function (r) { if (r) $("reply-text").value = ""; });
  }
  $("reply-btn").addEventListener("click", submit);

  // the "/" picker: "/" at the start of the editor lists canned responses by shortcut
  var pick = { open: false, index: 0, items: [] };
  function pickerQuery() {
    var v = $("reply-text").value;
    var m = /^\/([\w-]*)$/.exec(v);
    return m ? m[1].toLowerCase() : null;
  }
  function renderPicker() {
    var q = pickerQuery();
    var ul = $("canned-picker");
    if (q === null || mode !== "reply" && mode !== "note") { ul.hidden = true; pick.open = false; return; }
    pick.items = canned.filter(function (c) { return c.shortcut.toLowerCase().indexOf(q) === 0 || c.text.indexOf(q) >= 0; });
    pick.index = Math.min(pick.index, Math.max(0, pick.items.length - 1));
    ul.textContent = "";
    pick.items.forEach(function (c, i) {
      var li = el("li", "pick" + (i === pick.index ? " sel" : ""));
      li.id = "pick-" + c.id;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === pick.index ? "true" : "false");
      li.appendChild(el("strong", "", "/" + c.shortcut + " "));
      li.appendChild(el("span", "", c.text.length > 40 ? c.text.slice(0, 40) + "…" : c.text));
      li.addEventListener("mousedown", function (e) { e.preventDefault(); insertCanned(c); });
      ul.appendChild(li);
    });
    pick.open = pick.items.length > 0;
    ul.hidden = !pick.open;
    if (pick.open) $("reply-text").setAttribute("aria-activedescendant", "pick-" + pick.items[pick.index].id);
    else $("reply-text").removeAttribute("aria-activedescendant");
  }
  function insertCanned(c) {
    $("reply-text").value = c.text;
    $("canned-picker").hidden = true;
    pick.open = false;
    $("reply-text").removeAttribute("aria-activedescendant");
    $("reply-text").focus();
  }
  $("reply-text").addEventListener("input", function () { pick.index = 0; renderPicker(); });
  $("reply-text").addEventListener("blur", function () { setTimeout(function () { $("canned-picker").hidden = true; pick.open = false; }, 150); });
  $("reply-text").addEventListener("keydown", function (e) {
    if (pick.open) {
      if (e.key === "ArrowDown") { e.preventDefault(); pick.index = (pick.index + 1) % pick.items.length; renderPicker(); return; }
      if (e.key === "ArrowUp") { e.preventDefault(); pick.index = (pick.index - 1 + pick.items.length) % pick.items.length; renderPicker(); return; }
      if ((e.key === "Enter" && !e.ctrlKey && !e.metaKey) || e.key === "Tab") { e.preventDefault(); insertCanned(pick.items[pick.index]); return; }
      if (e.key === "Escape") { e.preventDefault(); $("canned-picker").hidden = true; pick.open = false; return; }
    }
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); }
    if (e.key === "Escape") { $("reply-text").blur(); }
  });

  // ------------------------------------------------------------ canned responses editor
  function loadCanned() {
    return api("GET", "/console/api/canned").then(function (d) { canned = d.canned; renderCannedList(); }).catch(function () {});
  }
  function renderCannedList() {
    var ul = $("canned-list");
    ul.textContent = "";
    canned.forEach(function (c) {
      var li = el("li", "canned-row");
      li.appendChild(el("strong", "", "/" + c.shortcut));
      li.appendChild(el("span", "canned-text", c.text));
      var edit = el("button", "link", "编辑 Edit");
      edit.type = "button";
      edit.setAttribute("aria-label", "编辑 Edit /" + c.shortcut);
      edit.addEventListener("click", function () {
        $("canned-id").value = c.id; $("canned-shortcut").value = c.shortcut; $("canned-text").value = c.text; $("canned-text").focus();
      });
      var del = el("button", "link danger-text", "删除 Delete");
      del.type = "button";
      del.setAttribute("aria-label", "删除 Delete /" + c.shortcut);
      del.addEventListener("click", function () {
        if (!window.confirm("删除常用语 /" + c.shortcut + "？")) return;
        api("DELETE", "/console/api/canned/" + c.id).then(loadCanned).catch(function (e) { cannedError(e.message); });
      });
      li.appendChild(edit); li.appendChild(del);
      ul.appendChild(li);
    });
  }
  function cannedError(msg) { $("canned-error").textContent = msg || ""; $("canned-error").hidden = !msg; }
  function resetCannedForm() { $("canned-id").value = ""; $("canned-shortcut").value = ""; $("canned-text").value = ""; cannedError(""); }
  $("canned-btn").addEventListener("click", function () { resetCannedForm(); $("canned-dialog").showModal(); $("canned-shortcut").focus(); });
  $("canned-close").addEventListener("click", function () { $("canned-dialog").close(); });
  $("canned-new").addEventListener("click", function () { resetCannedForm(); $("canned-shortcut").focus(); });
  $("canned-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var id = $("canned-id").value;
    var data = { shortcut: $("canned-shortcut").value.trim(), text: $("canned-text").value.trim() };
    (id ? api("PUT", "/console/api/canned/" + id, data) : api("POST", "/console/api/canned", data))
      .then(function () { resetCannedForm(); return loadCanned(); })
      .catch(function (err) { cannedError(err.message); });
  });

  // ------------------------------------------------------------ keyboard shortcuts and help
  function typing(t) {
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }
  function step(d) {
    var items = shownQueue.filter(function (q) { return q.visible; });
    if (!items.length) return;
    var i = -1;
    items.forEach(function (q, k) { if (q.handoff_id === current) i = k; });
    var next = items[(i + d + items.length) % items.length];
    open(next.handoff_id);
    var li = document.querySelector('.q-item[data-id="' + next.handoff_id + '"]');
    if (li) li.focus();
  }
  $("help-btn").addEventListener("click", function () { $("help-dialog").showModal(); });
  $("help-close").addEventListener("click", function () { $("help-dialog").close(); });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (typing(e.target) || $("help-dialog").open || $("canned-dialog").open) return;
    var k = e.key;
    if (k === "?") { e.preventDefault(); $("help-dialog").showModal(); }
    else if (k === "j" || k === "J") { e.preventDefault(); step(1); }
    else if (k === "k" || k === "K") { e.preventDefault(); step(-1); }
    else if (k === "t" || k === "T") { e.preventDefault(); take(); }
    else if (k === "n" || k === "N") { e.preventDefault(); setMode("note"); if (canAct()) $("reply-text").focus(); }
    else if (k === "r" || k === "R") { e.preventDefault(); setMode("reply"); if (canAct()) $("reply-text").focus(); }
    else if (k === "c" || k === "C") { e.preventDefault(); closeConv(); }
    else if (k === "s" || k === "S") { e.preventDefault(); $("search").focus(); }
  });

  // ------------------------------------------------------------ labels in the agent's language
  $("lang").value = lang;
  $("lang").addEventListener("change", function () {
    lang = this.value;
    try { window.localStorage.setItem("pb-console-lang", lang); } catch (e) { /* private mode */ }
    if (currentData) { renderHistory(currentData.events); renderSlots(currentData.slots, currentData.masked_slots); }
  });
  api("GET", "/console/api/labels").then(function (d) {
    LABELS = d;
    if (currentData) { renderHistory(currentData.events); renderSlots(currentData.slots, currentData.masked_slots); }
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
    };
    ws.onclose = function () {
      $("conn").className = "conn off";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  setMode("reply");
  connect();
  loadCanned();
  setInterval(loadQueue, 15000); // waiting times tick; also a safety net for missed events
  loadQueue();
})();
