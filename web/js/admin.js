// The admin page: sign in, then one tab per concern: live calls (polled: an admin gets no
// call events), devices (create, enrol with a code and QR code, rotate the token, disable;
// health: last seen, app build, camera and microphone self-test), accounts and roles,
// experts (live availability, specialties, duty flag), dispute types (inactive ones too, to
// switch back on) and storage warnings (worded from their codes in the page's language).
// Everything goes through the REST API (docs/protocol.md, section 10) with the login cookie.
//
// URL options: ?refresh_s=N (live calls refresh, default 5), ?lang=en.

import * as i18n from "./i18n.js";
import { api, loginRefusalKey } from "./client.js";

const params = new URLSearchParams(location.search);
const REFRESH_MS = Number(params.get("refresh_s") || 5) * 1000;
const CONFIRM_MS = 5000;
const ROLES = ["expert", "station_officer", "trainer", "evidence_officer", "admin"];
const HEALTH = new Set(["ok", "denied", "missing", "error"]);
const ERRORS = {
  conflict: "admin.error.conflict",
  invalid_message: "admin.error.invalid_message",
  invalid_state: "admin.error.invalid_state",
  not_found: "admin.error.not_found",
  forbidden: "admin.error.forbidden",
};

const $ = (id) => document.getElementById(id);

const admin = {
  me: null,
  tab: null,
  calls: [],
  callsAt: null,
  devices: [],
  accounts: [],
  experts: [],
  disputeTypes: [], // every type, inactive ones too (`?all=1`)
  warnings: null,
  enrolment: null, // {device, code, expires_at, link, qr_svg}
  timer: null,
};

// --- helpers -----------------------------------------------------------------------------------

function el(tag, { text, className, attrs = {}, data = {} } = {}, children = []) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const [name, value] of Object.entries(data)) node.dataset[name] = value;
  node.append(...children);
  return node;
}

function cell(text, data = {}) {
  return el("td", { text, data });
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString(i18n.current()) : "—";
}

function disputeName(code) {
  const type = admin.disputeTypes.find((d) => d.code === code);
  return type ? i18n.pick(type.name_zh, type.name_en) : code;
}

/** An error message element shows a catalogue text (kept by key for a language switch). */
function showError(id, key) {
  const node = $(id);
  node.dataset.key = key;
  node.textContent = i18n.t(key);
  node.hidden = false;
}

function clearError(id) {
  $(id).hidden = true;
  delete $(id).dataset.key;
}

/** The error text for a failed request; a lost login sends the admin to sign in again. */
function failure(err) {
  if (err.status === 401) {
    signedOut("admin.login.expired");
    return null;
  }
  return ERRORS[err.code] || "admin.error.other";
}

async function request(method, path, body, errorId) {
  if (errorId) clearError(errorId);
  try {
    return await api(method, path, body === undefined ? {} : { body });
  } catch (err) {
    console.info(`[admin] ${method} ${path}:`, err.status, err.code);
    const key = failure(err);
    if (key && errorId) showError(errorId, key);
    throw err;
  }
}

/** Destructive actions take a second click within a few seconds. */
function confirmed(button) {
  if (button.dataset.armed === "1") {
    delete button.dataset.armed;
    return true;
  }
  button.dataset.armed = "1";
  const text = button.textContent;
  const label = button.getAttribute("aria-label");
  button.textContent = i18n.t("admin.action.confirm");
  if (label) button.setAttribute("aria-label", `${i18n.t("admin.action.confirm")}: ${label}`);
  setTimeout(() => {
    if (button.dataset.armed === "1") {
      delete button.dataset.armed;
      button.textContent = text;
      if (label) button.setAttribute("aria-label", label);
    }
  }, CONFIRM_MS);
  return false;
}

// --- screens and tabs --------------------------------------------------------------------------

