// The live mesh page: reads this node's JSON endpoints every second and redraws.
// Every value is set with textContent or an attribute, never as markup: names and addresses
// come from other nodes.
"use strict";

const POLL_MS = 1000;
const HISTORY = 120;
const SVG = "http://www.w3.org/2000/svg";

const history = [];
let previousStats = null;

function $(id) {
  return document.getElementById(id);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function short(id) {
  return id.length > 14 ? "…" + id.slice(-10) : id;
}

function duration(seconds) {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function latency(us) {
  if (us === null) return "–";
  if (us < 1000) return `${Math.round(us)} µs`;
  return `${(us / 1000).toFixed(us < 10000 ? 2 : 1)} ms`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

function replaceRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function drawNode(status) {
  const id = $("node-id");
  id.textContent = status.peer_id;
  id.title = status.public_key;
  $("node-version").textContent = status.version;
  $("node-uptime").textContent = duration(status.uptime_s);
  $("node-load").textContent = `${status.running} / ${status.capacity}`;
  $("node-queue").textContent = `${status.queued} queued, ${status.in_flight} in flight`;
  $("peer-count").textContent = String(status.peers);
  $("peer-known").textContent = `${status.peers_known} known`;
  $("module-count").textContent = `${status.ready} / ${status.modules}`;
  const badges = [];
  const reach = status.addresses;
  if (reach) {
    // How peers reach this node, with the addresses it advertises on hover.
    const names = { public: "public", firewalled: "firewalled", behind_nat: "behind NAT", announced: "announced", local: "local" };
    const nats = { open: "open NAT", filtering: "filtering NAT", symmetric: "symmetric NAT" };
    const via = reach.direct ? "" : ` (${reach.nat ? `${nats[reach.nat] ?? reach.nat}, ` : ""}via rendezvous)`;
    badges.push([
      `${names[reach.reachability] ?? reach.reachability}${via}`,
      "badge",
      [`QUIC ${reach.quic}`, ...reach.p2p].join("\n"),
    ]);
  }
  if (status.private_mesh) badges.push(["private mesh", "badge"]);
  if (status.stopping) badges.push(["stopping", "badge warn"]);
  $("node-badges").replaceChildren(
    ...badges.map(([text, className, title]) => {
      const span = document.createElement("span");
      span.className = className;
      span.textContent = text;
      if (title) span.title = title;
      return span;
    }),
  );
}

function drawPeers(peers) {
  peers.sort((a, b) => (a.rtt_us ?? Infinity) - (b.rtt_us ?? Infinity));
  const rows = peers.map((peer) => {
    const tr = document.createElement("tr");
    tr.dataset.peer = peer.peer_id;
    tr.dataset.state = peer.state;
    const id = cell(short(peer.peer_id), "mono");
    id.title = peer.peer_id;
    tr.append(
      id,
      cell(peer.state, `state state-${peer.state}`),
      cell(peer.rtt_us === null ? "–" : latency(peer.rtt_us)),
      cell(peer.capacity ? `${peer.in_flight} / ${peer.capacity}` : "–"),
      cell(String(peer.modules.length)),
    );
    return tr;
  });
  replaceRows($("peers"), rows);
  $("peers-empty").hidden = peers.length > 0;
}

// Peers placed by their network coordinates (the first two dimensions, relative to this
// node), scaled so that the farthest sits on the outer ring.
function drawMap(self, peers) {
  const map = $("map");
  const placed = peers
    .filter((peer) => peer.coordinate)
    .map((peer) => ({
      peer,
      x: peer.coordinate.vec[0] - self.vec[0],
      y: peer.coordinate.vec[1] - self.vec[1],
    }));
  const farthest = Math.max(1e-9, ...placed.map((p) => Math.hypot(p.x, p.y)));
  const scale = 90 / farthest;
  const shapes = [svg("circle", { class: "ring", r: 45 }), svg("circle", { class: "ring", r: 90 })];
  for (const { peer, x, y } of placed) {
    const px = x * scale;
    const py = y * scale;
    shapes.push(svg("line", { class: "link", x1: 0, y1: 0, x2: px, y2: py }));
    if (peer.rtt_us !== null) {
      shapes.push(svg("text", { class: "rtt", x: px / 2 + 2, y: py / 2 - 2 }, latency(peer.rtt_us)));
    }
  }
  for (const { peer, x, y } of placed) {
    const dot = svg("circle", { class: `peer ${peer.state}`, cx: x * scale, cy: y * scale, r: 5 });
    dot.appendChild(svg("title", {}, `${peer.peer_id} (${peer.state})`));
    shapes.push(dot, svg("text", { x: x * scale + 7, y: y * scale + 3 }, short(peer.peer_id)));
  }
  shapes.push(svg("circle", { class: "self", r: 6 }), svg("text", { x: 8, y: 3 }, "this node"));
  map.replaceChildren(...shapes);
}

function drawModules(modules, selfId) {
  modules.sort((a, b) => a.name.localeCompare(b.name));
  const rows = modules.map((module) => {
    const tr = document.createElement("tr");
    tr.dataset.module = module.name;
    tr.dataset.providers = String(module.providers.length);
    const name = cell(module.name);
    name.title = module.hash;
    const publisher = cell(short(module.publisher), "mono");
    publisher.title = module.publisher;
    const here = module.ready ? "ready" : module.not_runnable ? "not runnable" : "not here";
    const hereCell = cell(here, module.ready ? "yes" : "no");
    if (module.not_runnable) hereCell.title = module.not_runnable;
    const providers = cell(String(module.providers.length));
    const names = document.createElement("span");
    names.className = "providers";
    names.textContent =
      " " + module.providers.map((p) => (p === selfId ? "this node" : short(p))).join(", ");
    providers.appendChild(names);
    tr.append(name, cell(String(module.version)), publisher, hereCell, providers, cell(bytes(module.size)));
    return tr;
  });
  replaceRows($("modules"), rows);
  $("modules-empty").hidden = modules.length > 0;
}

// Rates and mean latencies from two readings of the totals.
function drawStats(stats) {
  const rows = [];
  let total = 0;
  for (const [route, now] of Object.entries(stats.routes)) {
    const before = previousStats ? previousStats.routes[route] : null;
    const seconds = previousStats ? (stats.uptime_ms - previousStats.uptime_ms) / 1000 : 0;
    let rate = 0;
    let failed = 0;
    let mean = null;
    if (before && seconds > 0) {
      const requests = now.requests - before.requests;
      rate = requests / seconds;
      failed = (now.failed - before.failed) / seconds;
      if (requests > 0) mean = (now.latency_us - before.latency_us) / requests;
    }
    total += rate;
    const tr = document.createElement("tr");
    tr.dataset.route = route;
    tr.dataset.rate = rate.toFixed(3);
    tr.append(
      cell(route),
      cell(rate.toFixed(1)),
      cell(latency(mean)),
      cell(failed.toFixed(1)),
      cell(String(now.requests)),
    );
    rows.push(tr);
  }
  replaceRows($("routes"), rows);
  const rateTotal = $("rate-total");
  rateTotal.textContent = total.toFixed(1);
  rateTotal.dataset.value = total.toFixed(3);
  previousStats = stats;
  history.push(total);
  if (history.length > HISTORY) history.shift();
  drawSparkline();
}

function drawSparkline() {
  const top = Math.max(1, ...history);
  const step = 600 / (HISTORY - 1);
  const offset = HISTORY - history.length;
  const points = history
    .map((value, i) => `${((offset + i) * step).toFixed(1)},${(58 - (value / top) * 56).toFixed(1)}`)
    .join(" ");
  $("sparkline").replaceChildren(svg("polyline", { points }));
}

async function refresh() {
  try {
    const [status, peers, modules, stats] = await Promise.all([
      getJson("/v1/status"),
      getJson("/v1/peers"),
      getJson("/v1/modules"),
      getJson("/v1/stats"),
    ]);
    drawNode(status);
    drawPeers(peers);
    drawMap(status.coordinate, peers);
    drawModules(modules, status.peer_id);
    drawStats(stats);
    $("connection").textContent = "live";
    $("connection").classList.remove("lost");
  } catch (error) {
    // The node is restarting or gone: say so, and keep trying.
    $("connection").textContent = "node not answering";
    $("connection").classList.add("lost");
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

refresh();
