// The kiosk: a touch screen in a police kiosk. Set-up with an enrolment code, then
// welcome → dispute type → (expert) → recording notice and consent → calling → in call →
// rating → welcome. Everything the kiosk shows follows the server's call view; after a network
// drop or a page reload the snapshot puts it back where the call is. From the call on (and the
// self-test) the steps are the caller's, shared with the station (web/js/caller.js).
//
// URL options (for set-up and tests): #token=dev_… stores a device token (until enrolment
// codes are available everywhere); ?idle_s=N and ?message_s=N shorten the idle and message
// time-outs; ?lang=en starts in English.

import * as i18n from "./i18n.js";
import { api, CLIENT_BUILD, enrolRefusalKey, Signaling } from "./client.js";
import { Caller } from "./caller.js";
import { loadNotice, renderDisputeTypes, renderExperts } from "./choices.js";

const params = new URLSearchParams(location.search);
const IDLE_MS = Number(params.get("idle_s") || 60) * 1000;
const MESSAGE_MS = Number(params.get("message_s") || 10) * 1000;
const TOKEN_KEY = "kiosk.device_token";
const SELF_TEST_EVERY_MS = 3600 * 1000;
const APP_BUILD = `kiosk-${CLIENT_BUILD}`;
const IDLE_SCREENS = new Set(["dispute", "expert", "consent", "rating"]);

const $ = (id) => document.getElementById(id);

const kiosk = {
  token: null,
  sig: null,
  screen: null,
  disputeTypes: [],
  experts: [],
  choice: { dispute_type: null, expert_id: null },
  notice: null,
  idleTimer: null,
  messageTimer: null,
};

const caller = new Caller({
  name: "kiosk",
  appBuild: APP_BUILD,
  token: () => kiosk.token,
  screens: { show, message, toWelcome, current: () => kiosk.screen },
  keys: {
    callerRole: "call.role.caller",
    selfTestProblem: "kiosk.selftest.problem",
    cameraError: (reason) => `kiosk.error.camera_${reason}`,
  },
  refusalKey: (code) => (code === "consent_required" ? "kiosk.consent.required" : "kiosk.error.call_failed"),
  selfTestEveryMs: SELF_TEST_EVERY_MS, // a kiosk stays up for days: again now and then, between calls
});

// --- screens ---------------------------------------------------------------------------------

function show(screen) {
  for (const section of document.querySelectorAll("[data-screen]:not(body)")) {
    section.hidden = section.dataset.screen !== screen;
  }
  if (kiosk.screen !== screen) console.info(`[kiosk] screen ${kiosk.screen} -> ${screen}`);
  kiosk.screen = screen;
  document.body.dataset.screen = screen;
  clearTimeout(kiosk.messageTimer);
  armIdle();
}

function armIdle() {
  clearTimeout(kiosk.idleTimer);
  if (IDLE_SCREENS.has(kiosk.screen)) {
    kiosk.idleTimer = setTimeout(() => {
      console.info(`[kiosk] idle on ${kiosk.screen}`);
      toWelcome();
    }, IDLE_MS);
  }
}

function message(key, { back = true } = {}) {
  $("message-text").textContent = i18n.t(key);
  $("message-text").dataset.key = key;
  $("message-ok").hidden = !back;
  document.querySelector('[data-screen="message"] [data-i18n="kiosk.message.returning"]').hidden =
    !back;
  show("message");
  if (back) kiosk.messageTimer = setTimeout(toWelcome, MESSAGE_MS);
}

function toWelcome() {
  if (caller.busy) return; // the call decides
  kiosk.choice = { dispute_type: null, expert_id: null };
  show(kiosk.token ? "welcome" : "enrol");
  if (kiosk.token) caller.selfTestIfDue();
}

// --- set-up (enrolment) -------------------------------------------------------------------------

let code = "";

function renderCode() {
  $("enrol-code").textContent = code.padEnd(8, "·");
  $("enrol-submit").disabled = code.length !== 8;
}

function bindEnrol() {
  for (const button of document.querySelectorAll("#keypad [data-digit]")) {
    button.addEventListener("click", () => {
      if (code.length < 8) code += button.dataset.digit;
      $("enrol-error").hidden = true;
      renderCode();
    });
  }
  $("enrol-delete").addEventListener("click", () => {
    code = code.slice(0, -1);
    renderCode();
  });
  $("enrol-submit").addEventListener("click", () => enrol());
  renderCode();
}

/** `saved`: the token this kiosk already has, when the code came from a link. */
async function enrol(saved = null) {
  $("enrol-submit").disabled = true;
  try {
    // The kind makes the server refuse a station's code (wrong_device_kind) before spending it.
    const result = await api("POST", "/api/enrol", { body: { code, kind: "kiosk" } });
    storeToken(result.device_token);
    code = "";
    renderCode();
    connect();
  } catch (err) {
    console.info("[kiosk] enrolment refused", err.status, err.code);
    if (saved && err.code === "enrolment_failed") {
      // The link was opened again on a kiosk already set up with it (the code is spent):
      // the kiosk keeps its token rather than stopping at the set-up screen.
      kiosk.token = saved;
      code = "";
      renderCode();
      connect();
      return;
    }
    const key = enrolRefusalKey(err, "kiosk");
    $("enrol-error").textContent = i18n.t(key);
    $("enrol-error").dataset.key = key;
    $("enrol-error").hidden = false;
    renderCode();
  }
}

