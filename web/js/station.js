// The station's mediation room: the station device (set up once with an enrolment code, like a
// kiosk) plus an officer who signs in. Then: welcome → case (new, or an existing one by its
// case number) → dispute type → (expert) → parties present and their recording consent →
// calling → in call (tiles, recording indicator, invite another expert) → rating → welcome.
// Everything follows the server's call view; after a network drop or a page reload the
// snapshot puts the page back where the call is (the officer's login is kept for the tab).
// From the call on (and the self-test) the steps are the caller's, shared with the kiosk
// (web/js/caller.js); this page adds the case, the parties and inviting another expert.
//
// URL options: #enrol=<code> (the admin's enrolment link or QR code), #token=dev_… (set-up
// by hand, tests), ?message_s=N (how long a message stays, default 10), ?lang=en.

import * as i18n from "./i18n.js";
import { api, CLIENT_BUILD, enrolRefusalKey, loginRefusalKey, Signaling } from "./client.js";
import { Caller } from "./caller.js";
import * as choices from "./choices.js";
import * as invites from "./invite.js";

const params = new URLSearchParams(location.search);
const MESSAGE_MS = Number(params.get("message_s") || 10) * 1000;
const TOKEN_KEY = "station.device_token";
const SESSION_KEY = "station.session_token"; // per tab: closing the tab signs the officer out here
const APP_BUILD = `station-${CLIENT_BUILD}`;
const OFFICER_ROLE = "station_officer";
const MIN_PARTIES = 1;
const MAX_PARTIES = 20;
// Screens on which the officer may sign out (not while a call is placed or running).
// Screens that show the case being worked on in the header.
const CASE_SCREENS = new Set(["dispute", "expert", "consent", "calling", "call", "rating"]);
const SIGN_OUT_SCREENS = new Set(["welcome", "case", "dispute", "expert", "consent", "rating", "message"]);

const $ = (id) => document.getElementById(id);

const station = {
  token: null, // the device token
  sessionToken: null, // the officer's login
  principal: null,
  sig: null,
  screen: null,
  disputeTypes: [],
  experts: [],
  choice: { case_id: null, case_number: null, dispute_type: null, expert_id: null },
  parties: 2,
  notice: null,
  caseNumbers: new Map(), // case id -> case number
  messageTimer: null,
};

const caller = new Caller({
  name: "station",
  appBuild: APP_BUILD,
  token: () => station.token,
  screens: { show, message, toWelcome, current: () => station.screen },
  keys: {
    callerRole: "call.role.station",
    selfTestProblem: "station.selftest.problem",
    cameraError: (reason) => `station.error.camera_${reason}`,
  },
  refusalKey: (code, payload) =>
    code === "consent_required"
      ? "station.consent.required"
      : code === "not_found" && payload.case_id
        ? "station.case.not_found"
        : "kiosk.error.call_failed",
  hooks: {
    onCall(call) {
      station.choice.case_id = call.case_id;
      loadCaseNumber(call.case_id);
    },
    onEnterCall(call, first) {
      if (first) {
        $("invite-panel").hidden = true;
        if (station.disputeTypes.length === 0) loadDisputeTypes().then(renderCallInfo); // after a reload
      }
      renderCallInfo();
    },
    onLeaveCall() {
      $("invite-panel").hidden = true;
    },
  },
});

// --- screens ---------------------------------------------------------------------------------

function show(screen) {
  for (const section of document.querySelectorAll("main [data-screen]")) {
    section.hidden = section.dataset.screen !== screen;
  }
  if (station.screen !== screen) console.info(`[station] screen ${station.screen} -> ${screen}`);
  const changed = station.screen !== screen;
  station.screen = screen;
  document.body.dataset.screen = screen;
  clearTimeout(station.messageTimer);
  $("logout").hidden = !station.sessionToken || !SIGN_OUT_SCREENS.has(screen);
  renderCaseBadge();
  if (changed) focusScreen(screen);
}

/** Keyboard and screen reader users start on the new screen: its first field or heading. */
function focusScreen(screen) {
  const section = document.querySelector(`main [data-screen="${screen}"]`);
  if (!section) return;
  const target =
    screen === "login" ? $("username") : screen === "enrol" ? $("enrol-code") : section.querySelector("h1");
  if (!target) return;
  if (target.tagName === "H1") target.tabIndex = -1;
  target.focus({ preventScroll: true });
}

