// The kiosk: a touch screen in a police kiosk. Set-up with an enrolment code, then
// welcome → dispute type → (expert) → recording notice and consent → calling → in call →
// rating → welcome. Everything the kiosk shows follows the server's call view; after a network
// drop or a page reload the snapshot puts it back where the call is.
//
// URL options (for set-up and tests): #token=dev_… stores a device token (until enrolment
// codes are available everywhere); ?idle_s=N and ?message_s=N shorten the idle and message
// time-outs; ?lang=en starts in English.

import * as i18n from "./i18n.js";
import { api, CallMedia, CLIENT_BUILD, Signaling } from "./client.js";
import { CallView, MediaProblem, openCamera, stopStream } from "./callview.js";

const params = new URLSearchParams(location.search);
const IDLE_MS = Number(params.get("idle_s") || 60) * 1000;
const MESSAGE_MS = Number(params.get("message_s") || 10) * 1000;
const TOKEN_KEY = "kiosk.device_token";
const SELF_TEST_EVERY_MS = 3600 * 1000;
const APP_BUILD = `kiosk-${CLIENT_BUILD}`;
const IDLE_SCREENS = new Set(["dispute", "expert", "consent", "rating"]);
const WAITING = new Set(["launching", "ringing", "queued"]);
const ICONS = new Set(["neighbours", "family", "traffic", "labour", "consumer", "property", "other"]);

const $ = (id) => document.getElementById(id);

const kiosk = {
  token: null,
  sig: null,
  screen: null,
  disputeTypes: [],
  experts: [],
  choice: { dispute_type: null, expert_id: null },
  notice: null,
  call: null, // the live call view
  choiceOffered: null,
  media: null,
  localStream: null,
  ratingCallId: null,
  stars: 0,
  phrases: new Set(),
  idleTimer: null,
  messageTimer: null,
  selfTested: false,
  selfTestedAt: 0,
  finished: new Set(), // ids of calls whose end was handled
  health: null,
};

const view = new CallView(
  {
    tiles: $("tiles"),
    waiting: $("waiting-media"),
    selfVideo: $("self-video"),
    recording: $("recording"),
    notices: $("notices"),
    mute: $("mute"),
    camera: $("camera"),
  },
  { nameOf: participantName },
);

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
  if (kiosk.call && kiosk.call.state !== "ended") return; // the call decides
  kiosk.choice = { dispute_type: null, expert_id: null };
  show(kiosk.token ? "welcome" : "enrol");
  // A kiosk stays up for days: test the camera again now and then, between calls.
  if (kiosk.token && kiosk.sig && Date.now() - kiosk.selfTestedAt > SELF_TEST_EVERY_MS) selfTest();
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
  $("enrol-submit").addEventListener("click", enrol);
  renderCode();
}