function show(screen) {
  for (const section of document.querySelectorAll("main [data-screen]")) {
    section.hidden = section.dataset.screen !== screen;
  }
  document.body.dataset.screen = screen;
  const signedIn = !!admin.me;
  $("nav").hidden = !signedIn;
  $("logout").hidden = !signedIn;
  for (const button of document.querySelectorAll("#nav [data-tab]")) {
    if (button.dataset.tab === screen) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
}

async function openTab(tab) {
  admin.tab = tab;
  show(tab);
  const heading = document.querySelector(`main [data-screen="${tab}"] h1`);
  heading.tabIndex = -1;
  heading.focus({ preventScroll: true });
  await LOADERS[tab]();
}

const LOADERS = {
  calls: loadCalls,
  devices: loadDevices,
  accounts: loadAccounts,
  experts: loadExperts,
  "dispute-types": loadDisputeTypes,
  warnings: loadWarnings,
};

// --- login -------------------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  clearError("login-error");
  let account;
  try {
    ({ account } = await api("POST", "/api/login", {
      body: { username: $("username").value, password: $("password").value },
    }));
    if (account.role !== "admin") {
      await api("POST", "/api/logout").catch(() => {});
      throw Object.assign(new Error("not an admin"), { key: "admin.login.not_admin" });
    }
  } catch (err) {
    showError("login-error", loginRefusalKey(err, "admin"));
    return;
  }
  $("password").value = "";
  await signedIn(account); // its own failures are not a refused login
}

async function signedIn(account) {
  admin.me = account;
  $("me-name").textContent = account.display_name;
  clearInterval(admin.timer);
  admin.timer = setInterval(() => {
    if (admin.tab === "calls") loadCalls();
  }, REFRESH_MS);
  await loadDisputeTypesQuietly();
  await openTab("calls");
}

function signedOut(key = null) {
  admin.me = null;
  admin.tab = null;
  clearInterval(admin.timer);
  $("me-name").textContent = "";
  show("login");
  $("username").focus();
  if (key) showError("login-error", key);
}

async function logout() {
  await api("POST", "/api/logout").catch(() => {});
  signedOut();
}

/** Active types, offered to callers and as specialties. */
function activeTypes() {
  return admin.disputeTypes.filter((t) => t.active);
}

async function loadDisputeTypesQuietly() {
  try {
    admin.disputeTypes = (await api("GET", "/api/dispute-types?all=1")).dispute_types;
  } catch (err) {
    console.info("[admin] dispute types not loaded", err.status);
  }
}

// --- live calls --------------------------------------------------------------------------------

async function loadCalls() {
  try {
    const [{ calls }] = await Promise.all([
      request("GET", "/api/calls?state=live"),
      admin.devices.length ? null : loadDevicesQuietly(),
    ]);
    admin.calls = calls;
    admin.callsAt = Date.now();
  } catch {
    return;
  }
  renderCalls();
}

async function loadDevicesQuietly() {
  try {
    admin.devices = (await api("GET", "/api/admin/devices")).devices;
  } catch (err) {
    console.info("[admin] devices not loaded", err.status);
  }
}

function renderCalls() {
  const body = $("calls-table").querySelector("tbody");
  body.replaceChildren();
  for (const call of admin.calls) {
    const device = admin.devices.find((d) => d.id === call.caller_device_id);
    const caller = i18n.t(`admin.kind.${call.caller_kind}`) + (device ? ` · ${device.name}` : "");
    const queue = call.queue_position
      ? i18n.t("admin.calls.queue_position", { position: call.queue_position })
      : "";
    const row = el("tr", { data: { call: call.id, state: call.state } }, [
      cell(when(call.launched_at)),
      cell(i18n.t(`call.state.${call.state}`), { field: "state" }),
      cell(disputeName(call.dispute_type)),
      cell(caller),
      cell(call.case_number || "", { field: "case" }),
      cell(queue),
      cell(call.answered_at ? when(call.answered_at) : ""),
    ]);
    body.append(row);
  }
  $("calls-empty").hidden = admin.calls.length > 0;
  $("calls-status").textContent = admin.callsAt
    ? i18n.t("admin.calls.updated", {
        time: new Date(admin.callsAt).toLocaleTimeString(i18n.current()),
        seconds: Math.round(REFRESH_MS / 1000),
      })
    : "";
}

// --- devices -----------------------------------------------------------------------------------

async function loadDevices() {
  try {
    admin.devices = (await request("GET", "/api/admin/devices", undefined, "devices-error")).devices;
  } catch {
    return;
  }
  renderDevices();
}

function healthText(health, part) {
  if (!health) return i18n.t("admin.health.none");
  const value = health[part];
  return i18n.t(HEALTH.has(value) ? `admin.health.${value}` : "admin.health.error");
}