function message(key, { back = true } = {}) {
  $("message-text").textContent = i18n.t(key);
  $("message-text").dataset.key = key;
  $("message-ok").hidden = !back;
  show("message");
  if (back) station.messageTimer = setTimeout(toWelcome, MESSAGE_MS);
}

function toWelcome() {
  if (caller.busy) return; // the call decides
  station.choice = { case_id: null, case_number: null, dispute_type: null, expert_id: null };
  if (!station.token) show("enrol");
  else if (!station.sessionToken) show("login");
  else if (!station.sig) connect();
  else {
    show("welcome");
    caller.selfTestIfDue(); // not done yet if the page came back into a call that never started
  }
}

function renderCaseBadge() {
  const badge = $("case-badge");
  const caseId = station.choice.case_id;
  const number = caseId ? station.caseNumbers.get(caseId) : null;
  badge.hidden = !CASE_SCREENS.has(station.screen);
  badge.textContent = number ? i18n.t("station.case.badge", { number }) : i18n.t("station.case.badge_new");
  badge.dataset.caseId = caseId || "";
  badge.dataset.caseNumber = number || "";
}

function renderWho() {
  const name = station.principal ? station.principal.display_name : "";
  $("who").textContent = name;
  $("signed-in").textContent = name ? i18n.t("station.welcome.signed_in", { name }) : "";
}

// --- set-up (enrolment) -------------------------------------------------------------------------

/** `saved`: the token this station already has, when the code came from a link. */
async function enrol(code, saved = null) {
  $("enrol-submit").disabled = true;
  $("enrol-error").hidden = true;
  try {
    // The kind makes the server refuse a kiosk's code (wrong_device_kind) before spending it.
    const result = await api("POST", "/api/enrol", { body: { code, kind: "station" } });
    storeToken(result.device_token);
    $("enrol-code").value = "";
    toWelcome();
  } catch (err) {
    console.info("[station] enrolment refused", err.status, err.code);
    if (saved && err.code === "enrolment_failed") {
      // The link opened again on a station already set up with it: keep its token.
      $("enrol-code").value = "";
      station.token = saved;
      toWelcome();
      return;
    }
    showError("enrol-error", enrolRefusalKey(err, "station"));
  } finally {
    $("enrol-submit").disabled = false;
  }
}

function storeToken(token) {
  station.token = token;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

function showError(id, key) {
  const el = $(id);
  el.dataset.key = key;
  el.textContent = i18n.t(key);
  el.hidden = false;
}

// --- the officer ----------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  $("login-error").hidden = true;
  let token;
  try {
    let account;
    ({ token, account } = await api("POST", "/api/login", {
      body: { username: $("username").value, password: $("password").value },
    }));
    if (account.role !== OFFICER_ROLE) {
      await api("POST", "/api/logout", { token }).catch(() => {});
      throw Object.assign(new Error("not an officer"), { key: "station.login.not_officer" });
    }
  } catch (err) {
    showError("login-error", loginRefusalKey(err, "station"));
    return;
  }
  $("password").value = "";
  setSession(token);
  connect(); // its own failures are not a refused login
}

function setSession(token) {
  station.sessionToken = token;
  if (token) sessionStorage.setItem(SESSION_KEY, token);
  else sessionStorage.removeItem(SESSION_KEY);
}

async function logout() {
  const token = station.sessionToken;
  const sig = station.sig;
  station.sig = null; // our own close is not a refusal
  if (sig) sig.close();
  setSession(null);
  station.principal = null;
  renderWho();
  if (token) await api("POST", "/api/logout", { token }).catch(() => {});
  $("username").value = "";
  show("login");
}

/** true: the token still works (with the role, if given); false: refused; null: unknown. */
async function stillValid(token, role = null) {
  if (!token) return false;
  try {
    const { principal } = await api("GET", "/api/me", { token });
    return role === null || principal.role === role;
  } catch (err) {
    return err.status === 401 ? false : null;
  }
}