async function enrol() {
  $("enrol-submit").disabled = true;
  try {
    const result = await api("POST", "/api/enrol", { body: { code } });
    storeToken(result.device_token);
    code = "";
    renderCode();
    connect();
  } catch (err) {
    console.info("[kiosk] enrolment refused", err.status, err.code);
    const key =
      err.code === "enrolment_failed"
        ? "failed"
        : err.code === "rate_limited"
          ? "throttled"
          : "unavailable";
    $("enrol-error").textContent = i18n.t(`kiosk.enrol.${key}`);
    $("enrol-error").dataset.key = `kiosk.enrol.${key}`;
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
  sig.on("snapshot", reconcile);
  sig.on("call.updated", ({ call }) => onCall(call));
  sig.on("call.queue_position", ({ call_id, position, estimated_wait_s }) => {
    if (kiosk.call && kiosk.call.id === call_id) {
      kiosk.call = { ...kiosk.call, queue_position: position, estimated_wait_s };
      renderCalling();
    }
  });
  sig.on("call.choice_offered", (payload) => {
    if (kiosk.call && kiosk.call.id === payload.call_id) {
      kiosk.choiceOffered = payload;
      renderCalling();
    }
  });
  sig.start().then(
    () => {
      if (!kiosk.selfTested) selfTest();
    },
    () => {}, // closedForGood handles terminal refusals
  );
}

function closedForGood(reason) {
  console.info("[kiosk] signaling closed:", reason);
  leaveCall();
  kiosk.call = null;
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

/** After every (re)authentication: the snapshot holds our live call, if any. */
function reconcile(snapshot) {
  const live = (snapshot.calls || []).find((c) => c.state !== "ended");
  if (live) {
    onCall(live);
    return;
  }
  if (kiosk.call && kiosk.call.state !== "ended") {
    // Our call ended while we were away.
    const ended = kiosk.call;
    kiosk.call = null;
    leaveCall();
    if (ended.answered_at) toRating(ended.id);
    else toWelcome();
    return;
  }
  if (kiosk.screen === "starting") show("welcome");
}

/** A call view from a request's result: its events came first and are at least as new. */
function onResult(call) {
  if (kiosk.call && kiosk.call.id === call.id) return;
  onCall(call);
}

function onCall(call) {
  if (kiosk.finished.has(call.id)) return; // an end already shown
  if (kiosk.call && kiosk.call.id !== call.id && call.state === "ended") return; // an old call
  const before = kiosk.call;
  kiosk.call = call;
  if (call.state !== "queued") kiosk.choiceOffered = null;
  if (WAITING.has(call.state)) {
    if (kiosk.media) {
      view.update(call, kiosk.sig.principal.id); // the expert dropped: wait in the call screen
    } else {
      show("calling");
      renderCalling();
    }
  } else if (call.state === "active") {
    enterCall(call);
  } else if (call.state === "ended") {
    kiosk.finished.add(call.id);
    kiosk.call = null;
    const wasInCall = !!kiosk.media || (before && before.state === "active");
    leaveCall();
    if (call.answered_at || wasInCall) toRating(call.id);
    else if (call.end_reason === "cancelled") toWelcome();
    else if (call.end_reason === "no_answer") message("kiosk.error.no_answer");
    else message("kiosk.error.call_failed");
  }
}

// --- self-test (kiosk health) -------------------------------------------------------------------

async function selfTest() {
  kiosk.selfTested = true;
  kiosk.selfTestedAt = Date.now();
  if (kiosk.call) return; // the call uses the camera; the next start tests again
  // Results as the server takes them: "ok" | "denied" | "missing" | "error".
  const health = { camera: "ok", microphone: "ok", app_build: APP_BUILD };
  let stream = null;
  try {
    stream = await openCamera();
    health.camera = (await firstFrame(stream, 4000)) ? "ok" : "error";
    const audio = stream.getAudioTracks()[0];
    health.microphone = audio && audio.readyState === "live" ? "ok" : "missing";
  } catch (err) {
    const reason = err instanceof MediaProblem ? err.reason : "failed";
    health.camera = health.microphone = reason === "failed" ? "error" : reason;
  } finally {
    stopStream(stream);
  }
  kiosk.health = health;
  renderSelfTest();
  console.info("[kiosk] self-test", JSON.stringify(health));
  try {
    await kiosk.sig.request("device.health", health);
    $("selftest").dataset.reported = "yes";
  } catch (err) {
    console.info("[kiosk] device.health not taken:", err.code);
    $("selftest").dataset.reported = "no";
  }
}

function firstFrame(stream, timeoutMs) {
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(false), timeoutMs);
    function done(ok) {
      clearTimeout(timer);
      video.srcObject = null;
      resolve(ok);
    }
    video.addEventListener("loadeddata", () => done(video.videoWidth > 0), { once: true });
    video.play().catch(() => {});
  });
}

function renderSelfTest() {
  const health = kiosk.health;
  const el = $("selftest");
  if (!health) {
    el.textContent = "";
    return;
  }
  const ok = health.camera === "ok" && health.microphone === "ok";
  el.dataset.camera = health.camera;
  el.dataset.microphone = health.microphone;
  el.textContent = i18n.t(ok ? "kiosk.selftest.ok" : "kiosk.selftest.problem");
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
  renderDisputeTypes();
  show("dispute");
}

function disputeName(code) {
  const type = kiosk.disputeTypes.find((d) => d.code === code);
  return type ? i18n.pick(type.name_zh, type.name_en) : code;
}

function icon(code) {
  const img = document.createElement("img");
  img.src = `/web/icons/${ICONS.has(code) ? code : "other"}.svg`;
  img.alt = "";
  return img;
}