function deviceStatus(device) {
  const parts = [
    i18n.t(device.disabled ? "admin.devices.disabled" : device.online ? "admin.devices.online" : "admin.devices.offline"),
  ];
  if (device.enrolment_expires_at) {
    parts.push(i18n.t("admin.devices.code_pending", { time: when(device.enrolment_expires_at) }));
  }
  return parts.join(" · ");
}

function renderDevices() {
  const body = $("devices-table").querySelector("tbody");
  body.replaceChildren();
  for (const device of admin.devices) {
    const name = device.name;
    const enrolButton = el("button", {
      text: i18n.t("admin.devices.enrol"),
      attrs: { type: "button", "aria-label": i18n.t("admin.devices.enrol_named", { name }) },
      data: { action: "enrol" },
    });
    enrolButton.disabled = device.disabled;
    enrolButton.addEventListener("click", () => enrolDevice(device));
    const rotate = el("button", {
      text: i18n.t("admin.devices.rotate"),
      attrs: { type: "button", "aria-label": i18n.t("admin.devices.rotate_named", { name }) },
      data: { action: "rotate-token" },
    });
    rotate.addEventListener("click", () => confirmed(rotate) && rotateToken(device));
    const toggle = el("button", {
      text: i18n.t(device.disabled ? "admin.action.enable" : "admin.action.disable"),
      className: device.disabled ? "" : "danger",
      attrs: {
        type: "button",
        "aria-label": i18n.t(device.disabled ? "admin.action.enable_named" : "admin.action.disable_named", { name }),
      },
      data: { action: device.disabled ? "enable" : "disable" },
    });
    toggle.addEventListener("click", () => {
      if (device.disabled || confirmed(toggle)) deviceAction(device, device.disabled ? "enable" : "disable");
    });
    const health = device.health;
    const row = el(
      "tr",
      {
        data: {
          device: device.id,
          online: device.online ? "1" : "",
          disabled: device.disabled ? "1" : "",
          pending: device.enrolment_expires_at ? "1" : "",
        },
      },
      [
        cell(name),
        cell(i18n.t(`admin.kind.${device.kind}`)),
        cell(deviceStatus(device), { field: "status" }),
        cell(device.last_seen_at ? when(device.last_seen_at) : i18n.t("admin.devices.never"), { field: "last-seen" }),
        cell(health && health.app_build ? health.app_build : "—", { field: "app-build" }),
        cell(healthText(health, "camera"), { field: "camera", value: health ? health.camera : "" }),
        cell(healthText(health, "microphone"), { field: "microphone", value: health ? health.microphone : "" }),
        el("td", { className: "actions" }, [enrolButton, rotate, toggle]),
      ],
    );
    body.append(row);
  }
  $("devices-empty").hidden = admin.devices.length > 0;
  const shown = admin.enrolment && admin.devices.find((d) => d.id === admin.enrolment.device.id);
  if (admin.enrolment && (!shown || !shown.enrolment_expires_at)) {
    admin.enrolment = null; // the code was used, replaced or has expired: nothing left to show
  }
  renderEnrolment();
}

async function createDevice(event) {
  event.preventDefault();
  const name = $("device-name").value.trim();
  if (!name) return;
  try {
    const { device, token } = await request(
      "POST",
      "/api/admin/devices",
      { kind: $("device-kind").value, name },
      "devices-error",
    );
    $("device-form").reset();
    showToken(device, token);
  } catch {
    return;
  }
  await loadDevices();
}

function showToken(device, token) {
  admin.enrolment = null;
  $("enrolment-panel").hidden = true;
  $("token-title").dataset.name = device.name;
  $("token-title").textContent = i18n.t("admin.devices.token_title", { name: device.name });
  $("device-token").textContent = token;
  $("token-panel").hidden = false;
  $("token-title").focus();
}

async function enrolDevice(device) {
  try {
    const enrolment = await request(
      "POST",
      `/api/admin/devices/${encodeURIComponent(device.id)}/enrolment`,
      undefined,
      "devices-error",
    );
    admin.enrolment = { device, ...enrolment };
  } catch {
    return;
  }
  $("token-panel").hidden = true;
  renderEnrolment();
  $("enrolment-title").focus();
  await loadDevices();
}