// --- signaling --------------------------------------------------------------------------------

function connect() {
  const old = station.sig;
  station.sig = null; // closing the old connection is not a refusal
  if (old) old.close();
  show("starting");
  const sig = new Signaling({
    credentials: () => ({ device_token: station.token, session_token: station.sessionToken }),
    clientBuild: APP_BUILD,
  });
  station.sig = sig;
  window.stationSignaling = sig; // for tests and the console
  sig.on("status", ({ state, reason }) => {
    if (sig !== station.sig) return;
    $("reconnecting").hidden = state !== "reconnecting" || station.screen === "starting";
    document.body.dataset.signaling = state;
    if (state === "closed") closedForGood(reason);
  });
  caller.attach(sig); // the snapshot and call events; the self-test once no call needs the camera
  sig.start().then(
    (result) => {
      if (result.principal.role !== "station") {
        // A kiosk's token set by hand: this page cannot act as a kiosk.
        station.sig = null;
        sig.close();
        storeToken(null);
        show("enrol");
        showError("enrol-error", "station.enrol.wrong_kind");
        return;
      }
      station.principal = result.principal;
      renderWho();
    },
    () => {}, // closedForGood handles terminal refusals
  );
}

/** The server refused or ended the connection for good: find out which credential went. */
async function closedForGood(reason) {
  console.info("[station] signaling closed:", reason);
  station.sig = null;
  caller.abandon();
  if (reason === "replaced") return message("station.error.replaced", { back: false });
  if (reason === "protocol_version_unsupported") return message("station.error.protocol", { back: false });
  // auth_failed (4001) and revoked (4004) name no credential: ask the server about each.
  const [device, officer] = await Promise.all([
    stillValid(station.token),
    stillValid(station.sessionToken, OFFICER_ROLE),
  ]);
  if (device === false) {
    storeToken(null);
    if (reason === "revoked") message("station.error.revoked", { back: false });
    else show("enrol");
    return;
  }
  if (officer !== true) {
    setSession(null);
    station.principal = null;
    renderWho();
    show("login");
    showError("login-error", "station.login.expired");
    return;
  }
  message("station.error.unavailable", { back: false });
}

async function loadCaseNumber(caseId) {
  if (!caseId || station.caseNumbers.has(caseId)) return;
  station.caseNumbers.set(caseId, null);
  try {
    const { case: found } = await api("GET", `/api/cases/${encodeURIComponent(caseId)}`, {
      token: station.sessionToken,
    });
    station.caseNumbers.set(caseId, found.case_number);
  } catch (err) {
    console.info("[station] case not loaded", err.status);
    station.caseNumbers.delete(caseId);
  }
  renderCaseBadge();
  renderCallInfo();
}

// --- case, dispute type, expert -----------------------------------------------------------------

function startFlow() {
  station.choice = { case_id: null, case_number: null, dispute_type: null, expert_id: null };
  $("case-new").checked = true;
  $("case-number").value = "";
  $("case-error").hidden = true;
  renderCaseKind();
  show("case");
}

function renderCaseKind() {
  $("case-number-label").hidden = !$("case-existing").checked;
}

async function chooseCase(event) {
  event.preventDefault();
  $("case-error").hidden = true;
  if ($("case-existing").checked) {
    const number = $("case-number").value.trim();
    if (!number) return showError("case-error", "station.case.number_required");
    $("case-next").disabled = true;
    let found;
    try {
      found = await findCase(number);
    } catch (err) {
      return showError("case-error", err.key);
    } finally {
      $("case-next").disabled = false;
    }
    if (!found) return showError("case-error", "station.case.not_found");
    station.choice.case_id = found.id;
    station.choice.case_number = found.case_number;
    station.caseNumbers.set(found.id, found.case_number);
  } else {
    station.choice.case_id = null;
    station.choice.case_number = null;
  }
  await toDispute();
}

/**
 * An existing case by its number (`GET /api/cases?number=`). The server shows a case to whoever
 * may read one of its calls: asked with the officer's login (cases of their calls, from any
 * station), then with the station's token (cases of calls placed here, by any officer).
 * Resolves to the case or null; throws with the `key` of a message when it cannot tell.
 */
