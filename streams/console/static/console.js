// The dispatcher console: the fleet on a map, the incidents beside it, a driver's panel on selection.
// It reads the same public API as any client, and one push channel (Server-Sent Events) for what changes.
/* global L, h3 */

const COLORS = { offline: "#6b7280", stalled: "#dc2626", moving: "#16a34a", idle: "#2563eb" };
const $ = (id) => document.getElementById(id);
const markers = new Map(); // driver id -> circle marker
const incidents = new Map(); // alert id -> incident
let selected = null;
let trail = null;
let fitted = false;

async function api(path, options = {}) {
  const answer = await fetch(path, { credentials: "same-origin", ...options });
  if (answer.status === 401) {
    window.location.assign("/console/login");
    throw new Error("signed out");
  }
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw Object.assign(new Error(body.message || answer.statusText), { status: answer.status });
  return body;
}

const post = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

const age = (ts) => {
  const s = Math.max(0, Math.round((Date.now() - ts) / 1000));
  return s < 90 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
};
const clock = (ts) => (ts ? new Date(ts).toLocaleTimeString() : "–");

function setupMap(tileUrl) {
  const map = L.map("map", { preferCanvas: true, zoomControl: true }).setView([-23.55, -46.63], 12);
  if (tileUrl) {
    L.tileLayer(tileUrl, { maxZoom: 19 }).addTo(map);
  } else {
    $("map").classList.add("plain"); // no base map on this deployment: drivers and cells on a plain ground
  }
  L.control.scale({ imperial: false }).addTo(map);
  return map;
}

function drawDriver(map, row) {
  if (!row.last_fix) return;
  const at = [row.last_fix.lat, row.last_fix.lon];
  let marker = markers.get(row.driver_id);
  const style = {
    radius: row.open_alerts.length ? 7 : 5,
    color: row.open_alerts.length ? "#111827" : COLORS[row.status],
    weight: row.open_alerts.length ? 2 : 1,
    fillColor: COLORS[row.status],
    fillOpacity: 0.85,
  };
  if (!marker) {
    marker = L.circleMarker(at, style).addTo(map);
    marker.on("click", () => select(map, row.driver_id));
    markers.set(row.driver_id, marker);
  } else {
    marker.setLatLng(at).setStyle(style);
  }
  marker.row = row;
  $("map").dataset.drivers = String(markers.size);
}

function removeDriver(driverId) {
  const marker = markers.get(driverId);
  if (marker) marker.remove();
  markers.delete(driverId);
  $("map").dataset.drivers = String(markers.size);
}

async function loadFleet(map) {
  let cursor = null;
  do {
    const page = await api(`/v1/drivers?limit=500${cursor ? `&cursor=${cursor}` : ""}`);
    page.drivers.forEach((row) => drawDriver(map, row));
    showCounts(page.counts);
    cursor = page.next_cursor;
  } while (cursor);
  const points = [...markers.values()].map((m) => m.getLatLng());
  if (points.length && !fitted) {
    map.fitBounds(L.latLngBounds(points), { padding: [20, 20] });
    fitted = true;
  }
}

let cells = null;
async function loadHotCells(map) {
  if (cells) cells.remove();
  cells = L.layerGroup();
  try {
    const hot = await api("/v1/cells/hot");
    const most = Math.max(1, ...hot.cells.map((c) => c.drivers));
    hot.cells.forEach((c) => {
      const ring = h3.cellToBoundary(c.cell);
      L.polygon(ring, { color: "#f59e0b", weight: 1, fillOpacity: 0.1 + (0.4 * c.drivers) / most })
        .bindTooltip(`${c.drivers} drivers, ${c.pings} fixes in ${hot.minutes} min`)
        .addTo(cells);
    });
    $("map").dataset.cells = String(hot.cells.length);
  } catch (error) {
    $("map").dataset.cells = "unavailable";
  }
  if ($("hot").checked) cells.addTo(map);
}

function showCounts(counts) {
  Object.entries(counts).forEach(([status, n]) => {
    const slot = document.querySelector(`[data-count="${status}"]`);
    if (slot) slot.textContent = String(n);
  });
}

async function refreshSummary() {
  const summary = await api("/v1/summary");
  showCounts({
    ...summary.drivers,
    late: summary.deliveries_late,
    at_risk: summary.deliveries_at_risk,
    alerts: summary.alerts_open,
  });
}