function renderEnrolment() {
  const enrolment = admin.enrolment;
  $("enrolment-panel").hidden = !enrolment;
  if (!enrolment) return;
  $("enrolment-title").textContent = i18n.t("admin.enrol.title", { name: enrolment.device.name });
  const code = $("enrol-code");
  code.textContent = `${enrolment.code.slice(0, 4)} ${enrolment.code.slice(4)}`;
  code.dataset.code = enrolment.code;
  code.dataset.device = enrolment.device.id;
  $("enrol-expires").textContent = i18n.t("admin.enrol.expires", { time: when(enrolment.expires_at) });
  $("enrol-link").value = enrolment.link; // a field, easy to copy to the device
  const qr = $("enrol-qr");
  if (qr.dataset.code !== enrolment.code) {
    // The server's standalone SVG (segno), put in the page as it is.
    qr.innerHTML = enrolment.qr_svg;
    qr.dataset.code = enrolment.code;
  }
}

async function rotateToken(device) {
  try {
    const { token } = await request(
      "POST",
      `/api/admin/devices/${encodeURIComponent(device.id)}/rotate-token`,
      undefined,
      "devices-error",
    );
    showToken(device, token);
  } catch {
    return;
  }
  await loadDevices();
}

async function deviceAction(device, action) {
  try {
    await request("POST", `/api/admin/devices/${encodeURIComponent(device.id)}/${action}`, undefined, "devices-error");
  } catch {
    return;
  }
  if (action === "disable" && admin.enrolment && admin.enrolment.device.id === device.id) {
    admin.enrolment = null; // the code died with the device
  }
  await loadDevices();
  const again = document.querySelector(`#devices-table tr[data-device="${device.id}"] [data-action]:last-child`);
  if (again) again.focus();
}

// --- accounts ----------------------------------------------------------------------------------

async function loadAccounts() {
  try {
    admin.accounts = (await request("GET", "/api/admin/accounts", undefined, "accounts-error")).accounts;
  } catch {
    return;
  }
  renderAccounts();
  renderAccountForm();
}

function renderAccounts() {
  const body = $("accounts-table").querySelector("tbody");
  body.replaceChildren();
  for (const account of admin.accounts) {
    const name = account.username;
    const actions = el("td", { className: "actions" });
    if (!admin.me || account.id !== admin.me.id) {
      const toggle = el("button", {
        text: i18n.t(account.disabled ? "admin.action.enable" : "admin.action.disable"),
        className: account.disabled ? "" : "danger",
        attrs: {
          type: "button",
          "aria-label": i18n.t(account.disabled ? "admin.action.enable_named" : "admin.action.disable_named", { name }),
        },
        data: { action: account.disabled ? "enable" : "disable" },
      });
      toggle.addEventListener("click", () => {
        if (account.disabled || confirmed(toggle)) accountAction(account, account.disabled ? "enable" : "disable");
      });
      actions.append(toggle);
    }
    body.append(
      el("tr", { data: { account: account.id, username: account.username, disabled: account.disabled ? "1" : "" } }, [
        cell(account.username),
        cell(account.display_name),
        cell(i18n.t(`admin.role.${account.role}`)),
        cell(i18n.t(account.disabled ? "admin.status.disabled" : "admin.status.active"), { field: "status" }),
        cell(when(account.created_at)),
        actions,
      ]),
    );
  }
}

function renderAccountForm() {
  const box = $("account-specialties");
  const checked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
  box.replaceChildren();
  for (const type of activeTypes()) {
    const input = el("input", { attrs: { type: "checkbox", value: type.code } });
    input.checked = checked.has(type.code);
    box.append(el("label", { className: "check" }, [input, el("span", { text: i18n.pick(type.name_zh, type.name_en) })]));
  }
  $("account-expert-fields").hidden = $("account-role").value !== "expert";
  const status = $("account-status");
  if (status.dataset.key) status.textContent = i18n.t(status.dataset.key, { name: status.dataset.name });
}

async function createAccount(event) {
  event.preventDefault();
  const role = $("account-role").value;
  const body = {
    username: $("account-username").value.trim(),
    display_name: $("account-display-name").value.trim(),
    role,
    password: $("account-password").value,
  };
  if (role === "expert") {
    body.specialties = [...$("account-specialties").querySelectorAll("input:checked")].map((i) => i.value);
    body.on_duty = $("account-on-duty").checked;
  }
  const status = $("account-status");
  status.textContent = "";
  try {
    const { account } = await request("POST", "/api/admin/accounts", body, "accounts-error");
    status.dataset.key = "admin.accounts.created_one";
    status.dataset.name = account.username;
    status.textContent = i18n.t("admin.accounts.created_one", { name: account.username });
    $("account-form").reset();
  } catch {
    return;
  }
  await loadAccounts();
}

