// The operator console (CONTRACT.md §10). Plain script, no build step, nothing from elsewhere.
// Everything shown is built with textContent: what suppliers and shops wrote never becomes markup.
// The token and the operator's name live in sessionStorage (this tab only), never in a URL.
"use strict";

const TOKEN = "gateway.admin.token";
const OPERATOR = "gateway.admin.operator";
const NEEDS_A_PERSON = ["manual_review", "held", "outcome_unknown"];

const $ = (id) => document.getElementById(id);

// -- building the page ------------------------------------------------------------------------

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === "class") node.className = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function shown(value) {
  return value === null || value === undefined || value === "" ? "—" : String(value);
}

function rate(value) {
  return typeof value === "number" ? (value * 100).toFixed(1) + "%" : "—";
}

function seconds(value) {
  return typeof value === "number" ? Math.round(value * 1000) + " ms" : "—";
}

function notice(text, isError) {
  const box = $("notice");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = false;
}

// -- the API ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }

  toString() {
    const details = this.details.map((d) => `${d.field}: ${d.message}`).join("; ");
    return `${this.status} ${this.code}: ${this.message}${details ? " (" + details + ")" : ""}`;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN) };
  if (method !== "GET") headers["X-Operator"] = sessionStorage.getItem(OPERATOR) || "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  let doc = null;
  try {
    doc = await response.json();
  } catch (_) {
    doc = null;
  }
  if (response.status === 401) {
    askForToken("The admin token was refused: enter it again.");
    throw new ApiError(401, "unauthenticated", "the admin token was refused");
  }
  if (!response.ok) {
    const error = (doc && doc.error) || {};
    throw new ApiError(response.status, error.code || "error", error.message || response.statusText, error.details);
  }
  return doc;
}

function orderPath(order, action) {
  const base = `/admin/orders/${encodeURIComponent(order.shop)}/${encodeURIComponent(order.order_id)}`;
  return action ? `${base}/${action}` : base;
}

// -- signing in -------------------------------------------------------------------------------

function askForToken(problem) {
  sessionStorage.removeItem(TOKEN);
  $("console").hidden = true;
  $("refresh").hidden = true;
  $("sign-out").hidden = true;
  $("login").hidden = false;
  $("login-problem").textContent = problem || "";
  $("login-problem").hidden = !problem;
  $("operator").value = sessionStorage.getItem(OPERATOR) || "";
  $("token").value = "";
  ($("operator").value ? $("token") : $("operator")).focus();
}

function signedIn() {
  $("login").hidden = true;
  $("console").hidden = false;
  $("refresh").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = "Operator: " + sessionStorage.getItem(OPERATOR);
  refresh();
}

// -- confirmation -----------------------------------------------------------------------------

// Asks before an action; resolves to the fields' values, or null when cancelled.
function confirmAction(title, text, fields) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-problem").hidden = true;
  const box = $("confirm-fields");
  box.replaceChildren();
  const inputs = {};
  for (const field of fields || []) {
    let input;
    if (field.choices) {
      input = el("select", { id: "confirm-" + field.name });
      for (const [value, label] of field.choices) input.append(el("option", { value }, label));
    } else if (field.long) {
      input = el("textarea", { id: "confirm-" + field.name, rows: "3", maxlength: "1000" });
    } else {
      input = el("input", { id: "confirm-" + field.name });
    }
    inputs[field.name] = { input, field };
    box.append(el("label", {}, field.label, input));
  }
  return new Promise((resolve) => {
    const ok = $("confirm-ok");
    const cancel = $("confirm-cancel");
    const finish = (values) => {
      ok.onclick = null;
      cancel.onclick = null;
      dialog.oncancel = null;
      dialog.close();
      resolve(values);
    };
    ok.onclick = () => {
      const values = {};
      for (const [name, { input, field }] of Object.entries(inputs)) {
        values[name] = input.value.trim();
        if (field.required && !values[name]) {
          $("confirm-problem").textContent = field.label + " is required.";
          $("confirm-problem").hidden = false;
          return;
        }
      }
      finish(values);
    };
    cancel.onclick = () => finish(null);
    dialog.oncancel = () => finish(null);
    dialog.showModal();
  });
}