async function findCase(number) {
  const path = `/api/cases?number=${encodeURIComponent(number)}`;
  for (const token of [station.sessionToken, station.token]) {
    let cases;
    try {
      ({ cases } = await api("GET", path, { token }));
    } catch (err) {
      console.info("[station] case look-up refused", err.status, err.code);
      const key = err.code === "invalid_case_number" ? "station.case.number_malformed" : "station.case.lookup_failed";
      throw Object.assign(new Error("case look-up"), { key });
    }
    if (cases.length > 0) return cases[0];
  }
  return null;
}

async function toDispute() {
  if (!(await loadDisputeTypes())) {
    message("kiosk.error.call_failed");
    return;
  }
  renderDisputeTypes();
  show("dispute");
}

function disputeName(code) {
  return choices.disputeName(station.disputeTypes, code);
}

function renderDisputeTypes() {
  choices.renderDisputeTypes($("dispute-types"), station.disputeTypes, chooseDispute);
}

async function chooseDispute(code) {
  station.choice.dispute_type = code;
  station.choice.expert_id = null;
  await loadExperts();
  if (station.experts.every((e) => !e.specialties.includes(code))) {
    await toConsent();
    return;
  }
  renderExperts();
  show("expert");
}

async function loadExperts() {
  try {
    station.experts = (await api("GET", "/api/experts", { token: station.token })).experts;
    caller.rememberExperts(station.experts);
  } catch (err) {
    console.info("[station] experts not loaded", err.status);
  }
}

function renderExperts() {
  const code = station.choice.dispute_type;
  const experts = station.experts.filter((e) => e.specialties.includes(code));
  choices.renderExperts($("experts"), experts, station.disputeTypes, chooseExpert);
}

function chooseExpert(expertId) {
  station.choice.expert_id = expertId;
  toConsent();
}

// --- parties and consent ----------------------------------------------------------------------

async function toConsent() {
  station.parties = 2;
  $("evidence-consent").checked = false;
  $("training-consent").checked = false;
  renderConsent();
  show("consent");
  await loadNotice();
}

function setParties(n) {
  station.parties = Math.min(MAX_PARTIES, Math.max(MIN_PARTIES, n));
  // The consent given was for another number of people: ask again.
  $("evidence-consent").checked = false;
  $("training-consent").checked = false;
  renderConsent();
}

function renderConsent() {
  const n = station.parties;
  $("parties").textContent = String(n);
  $("parties").dataset.parties = String(n);
  $("parties-fewer").disabled = n <= MIN_PARTIES;
  $("parties-more").disabled = n >= MAX_PARTIES;
  $("evidence-consent-text").textContent = i18n.t("station.consent.evidence", { n });
  const evidence = $("evidence-consent").checked;
  // Training use needs recording consent first (docs/protocol.md, call.launch).
  $("training-consent").disabled = !evidence;
  if (!evidence) $("training-consent").checked = false;
  $("consent-call").disabled = !evidence;
}

async function loadNotice() {
  station.notice = await choices.loadNotice(station.token, $("notice-text"), null);
}

function launchPayload(consentEvidence) {
  const choice = station.choice;
  const payload = {
    dispute_type: choice.dispute_type,
    consent_evidence: consentEvidence,
    parties: station.parties,
    notice_language: station.notice ? station.notice.language : i18n.current(),
  };
  if (consentEvidence) payload.training_consent = $("training-consent").checked;
  if (station.notice && station.notice.version) payload.notice_version = station.notice.version;
  if (choice.case_id) payload.case_id = choice.case_id;
  if (choice.expert_id) payload.expert_id = choice.expert_id;
  return payload;
}

/**
 * The parties refuse: the server records the refusal (audit) and answers consent_required. No
 * camera for that (a server that took the call anyway would have it opened in the call).
 */
function consentRefused() {
  caller.launch(launchPayload(false), { camera: false });
}

// --- in call ----------------------------------------------------------------------------------

function renderCallInfo() {
  const call = caller.call;
  if (!call) return;
  const number = station.caseNumbers.get(call.case_id);
  const type = disputeName(call.dispute_type);
  $("call-info").textContent = number
    ? i18n.t("station.call.info", { number, type })
    : i18n.t("expert.call.info", { type });
}