async function accountAction(account, action) {
  try {
    await request("POST", `/api/admin/accounts/${encodeURIComponent(account.id)}/${action}`, undefined, "accounts-error");
  } catch {
    return;
  }
  await loadAccounts();
}

// --- experts -----------------------------------------------------------------------------------

async function loadExperts() {
  try {
    const [{ experts }] = await Promise.all([
      request("GET", "/api/admin/experts", undefined, "experts-error"),
      loadDisputeTypesQuietly(),
    ]);
    admin.experts = experts;
  } catch {
    return;
  }
  renderExperts();
}

function expertStatus(expert) {
  if (expert.disabled) return i18n.t("admin.status.disabled");
  return i18n.t(`expert.availability.${expert.availability}`);
}

function renderExperts() {
  const body = $("experts-table").querySelector("tbody");
  body.replaceChildren();
  for (const expert of admin.experts) {
    const name = expert.display_name;
    const specialties = el("fieldset", { className: "checks" }, [
      el("legend", { text: i18n.t("admin.experts.specialties_of", { name }), className: "visually-hidden" }),
    ]);
    const codes = activeTypes().map((t) => t.code);
    for (const code of expert.specialties) if (!codes.includes(code)) codes.push(code);
    for (const code of codes) {
      const input = el("input", { attrs: { type: "checkbox", value: code } });
      input.checked = expert.specialties.includes(code);
      specialties.append(el("label", { className: "check" }, [input, el("span", { text: disputeName(code) })]));
    }
    const save = el("button", {
      text: i18n.t("admin.save"),
      className: "primary",
      attrs: { type: "button", "aria-label": i18n.t("admin.save_named", { name }) },
      data: { action: "save" },
    });
    save.addEventListener("click", () =>
      saveExpert(expert, { specialties: [...specialties.querySelectorAll("input:checked")].map((i) => i.value) }),
    );
    // The duty flag is one tap: saved at once, the specialties keep their own Save.
    const duty = el("button", {
      text: i18n.t(expert.on_duty ? "admin.experts.duty_set_off" : "admin.experts.duty_set_on"),
      attrs: {
        type: "button",
        "aria-label": i18n.t(expert.on_duty ? "admin.experts.duty_set_off_named" : "admin.experts.duty_set_on_named", {
          name,
        }),
      },
      data: { action: "duty" },
    });
    duty.addEventListener("click", () => saveExpert(expert, { on_duty: !expert.on_duty }, "duty"));
    body.append(
      el(
        "tr",
        {
          data: {
            expert: expert.id,
            onDuty: expert.on_duty ? "1" : "0",
            availability: expert.availability,
            disabled: expert.disabled ? "1" : "",
          },
        },
        [
          cell(name),
          cell(expertStatus(expert), { field: "availability" }),
          el("td", {}, [specialties]),
          el("td", { data: { field: "duty" } }, [
            el("span", {
              text: i18n.t(expert.on_duty ? "admin.experts.duty_on" : "admin.experts.duty_off"),
              className: expert.on_duty ? "duty on" : "duty",
            }),
            duty,
          ]),
          el("td", { className: "actions" }, [save]),
        ],
      ),
    );
  }
  $("experts-empty").hidden = admin.experts.length > 0;
}

async function saveExpert(expert, body, action = "save") {
  try {
    await request("PUT", `/api/admin/experts/${encodeURIComponent(expert.id)}`, body, "experts-error");
  } catch {
    return;
  }
  await loadExperts();
  const again = document.querySelector(`#experts-table tr[data-expert="${expert.id}"] [data-action=${action}]`);
  if (again) again.focus();
}

// --- dispute types -----------------------------------------------------------------------------

async function loadDisputeTypes() {
  try {
    admin.disputeTypes = (
      await request("GET", "/api/dispute-types?all=1", undefined, "dispute-types-error")
    ).dispute_types;
  } catch {
    return;
  }
  renderDisputeTypes();
}