function renderDisputeTypes() {
  const box = $("dispute-types");
  box.replaceChildren();
  for (const type of kiosk.disputeTypes) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice";
    button.dataset.code = type.code;
    const name = document.createElement("span");
    name.textContent = i18n.pick(type.name_zh, type.name_en);
    button.append(icon(type.code), name);
    button.addEventListener("click", () => chooseDispute(type.code));
    box.append(button);
  }
}

async function chooseDispute(code) {
  kiosk.choice = { dispute_type: code, expert_id: null };
  try {
    const { experts } = await api("GET", "/api/experts", { token: kiosk.token });
    kiosk.experts = experts.filter((e) => e.specialties.includes(code));
  } catch (err) {
    console.info("[kiosk] experts not loaded", err.status);
    kiosk.experts = [];
  }
  if (kiosk.experts.length === 0) {
    await toConsent();
    return;
  }
  renderExperts();
  show("expert");
}

const AVAILABILITY_ORDER = { available: 0, busy: 1, away: 2, offline: 3 };

function renderExperts() {
  const box = $("experts");
  box.replaceChildren();
  const anyone = document.createElement("button");
  anyone.type = "button";
  anyone.className = "choice primary";
  anyone.dataset.expert = "";
  const anyoneText = document.createElement("span");
  anyoneText.textContent = i18n.t("kiosk.expert.anyone");
  const anyoneSub = document.createElement("span");
  anyoneSub.className = "sub";
  anyoneSub.textContent = i18n.t("kiosk.expert.anyone_hint");
  anyone.append(anyoneText, anyoneSub);
  anyone.addEventListener("click", () => chooseExpert(null));
  box.append(anyone);
  const sorted = [...kiosk.experts].sort(
    (a, b) => AVAILABILITY_ORDER[a.availability] - AVAILABILITY_ORDER[b.availability],
  );
  for (const expert of sorted) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice";
    button.dataset.expert = expert.id;
    const name = document.createElement("span");
    name.textContent = expert.display_name;
    const specialties = document.createElement("span");
    specialties.className = "sub";
    specialties.textContent = expert.specialties.map(disputeName).join(" · ");
    const availability = document.createElement("span");
    availability.className = `availability ${expert.availability}`;
    availability.textContent = i18n.t(`kiosk.expert.${expert.availability}`);
    button.append(icon("expert"), name, specialties, availability);
    button.addEventListener("click", () => chooseExpert(expert.id));
    box.append(button);
  }
}

function chooseExpert(expertId) {
  kiosk.choice.expert_id = expertId;
  toConsent();
}

async function toConsent() {
  $("training-consent").checked = false;
  show("consent");
  await loadNotice();
}

async function loadNotice() {
  const language = i18n.current();
  try {
    const notice = await api("GET", `/api/notice?language=${encodeURIComponent(language)}`, {
      token: kiosk.token,
    });
    kiosk.notice = { version: notice.version, language: notice.language, body: notice.body };
  } catch (err) {
    // Until the server serves notices: version 1 of the notice, as the catalogue holds it.
    kiosk.notice = { version: "1", language, body: null };
  }
  renderNotice();
}

function renderNotice() {
  const el = $("notice-text");
  if (!kiosk.notice) return;
  el.textContent = kiosk.notice.body ?? i18n.t("kiosk.consent.notice_fallback");
  el.dataset.version = kiosk.notice.version;
}

// --- calling ----------------------------------------------------------------------------------

async function launch(consentEvidence) {
  const choice = kiosk.choice;
  show("starting");
  let stream;
  try {
    stream = await openCamera();
  } catch (err) {
    const reason = err instanceof MediaProblem ? err.reason : "failed";
    console.info("[kiosk] camera:", reason, err.cause ? err.cause.name : "");
    message(`kiosk.error.camera_${reason}`);
    return;
  }
  kiosk.localStream = stream;
  const payload = {
    dispute_type: choice.dispute_type,
    consent_evidence: consentEvidence,
    notice_language: kiosk.notice ? kiosk.notice.language : i18n.current(),
  };
  if (consentEvidence) payload.training_consent = $("training-consent").checked;
  if (kiosk.notice && kiosk.notice.version) payload.notice_version = kiosk.notice.version;
  if (choice.expert_id) payload.expert_id = choice.expert_id;
  try {
    const { call } = await kiosk.sig.request("call.launch", payload);
    onResult(call);
  } catch (err) {
    console.info("[kiosk] launch refused:", err.code);
    stopStream(kiosk.localStream);
    kiosk.localStream = null;
    if (err.code === "consent_required") message("kiosk.consent.required");
    else message("kiosk.error.call_failed");
  }
}