function renderIncident(incident) {
  let item = document.querySelector(`#incidents li[data-alert-id="${CSS.escape(incident.alert_id)}"]`);
  if (incident.state === "resolved") {
    if (item) item.remove();
    incidents.delete(incident.alert_id);
    return;
  }
  incidents.set(incident.alert_id, incident);
  if (!item) {
    item = document.createElement("li");
    item.dataset.alertId = incident.alert_id;
    const list = $("incidents");
    const newer = [...list.children].find((li) => incidents.get(li.dataset.alertId)?.detected_at < incident.detected_at);
    list.insertBefore(item, newer || null);
  }
  item.dataset.state = incident.state;
  item.className = `incident ${incident.kind} ${incident.state}`;
  const who = incident.acknowledged ? ` · acknowledged by ${incident.acknowledged.by}` : "";
  item.innerHTML = "";
  const title = document.createElement("button");
  title.className = "link";
  title.textContent = `${incident.kind.replace("_", " ")} · ${incident.driver_id}`;
  title.addEventListener("click", () => select(window.consoleMap, incident.driver_id));
  const detail = document.createElement("span");
  detail.className = "muted";
  detail.textContent = ` since ${clock(incident.started_at)}${who}`;
  item.append(title, detail);
  const actions = document.createElement("span");
  actions.className = "actions";
  for (const action of incident.state === "open" ? ["ack", "resolve"] : ["resolve"]) {
    const button = document.createElement("button");
    button.textContent = action === "ack" ? "Acknowledge" : "Resolve";
    button.dataset.action = action;
    button.addEventListener("click", async () => {
      button.disabled = true;
      await post(`/v1/alerts/${encodeURIComponent(incident.alert_id)}/${action}`, { note: "" });
    });
    actions.append(button);
  }
  item.append(actions);
}

async function loadIncidents() {
  let cursor = null;
  do {
    const page = await api(`/v1/alerts?state=open,acknowledged&limit=500${cursor ? `&cursor=${cursor}` : ""}`);
    page.alerts.forEach(renderIncident);
    cursor = page.next_cursor;
  } while (cursor);
}

async function select(map, driverId) {
  selected = driverId;
  const row = await api(`/v1/drivers/${encodeURIComponent(driverId)}`);
  $("driver").hidden = false;
  $("driver-id").textContent = row.driver_id;
  $("driver-status").textContent = row.status;
  $("driver-fix").textContent = row.last_fix
    ? `${row.last_fix.lat.toFixed(5)}, ${row.last_fix.lon.toFixed(5)} · ${age(row.last_fix.ts)}`
    : "none yet";
  $("driver-deliveries").replaceChildren(
    ...row.deliveries.map((d) => {
      const li = document.createElement("li");
      const late = d.promised_at && d.eta && d.eta > d.promised_at ? " · late" : "";
      li.textContent = `${d.delivery_id} · ${d.status} · ETA ${clock(d.eta)} · promised ${clock(d.promised_at)}${late}`;
      return li;
    }),
  );
  $("driver-alerts").replaceChildren(
    ...row.open_alerts.map((a) => {
      const li = document.createElement("li");
      li.textContent = `${a.kind} since ${clock(a.started_at)}`;
      return li;
    }),
  );
  $("message-result").textContent = "";
  if (trail) trail.remove();
  try {
    const path = await api(`/v1/drivers/${encodeURIComponent(driverId)}/trail`);
    trail = L.polyline(path.fixes.map((f) => [f.lat, f.lon]), { color: "#7c3aed", weight: 3 }).addTo(map);
    $("map").dataset.trail = String(path.fixes.length);
  } catch (error) {
    trail = null;
    $("map").dataset.trail = "unavailable";
  }
  if (row.last_fix) map.panTo([row.last_fix.lat, row.last_fix.lon]);
}

function listen(map) {
  const stream = new EventSource("/v1/stream");
  stream.addEventListener("open", () => {
    $("stream-state").textContent = "live";
  });
  stream.addEventListener("error", () => {
    $("stream-state").textContent = "reconnecting…";
  });
  stream.addEventListener("alert", (event) => {
    renderIncident(JSON.parse(event.data));
    refreshSummary();
  });
  stream.addEventListener("fleet", (event) => {
    const update = JSON.parse(event.data);
    update.drivers.forEach((row) => drawDriver(map, row));
    update.removed.forEach(removeDriver);
    refreshSummary();
    if (selected && update.drivers.some((row) => row.driver_id === selected)) select(map, selected);
  });
}

async function main() {
  const session = await api("/auth/session");
  $("who").textContent = session.name;
  const map = setupMap(session.tile_url);
  window.consoleMap = map;
  $("logout").addEventListener("click", async () => {
    await post("/auth/logout", {});
    window.location.assign("/console/login");
  });
  $("hot").addEventListener("change", () => {
    if (!cells) return;
    if ($("hot").checked) cells.addTo(map);
    else cells.remove();
  });
  $("message").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const sent = await post(`/v1/drivers/${encodeURIComponent(selected)}/message`, { text: $("message-text").value });
      $("message-result").textContent = `queued (${sent.message_key})`;
      $("message-text").value = "";
    } catch (error) {
      $("message-result").textContent = error.message;
    }
  });
  listen(map);
  await Promise.all([loadFleet(map), loadIncidents(), refreshSummary()]);
  await loadHotCells(map);
  document.body.dataset.ready = "true";
}

main();
