// director's dashboard: draws /api/v1/state, follows /api/v1/stream (Server-Sent Events).
// Every text from the daemon goes in with textContent, never as HTML: a name in the
// configuration cannot become markup. No framework, no build step, no CDN.
"use strict";

const PAGE_SIZE = 20;            // virtual servers per page
const EXPAND_BELOW = 6;          // pools start expanded when there are this few
const REFRESH_MS = 5000;         // latencies move without events: redraw this often
const DEBOUNCE_MS = 250;         // a burst of events costs one state fetch
const EVENTS_SHOWN = 200;
const BGP_CHANGES_SHOWN = 10;    // the API keeps the last 50
const ROLE_ORDER = ["MASTER", "BACKUP", "FAULT", "INIT", "STOP"];

const view = {
  state: null, page: 0, filter: "", problemsOnly: false,
  expanded: new Set(), touched: false, histories: new Map(), lastEventId: 0,
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function ago(epoch) {
  if (!epoch) return "never";
  const seconds = Math.max(0, Date.now() / 1000 - epoch);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${(seconds / 86400).toFixed(1)} d ago`;
}

function ms(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return seconds < 0.01 ? `${(seconds * 1000).toFixed(2)} ms` : `${(seconds * 1000).toFixed(1)} ms`;
}

function badge(text, kind) {
  return el("span", {class: `badge badge-${kind}`, text});
}

// How late something ran (the main loop's timer, a master's adverts): the recent samples'
// histogram as bars, 1 ms to 10 s and over, heights on a log scale so that one late sample
// among hundreds on time still shows; p99 and maximum beside it.
function lateness(late, what) {
  if (!late || !late.samples) return el("span", {class: "muted", text: "—"});
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "lateness");
  const bars = late.recent_buckets;
  const width = 4;
  svg.setAttribute("viewBox", `0 0 ${bars.length * width} 16`);
  const top = Math.log1p(Math.max(...bars));
  bars.forEach((count, i) => {
    if (!count) return;
    const height = Math.max(1, 15 * Math.log1p(count) / top);
    const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    bar.setAttribute("x", i * width);
    bar.setAttribute("y", (16 - height).toFixed(1));
    bar.setAttribute("width", width - 1);
    bar.setAttribute("height", height.toFixed(1));
    if (i >= late.bounds.indexOf(1)) bar.setAttribute("class", "late");
    svg.append(bar);
  });
  const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
  title.textContent = `${what}: last ${late.samples}, by bucket 1 ms … 10 s ` +
    `(${late.count} since start)`;
  svg.append(title);
  const time = (seconds) => seconds < 1 ? ms(seconds) : `${seconds.toFixed(2)} s`;
  return el("span", {class: "lateness"}, svg,
            ` p99 ${time(late.p99_seconds)} · max ${time(late.max_seconds)}`);
}

function loopLag(loop) {
  if (!loop) return null;
  const last = loop.last_late;
  return el("span", {class: "loop-lag"}, "loop lag ", lateness(loop.lag, "main loop lag"),
            last ? badge(`${ago(last.at)}: ${last.text}`,
                         Date.now() / 1000 - last.at < 600 ? "warn" : "muted") : null);
}

// --- summary and VRRP -------------------------------------------------------------------

function renderSummary(state) {
  const box = document.getElementById("summary");
  const pools = state.virtual_servers;
  const reals = pools.reduce((n, vs) => n + vs.total, 0);
  const up = pools.reduce((n, vs) => n + vs.up, 0);
  const lost = pools.filter((vs) => !vs.quorum_ok).length;
  const reload = state.reload || {};
  box.replaceChildren(...[
    el("span", {}, "backend ", el("b", {text: state.backend || "—"})),
    lbErrors(state.load_balancer),
    lbWarnings(state.load_balancer),
    ...(state.not_running || []).map((part) => badge(`not running: ${part}`, "bad")),
    el("span", {}, "real servers up ", el("b", {id: "reals-up", text: `${up}/${reals}`})),
    lost ? badge(`${lost} pool(s) below quorum`, "bad") : null,
    reload.result === "failure"
      ? badge(`last reload failed ${ago(reload.at)}: ${(reload.errors || [])[0] || ""}`, "bad")
      : reload.result ? el("span", {class: "muted", text: `reloaded ${ago(reload.at)}`}) : null,
    loopLag(state.main_loop),
    el("span", {class: "muted", text: `pid ${state.pid} · up since ${ago(state.started)}`}),
  ].filter(Boolean));   // replaceChildren would write a null as the text "null"
}

function lbErrors(lb) {
  if (!lb) return null;
  const total = Object.values(lb.errors).reduce((n, c) => n + c, 0);
  if (lb.failing_converges && lb.last_error) {
    return badge(`${lb.backend} failing (${lb.failing_converges} in a row): ` +
                 `${lb.last_error.operation}: ${lb.last_error.error}`, "bad");
  }
  return total ? el("span", {class: "muted lb-errors", title: lb.last_error
    ? `last: ${lb.last_error.operation}: ${lb.last_error.error} (${ago(lb.last_error.at)})` : "",
    text: `${total} backend error(s), recovered`}) : null;
}

// What the backend does differently from IPVS (nftables: wlc runs as wrr, ...): one badge,
// each note in its title.
function lbWarnings(lb) {
  const notes = (lb && lb.warnings) || [];
  return notes.length ? el("span", {class: "badge badge-warn lb-warnings", title: notes.join("\n"),
    text: `${notes.length} difference(s) from IPVS on ${lb.backend}`}) : null;
}

function renderSyncDaemon(daemon) {
  const box = document.getElementById("lvs-sync");
  if (!daemon) { box.replaceChildren(); return; }
  const running = daemon.running.map((d) => `${d.state} (syncid ${d.syncid})`).join(", ");
  box.replaceChildren(el("div", {class: "card", "data-lvs-sync": daemon.interface},
    el("div", {class: "card-title"}, el("b", {text: "IPVS connection sync"}), " ",
       daemon.in_step ? badge("in step", "good") : badge("not in step", "bad")),
    el("dl", {},
       el("dt", {text: "follows"}), el("dd", {text: `${daemon.instance} on ${daemon.interface}`}),
       el("dt", {text: "kernel runs"}), el("dd", {class: "lvs-sync-running", text: running || "none"}),
       daemon.last_error ? el("dt", {text: "error"}) : null,
       daemon.last_error ? el("dd", {class: "error", text: daemon.last_error}) : null)));
}

// What an instance or a sync group tracks: one line each, with what it does to the priority.
function trackedLine(t) {
  const weight = t.weight ? ` weight ${t.weight}${t.reverse ? " reverse" : ""}` : "";
  const status = t.kind === "process" ? `${t.running} running (quorum ${t.quorum})`
    : t.kind === "file" ? `${t.path} = ${t.status}` : (t.status ? "up" : "down");
  const effect = t.effect === "FAULT" ? badge("FAULT", "bad")
    : el("span", {class: "muted", text: t.effect ? `${t.effect > 0 ? "+" : ""}${t.effect}` : "±0"});
  return el("li", {"data-tracked": `${t.kind} ${t.name}`},
            `${t.kind} ${t.name}${weight}: ${status} `, effect);
}

function tracking(items) {
  return items && items.length ? el("ul", {class: "tracking"}, ...items.map(trackedLine)) : null;
}

function renderFirewall(fw) {
  const box = document.getElementById("vrrp-firewall");
  if (!fw) { box.replaceChildren(); return; }
  const tables = fw.table ? fw.families.map((f) => `${f} ${fw.table}`).join(", ") : "none";
  box.replaceChildren(el("div", {class: "card", "data-firewall": fw.table || ""},
    el("div", {class: "card-title"}, el("b", {text: "Accept mode off (nftables)"}), " ",
       fw.in_step ? badge("in step", "good") : badge("not in step", "bad")),
    el("dl", {},
       el("dt", {text: "tables"}), el("dd", {text: `${tables} (priority ${fw.priority})`}),
       el("dt", {text: "dropped to"}),
       el("dd", {class: "firewall-blocked", text: fw.blocked.join(", ") || "none"}),
       fw.last_error ? el("dt", {text: `errors (${fw.errors})`}) : null,
       fw.last_error ? el("dd", {class: "error", text: fw.last_error}) : null)));
}

function renderVrrp(vrrp) {
  renderSyncDaemon(vrrp.lvs_sync_daemon);
  renderFirewall(vrrp.firewall);
  const groups = document.getElementById("sync-groups");
  groups.replaceChildren(...vrrp.sync_groups.map((group) =>
    el("div", {class: "card group", "data-sync-group": group.name},
       el("div", {class: "card-title"}, el("b", {text: group.name}), " ",
          badge(group.state, `role-${group.state}`)),
       el("div", {class: "muted", text: `sync group: ${group.instances.join(", ")}`}),
       tracking(group.tracking))));
  const box = document.getElementById("instances");
  if (!vrrp.instances.length) {
    box.replaceChildren(el("p", {class: "muted", text: "no VRRP instance (checks only)"}));
    return;
  }
  const sorted = [...vrrp.instances].sort((a, b) =>
    ROLE_ORDER.indexOf(a.state) - ROLE_ORDER.indexOf(b.state) || a.name.localeCompare(b.name));
  box.replaceChildren(...sorted.map((i) => el("div", {class: "card", "data-instance": i.name},
    el("div", {class: "card-title"}, el("b", {text: i.name}), " ",
       el("span", {class: `role badge badge-role-${i.state}`, text: i.state})),
    el("dl", {},
       el("dt", {text: "vrid / interface"}), el("dd", {text: `${i.vrid} on ${i.interface}`}),
       el("dt", {text: "priority"}),
       el("dd", {class: "priority", text: i.effective_priority === i.priority
         ? String(i.priority) : `${i.effective_priority} (configured ${i.priority})`}),
       el("dt", {text: "master"}), el("dd", {class: "master", text: i.master_ip || "—"}),
       el("dt", {text: "VIPs"}), el("dd", {text: i.vips.join(", ") || "—"}),
       el("dt", {text: "advert lateness"}),
       el("dd", {class: "advert-lateness"}, lateness(i.advert_lateness, "adverts sent late")),
       el("dt", {text: "last transition"}),
       el("dd", {title: i.reason || "", text: `${ago(i.last_transition)}${i.reason ? ` (${i.reason})` : ""}`}),
       i.sync_group ? el("dt", {text: "sync group"}) : null,
       i.sync_group ? el("dd", {text: i.sync_group}) : null,
       i.tracking && i.tracking.length ? el("dt", {text: "tracking"}) : null,
       i.tracking && i.tracking.length ? el("dd", {}, tracking(i.tracking)) : null,
       (i.vmacs || []).length ? el("dt", {text: "VMAC"}) : null,
       (i.vmacs || []).length ? el("dd", {class: "vmacs"}, ...i.vmacs.map(vmac)) : null))));
}

// A VMAC / ipvlan interface: "vrrp.51 macvlan 00:00:5e:00:01:33 on eth0 [up]"; a missing
// or down one is a red badge.
function vmac(v) {
  const state = v.mac === null ? "missing" : v.up ? "up" : "down";
  return el("div", {"data-vmac": v.name},
    `${v.name} ${v.kind} ${v.mac || ""} on ${v.base} `,
    badge(state, state === "up" ? "good" : "bad"));
}

// --- BGP --------------------------------------------------------------------------------
// Shown only with a bgp block (the state's "bgp" is null without one): the engine, each peer's
// session, each prefix with why it is announced or withdrawn, and the last changes.

const SESSION_KIND = {up: "good", connecting: "warn", down: "bad"};

function listing(headings, rows) {
  return el("table", {class: "listing"},
    el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", {text: h})))),
    el("tbody", {}, ...rows));
}

function communities(prefix) {
  return [...prefix.communities, ...prefix.large_communities].join(" ") || "—";
}

function renderBgp(bgp) {
  document.getElementById("bgp-section").hidden = !bgp;
  if (!bgp) return;
  document.getElementById("bgp-engine").replaceChildren(
    el("div", {class: "card", "data-bgp-engine": bgp.engine},
      el("div", {class: "card-title"}, el("b", {text: `BGP engine ${bgp.engine}`}), " ",
         el("span", {class: `bgp-engine-state badge badge-${bgp.running ? "good" : "bad"}`,
                     text: bgp.running ? "running" : "not running"})),
      el("dl", {},
         el("dt", {text: "restarts"}),
         el("dd", {class: "bgp-restarts", text: String(bgp.counters.restarts || 0)}),
         bgp.last_error ? el("dt", {text: "last error"}) : null,
         bgp.last_error ? el("dd", {class: "error", text: bgp.last_error}) : null)));
  document.getElementById("bgp-sessions").replaceChildren(bgp.sessions.length
    ? listing(["peer", "description", "session", "since", "flaps", "last error"],
              bgp.sessions.map((s) => el("tr", {"data-bgp-peer": s.peer},
        el("td", {text: s.peer}),
        el("td", {text: s.description || "—"}),
        el("td", {}, el("span", {class: `bgp-session-state badge badge-${SESSION_KIND[s.state] || "muted"}`,
                                 text: s.state})),
        el("td", {class: "num", text: ago(s.since)}),
        el("td", {class: "num", title: `${s.failed_connects} failed connect(s)`, text: String(s.flaps)}),
        el("td", {class: "error", text: s.last_error || ""}))))
    : el("p", {class: "muted", text: "no BGP session yet"}));
  document.getElementById("bgp-prefixes").replaceChildren(bgp.prefixes.length
    ? listing(["prefix", "state", "MED", "communities", "cause", "since", "peers"],
              bgp.prefixes.map((p) => el("tr", {"data-bgp-prefix": p.prefix},
        el("td", {text: p.prefix}),
        el("td", {}, el("span", {class: `bgp-prefix-state badge badge-${p.announced ? "good" : "bad"}`,
                                 text: p.announced ? "announced" : "withdrawn"})),
        el("td", {class: "num", text: p.med === null ? "—" : String(p.med)}),
        el("td", {text: communities(p)}),
        el("td", {class: "bgp-cause", text: p.cause}),
        el("td", {class: "num", text: ago(p.since)}),
        el("td", {text: p.peers.join(", ") || "—"}))))
    : el("p", {class: "muted", text: "no virtual server has bgp_announce"}));
  const changes = bgp.changes.slice(-BGP_CHANGES_SHOWN).reverse();     // newest first
  document.getElementById("bgp-changes").replaceChildren(...changes.map((c) =>
    el("li", {class: `event bgp-change${c.action === "withdraw" ? " event-bad" : ""}`,
              "data-bgp-change": c.action},
       el("time", {text: new Date(c.at * 1000).toLocaleTimeString()}), " ",
       el("span", {text: `${c.prefix} ${c.action}: ${c.cause}`}))));
}

// --- pools ------------------------------------------------------------------------------

function realState(real) {
  if (real.up === null) return ["unchecked", "muted"];
  if (real.maintenance) return ["MAINT", "warn"];
  if (!real.up) return ["DOWN", "bad"];
  if (real.drained && real.drain && real.drain.complete) return ["DRAINED", "warn"];
  if (real.drained) return ["DRAINING", "warn"];
  return ["UP", "good"];
}

function matches(vs, needle) {
  if (!needle) return true;
  if (vs.name.toLowerCase().includes(needle)) return true;
  return vs.real_servers.some((r) =>
    r.name.toLowerCase().includes(needle) || (r.checker || "").toLowerCase().includes(needle) ||
    ((r.last_check && r.last_check.error) || "").toLowerCase().includes(needle));
}

function problem(vs) {
  return !vs.quorum_ok || vs.up < vs.total || vs.real_servers.some((r) => r.drained);
}

function visiblePools(state) {
  const needle = view.filter.trim().toLowerCase();
  return state.virtual_servers.filter((vs) =>
    matches(vs, needle) && (!view.problemsOnly || problem(vs)));
}

function renderPools(state) {
  const pools = visiblePools(state);
  const pages = Math.max(1, Math.ceil(pools.length / PAGE_SIZE));
  view.page = Math.min(view.page, pages - 1);
  const shown = pools.slice(view.page * PAGE_SIZE, (view.page + 1) * PAGE_SIZE);
  if (!view.touched && state.virtual_servers.length < EXPAND_BELOW) {
    state.virtual_servers.forEach((vs) => view.expanded.add(vs.name));
  }
  const pager = document.getElementById("pager");
  pager.replaceChildren(
    el("button", {type: "button", disabled: view.page === 0,
                  onclick: () => { view.page -= 1; redraw(); }}, "‹"),
    ` page ${view.page + 1} of ${pages} · ${pools.length} of ${state.virtual_servers.length} virtual servers `,
    el("button", {type: "button", disabled: view.page >= pages - 1,
                  onclick: () => { view.page += 1; redraw(); }}, "›"));
  const box = document.getElementById("pools");
  if (!pools.length) {
    box.replaceChildren(el("p", {class: "muted", text: state.virtual_servers.length
      ? "no virtual server matches" : "no virtual server configured"}));
    return;
  }
  box.replaceChildren(...shown.map((vs) => renderPool(vs, state.admin)));
}

function renderPool(vs, admin) {
  const open = view.expanded.has(vs.name);
  const head = el("div", {class: "pool-head", role: "button", tabindex: 0,
                          onclick: () => toggle(vs.name),
                          onkeydown: (e) => { if (e.key === "Enter") toggle(vs.name); }},
    el("span", {class: "caret", text: open ? "▾" : "▸"}),
    el("b", {class: "vs-name", text: vs.name}),
    el("span", {class: "muted", text: ` ${vs.lb_algo || ""} ${vs.lb_kind || ""}`}),
    el("span", {class: "pool-count", text: `${vs.up}/${vs.total} up`}),
    vs.quorum_ok ? badge("quorum ok", "good") : badge(`quorum lost (needs ${vs.quorum})`, "bad"),
    vs.sorry_server_active ? badge(`sorry server ${vs.sorry_server}`, "warn") : null,
    vs.suspended ? badge("suspended (ha_suspend)", "muted") : null,
    vs.counters ? el("span", {class: "muted", text: ` ${vs.counters.connections} conns`}) : null);
  const pool = el("div", {class: `pool${problem(vs) ? " pool-problem" : ""}`, "data-vs": vs.name}, head);
  if (open) pool.append(renderReals(vs, admin));
  return pool;
}

function renderReals(vs, admin) {
  const history = view.histories.get(vs.name) || {};
  const rows = vs.real_servers.map((r) => {
    const [label, kind] = realState(r);
    const last = r.last_check || {};
    const cert = last.cert_not_after
      ? `${Math.round((last.cert_not_after - Date.now() / 1000) / 86400)} d` : "";
    return el("tr", {"data-rs": r.name},
      el("td", {class: "rs-name", text: r.name}),
      el("td", {}, el("span", {class: `rs-state badge badge-${kind}`, text: label})),
      el("td", {class: "num", title: overrideText(r) || "weight in the kernel / configured",
                text: `${r.weight === null ? "—" : r.weight} / ${r.configured_weight}` +
                  (r.weight_override === null || r.weight_override === undefined
                    ? "" : ` (overridden: ${r.weight_override})`)}, rampMarker(r)),
      el("td", {class: "num conns", title: "active / inactive connections now",
                text: r.active_connections === null || r.active_connections === undefined
                  ? "—" : `${r.active_connections} / ${r.inactive_connections}`}),
      el("td", {}, r.checker || "—", r.agent ? " " : null, agentBadge(r.agent)),
      el("td", {class: "num", text: ms(last.duration_seconds)}),
      el("td", {}, sparkline(history[r.name])),
      el("td", {class: "error", title: overrideText(r),
                text: last.ok === false ? (last.error || "failed")
                  : [drainText(r), overrideText(r, true)].filter(Boolean).join("; ")}),
      el("td", {class: "num", text: cert}),
      el("td", {}, admin ? el("button", {type: "button", class: "small",
        onclick: () => drain(vs.name, r.name, !r.drained)}, r.drained ? "restore" : "drain") : null));
  });
  return el("table", {class: "reals"},
    el("thead", {}, el("tr", {}, ...["real server", "state", "weight", "conns", "checker", "latency",
      "recent", "error", "cert", ""].map((h) => el("th", {text: h})))),
    el("tbody", {}, ...rows));
}

// AGENT_CHECK: what the agent said last, in a few words; its raw line on hover
function agentBadge(agent) {
  if (!agent) return null;
  const calm = agent.health === "up" && agent.admin === "ready";
  const shown = badge(`agent: ${agent.effect}`, calm ? "muted" : "warn");
  shown.title = `agent replied "${agent.reply}"${agent.error ? ` (${agent.error})` : ""}`;
  return shown;
}

function rampMarker(real) {
  // slow start: the weight climbs to the full weight until ramp.until
  const ramp = real.ramp;
  if (!ramp) return null;
  const left = Math.max(0, Math.round(ramp.until - Date.now() / 1000));
  return el("span", {class: "ramp", title: `slow start over ${ramp.seconds} s: full weight in ${left} s`,
                     text: ` ramping ${Math.round(ramp.fraction * 100)} %`});
}

// The operator's overrides in force: what, set by whom (director, client) and when
// (``notDrain``: the others, the drain having its own text).
function overrideText(real, notDrain) {
  const all = real.overrides || {};
  return Object.values(all).filter((o) => !notDrain || o.kind !== "drain").map((o) => {
    const what = o.kind === "weight" ? `weight ${o.value}` : o.kind;
    const at = new Date(o.at * 1000).toLocaleString();
    return `${what} by ${o.actor || "?"} on ${o.origin} at ${at}`;
  }).join("; ");
}

function drainText(real) {
  const d = real.drain;
  if (!real.drained || !d) return "";
  if (d.complete) return `drained: ${d.why}`;
  const left = d.active_connections === null ? "connections unknown"
    : `${d.active_connections} active connection(s) left`;
  return `draining for ${Math.round(d.seconds)} s: ${left}`;
}

function sparkline(points) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 80 20");
  if (!points || points.length < 2) return svg;
  const max = Math.max(...points.map((p) => p[0]), 0.001);
  const step = 80 / (points.length - 1);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.map((p, i) =>
    `${(i * step).toFixed(1)},${(19 - (p[0] / max) * 18).toFixed(1)}`).join(" "));
  svg.append(line);
  points.forEach((p, i) => {
    if (p[1]) return;
    const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    dot.setAttribute("cx", (i * step).toFixed(1));
    dot.setAttribute("cy", "18");
    dot.setAttribute("r", "1.5");
    svg.append(dot);
  });
  const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
  title.textContent = `last ${points.length} checks, max ${ms(max)}`;
  svg.append(title);
  return svg;
}

function toggle(name) {
  view.touched = true;
  if (view.expanded.has(name)) view.expanded.delete(name);
  else { view.expanded.add(name); loadHistory(name); }
  redraw();
}

async function loadHistory(name) {
  try {
    const response = await fetch(`api/v1/history?virtual_server=${encodeURIComponent(name)}`);
    if (response.ok) { view.histories.set(name, await response.json()); redraw(); }
  } catch (error) { /* the next refresh tries again */ }
}

// --- events -----------------------------------------------------------------------------

function describe(event) {
  switch (event.kind) {
    case "vrrp.transition":
      return `${event.instance}: ${event.from_state} → ${event.to_state} (${event.reason})`;
    case "vrrp.sync_group": return `sync group ${event.sync_group}: ${event.state}`;
    case "real_server":
      return `${event.real_server} in ${event.virtual_server}: ${event.state}` +
        (event.error ? ` (${event.error})` : "");
    case "quorum": return `${event.virtual_server}: quorum ${event.state} (live weight ${event.live_weight})`;
    case "reload": return `reload: ${event.result}${event.note ? ` (${event.note})` : ""}` +
      (event.errors ? `, ${event.errors} error(s)` : "");
    case "notify": return `notification ${event.why}: ${event.result}`;
    case "admin": return `admin ${event.action}${event.value === undefined ? "" : ` ${event.value}`} ${event.real_server || ""} ${event.virtual_server ? `in ${event.virtual_server}` : ""} from ${event.actor}`;
    case "lb_error": return `${event.backend} backend failing: ${event.operation}: ${event.error} (retried)`;
    case "lb_recovered": return `${event.backend} backend recovered after ${event.failed_converges} failed attempt(s)`;
    case "checker":
      return `${event.checker} of ${event.real_server} in ${event.virtual_server}: ${event.state}` +
        (event.error ? ` (${event.error})` : "");
    case "overrides_learned": return `${event.entries} override(s) learned from ${event.peer}`;
    case "drain_complete": return `${event.real_server} in ${event.virtual_server} drained: ${event.why}`;
    case "slow_start": return `${event.real_server} in ${event.virtual_server}: slow start over ${event.seconds} s`;
    case "ha_suspend": return `ha_suspend: ${event.suspended.length ? event.suspended.join(", ") : "none"} suspended`;
    case "main_loop.late": return `main loop ${event.lag_seconds} s late: ${event.text}`;
    case "bgp": return `BGP ${event.action} ${event.prefix}: ${event.cause}`;
    default: return `${event.kind}`;
  }
}

function addEvents(events) {
  const list = document.getElementById("events");
  for (const event of events) {
    if (event.id <= view.lastEventId) continue;
    view.lastEventId = event.id;
    const bad = event.to_state === "FAULT" || event.state === "down" || event.result === "failure" ||
      event.kind === "lb_error" || event.kind === "main_loop.late" || event.action === "withdraw";
    list.prepend(el("li", {class: `event event-${event.kind.replace(".", "-")}${bad ? " event-bad" : ""}`,
                           "data-event-id": event.id},
      el("time", {text: new Date(event.at * 1000).toLocaleTimeString()}), " ",
      el("span", {text: describe(event)})));
  }
  while (list.children.length > EVENTS_SHOWN) list.lastElementChild.remove();
}

// --- live updates -----------------------------------------------------------------------

let refreshTimer = null;
let fetching = false;

function redraw() {
  if (!view.state) return;
  renderSummary(view.state);
  renderVrrp(view.state.vrrp);
  renderBgp(view.state.bgp);
  renderPools(view.state);
}

async function refresh() {
  refreshTimer = null;
  if (fetching) { schedule(); return; }
  fetching = true;
  try {
    const response = await fetch("api/v1/state", {cache: "no-store"});
    if (!response.ok) throw new Error(`state: HTTP ${response.status}`);
    view.state = await response.json();
    document.getElementById("admin-section").hidden = !view.state.admin;
    for (const name of view.expanded) if (view.histories.has(name)) loadHistory(name);
    redraw();
  } catch (error) {
    setLive(false, String(error));
  } finally {
    fetching = false;
  }
}

function schedule() {
  if (refreshTimer === null) refreshTimer = setTimeout(refresh, DEBOUNCE_MS);
}

function setLive(on, why) {
  const live = document.getElementById("live");
  live.textContent = on ? "live" : `reconnecting… ${why || ""}`;
  live.className = on ? "live live-on" : "live live-off";
}

// the daemon's list (director/events.py KINDS): the stream names each frame by its kind
const EVENT_KINDS = document.querySelector('meta[name="event-kinds"]').content.split(" ");

function follow() {
  const source = new EventSource("api/v1/stream");
  source.onopen = () => { setLive(true); schedule(); };
  source.onerror = () => setLive(false);
  const onEvent = (message) => {
    try { addEvents([JSON.parse(message.data)]); } catch (error) { return; }
    schedule();
  };
  for (const kind of EVENT_KINDS) source.addEventListener(kind, onEvent);
  source.onmessage = onEvent;
}

// --- admin ------------------------------------------------------------------------------

async function send(path, body) {
  const token = document.getElementById("admin-token").value.trim();
  sessionStorage.setItem("director-admin-token", token);
  const response = await fetch(path, {
    method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": `Bearer ${token}`,
              "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content},
    body: JSON.stringify(body || {}),
  });
  return {response, answer: await response.json().catch(() => ({}))};
}

async function post(path, body) {
  const {response, answer} = await send(path, body);
  document.getElementById("admin-result").textContent = !response.ok
    ? `refused (${response.status}): ${answer.error || ""}`
    : answer.result === "failure"            // a reload that kept the running configuration
      ? `reload failed: ${(answer.errors || [])[0] || ""}`
      : answer.warning || "done";            // e.g. a drain that will not survive a restart
  schedule();
  return response.ok;
}

// The reload button first asks the daemon what the reload would change (dry_run: nothing
// is applied) and shows it; the admin then applies it or cancels.
async function previewReload() {
  const {response, answer} = await send("api/v1/reload?dry_run=1");
  if (!response.ok) {
    document.getElementById("admin-result").textContent =
      `refused (${response.status}): ${answer.error || ""}`;
    return;
  }
  document.getElementById("admin-result").textContent = "";
  showPreview(answer);
}

function previewLines(answer) {
  const lines = [];
  const add = (title, items) => { if (items.length) lines.push([title, items]); };
  const changed = (item) => `${item.name}: ${(item.settings || []).join("; ")}`;
  const then = (item) => item.transition ? ` (${item.transition})` : "";
  const vrrp = answer.vrrp_instances || {};
  add("errors", answer.errors || []);
  add("VRRP instances", [
    ...(vrrp.added || []).map((i) => `+ ${i.name}${then(i)}`),
    ...(vrrp.removed || []).map((i) => `- ${i.name}${then(i)}`),
    ...(vrrp.changed || []).map((i) => `~ ${changed(i)}${then(i)}`),
    ...(vrrp.sync_groups_rebuilt || []).map((name) => `~ sync group ${name} rebuilt`)]);
  const vs = answer.virtual_servers || {};
  add("virtual servers", [...(vs.added || []).map((name) => `+ ${name}`),
                          ...(vs.removed || []).map((name) => `- ${name}`),
                          ...(vs.changed || []).map((v) => `~ ${changed(v)}`)]);
  const rs = answer.real_servers || {};
  const label = (r) => `${r.virtual_server} / ${r.real_server}`;
  add("real servers", [
    ...(rs.added || []).map((r) => `+ ${label(r)}`),
    ...(rs.removed || []).map((r) => `- ${label(r)}`),
    ...(rs.changed || []).map((r) => `~ ${label(r)}: ${r.settings.join("; ")}` +
                                     (r.checkers_restart ? " (checkers restart)" : ""))]);
  const kernel = answer.kernel || {};
  const ops = (part) => [...((part || {}).add || []).map((t) => `+ ${t}`),
                         ...((part || {}).remove || []).map((t) => `- ${t}`),
                         ...((part || {}).update || []).map((t) => `~ ${t}`)];
  add(`kernel (${kernel.backend || "no load balancer"})`,
      [...ops(kernel.services), ...ops(kernel.destinations)]);
  const bgp = answer.bgp || {};
  add("BGP", [bgp.engine_restarts ? "engine restarts" : null,
              ...(bgp.peers_added || []).map((p) => `+ peer ${p}`),
              ...(bgp.peers_removed || []).map((p) => `- peer ${p}`),
              ...(bgp.peers_changed || []).map((p) => `~ peer ${p}`),
              bgp.announcements_recomputed ? "announcements recomputed" : null]
    .filter((line) => line));
  add("also", answer.other || []);
  return lines;
}

function showPreview(answer) {
  const panel = document.getElementById("reload-preview");
  const close = () => { panel.hidden = true; panel.replaceChildren(); };
  const apply = el("button", {type: "button", id: "reload-confirm",
                              onclick: () => { close(); post("api/v1/reload"); }},
                   "apply reload");
  const cancel = el("button", {type: "button", id: "reload-cancel", onclick: close}, "cancel");
  panel.replaceChildren(
    el("p", {class: answer.would_apply ? "preview-summary" : "preview-summary bad",
             text: answer.summary || ""}),
    ...previewLines(answer).map(([title, items]) => el("div", {class: "preview-part"},
      el("h3", {text: title}), el("ul", null, ...items.map((item) => el("li", {text: item}))))),
    el("div", {class: "toolbar"}, answer.would_apply ? apply : null, cancel));
  panel.hidden = false;
}

function drain(virtualServer, realServer, drained) {
  return post(`api/v1/real-servers/${drained ? "drain" : "restore"}`,
              {virtual_server: virtualServer, real_server: realServer});
}

// --- start ------------------------------------------------------------------------------

function start() {
  document.getElementById("admin-token").value = sessionStorage.getItem("director-admin-token") || "";
  document.getElementById("reload").addEventListener("click", previewReload);
  const filter = document.getElementById("filter");
  filter.addEventListener("input", () => { view.filter = filter.value; view.page = 0; redraw(); });
  document.getElementById("problems").addEventListener("change", (e) => {
    view.problemsOnly = e.target.checked; view.page = 0; redraw();
  });
  document.getElementById("expand-all").addEventListener("click", () => {
    view.touched = true;
    const pools = visiblePools(view.state || {virtual_servers: []});
    pools.slice(view.page * PAGE_SIZE, (view.page + 1) * PAGE_SIZE).forEach((vs) => {
      view.expanded.add(vs.name); loadHistory(vs.name);
    });
    redraw();
  });
  document.getElementById("collapse-all").addEventListener("click", () => {
    view.touched = true; view.expanded.clear(); redraw();
  });
  fetch("api/v1/events?limit=" + EVENTS_SHOWN).then((r) => r.json()).then(addEvents).catch(() => {});
  refresh().then(() => { for (const name of view.expanded) loadHistory(name); });
  follow();
  setInterval(schedule, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