function renderDisputeTypes() {
  const body = $("dispute-types-table").querySelector("tbody");
  body.replaceChildren();
  for (const type of admin.disputeTypes) {
    const code = type.code;
    const label = (key) => `${i18n.t(key)} · ${code}`;
    const nameZh = el("input", {
      attrs: { type: "text", maxlength: "100", lang: "zh-CN", "aria-label": label("admin.dispute_types.name_zh") },
      data: { field: "name-zh" },
    });
    nameZh.value = type.name_zh;
    const nameEn = el("input", {
      attrs: { type: "text", maxlength: "100", lang: "en", "aria-label": label("admin.dispute_types.name_en") },
      data: { field: "name-en" },
    });
    nameEn.value = type.name_en;
    const sort = el("input", {
      attrs: { type: "number", min: "0", max: "10000", step: "1", "aria-label": label("admin.dispute_types.sort") },
      data: { field: "sort" },
    });
    sort.value = String(type.sort);
    const active = el("input", {
      attrs: { type: "checkbox", "aria-label": label("admin.dispute_types.active") },
      data: { field: "active" },
    });
    active.checked = type.active;
    const save = el("button", {
      text: i18n.t("admin.save"),
      className: "primary",
      attrs: { type: "button", "aria-label": label("admin.save") },
      data: { action: "save" },
    });
    const fields = () => ({
      name_zh: nameZh.value.trim(),
      name_en: nameEn.value.trim(),
      sort: Number(sort.value || 100),
      active: active.checked,
    });
    save.addEventListener("click", () => saveDisputeType(code, fields()));
    const actions = el("td", { className: "actions" }, [save]);
    const codeCell = el("td", {}, [el("span", { text: code, attrs: { lang: "en" } })]);
    if (!type.active) {
      // Callers are not offered it; one tap offers it again (with the names as edited).
      codeCell.append(el("span", { text: i18n.t("admin.dispute_types.inactive"), className: "badge" }));
      const activate = el("button", {
        text: i18n.t("admin.dispute_types.activate"),
        className: "ok",
        attrs: { type: "button", "aria-label": label("admin.dispute_types.activate") },
        data: { action: "activate" },
      });
      activate.addEventListener("click", () => saveDisputeType(code, { ...fields(), active: true }));
      actions.append(activate);
    }
    body.append(
      el("tr", { className: type.active ? "" : "inactive", data: { code, active: type.active ? "1" : "" } }, [
        codeCell,
        el("td", {}, [nameZh]),
        el("td", {}, [nameEn]),
        el("td", {}, [sort]),
        el("td", {}, [active]),
        actions,
      ]),
    );
  }
}

async function saveDisputeType(code, fields) {
  if (!fields.name_zh || !fields.name_en || !Number.isInteger(fields.sort)) {
    showError("dispute-types-error", "admin.error.invalid_message");
    return false;
  }
  try {
    await request("PUT", `/api/admin/dispute-types/${encodeURIComponent(code)}`, fields, "dispute-types-error");
  } catch {
    return false;
  }
  await loadDisputeTypes();
  const again = document.querySelector(`#dispute-types-table tr[data-code="${code}"] [data-action=save]`);
  if (again && document.activeElement === document.body) again.focus();
  return true;
}

async function addDisputeType(event) {
  event.preventDefault();
  const added = await saveDisputeType($("dispute-code").value.trim(), {
    name_zh: $("dispute-name-zh").value.trim(),
    name_en: $("dispute-name-en").value.trim(),
    sort: Number($("dispute-sort").value || 100),
    active: true,
  });
  if (added) $("dispute-type-form").reset();
}

// --- storage warnings --------------------------------------------------------------------------

async function loadWarnings() {
  try {
    admin.warnings = await request("GET", "/api/admin/warnings", undefined, "warnings-error");
  } catch {
    return;
  }
  renderWarnings();
}

const MIB = 1024 * 1024;
const GAP_TRACKS = new Set(["audio", "video"]);
const GAP_REASONS = new Set(["tap_overflow", "packet_loss", "participant_dropped", "awaiting_key_frame"]);

function number(value, digits = 0) {
  return Number(value ?? 0).toLocaleString(i18n.current(), { maximumFractionDigits: digits });
}

/** A warning's sentence in the page's language, and the technical detail that stays as the
 * server wrote it (a folder, an object key, an error): [text, detail or null]. */