function renderCalling() {
  const call = kiosk.call;
  if (!call) return;
  const position = call.queue_position;
  $("queue-position").textContent =
    call.state === "queued" && position
      ? i18n.t("kiosk.calling.queue_position", { position })
      : i18n.t("kiosk.calling.ringing");
  $("queue-position").dataset.position = position ?? "";
  const wait = call.estimated_wait_s;
  const waitEl = $("estimated-wait");
  if (call.state === "queued" && typeof wait === "number") {
    waitEl.textContent =
      wait < 60
        ? i18n.t("kiosk.calling.estimated_wait_short")
        : i18n.t("kiosk.calling.estimated_wait", { minutes: Math.round(wait / 60) });
  } else {
    waitEl.textContent = "";
  }
  const offered = kiosk.choiceOffered;
  $("choice-panel").hidden = !offered;
  if (offered) {
    const seconds = Math.max(0, Math.round((offered.deadline - kiosk.sig.serverNow()) / 1000));
    $("choice-deadline").textContent = i18n.t("kiosk.choice.deadline", { seconds });
  }
}

async function choose(choice) {
  const offered = kiosk.choiceOffered;
  if (!offered) return;
  kiosk.choiceOffered = null;
  renderCalling();
  try {
    const { call } = await kiosk.sig.request("call.choose", { call_id: offered.call_id, choice });
    onResult(call);
  } catch (err) {
    console.info("[kiosk] choice not taken:", err.code);
  }
}

async function cancelCall() {
  const call = kiosk.call;
  if (!call) return toWelcome();
  try {
    const result = await kiosk.sig.request("call.cancel", { call_id: call.id });
    onResult(result.call);
  } catch (err) {
    console.info("[kiosk] cancel:", err.code);
  }
}

// --- in call ----------------------------------------------------------------------------------

async function enterCall(call) {
  if (kiosk.screen !== "call") {
    show("call");
    view.reset();
  }
  view.update(call, kiosk.sig.principal.id);
  const mine = call.participants.find((p) => p.principal_id === kiosk.sig.principal.id);
  const ownState = mine ? mine.state : null;
  const droppedNow = ownState === "dropped" && kiosk.ownState !== "dropped";
  kiosk.ownState = ownState;
  if (kiosk.media && kiosk.media.callId === call.id) {
    // The server dropped our media (no packets for a while): a new peer connection, same
    // participant. Only once per drop: the state stays "dropped" until media flows again.
    if (droppedNow || kiosk.media.connectionState === "failed") {
      console.info("[kiosk] media dropped by the server: rejoining with a new connection");
      kiosk.media.restart();
    }
    return;
  }
  if (kiosk.starting) return;
  kiosk.starting = true;
  try {
    if (!kiosk.localStream) {
      try {
        kiosk.localStream = await openCamera(); // a reload in the middle of a call
      } catch (err) {
        const reason = err instanceof MediaProblem ? err.reason : "failed";
        await kiosk.sig.request("call.leave", { call_id: call.id }).catch(() => {});
        kiosk.call = null;
        message(`kiosk.error.camera_${reason}`);
        return;
      }
    }
    view.setLocal(kiosk.localStream);
    const media = new CallMedia(kiosk.sig, call.id, { localStream: kiosk.localStream });
    kiosk.media = media;
    window.kioskMedia = media;
    view.attach(media);
    media.addEventListener("state", ({ detail }) => {
      if (detail === "failed" && kiosk.media === media && kiosk.sig.state === "open") {
        console.info("[kiosk] media failed: rejoining");
        media.restart();
      }
    });
    await media.start().catch((err) => console.info("[kiosk] media.join:", err.code || err));
  } finally {
    kiosk.starting = false;
  }
}

function leaveCall() {
  if (kiosk.media) kiosk.media.close();
  kiosk.media = null;
  window.kioskMedia = null;
  stopStream(kiosk.localStream);
  kiosk.localStream = null;
  view.reset();
}