async function act(title, text, fields, run) {
  const values = await confirmAction(title, text, fields);
  if (values === null) return;
  try {
    await run(values);
    notice(title + ": done.", false);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    notice(title + " refused: " + String(error), true);
  }
  await refresh();
}

// -- suppliers --------------------------------------------------------------------------------

function supplierRow(supplier) {
  const disabled = supplier.disabled;
  const state = disabled ? "disabled" : supplier.state;
  const action = disabled ? "enable" : "disable";
  const button = el(
    "button",
    {
      type: "button",
      class: "switch",
      "data-action": action,
      onclick: () =>
        act(
          `${disabled ? "Enable" : "Disable"} ${supplier.name}`,
          disabled
            ? "Orders will be routed to this supplier again."
            : "No new order will be sent to this supplier until it is enabled again.",
          [],
          () => api("POST", `/admin/suppliers/${encodeURIComponent(supplier.name)}/${action}`),
        ),
    },
    disabled ? "Enable…" : "Disable…",
  );
  return el(
    "tr",
    { "data-supplier": supplier.name },
    el("td", {}, supplier.name),
    el("td", {}, shown(supplier.protocol)),
    el("td", { class: disabled ? "state disabled" : "state state-" + supplier.state }, state),
    el("td", {}, rate(supplier.success_rate)),
    el("td", {}, seconds(supplier.latency_p50_seconds)),
    el("td", {}, seconds(supplier.latency_p99_seconds)),
    el("td", {}, shown(supplier.balance) + (supplier.balance_low ? " (low)" : "")),
    el("td", {}, shown(supplier.inflight)),
    el("td", {}, button),
  );
}

async function loadSuppliers() {
  const body = $("suppliers").tBodies[0];
  try {
    const doc = await api("GET", "/admin/suppliers");
    body.replaceChildren(...doc.suppliers.map(supplierRow));
  } catch (error) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "9", class: "problem" }, String(error))));
  }
}

// -- orders -----------------------------------------------------------------------------------

function table(columns, rows) {
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, ...columns.map(([label]) => el("th", {}, label)))),
    el(
      "tbody",
      {},
      ...rows.map((row) =>
        el("tr", {}, ...columns.map(([label, key]) => el("td", { class: key }, shown(row[key])))),
      ),
    ),
  );
}

function orderCard(order) {
  const card = el(
    "article",
    { class: "order", "data-shop": order.shop, "data-order-id": order.order_id },
    el("h3", {}, `${order.shop} / ${order.order_id}`),
    el(
      "p",
      {},
      `${order.status}${order.reason ? " (" + order.reason + ")" : ""} · ${order.product} · ` +
        `account ${order.account} · created ${order.created_at}`,
    ),
    el("p", { class: "message" }, "Message: " + shown(order.message)),
  );
  card.append(
    el("h4", {}, "Attempts"),
    order.attempts.length
      ? table(
          [
            ["Supplier", "supplier"],
            ["Upstream id", "upstream_order_id"],
            ["Outcome", "outcome"],
            ["Code", "code"],
            ["Message", "message"],
            ["Detail", "detail"],
            ["Started", "started_at"],
            ["ms", "duration_ms"],
          ],
          order.attempts,
        )
      : el("p", {}, "none"),
  );
  if (order.incidents && order.incidents.length) {
    card.append(
      el("h4", {}, "Incidents"),
      table(
        [
          ["At", "at"],
          ["Kind", "kind"],
          ["Detail", "detail"],
          ["Upstream id", "upstream_order_id"],
          ["Repeats", "repeats"],
        ],
        order.incidents,
      ),
    );
  }
  const name = `${order.shop} / ${order.order_id}`;
  const buttons = el("p", { class: "actions" });
  if (order.status === "processing") {
    buttons.append(
      el(
        "button",
        {
          type: "button",
          class: "resolve",
          onclick: () =>
            act(
              "Resolve " + name,
              "Sets the order's final state and tells the shop. Check with the supplier first.",
              [
                { name: "status", label: "Final state", choices: [["failed", "failed"], ["succeeded", "succeeded"]] },
                { name: "note", label: "Note (why, for the record)", long: true, required: true },
              ],
              (v) => api("POST", orderPath(order, "resolve"), { status: v.status, note: v.note }),
            ),
        },
        "Resolve…",
      ),
      el(
        "button",
        {
          type: "button",
          class: "resubmit",
          onclick: () =>
            act(
              "Resubmit " + name,
              "Starts a new attempt; refused while any earlier attempt may have charged.",
              [
                { name: "supplier", label: "Supplier (empty: normal routing)" },
                { name: "note", label: "Note (optional, kept in the order's history)", long: true },
              ],
              (v) => {
                const body = {};
                if (v.supplier) body.supplier = v.supplier;
                if (v.note) body.note = v.note;
                return api("POST", orderPath(order, "resubmit"), body);
              },
            ),
        },
        "Resubmit…",
      ),
    );
  }
  buttons.append(
    el(
      "button",
      {
        type: "button",
        class: "notify",
        onclick: () =>
          act("Re-notify " + name, "Sends the shop its notification again now.", [], () =>
            api("POST", orderPath(order, "notify")),
          ),
      },
      "Re-notify…",
    ),
  );
  card.append(buttons);
  return card;
}