function warningText({ code, params = {} }) {
  switch (code) {
    case "upload_lag":
      return [
        i18n.t("admin.warnings.code.upload_lag", {
          lag: number(params.lag_s),
          limit: number(params.limit_s),
          files: number(params.pending_files),
          size: number(params.pending_bytes / MIB, 1),
        }),
        null,
      ];
    case "disk_low":
      return [
        i18n.t("admin.warnings.code.disk_low", { free: number(params.free_mib), limit: number(params.limit_mib) }),
        params.directory,
      ];
    case "store_failing":
      return [i18n.t("admin.warnings.code.store_failing", { failures: number(params.failures) }), params.last_error];
    case "upload_held":
      return [i18n.t("admin.warnings.code.upload_held"), `${params.key}: ${params.reason}`];
    case "recording_gap":
      return [
        i18n.t("admin.warnings.code.recording_gap", {
          call: params.call_id,
          participant: params.participant_id,
          track: GAP_TRACKS.has(params.track) ? i18n.t(`admin.warnings.track.${params.track}`) : params.track,
          reason: GAP_REASONS.has(params.reason) ? i18n.t(`admin.warnings.gap_reason.${params.reason}`) : params.reason,
          packets: number(params.packets),
          time: params.at ? new Date(params.at).toLocaleString(i18n.current()) : "—",
        }),
        null,
      ];
    default:
      return [null, null];
  }
}

function renderWarnings() {
  const data = admin.warnings;
  const list = $("warnings-list");
  list.replaceChildren();
  if (!data) return;
  const items = data.warnings || [];
  for (const item of items) {
    const [text, detail] = warningText(item);
    const li = el("li", { data: { code: item.code } });
    if (text === null) {
      // A code this page does not know yet: the server's English message.
      li.append(el("span", { text: item.message, attrs: { lang: "en" } }));
    } else {
      li.append(el("span", { text }));
      if (detail) li.append(" ", el("code", { text: detail, attrs: { lang: "en" } }));
    }
    list.append(li);
  }
  list.hidden = items.length === 0;
  $("warnings-empty").hidden = items.length > 0;
  $("warnings-gaps").textContent = i18n.t("admin.warnings.gaps", { count: data.recording_gaps ?? 0 });
}

// --- start --------------------------------------------------------------------------------------

function bind() {
  i18n.bindToggle($("lang-toggle"));
  i18n.onChange(() => {
    renderCalls();
    renderDevices();
    renderAccounts();
    renderAccountForm();
    renderExperts();
    renderDisputeTypes();
    renderWarnings();
    if (!$("token-panel").hidden) {
      $("token-title").textContent = i18n.t("admin.devices.token_title", { name: $("token-title").dataset.name });
    }
    for (const node of document.querySelectorAll(".error-text[data-key]")) node.textContent = i18n.t(node.dataset.key);
  });
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const button of document.querySelectorAll("#nav [data-tab]")) {
    button.addEventListener("click", () => openTab(button.dataset.tab));
  }
  $("calls-refresh").addEventListener("click", loadCalls);
  $("devices-refresh").addEventListener("click", loadDevices);
  $("accounts-refresh").addEventListener("click", loadAccounts);
  $("experts-refresh").addEventListener("click", loadExperts);
  $("dispute-types-refresh").addEventListener("click", loadDisputeTypes);
  $("warnings-refresh").addEventListener("click", loadWarnings);
  $("device-form").addEventListener("submit", createDevice);
  $("enrolment-close").addEventListener("click", () => {
    admin.enrolment = null;
    renderEnrolment();
    $("devices-refresh").focus();
  });
  $("token-close").addEventListener("click", () => {
    $("token-panel").hidden = true;
    $("device-token").textContent = "";
    $("devices-refresh").focus();
  });
  $("account-form").addEventListener("submit", createAccount);
  $("account-role").addEventListener("change", renderAccountForm);
  $("dispute-type-form").addEventListener("submit", addDisputeType);
}

async function boot() {
  await i18n.init();
  bind();
  try {
    const { principal } = await api("GET", "/api/me");
    if (principal.role !== "admin") throw new Error("not an admin");
    await signedIn({ id: principal.id, display_name: principal.display_name, role: principal.role });
  } catch {
    show("login");
  }
}

boot();
