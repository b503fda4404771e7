/* Customer desk: the call-centre agent's (and field rep's) single customer view with the
 * next best activities. Plain browser JavaScript, no build step, no third-party code.
 * Every value from the API reaches the page through textContent, never as HTML. */
"use strict";

(() => {
  const KEY_STORE = "nba.desk.apiKey";
  const CHANNEL = "call_centre";
  const LIMIT = 3;
  const POLL_MS = 400;
  const POLL_FOR_MS = 5000;
  const REQUEST_TIMEOUT_MS = 10000;
  // The API lives at the root the desk is mounted under: "/desk/" -> "", "/x/desk/" -> "/x".
  const API_BASE = location.pathname.replace(/\/desk(\/.*)?$/, "");

  const $ = (id) => document.getElementById(id);
  const state = { customerId: null, view: null, decision: null, busy: false, names: {} };

  // ---------------------------------------------------------------- API access

  class DeskError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  function apiKey() {
    try {
      return localStorage.getItem(KEY_STORE) || "";
    } catch (_) {
      return "";
    }
  }

  function setApiKey(value) {
    try {
      if (value) localStorage.setItem(KEY_STORE, value);
      else localStorage.removeItem(KEY_STORE);
    } catch (_) {
      /* private mode without storage: the key lives for this page only */
    }
    state.key = value;
  }

  function serverMessage(body) {
    const error = body && typeof body === "object" ? body.error : null;
    if (error && typeof error === "object") {
      if (typeof error.message === "string") return error.message;
    }
    if (body && typeof body.detail === "string") return body.detail;
    return "";
  }

  function explain(status, body) {
    const said = serverMessage(body);
    switch (status) {
      case 401:
        return "Your API key was not accepted" + (said ? ` (${said})` : "") +
          ". Please sign in again with a valid key.";
      case 403:
        return "Your API key may not do this" + (said ? `: ${said}` : "") +
          ". Ask an administrator for a key with the read, decide and respond scopes.";
      case 404:
        return "Not found" + (said ? `: ${said}` : "") + ".";
      case 422:
        return "The request was refused" + (said ? `: ${said}` : "") +
          ". Check the customer id and try again.";
      case 429:
        return "Too many requests just now; wait a moment and try again.";
      default:
        if (status >= 500) {
          return `The decision service had a problem (HTTP ${status}). Try again in a moment.`;
        }
        return `Unexpected answer from the decision service (HTTP ${status})` +
          (said ? `: ${said}` : "") + ".";
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${state.key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let response;
    try {
      response = await fetch(API_BASE + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        signal: controller.signal,
      });
    } catch (_) {
      throw new DeskError(
        "Cannot reach the decision service. Check the network connection and try again.", 0);
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try {
      const text = await response.text();
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) throw new DeskError(explain(response.status, data), response.status);
    return data;
  }

  // ---------------------------------------------------------------- small helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  function num(value) {
    return typeof value === "number" && Number.isFinite(value) ? numberFormat.format(value) : String(value);
  }

  function sig(value) {
    if (typeof value !== "number" || !Number.isFinite(value)) return String(value);
    if (value === 0) return "0";
    if (Math.abs(value) >= 100) return numberFormat.format(Math.round(value));
    return String(Number(value.toPrecision(3)));
  }

  function pct(value) {
    if (typeof value !== "number" || !Number.isFinite(value)) return String(value);
    return `${Number((value * 100).toPrecision(3))} %`;
  }

  function when(epochSeconds) {
    if (typeof epochSeconds !== "number" || !Number.isFinite(epochSeconds)) return "–";
    const date = new Date(epochSeconds * 1000);
    const seconds = (Date.now() - date.getTime()) / 1000;
    if (seconds >= -60 && seconds < 60) return "just now";
    if (seconds >= 0 && seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    const sameDay = date.toDateString() === new Date().toDateString();
    return sameDay
      ? `today ${date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}`
      : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function isoOf(epochSeconds) {
    return typeof epochSeconds === "number" ? new Date(epochSeconds * 1000).toISOString() : "";
  }

  function label(key) {
    const text = String(key).replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function display(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "number") return num(value);
    if (Array.isArray(value)) return value.map(display).join(", ");
    return String(value);
  }

  function actionName(actionId) {
    return state.names[actionId] || actionId || "";
  }

  // ---------------------------------------------------------------- messages

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    show(box, Boolean(message));
  }

  function setStatus(message) {
    $("status").textContent = message || "";
  }

  function handle(error) {
    const message = error instanceof DeskError
      ? error.message
      : "Something went wrong in the page. Reload it and try again.";
    showError(message);
    if (error instanceof DeskError && error.status === 401) signOut(message);
  }

  // ---------------------------------------------------------------- sign in / out

  function signedIn() {
    show($("login"), false);
    show($("search-form"), true);
    show($("sign-out"), true);
    show($("welcome"), !state.customerId);
  }

  function signOut(message) {
    setApiKey("");
    state.customerId = null;
    state.view = null;
    state.decision = null;
    show($("customer"), false);
    show($("welcome"), false);
    show($("search-form"), false);
    show($("sign-out"), false);
    show($("login"), true);
    setStatus("");
    showError(message || "");
    $("api-key").value = "";
    $("api-key").focus();
  }

  // ---------------------------------------------------------------- rendering

  const PROFILE_SKIP = new Set(["age", "age_band", "value_class", "clv", "open_complaint"]);

  function ageBand(profile) {
    if (profile.age_band) return String(profile.age_band);
    if (typeof profile.age === "number") {
      const low = Math.min(Math.floor(profile.age / 10) * 10, 70);
      return `${low}-${low + 9}`;
    }
    return null;
  }

  function fact(dl, term, value, cls) {
    if (value === null || value === undefined || value === "") return;
    const dd = el("dd", { class: cls || null });
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value;
    dl.append(el("div", { class: "fact", "data-field": term }, el("dt", { text: term }), dd));
  }

  function renderProfile(view) {
    const profile = view.profile || {};
    $("customer-title").textContent = view.customer_id;
    const known = $("customer-known");
    known.textContent = view.known ? (profile.segment ? String(profile.segment) : "known") : "new / unknown";
    known.className = view.known ? "tag" : "tag muted";

    show($("complaint"), profile.open_complaint === true);

    const dl = clear($("profile"));
    fact(dl, "Segment", profile.segment === undefined ? null : display(profile.segment));
    fact(dl, "Age band", ageBand(profile));
    const value = [];
    if (profile.value_class !== undefined) value.push(`class ${display(profile.value_class)}`);
    if (typeof profile.clv === "number") value.push(`CLV ${num(profile.clv)}`);
    fact(dl, "Value", value.join(" · ") || null, profile.value_class === "A" ? "strong" : null);
    if (typeof profile.churn_risk === "number") {
      fact(dl, "Churn risk", pct(profile.churn_risk), profile.churn_risk >= 0.5 ? "warn" : null);
    }
    if (typeof profile.tenure_months === "number") {
      fact(dl, "Tenure", `${num(profile.tenure_months)} months`);
    }
    if (typeof profile.contract_days_left === "number") {
      fact(dl, "Contract", `ends in ${num(profile.contract_days_left)} days`,
        profile.contract_days_left <= 30 ? "warn" : null);
    }
    fact(dl, "Complaint", profile.open_complaint === true ? "open" : (profile.open_complaint === false ? "none open" : null),
      profile.open_complaint === true ? "bad" : null);
    const shown = new Set(["segment", "churn_risk", "tenure_months", "contract_days_left"]);
    for (const key of Object.keys(profile).sort()) {
      if (PROFILE_SKIP.has(key) || shown.has(key) || key.startsWith("consent_")) continue;
      const raw = profile[key];
      const text = /(_at|_seen)$/.test(key) && typeof raw === "number" ? when(raw) : display(raw);
      fact(dl, label(key), text);
    }

    const consents = clear($("consents"));
    const keys = Object.keys(profile).filter((k) => k.startsWith("consent_")).sort();
    for (const key of keys) {
      const granted = profile[key] === true;
      consents.append(el("span", {
        class: granted ? "chip ok" : "chip no",
        "data-consent": key.slice(8),
        title: granted ? "consent given" : "no consent",
        text: `${granted ? "✓" : "✗"} ${label(key.slice(8))}`,
      }));
    }
    if (!keys.length) consents.append(el("span", { class: "chip muted", text: "No consents on record" }));
  }

  function renderBehaviour(view) {
    const behaviour = view.behaviour || {};
    const dl = clear($("behaviour"));
    const bars = clear($("views"));
    const views = Object.entries(behaviour)
      .filter(([k, v]) => k.startsWith("views_") && k !== "views_total" && typeof v === "number")
      .map(([k, v]) => [k.slice(6), v])
      .sort((a, b) => b[1] - a[1]);
    fact(dl, "Last category", behaviour.last_category === undefined ? null : display(behaviour.last_category));
    fact(dl, "Last seen", typeof behaviour.last_seen === "number" ? when(behaviour.last_seen) : null);
    const done = new Set(["last_category", "last_seen", "views_total"]);
    if (typeof behaviour.views_total === "number") fact(dl, "Views", num(behaviour.views_total));
    for (const key of Object.keys(behaviour).sort()) {
      if (done.has(key) || key.startsWith("views_")) continue;
      const raw = behaviour[key];
      fact(dl, label(key), /(_at|_seen)$/.test(key) && typeof raw === "number" ? when(raw) : display(raw));
    }
    const top = views.length ? views[0][1] : 0;
    for (const [category, count] of views.slice(0, 8)) {
      const width = top > 0 ? Math.max(4, Math.round((count / top) * 100)) : 0;
      const fill = el("span", { class: "bar-fill" });
      fill.style.width = `${width}%`;
      bars.append(el("div", { class: "bar", "data-category": category },
        el("span", { class: "bar-label", text: category }),
        el("span", { class: "bar-track" }, fill),
        el("span", { class: "bar-count", text: num(count) })));
    }
    show($("behaviour-empty"), Object.keys(behaviour).length === 0);
  }

  function historyEntries(view) {
    const list = Array.isArray(view.history) ? view.history.slice() : [];
    // Newest first; the store already keeps that order, the sort only makes sure of it.
    return list
      .map((entry, i) => [entry, i])
      .sort((a, b) => (Number(b[0].at) || 0) - (Number(a[0].at) || 0) || a[1] - b[1])
      .map(([entry]) => entry);
  }

  function renderHistory(view) {
    const body = clear($("history"));
    const entries = historyEntries(view);
    for (const entry of entries) {
      const action = entry.action_id ? actionName(entry.action_id)
        : display(entry.topic || entry.reason || entry.subject || entry.action || "");
      const outcome = entry.outcome || entry.status || "";
      const row = el("tr", {
        "data-testid": "history-row",
        "data-type": entry.type || "",
        "data-outcome": outcome,
        "data-action-id": entry.action_id || "",
        class: outcome ? `outcome-${String(outcome).replace(/[^a-z_-]/gi, "")}` : null,
      },
      el("td", { "data-label": "When" }, el("time", { datetime: isoOf(entry.at), title: isoOf(entry.at), text: when(entry.at) })),
      el("td", { "data-label": "Type", text: display(entry.type || "–") }),
      el("td", { "data-label": "Action", text: action || "–" }),
      el("td", { "data-label": "Outcome" }, outcome ? el("span", { class: "pill", text: display(outcome) }) : "–"),
      el("td", { "data-label": "Channel", text: display(entry.channel || "–") }));
      body.append(row);
    }
    show($("history-empty"), entries.length === 0);
  }

  function renderCounters(view) {
    const counters = view.counters || {};
    const per = {};
    const caps = [];
    for (const [key, value] of Object.entries(counters)) {
      const at = key.indexOf(":");
      if (at < 0) continue;
      const action = key.slice(0, at);
      const what = key.slice(at + 1);
      if (action === "cap") {
        if (Array.isArray(value)) caps.push([what, value.filter((t) => typeof t === "number")]);
        continue;
      }
      if (action === "all" || typeof value !== "number") continue;
      (per[action] = per[action] || {})[what] = value;
    }
    const body = clear($("counters"));
    const ids = Object.keys(per).sort();
    for (const id of ids) {
      const c = per[id];
      const lasts = Object.entries(c).filter(([k]) => k.startsWith("last_")).map(([, v]) => v);
      const last = lasts.length ? Math.max(...lasts) : null;
      body.append(el("tr", { "data-testid": "counter-row", "data-action-id": id },
        el("td", { "data-label": "Action", text: actionName(id) }),
        el("td", { "data-label": "Shown", text: num(c.impression || 0) }),
        el("td", { "data-label": "Clicked", text: num(c.click || 0) }),
        el("td", { "data-label": "Accepted", text: num(c.accept || 0) }),
        el("td", { "data-label": "Declined", text: num(c.decline || 0) }),
        el("td", { "data-label": "Last", text: last === null ? "–" : when(last) })));
    }
    show($("counters-empty"), ids.length === 0);
    const capList = clear($("caps"));
    for (const [name, stamps] of caps.sort()) {
      const [scope, ...rest] = name.split(":");
      const last = stamps.length ? Math.max(...stamps) : null;
      capList.append(el("li", { "data-testid": "cap", "data-cap": name },
        el("strong", { text: rest.join(":") || scope }),
        ` (${scope === "customer" ? "all channels" : scope}): ${stamps.length} recent contact${stamps.length === 1 ? "" : "s"}`,
        last === null ? "" : `, last ${when(last)}`));
    }
    show($("caps-box"), caps.length > 0);
  }

  function contentParts(content) {
    const main = content.script || content.headline || content.text || content.body || content.subject || "";
    const rest = Object.entries(content).filter(([k, v]) =>
      v !== main && v !== null && typeof v !== "object" && !/image/.test(k));
    return { main: main ? String(main) : "", rest };
  }

  function policyText(policy) {
    if (!policy || typeof policy !== "object") return "";
    const parts = [`shown ${num(policy.impressions || 0)}×`, `declined ${num(policy.declines || 0)}×`];
    parts.push(policy.days_since_decline === null || policy.days_since_decline === undefined
      ? "no decline on record"
      : `last decline ${num(policy.days_since_decline)} days ago`);
    const window = policy.impressions_in_window;
    if (window && typeof window === "object") {
      parts.push(`shown ${num(window.count)} of max ${num(window.max)} in ${num(window.days)} days`);
    }
    const caps = policy.caps && typeof policy.caps === "object" ? policy.caps : {};
    for (const [name, cap] of Object.entries(caps)) {
      if (cap && typeof cap === "object") {
        parts.push(`${name}: ${num(cap.used)} of ${num(cap.max)} contacts in ${num(cap.days)} days`);
      }
    }
    return `Contact policy: ${parts.join(" · ")}`;
  }

  function factorText(name, value, power) {
    const text = `${name} ${name === "propensity" ? pct(value) : sig(value)}`;
    return typeof power === "number" && power !== 1 ? `(${text})^${sig(power)}` : text;
  }

  function renderReasons(action) {
    const why = el("div", { class: "why", "data-testid": "reasons" });
    const x = action.explanation;
    if (!x) {
      why.append(el("p", { class: "formula", text: "Default suggestion: no explanation available." }));
      return why;
    }
    const f = x.factors || {};
    const powers = f.powers && typeof f.powers === "object" ? f.powers : {};
    const terms = [
      ["propensity", f.propensity, powers.propensity, "how likely the customer is to accept"],
      ["weight", f.context_weight, null, "weight of this channel and context"],
      ["kind", f.kind_weight, null, "weight of the action's kind on this channel"],
      ["value", f.value, powers.value, "what an accept is worth"],
      ["lever", f.lever, powers.lever, "business priority"],
    ].filter(([name, value]) => typeof value === "number" && !(name === "kind" && value === 1));
    const formula = el("p", { class: "formula", "data-testid": "factors" });
    terms.forEach(([name, value, power, title], i) => {
      if (i) formula.append(" × ");
      formula.append(el("span", { class: "factor", title, text: factorText(name, value, power) }));
    });
    formula.append(" = ", el("strong", { title: "priority used to rank", text: sig(action.score) }));
    why.append(formula);
    const rules = Array.isArray(x.rules_passed) ? x.rules_passed : [];
    if (rules.length) {
      const list = el("ul", { class: "chips rules", "data-testid": "rules", "aria-label": "Rules passed" });
      for (const rule of rules) list.append(el("li", { class: "chip ok", text: `✓ ${rule}` }));
      why.append(list);
    }
    const policy = policyText(x.contact_policy);
    if (policy) why.append(el("p", { class: "policy", "data-testid": "contact-policy", text: policy }));
    return why;
  }

  function reasonText(reason) {
    if (reason === "contact_policy:suppressed_after_decline") return "declined recently, paused for now";
    if (reason === "contact_policy:max_impressions") return "shown often enough lately";
    if (reason.startsWith("contact_policy:cap:")) return `contact limit reached (${reason.slice(19)})`;
    if (reason === "validity_window") return "outside its campaign dates";
    if (reason === "eligibility") return "the customer does not qualify";
    return `rule: ${reason}`;
  }

  function renderActions() {
    const decision = state.decision;
    const list = clear($("actions"));
    const note = $("actions-note");
    const excludedBox = $("excluded-box");
    if (!decision) {
      show(note, false);
      show(excludedBox, false);
      $("decision-meta").textContent = "";
      return;
    }
    const actions = Array.isArray(decision.actions) ? decision.actions : [];
    for (const action of actions) {
      state.names[action.action_id] = action.name;
      const content = contentParts(action.content || {});
      const accept = el("button", {
        type: "button", class: "accept", "data-testid": "accept",
        onclick: () => record(action, "accept"),
      }, "Accept");
      const decline = el("button", {
        type: "button", class: "decline", "data-testid": "decline",
        onclick: () => record(action, "decline"),
      }, "Decline");
      const item = el("li", {
        class: `action kind-${String(action.kind).replace(/[^a-z]/g, "")}`,
        "data-testid": "action",
        "data-action-id": action.action_id,
      },
      el("div", { class: "action-head" },
        el("span", { class: "rank", "aria-label": `rank ${action.rank}`, text: String(action.rank) }),
        el("h3", { "data-testid": "action-name", text: action.name }),
        el("span", { class: `tag kind`, "data-testid": "action-kind", text: action.kind })),
      content.main ? el("p", { class: "script", "data-testid": "script", text: content.main }) : null,
      content.rest.length
        ? el("p", { class: "content-extra", text: content.rest.map(([k, v]) => `${label(k)}: ${v}`).join(" · ") })
        : null,
      renderReasons(action),
      el("div", { class: "buttons" }, accept, decline));
      list.append(item);
    }
    if (!actions.length) {
      const excludedNow = Array.isArray(decision.excluded) ? decision.excluded : [];
      const capped = excludedNow.filter((e) => String(e.excluded_by).startsWith("contact_policy:cap:"));
      const text = capped.length && capped.length === excludedNow.length
        ? `No activity: the contact limit for this customer is reached (${[...new Set(capped.map((e) => String(e.excluded_by).slice(19)))].join(", ")}). Handle the call as usual.`
        : "No activity fits this customer right now. Handle the call as usual.";
      list.append(el("li", { class: "empty", "data-testid": "no-actions", text }));
    }
    const notes = [];
    if (decision.fallback) notes.push("The engine answered with default suggestions (it could not read the customer in time).");
    if (decision.group === "control") notes.push("Control group: these suggestions are a random pick that measures uplift; offer them as usual.");
    note.textContent = notes.join(" ");
    show(note, notes.length > 0);

    const excluded = Array.isArray(decision.excluded) ? decision.excluded : [];
    const ul = clear($("excluded"));
    for (const item of excluded) {
      const reason = String(item.excluded_by);
      ul.append(el("li", { "data-testid": "excluded", "data-action-id": item.action_id, "data-reason": reason },
        el("span", { text: actionName(item.action_id) }), " — ",
        el("span", { class: "muted", title: reason, text: reasonText(reason) })));
    }
    $("excluded-count").textContent = String(excluded.length);
    show(excludedBox, excluded.length > 0);
    $("decision-meta").textContent =
      `Decision ${decision.decision_id} · model ${decision.model_version} · took ${num(decision.took_ms)} ms`;
  }

  function learnNames(view) {
    const nba = view && view.next_best_actions;
    if (!nba || typeof nba !== "object") return;
    for (const actions of Object.values(nba)) {
      if (!Array.isArray(actions)) continue;
      for (const a of actions) if (a && a.action_id && a.name) state.names[a.action_id] = a.name;
    }
  }

  function renderView() {
    const view = state.view;
    if (!view) return;
    learnNames(view);
    if (state.decision) for (const a of state.decision.actions || []) state.names[a.action_id] = a.name;
    renderProfile(view);
    renderActions();
    renderHistory(view);
    renderBehaviour(view);
    renderCounters(view);
    show($("welcome"), false);
    show($("customer"), true);
  }

  // ---------------------------------------------------------------- flows

  function decide(customerId) {
    return api("POST", "/v1/decisions", {
      customer_id: customerId, channel: CHANNEL, limit: LIMIT, explain: true,
    });
  }

  function fetchView(customerId) {
    return api("GET", `/v1/customers/${encodeURIComponent(customerId)}`);
  }

  function settle(promise) {
    return promise.then(
      (value) => ({ status: "fulfilled", value }),
      (reason) => ({ status: "rejected", reason }));
  }

  async function load(customerId) {
    state.customerId = customerId;
    state.busy = true;
    setStatus(`Loading ${customerId}…`);
    showError("");
    try {
      // The decision first: it is what the agent needs, and a view may not change it.
      const decision = await settle(decide(customerId));
      const view = await settle(fetchView(customerId));
      if (state.customerId !== customerId) return; // a newer search took over
      const failures = [decision, view].filter((r) => r.status === "rejected").map((r) => r.reason);
      state.view = view.status === "fulfilled" ? view.value : null;
      state.decision = decision.status === "fulfilled" ? decision.value : null;
      if (state.view) renderView();
      else show($("customer"), false);
      if (failures.length) {
        handle(failures[0]);
        if (state.view && !state.decision) {
          clear($("actions")).append(el("li", { class: "empty", "data-testid": "no-actions",
            text: "Next best activities are unavailable: see the message above." }));
        }
      }
      setStatus(failures.length ? "" : `Showing ${customerId}`);
    } finally {
      state.busy = false;
    }
  }

  function hasResponse(view, decisionId, actionId, outcome) {
    return (view.history || []).some((h) =>
      h.type === "response" && h.action_id === actionId && h.outcome === outcome &&
      (!decisionId || h.decision_id === decisionId));
  }

  async function record(action, outcome) {
    const decision = state.decision;
    const customerId = state.customerId;
    if (!decision || !customerId) return;
    const buttons = document.querySelectorAll(`[data-testid=action] button`);
    buttons.forEach((b) => { b.disabled = true; });
    const verb = outcome === "accept" ? "Accepted" : "Declined";
    showError("");
    setStatus(`Recording: ${verb.toLowerCase()} “${action.name}”…`);
    try {
      await api("POST", "/v1/responses", {
        decision_id: decision.decision_id,
        action_id: action.action_id,
        customer_id: customerId,
        outcome,
        channel: CHANNEL,
      });
    } catch (error) {
      buttons.forEach((b) => { b.disabled = false; });
      setStatus("");
      handle(error);
      return;
    }
    const card = document.querySelector(`[data-testid=action][data-action-id="${CSS.escape(action.action_id)}"]`);
    if (card) {
      card.classList.add(outcome === "accept" ? "recorded-accept" : "recorded-decline");
      card.querySelector(".buttons").replaceChildren(
        el("span", { class: "recorded", "data-testid": "recorded", text: `${verb} ✓` }));
    }
    // The stream worker stores the response asynchronously: poll the view until it shows.
    const deadline = Date.now() + POLL_FOR_MS;
    let view = null;
    let seen = false;
    try {
      while (!seen && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        if (state.customerId !== customerId) return;
        view = await fetchView(customerId);
        seen = hasResponse(view, decision.decision_id, action.action_id, outcome);
      }
      if (state.customerId !== customerId) return;
      const next = await decide(customerId);
      if (state.customerId !== customerId) return;
      state.view = view || state.view;
      state.decision = next;
      renderView();
      setStatus(seen
        ? `${verb} “${action.name}”: saved to the history.`
        : `${verb} “${action.name}”: sent; the history will show it shortly.`);
    } catch (error) {
      setStatus("");
      handle(error);
    }
  }

  function currentHashId() {
    const match = /^#c=(.+)$/.exec(location.hash);
    if (!match) return "";
    try {
      return decodeURIComponent(match[1]);
    } catch (_) {
      return "";
    }
  }

  function search(customerId) {
    const id = customerId.trim();
    if (!id) {
      showError("Enter a customer id.");
      $("customer-id").focus();
      return;
    }
    $("customer-id").value = id;
    if (window.matchMedia && matchMedia("(pointer: coarse)").matches) $("customer-id").blur();
    const hash = `#c=${encodeURIComponent(id)}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
    load(id).catch(handle);
  }

  // ---------------------------------------------------------------- wiring

  function start() {
    state.key = apiKey();
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) {
        showError("Enter your API key.");
        return;
      }
      setApiKey(key);
      showError("");
      signedIn();
      const pending = currentHashId();
      if (pending) search(pending);
      else $("customer-id").focus();
    });
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      search($("customer-id").value);
    });
    $("sign-out").addEventListener("click", (event) => {
      event.preventDefault();
      history.replaceState(null, "", location.pathname + location.search);
      $("customer-id").value = "";
      signOut("");
      setStatus("Signed out.");
    });
    $("refresh").addEventListener("click", () => {
      if (state.customerId && !state.busy) load(state.customerId).catch(handle);
    });
    window.addEventListener("hashchange", () => {
      const id = currentHashId();
      if (id && id !== state.customerId && state.key) search(id);
    });
    window.addEventListener("unhandledrejection", (event) => {
      event.preventDefault();
      handle(event.reason);
    });

    if (!state.key) {
      signOut("");
      return;
    }
    signedIn();
    const pending = currentHashId();
    if (pending) search(pending);
    else $("customer-id").focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