function storeToken(token) {
  kiosk.token = token;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

// --- signaling --------------------------------------------------------------------------------

function connect() {
  if (kiosk.sig) kiosk.sig.close();
  show("starting");
  const sig = new Signaling({
    credentials: () => ({ device_token: kiosk.token }),
    clientBuild: APP_BUILD,
  });
  kiosk.sig = sig;
  window.kioskSignaling = sig; // for tests and the console
  sig.on("status", ({ state, reason }) => {
    $("reconnecting").hidden = state !== "reconnecting" || kiosk.screen === "starting";
    document.body.dataset.signaling = state;
    if (state === "closed" && sig === kiosk.sig) closedForGood(reason);
  });
  caller.attach(sig); // the snapshot and call events; the self-test once no call needs the camera
  sig.start().catch(() => {}); // closedForGood handles terminal refusals
}

function closedForGood(reason) {
  console.info("[kiosk] signaling closed:", reason);
  caller.abandon();
  if (reason === "auth_failed") {
    storeToken(null);
    show("enrol");
  } else if (reason === "revoked") {
    storeToken(null);
    message("kiosk.error.revoked", { back: false });
  } else if (reason === "replaced") {
    message("kiosk.error.replaced", { back: false });
  } else {
    message("kiosk.error.protocol", { back: false });
  }
}

// --- choosing ----------------------------------------------------------------------------------

async function startFlow() {
  try {
    const { dispute_types } = await api("GET", "/api/dispute-types", { token: kiosk.token });
    kiosk.disputeTypes = dispute_types;
  } catch (err) {
    console.info("[kiosk] dispute types not loaded", err.status);
    message("kiosk.error.call_failed");
    return;
  }
  showDisputeTypes();
  show("dispute");
}

function showDisputeTypes() {
  renderDisputeTypes($("dispute-types"), kiosk.disputeTypes, chooseDispute);
}

async function chooseDispute(code) {
  kiosk.choice = { dispute_type: code, expert_id: null };
  try {
    const { experts } = await api("GET", "/api/experts", { token: kiosk.token });
    caller.rememberExperts(experts);
    kiosk.experts = experts.filter((e) => e.specialties.includes(code));
  } catch (err) {
    console.info("[kiosk] experts not loaded", err.status);
    kiosk.experts = [];
  }
  if (kiosk.experts.length === 0) {
    await toConsent();
    return;
  }
  showExperts();
  show("expert");
}

function showExperts() {
  renderExperts($("experts"), kiosk.experts, kiosk.disputeTypes, chooseExpert);
}

function chooseExpert(expertId) {
  kiosk.choice.expert_id = expertId;
  toConsent();
}

async function toConsent() {
  $("training-consent").checked = false;
  show("consent");
  await showNotice();
}

async function showNotice() {
  // Version 1 of the notice, as the catalogue holds it, when the server cannot serve one.
  kiosk.notice = await loadNotice(kiosk.token, $("notice-text"), "1");
}

// --- the call (web/js/caller.js from here on) ---------------------------------------------------

function launch(consentEvidence) {
  const choice = kiosk.choice;
  const payload = {
    dispute_type: choice.dispute_type,
    consent_evidence: consentEvidence,
    notice_language: kiosk.notice ? kiosk.notice.language : i18n.current(),
  };
  if (consentEvidence) payload.training_consent = $("training-consent").checked;
  if (kiosk.notice && kiosk.notice.version) payload.notice_version = kiosk.notice.version;
  if (choice.expert_id) payload.expert_id = choice.expert_id;
  caller.launch(payload);
}

// --- start ------------------------------------------------------------------------------------

function bind() {
  i18n.bindToggle($("lang-toggle"));
  i18n.onChange(() => {
    renderCode();
    if (kiosk.screen === "dispute") showDisputeTypes();
    if (kiosk.screen === "expert") showExperts();
    if (kiosk.screen === "consent") showNotice();
    if (kiosk.screen === "message") $("message-text").textContent = i18n.t($("message-text").dataset.key);
    if (!$("enrol-error").hidden) $("enrol-error").textContent = i18n.t($("enrol-error").dataset.key);
  });
  bindEnrol();
  $("start").addEventListener("click", startFlow);
  for (const back of document.querySelectorAll("button.back")) {
    back.addEventListener("click", () => {
      if (kiosk.screen === "consent" && kiosk.experts.length) show("expert");
      else if (kiosk.screen === "expert" || kiosk.screen === "consent") show("dispute");
      else toWelcome();
    });
  }
  $("consent-agree").addEventListener("click", () => launch(true));
  $("consent-decline").addEventListener("click", () => launch(false));
  $("message-ok").addEventListener("click", toWelcome);
  for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, armIdle, true);
}

async function boot() {
  await i18n.init();
  bind();
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has("token") || hash.has("enrol")) {
    history.replaceState(null, "", location.pathname + location.search);
  }
  if (hash.get("enrol")) {
    // The admin's enrolment link (QR code): the code comes in the fragment, never to a log.
    code = hash.get("enrol").replace(/\D/g, "").slice(0, 8);
    show("enrol");
    renderCode();
    if (code.length === 8) await enrol(localStorage.getItem(TOKEN_KEY));
    return;
  }
  if (hash.get("token")) storeToken(hash.get("token")); // set-up by hand or by a test
  else kiosk.token = localStorage.getItem(TOKEN_KEY);
  if (kiosk.token) connect();
  else show("enrol");
}

boot();