// --- inviting another expert ------------------------------------------------------------------

async function loadDisputeTypes() {
  try {
    station.disputeTypes = (await api("GET", "/api/dispute-types", { token: station.token })).dispute_types;
    return true;
  } catch (err) {
    console.info("[station] dispute types not loaded", err.status);
    return false;
  }
}

async function openInvite() {
  // After a reload mid-call the page has not been through the dispute type screen.
  if (station.disputeTypes.length === 0) await loadDisputeTypes();
  invites.fillSpecialties(station.disputeTypes, caller.call);
  $("invite-status").textContent = "";
  delete $("invite-status").dataset.key;
  $("invite-panel").hidden = false;
  $("invite-title").focus();
  refreshInviteExperts();
}

async function refreshInviteExperts() {
  await loadExperts();
  invites.fillExperts(station.experts, caller.call);
}

// --- start ------------------------------------------------------------------------------------

function bind() {
  i18n.bindToggle($("lang-toggle"));
  i18n.onChange(() => {
    renderWho();
    renderCaseBadge();
    renderCallInfo();
    if (station.screen === "dispute") renderDisputeTypes();
    if (station.screen === "expert") renderExperts();
    if (station.screen === "consent") {
      renderConsent();
      loadNotice();
    }
    for (const id of ["message-text", "enrol-error", "login-error", "case-error", "invite-status"]) {
      const el = $(id);
      if (el.dataset.key) el.textContent = i18n.t(el.dataset.key);
    }
  });
  $("enrol-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const code = $("enrol-code").value.replace(/[\s-]/g, "");
    if (!/^[0-9]{8}$/.test(code)) return showError("enrol-error", "kiosk.enrol.failed");
    enrol(code);
  });
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("start").addEventListener("click", startFlow);
  for (const radio of document.querySelectorAll('input[name="case-kind"]')) {
    radio.addEventListener("change", () => {
      renderCaseKind();
      if ($("case-existing").checked) $("case-number").focus();
    });
  }
  $("case-form").addEventListener("submit", chooseCase);
  for (const back of document.querySelectorAll("button.back")) {
    back.addEventListener("click", () => {
      const from = station.screen;
      if (from === "consent" && station.experts.some((e) => e.specialties.includes(station.choice.dispute_type))) {
        renderExperts();
        show("expert");
      } else if (from === "expert" || from === "consent") show("dispute");
      else if (from === "dispute") show("case");
      else toWelcome();
    });
  }
  $("parties-fewer").addEventListener("click", () => setParties(station.parties - 1));
  $("parties-more").addEventListener("click", () => setParties(station.parties + 1));
  $("evidence-consent").addEventListener("change", renderConsent);
  $("consent-call").addEventListener("click", () => caller.launch(launchPayload(true)));
  $("consent-refused").addEventListener("click", consentRefused);
  $("invite").addEventListener("click", openInvite);
  $("invite-close").addEventListener("click", () => {
    $("invite-panel").hidden = true;
    $("invite").focus();
  });
  $("invite-specialty-send").addEventListener("click", () => invites.sendInvite(station.sig, caller.call, { specialty: $("invite-specialty").value }));
  $("invite-expert-send").addEventListener("click", () => invites.sendInvite(station.sig, caller.call, { expert_id: $("invite-expert").value }));
  $("message-ok").addEventListener("click", toWelcome);
}

async function boot() {
  await i18n.init();
  bind();
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has("token") || hash.has("enrol")) {
    history.replaceState(null, "", location.pathname + location.search);
  }
  station.sessionToken = sessionStorage.getItem(SESSION_KEY);
  if (hash.get("enrol")) {
    // The admin's enrolment link (QR code): the code comes in the fragment, never to a log.
    const code = hash.get("enrol").replace(/\D/g, "").slice(0, 8);
    $("enrol-code").value = code;
    show("enrol");
    if (code.length === 8) await enrol(code, localStorage.getItem(TOKEN_KEY));
    return;
  }
  if (hash.get("token")) storeToken(hash.get("token")); // set-up by hand or by a test
  else station.token = localStorage.getItem(TOKEN_KEY);
  toWelcome();
}

boot();