async function loadAttention() {
  const box = $("attention");
  const parts = await Promise.all(
    NEEDS_A_PERSON.map(async (reason) => {
      try {
        const doc = await api("GET", "/admin/orders?status=processing&reason=" + reason);
        const cut = doc.has_more ? el("p", { class: "hint" }, `only the first ${doc.count} shown`) : null;
        return [el("h3", { "data-reason": reason }, `${reason} (${doc.count})`), ...doc.orders.map(orderCard), cut];
      } catch (error) {
        return [el("h3", {}, reason), el("p", { class: "problem" }, String(error))];
      }
    }),
  );
  box.replaceChildren(...parts.flat().filter((node) => node !== null));
}

let searched = null;

async function loadFound() {
  const box = $("found");
  if (searched === null) return;
  try {
    box.replaceChildren(orderCard(await api("GET", orderPath(searched))));
  } catch (error) {
    box.replaceChildren(el("p", { class: "problem" }, String(error)));
  }
}

// -- figures ----------------------------------------------------------------------------------

async function loadStats() {
  const head = $("stats").tHead;
  const body = $("stats").tBodies[0];
  try {
    const doc = await api("GET", "/admin/stats?by=supplier");
    const columns = doc.rows.length ? Object.keys(doc.rows[0]) : ["key", "orders"];
    head.replaceChildren(el("tr", {}, ...columns.map((c) => el("th", {}, c === "key" ? "supplier" : c))));
    const rows = doc.rows.map((row) =>
      el("tr", {}, ...columns.map((c) => el("td", {}, c === "success_rate" ? rate(row[c]) : shown(row[c])))),
    );
    body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: String(columns.length) }, "no orders yet today"))]));
  } catch (error) {
    head.replaceChildren();
    body.replaceChildren(el("tr", {}, el("td", { class: "problem" }, String(error))));
  }
}

async function refresh() {
  if (!sessionStorage.getItem(TOKEN)) return;
  await Promise.all([loadSuppliers(), loadAttention(), loadFound(), loadStats()]);
  document.body.dataset.loaded = String(Date.now());
}

// -- start ------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(OPERATOR, $("operator").value.trim());
    sessionStorage.setItem(TOKEN, $("token").value);
    $("token").value = "";
    signedIn();
  });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    searched = { shop: $("search-shop").value.trim(), order_id: $("search-order").value.trim() };
    loadFound();
  });
  $("refresh").addEventListener("click", () => refresh());
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(OPERATOR);
    askForToken("");
  });
  if (sessionStorage.getItem(TOKEN) && sessionStorage.getItem(OPERATOR)) signedIn();
  else askForToken("");
});
