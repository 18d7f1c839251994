// frugalrec page: plain JS, no build step. Talks to the /v1 API of the same origin.
"use strict";
const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("frugalrec-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("frugalrec-key", keyInput.value));

function say(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (keyInput.value) opts.headers["Authorization"] = "Bearer " + keyInput.value;
  if (opts.body) opts.headers["Content-Type"] = "application/json";
  const r = await fetch(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const msg = body.message || r.statusText;
    throw new Error(r.status + ": " + msg);
  }
  return body;
}

function costLine(cost) {
  const stages = Object.entries(cost.stages_ms)
    .map(([k, v]) => k.replace(/_ms$/, "") + " " + v.toFixed(2)).join(", ");
  const llm = cost.route ? `, LLM ${cost.llm_fired ? "fired" : "not fired"} (${cost.route})` : "";
  return `tier ${cost.tier} (${cost.pipeline}, model v${cost.model_version}${llm}), ` +
    `cache ${cost.cache}, ${cost.total_ms.toFixed(2)} ms total: ${stages}`;
}

// The request box suggests a request in the catalogue's own words: the categories of the
// items it has just shown (the page knows no domain of its own).
function suggestExample(items) {
  const box = $("query-text");
  if (box.dataset.suggested) return;
  const cats = [];
  for (const it of items) {
    for (const g of (it.genres || "").split("|")) if (g && !cats.includes(g)) cats.push(g);
  }
  if (cats.length >= 2) {
    box.placeholder = `e.g. something ${cats[0].toLowerCase()}, no ${cats[1].toLowerCase()}`;
    box.dataset.suggested = "1";
  }
}

function renderItems(items, withActions) {
  suggestExample(items);
  const ol = $("recs");
  ol.replaceChildren();
  for (const it of items) {
    const li = document.createElement("li");
    li.dataset.item = it.item_id;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = it.title;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = ` ${it.year ?? ""} · ${(it.genres ?? "").split("|").join(", ")} · score ${it.score == null ? "–" : it.score.toFixed(3)}`;
    li.append(title, meta);
    if (withActions) {
      const actions = document.createElement("span");
      actions.className = "actions";
      for (const [type, label] of [["like", "Like"], ["dislike", "Dislike"]]) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = type === "like" ? "" : "secondary";
        b.textContent = label;
        b.setAttribute("aria-label", `${label} ${it.title}`);
        b.addEventListener("click", () => feedback(it.item_id, type, it.title));
        actions.append(b);
      }
      li.append(actions);
    }
    if (it.explanation) {
      const why = document.createElement("div");
      why.className = "why";
      why.textContent = it.explanation;
      li.append(why);
    }
    ol.append(li);
  }
}

async function recommend() {
  const user = $("user-id").value.trim();
  if (!user) { say("Type a user id first.", true); return; }
  const k = $("k").value, explain = $("explain").checked;
  try {
    const r = await api(`/v1/users/${encodeURIComponent(user)}/recommendations?k=${k}&explain=${explain}`);
    $("recs-for").textContent = "for " + user;
    renderItems(r.items, true);
    $("recs-cost").textContent = costLine(r.cost);
    say(`${r.items.length} recommendations for ${user}.`);
  } catch (e) { say(e.message, true); }
}

async function feedback(item, type, title) {
  const user = $("user-id").value.trim();
  try {
    await api("/v1/events", { method: "POST",
      body: JSON.stringify({ user_id: user, item_id: item, type: type }) });
    await recommend();
    say(`${type === "like" ? "Liked" : "Disliked"} ${title}; list updated.`);
  } catch (e) { say(e.message + (keyInput.value ? "" : " (set an API key)"), true); }
}

async function ask() {
  const text = $("query-text").value.trim();
  if (!text) return;
  const user = $("user-id").value.trim();
  const body = { text: text, k: Number($("k").value), explain: $("explain").checked };
  if (user) body.user_id = user;
  try {
    const r = await api("/v1/query", { method: "POST", body: JSON.stringify(body) });
    $("recs-for").textContent = `for “${r.text}”`;
    renderItems(r.items, Boolean(user));
    $("recs-cost").textContent = costLine(r.cost) +
      ` — understood: ${JSON.stringify(r.intent)}`;
    say(`${r.items.length} results for your request.`);
  } catch (e) { say(e.message, true); }
}

async function refreshCost() {
  try {
    const s = await api("/v1/stats");
    const tbody = $("cost-table").querySelector("tbody");
    tbody.replaceChildren();
    for (const [tier, v] of Object.entries(s.tiers)) {
      const tr = document.createElement("tr");
      for (const cell of [tier, v.p50_ms.toFixed(2), v.p99_ms.toFixed(2), v.count]) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.append(td);
      }
      tbody.append(tr);
    }
    const hit = s.cache_hit_ratio === null ? "n/a" : (100 * s.cache_hit_ratio).toFixed(0) + "%";
    $("cost-extra").textContent =
      `model v${s.model_version} · ${s.events_in_store} events stored · cache hit rate ${hit}`;
    const dl = $("user-samples");
    if (!dl.children.length) {
      for (const u of s.sample_users) {
        const o = document.createElement("option");
        o.value = u;
        dl.append(o);
      }
      if (!$("user-id").value && s.sample_users.length) $("user-id").value = s.sample_users[0];
    }
  } catch (e) { /* the panel retries on the next tick */ }
}

$("user-form").addEventListener("submit", (e) => { e.preventDefault(); recommend(); });
$("query-form").addEventListener("submit", (e) => { e.preventDefault(); ask(); });
refreshCost();
setInterval(refreshCost, 2000);