async function hangUp() {
  const call = kiosk.call;
  if (!call) return;
  try {
    const result = await kiosk.sig.request("call.leave", { call_id: call.id });
    onResult(result.call);
  } catch (err) {
    console.info("[kiosk] leave:", err.code);
  }
}

function participantName(p) {
  if (p.role === "caller") return i18n.t("call.role.caller");
  const expert = kiosk.experts.find((e) => e.id === p.principal_id);
  return expert ? i18n.t("call.role.expert_named", { name: expert.display_name }) : i18n.t("call.role.expert");
}

// --- rating -----------------------------------------------------------------------------------

const PHRASES = ["patient", "fair", "helpful", "hard_to_hear"];

function toRating(callId) {
  kiosk.ratingCallId = callId;
  kiosk.stars = 0;
  kiosk.phrases.clear();
  $("comment").value = "";
  $("rating-error").hidden = true;
  renderRating();
  show("rating");
  // Names for the expert's tiles next time, and the history of the call, stay on the server.
}

function renderRating() {
  const stars = $("stars");
  stars.replaceChildren();
  for (let n = 1; n <= 5; n++) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "★";
    button.dataset.stars = String(n);
    button.setAttribute("aria-label", i18n.t("kiosk.rating.star", { n }));
    button.setAttribute("aria-pressed", String(n <= kiosk.stars));
    button.addEventListener("click", () => {
      kiosk.stars = n;
      renderRating();
    });
    stars.append(button);
  }
  const phrases = $("phrases");
  phrases.replaceChildren();
  for (const phrase of PHRASES) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.phrase = phrase;
    button.textContent = i18n.t(`kiosk.rating.phrase.${phrase}`);
    button.setAttribute("aria-pressed", String(kiosk.phrases.has(phrase)));
    button.addEventListener("click", () => {
      if (kiosk.phrases.has(phrase)) kiosk.phrases.delete(phrase);
      else kiosk.phrases.add(phrase);
      renderRating();
    });
    phrases.append(button);
  }
  $("rating-submit").disabled = kiosk.stars === 0;
}

async function submitRating() {
  const parts = [...kiosk.phrases].map((p) => i18n.t(`kiosk.rating.phrase.${p}`));
  const typed = $("comment").value.trim();
  if (typed) parts.push(typed);
  const payload = { call_id: kiosk.ratingCallId, stars: kiosk.stars };
  if (parts.length) payload.comment = parts.join("; ").slice(0, 500);
  $("rating-submit").disabled = true;
  try {
    await kiosk.sig.request("call.rate", payload);
    message("kiosk.rating.thanks");
  } catch (err) {
    console.info("[kiosk] rating not taken:", err.code);
    $("rating-error").textContent = i18n.t("kiosk.rating.failed");
    $("rating-error").hidden = false;
    $("rating-submit").disabled = false;
  }
}

// --- start ------------------------------------------------------------------------------------

function bind() {
  i18n.bindToggle($("lang-toggle"));
  i18n.onChange(() => {
    renderCode();
    renderSelfTest();
    if (kiosk.screen === "dispute") renderDisputeTypes();
    if (kiosk.screen === "expert") renderExperts();
    if (kiosk.screen === "consent") loadNotice();
    if (kiosk.screen === "calling") renderCalling();
    if (kiosk.screen === "rating") renderRating();
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
  $("choose-wait").addEventListener("click", () => choose("wait"));
  $("choose-anyone").addEventListener("click", () => choose("anyone"));
  $("calling-cancel").addEventListener("click", cancelCall);
  $("hangup").addEventListener("click", hangUp);
  $("rating-submit").addEventListener("click", submitRating);
  $("rating-skip").addEventListener("click", () => {
    kiosk.ratingCallId = null;
    toWelcome();
  });
  $("message-ok").addEventListener("click", toWelcome);
  for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, armIdle, true);
  setInterval(() => {
    if (kiosk.screen === "calling" && kiosk.choiceOffered) renderCalling();
  }, 1000);
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
    if (code.length === 8) await enrol();
    return;
  }
  if (hash.get("token")) storeToken(hash.get("token")); // set-up by hand or by a test
  else kiosk.token = localStorage.getItem(TOKEN_KEY);
  if (kiosk.token) connect();
  else show("enrol");
}

boot();
