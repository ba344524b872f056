// The expert console: sign in, "start duty" (the click also unlocks sound), availability,
// incoming rings (sound and picture, and who invited) with accept/decline, the call with
// tiles for everyone, inviting another expert, bookmarks, hanging up with the outcome form,
// and the history of the expert's calls. Duty is kept for the tab (sessionStorage): after a
// reload the console reconnects and sets the availability by itself, and a banner asks for
// the one tap browsers need before the ring may sound again.

import * as i18n from "./i18n.js";
import { api, CallMedia, CLIENT_BUILD, loginRefusalKey, Signaling } from "./client.js";
import { MediaProblem, openCamera, pageCallView, stopStream } from "./callview.js";
import * as invites from "./invite.js";

const $ = (id) => document.getElementById(id);
const PRESENT = new Set(["joining", "connected", "reconnecting"]);
const DUTY_KEY = "expert.duty"; // sessionStorage: {account, availability} while on duty

const expert = {
  account: null,
  sig: null,
  onDuty: false,
  presence: null,
  rings: new Map(), // invitation id -> ring payload (+ received_at)
  call: null, // the call we are in
  media: null,
  localStream: null,
  disputeTypes: [],
  experts: [],
  outcomeCallId: null,
  starting: false,
  ownState: null,
};

const view = pageCallView({ nameOf: participantName });

// --- the ring: WebAudio, unlocked by the "start duty" click ------------------------------------

class Ringer {
  constructor() {
    this.context = null;
    this.timer = null;
    this.oscillatorsStarted = 0;
  }

  /** Must run inside a click: browsers start audio only after a user gesture. */
  unlock() {
    if (!this.context) {
      this.context = new AudioContext();
      this.context.addEventListener("statechange", () => {
        if (this.running && this.timer) this.burst(); // sound allowed mid-ring: ring now
        if (this.onstatechange) this.onstatechange();
      });
      this.gain = this.context.createGain();
      this.gain.gain.value = 0;
      this.analyser = this.context.createAnalyser();
      this.gain.connect(this.analyser);
      this.analyser.connect(this.context.destination);
    }
    return this.context.resume();
  }

  get running() {
    return !!this.context && this.context.state === "running";
  }

  start() {
    if (this.timer) return;
    this.burst();
    this.timer = setInterval(() => this.burst(), 3000);
  }

  /** One "ring": 440 + 480 Hz (the North American ring-back pair) for 1.2 s. Nothing while
   * the browser keeps the sound suspended (the card still flashes). */
  burst() {
    if (!this.running) return;
    const ctx = this.context;
    const t = ctx.currentTime + 0.02;
    const level = this.gain.gain;
    level.cancelScheduledValues(t);
    level.setValueAtTime(0, t);
    level.linearRampToValueAtTime(0.25, t + 0.05);
    level.setValueAtTime(0.25, t + 1.15);
    level.linearRampToValueAtTime(0, t + 1.2);
    for (const frequency of [440, 480]) {
      const osc = ctx.createOscillator();
      osc.frequency.value = frequency;
      osc.connect(this.gain);
      osc.start(t);
      osc.stop(t + 1.2);
      this.oscillatorsStarted += 1;
    }
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.context) this.gain.gain.cancelScheduledValues(this.context.currentTime);
    if (this.context) this.gain.gain.setValueAtTime(0, this.context.currentTime);
  }
}

const ringer = new Ringer();
window.expertRinger = ringer; // tests check that the ring is audible
ringer.onstatechange = () => renderSound();

// --- screens ---------------------------------------------------------------------------------

function show(screen) {
  for (const section of document.querySelectorAll("[data-screen]:not(body)")) {
    section.hidden = section.dataset.screen !== screen;
  }
  document.body.dataset.screen = screen;
}

function showCall(inCall) {
  $("call").hidden = !inCall;
  $("idle-main").hidden = inCall;
  document.body.dataset.inCall = inCall ? "1" : "";
}

// --- login -------------------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  $("login-error").hidden = true;
  let account;
  try {
    ({ account } = await api("POST", "/api/login", {
      body: { username: $("username").value, password: $("password").value },
    }));
    if (account.role !== "expert") {
      await api("POST", "/api/logout").catch(() => {});
      throw Object.assign(new Error("not an expert"), { key: "expert.login.not_expert" });
    }
  } catch (err) {
    $("login-error").dataset.key = loginRefusalKey(err, "expert");
    $("login-error").textContent = i18n.t($("login-error").dataset.key);
    $("login-error").hidden = false;
    return;
  }
  $("password").value = "";
  signedIn(account); // its own failures are not a refused login
}

function signedIn(account) {
  expert.account = account;
  $("me-name").textContent = account.display_name;
  show("console");
  showCall(false);
  loadDirectory();
  loadHistory();
  renderDuty();
  const duty = rememberedDuty();
  if (duty) resumeDuty(duty.availability);
}

async function logout() {
  await goOffDuty();
  await api("POST", "/api/logout").catch(() => {});
  expert.account = null;
  show("login");
}

async function loadDirectory() {
  try {
    expert.disputeTypes = (await api("GET", "/api/dispute-types")).dispute_types;
    expert.experts = (await api("GET", "/api/experts")).experts;
  } catch (err) {
    console.info("[expert] directory not loaded", err.status);
  }
  renderRings();
  renderHistoryRows();
}

function disputeName(code) {
  const type = expert.disputeTypes.find((d) => d.code === code);
  return type ? i18n.pick(type.name_zh, type.name_en) : code;
}

function expertName(id) {
  const e = expert.experts.find((x) => x.id === id);
  return e ? e.display_name : null;
}

function participantName(p) {
  if (p.role === "caller") {
    const kind = expert.call && expert.call.caller ? expert.call.caller.kind : "kiosk";
    return i18n.t(kind === "station" ? "call.role.station" : "call.role.caller");
  }
  const name = expertName(p.principal_id);
  return name ? i18n.t("call.role.expert_named", { name }) : i18n.t("call.role.expert");
}

// --- duty and presence --------------------------------------------------------------------------

async function startDuty() {
  // In the click: unlock the sound before anything is awaited.
  const unlocked = ringer.unlock();
  $("start-duty").disabled = true;
  await unlocked.catch(() => {});
  await goOnDuty("available");
}

/** Connected, with the availability set; `startDuty` after its click, or by itself after a
 * reload of a tab that was on duty (then the ring is silent until a tap, see renderSound). */
async function goOnDuty(availability) {
  expert.onDuty = true;
  renderSound();
  if (!expert.sig) connect();
  try {
    await expert.sig.start();
    await setAvailability(availability);
  } catch (err) {
    console.info("[expert] duty start failed", err.code || err);
  }
  renderDuty();
}

async function goOffDuty() {
  expert.onDuty = false;
  forgetDuty();
  if (expert.sig) {
    await setAvailability("away").catch(() => {});
    expert.sig.close();
  }
  expert.sig = null;
  ringer.stop();
  renderSound();
}

async function setAvailability(availability) {
  const { presence } = await expert.sig.request("presence.set", { availability });
  expert.presence = presence;
  if (expert.onDuty) rememberDuty(availability);
  renderDuty();
}

// Duty outlives a reload of the tab, not the tab: sessionStorage, for this account only.
function rememberDuty(availability) {
  sessionStorage.setItem(DUTY_KEY, JSON.stringify({ account: expert.account.id, availability }));
}

function forgetDuty() {
  sessionStorage.removeItem(DUTY_KEY);
}

function rememberedDuty() {
  try {
    const duty = JSON.parse(sessionStorage.getItem(DUTY_KEY) || "null");
    return duty && expert.account && duty.account === expert.account.id ? duty : null;
  } catch {
    return null;
  }
}

/** Back on duty after a reload, without the "start duty" click. There was no user gesture:
 * the ring stays silent until a tap (the banner), unless the browser says sound is allowed
 * anyway (navigator.getAutoplayPolicy, where there is one). */
function resumeDuty(availability) {
  if (navigator.getAutoplayPolicy && navigator.getAutoplayPolicy("audiocontext") === "allowed") {
    ringer.unlock().catch(() => {});
  }
  goOnDuty(availability === "away" ? "away" : "available");
}

/** The sound banner: on duty but the ring cannot sound until the expert taps once. */
function renderSound() {
  const silent = expert.onDuty && !ringer.running;
  $("sound-banner").hidden = !silent;
  document.body.dataset.sound = expert.onDuty ? (silent ? "off" : "on") : "";
}

async function enableSound() {
  const unlocked = ringer.unlock(); // in the tap
  await unlocked.catch(() => {});
  renderSound();
  $("set-available").focus();
}

/** Any tap or key on the page is the gesture the ring needs, not only the banner's button. */
function unlockOnGesture() {
  if (expert.onDuty && !ringer.running) ringer.unlock().catch(() => {});
}

function renderDuty() {
  $("duty-panel").hidden = expert.onDuty;
  $("start-duty").disabled = false;
  $("availability-box").hidden = !expert.onDuty;
  const presence = expert.presence;
  const available = presence && presence.availability === "available";
  $("set-available").setAttribute("aria-pressed", String(!!available));
  $("set-away").setAttribute("aria-pressed", String(!!presence && !available));
  document.body.dataset.availability = presence ? presence.availability : "";
  let status = "";
  if (expert.onDuty && presence) {
    status = i18n.t(available ? "expert.status.available" : "expert.status.away");
  }
  $("duty-status").textContent = status;
}

// --- signaling -----------------------------------------------------------------------------------

function connect() {
  const sig = new Signaling({ credentials: () => ({}), clientBuild: `expert-${CLIENT_BUILD}` });
  expert.sig = sig;
  window.expertSignaling = sig;
  sig.on("status", ({ state, reason }) => {
    $("reconnecting").hidden = state !== "reconnecting";
    document.body.dataset.signaling = state;
    if (state === "closed" && reason && reason !== "client") {
      console.info("[expert] signaling closed:", reason);
      leaveCall();
      if (reason === "auth_failed" || reason === "revoked") {
        forgetDuty();
        expert.sig = null;
        expert.onDuty = false;
        renderSound();
        show("login");
      }
    }
  });
  sig.on("snapshot", (snapshot) => {
    expert.presence = snapshot.presence;
    expert.rings = new Map((snapshot.rings || []).map((r) => [r.invitation_id, withArrival(r)]));
    renderRings();
    renderDuty();
    const mine = (snapshot.calls || []).find((c) => c.state === "active" && present(c));
    if (mine) onCall(mine);
    else if (expert.call) callGone(expert.call);
  });
  sig.on("presence.changed", ({ presence }) => {
    expert.presence = presence;
    renderDuty();
  });
  sig.on("call.ring", (ring) => {
    expert.rings.set(ring.invitation_id, withArrival(ring));
    renderRings();
  });
  sig.on("call.ring_ended", ({ invitation_id }) => {
    expert.rings.delete(invitation_id);
    renderRings();
  });
  sig.on("call.updated", ({ call }) => onCall(call));
  sig.start().catch(() => {});
}

function withArrival(ring) {
  return { ...ring, received_at: Date.now() };
}

function present(call) {
  const me = expert.account && expert.account.id;
  return call.participants.some((p) => p.principal_id === me && PRESENT.has(p.state));
}

// --- rings ------------------------------------------------------------------------------------

function renderRings() {
  const box = $("rings");
  box.replaceChildren();
  for (const ring of expert.rings.values()) {
    const card = document.createElement("div");
    card.className = "ring";
    card.dataset.invitation = ring.invitation_id;
    card.dataset.call = ring.call_id;
    const title = document.createElement("h2");
    title.textContent = i18n.t(ring.invited_by ? "expert.ring.title_invited" : "expert.ring.title");
    const dispute = document.createElement("p");
    dispute.className = "ring-dispute";
    dispute.textContent = i18n.t("expert.ring.dispute", { type: disputeName(ring.dispute_type) });
    const caller = document.createElement("p");
    caller.textContent = i18n.t("expert.ring.caller", {
      caller: i18n.t(ring.caller.kind === "station" ? "call.role.station" : "expert.ring.caller_kiosk"),
    });
    const waited = document.createElement("p");
    waited.className = "ring-waited";
    const by = document.createElement("p");
    by.className = "ring-invited-by";
    by.textContent = invitedBy(ring);
    if (ring.inviter) card.dataset.invitedBy = ring.inviter.role;
    const buttons = document.createElement("div");
    buttons.className = "row";
    buttons.style.justifyContent = "flex-start";
    const accept = document.createElement("button");
    accept.type = "button";
    accept.className = "ok big";
    accept.dataset.action = "accept";
    accept.textContent = i18n.t("expert.ring.accept");
    accept.addEventListener("click", () => answer(ring, "call.accept"));
    const decline = document.createElement("button");
    decline.type = "button";
    decline.className = "danger";
    decline.dataset.action = "decline";
    decline.textContent = i18n.t("expert.ring.decline");
    decline.addEventListener("click", () => answer(ring, "call.decline"));
    buttons.append(accept, decline);
    card.append(title, dispute, caller, waited, by, buttons);
    box.append(card);
  }
  tickRings();
  const ringing = expert.rings.size > 0 && !expert.call;
  document.body.dataset.ringing = ringing ? "1" : "";
  if (ringing) ringer.start();
  else ringer.stop();
}

/** "Invited by …": the station's officer and the station, or the inviting expert. */
function invitedBy(ring) {
  const inviter = ring.inviter;
  if (inviter && inviter.role === "station") {
    return i18n.t("expert.ring.invited_by_station", {
      name: inviter.display_name,
      station: inviter.station_name || i18n.t("call.role.station"),
    });
  }
  if (!ring.invited_by) return "";
  const name = (inviter && inviter.display_name) || expertName(ring.invited_by) || "";
  return i18n.t("expert.ring.invited_by_expert", { name });
}

function tickRings() {
  for (const card of document.querySelectorAll("#rings .ring")) {
    const ring = expert.rings.get(card.dataset.invitation);
    if (!ring) continue;
    const seconds = Math.round((ring.waited_ms + Date.now() - ring.received_at) / 1000);
    const time = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    card.querySelector(".ring-waited").textContent = i18n.t("expert.ring.waited", { time });
  }
}

async function answer(ring, request) {
  expert.rings.delete(ring.invitation_id);
  renderRings();
  try {
    const { call } = await expert.sig.request(request, { invitation_id: ring.invitation_id });
    // The call.updated events of a request come before its result and are at least as new
    // (the result's view can predate the recording start): the result only fills a gap.
    if (request === "call.accept" && !expert.call) onCall(call);
  } catch (err) {
    console.info(`[expert] ${request}:`, err.code);
  }
}

// --- the call -----------------------------------------------------------------------------------

function onCall(call) {
  if (expert.call && expert.call.id !== call.id) return; // one call at a time
  if (call.state === "ended" || !present(call)) {
    if (expert.call && expert.call.id === call.id) callGone(call);
    return;
  }
  if (call.state !== "active") return;
  expert.call = call;
  enterCall(call);
}

async function enterCall(call) {
  if ($("call").hidden) {
    view.reset();
    showCall(true);
    renderRings();
  }
  if (call.participants.some((p) => p.role === "expert" && !expertName(p.principal_id))) {
    // A new colleague: their name for the tile (the view is relabelled when it comes).
    loadDirectory().then(() => expert.call && view.update(expert.call, expert.account.id));
  }
  $("call-info").textContent = i18n.t("expert.call.info", { type: disputeName(call.dispute_type) });
  view.update(call, expert.account.id);
  const mine = call.participants.find((p) => p.principal_id === expert.account.id);
  const droppedNow = mine && mine.state === "dropped" && expert.ownState !== "dropped";
  expert.ownState = mine ? mine.state : null;
  if (expert.media && expert.media.callId === call.id) {
    if (droppedNow || expert.media.connectionState === "failed") expert.media.restart();
    return;
  }
  if (expert.starting) return;
  expert.starting = true;
  try {
    if (!expert.localStream) {
      try {
        expert.localStream = await openCamera();
      } catch (err) {
        // An expert without a camera still takes part with the microphone alone.
        try {
          expert.localStream = await openCamera({ video: false });
        } catch (err2) {
          console.info("[expert] no camera or microphone:", err2.reason || err2);
          expert.localStream = null;
        }
      }
    }
    view.setLocal(expert.localStream);
    const media = new CallMedia(expert.sig, call.id, { localStream: expert.localStream });
    expert.media = media;
    window.expertMedia = media;
    view.attach(media);
    media.addEventListener("state", ({ detail }) => {
      if (detail === "failed" && expert.media === media && expert.sig.state === "open") media.restart();
    });
    await media.start().catch((err) => console.info("[expert] media.join:", err.code || err));
  } finally {
    expert.starting = false;
  }
}

function leaveCall() {
  if (expert.media) expert.media.close();
  expert.media = null;
  window.expertMedia = null;
  stopStream(expert.localStream);
  expert.localStream = null;
  view.reset();
  $("invite-panel").hidden = true;
  $("bookmark-panel").hidden = true;
}

function callGone(call) {
  if (!expert.call) return;
  const id = expert.call.id;
  expert.call = null;
  expert.ownState = null;
  leaveCall();
  showCall(false);
  openOutcome(id);
  renderRings();
  loadHistory();
}

async function hangUp() {
  const call = expert.call;
  if (!call) return;
  try {
    await expert.sig.request("call.leave", { call_id: call.id });
  } catch (err) {
    console.info("[expert] leave:", err.code);
  }
  callGone(call);
}

// --- invite and bookmark ----------------------------------------------------------------------

function openInvite() {
  invites.fillSpecialties(expert.disputeTypes, expert.call);
  refreshInviteExperts();
  $("invite-status").textContent = "";
  $("bookmark-panel").hidden = true;
  $("invite-panel").hidden = false;
}

async function refreshInviteExperts() {
  try {
    expert.experts = (await api("GET", "/api/experts")).experts;
  } catch (err) {
    console.info("[expert] experts not loaded", err.status);
  }
  invites.fillExperts(expert.experts, expert.call, expert.account.id);
}

async function saveBookmark() {
  if (!expert.call) return;
  const status = $("bookmark-status");
  const payload = { call_id: expert.call.id };
  const note = $("bookmark-note").value.trim();
  if (note) payload.note = note;
  try {
    await expert.sig.request("call.bookmark", payload);
    status.dataset.key = "expert.bookmark.saved";
    $("bookmark-note").value = "";
  } catch (err) {
    console.info("[expert] bookmark:", err.code);
    status.dataset.key = "expert.bookmark.failed";
  }
  status.textContent = i18n.t(status.dataset.key);
}

// --- outcome ------------------------------------------------------------------------------------

function openOutcome(callId) {
  expert.outcomeCallId = callId;
  $("outcome-form").reset();
  $("outcome-error").hidden = true;
  $("outcome-form").hidden = false;
  $("outcome-form").dataset.call = callId;
}

async function submitOutcome(event) {
  event.preventDefault();
  const chosen = $("outcome-form").querySelector('input[name="outcome"]:checked');
  if (!chosen || !expert.sig) return;
  const payload = {
    call_id: expert.outcomeCallId,
    outcome: chosen.value,
    summary: $("outcome-summary").value.trim(), // required, may be ""
  };
  try {
    await expert.sig.request("call.outcome", payload);
    $("outcome-form").hidden = true;
    loadHistory();
  } catch (err) {
    console.info("[expert] outcome:", err.code);
    $("outcome-error").textContent = i18n.t("expert.outcome.failed");
    $("outcome-error").hidden = false;
  }
}

// --- history ------------------------------------------------------------------------------------

let history = [];

async function loadHistory() {
  try {
    history = (await api("GET", "/api/calls")).calls;
  } catch (err) {
    console.info("[expert] history not loaded", err.status);
  }
  renderHistoryRows();
}

function duration(call) {
  if (!call.answered_at || !call.ended_at) return "";
  const seconds = Math.round((call.ended_at - call.answered_at) / 1000);
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

function ratingText(call) {
  const rating = call.rating;
  const stars = typeof rating === "number" ? rating : rating && rating.stars;
  return stars ? "★".repeat(stars) : "";
}

function outcomeText(call) {
  const outcome = typeof call.outcome === "string" ? call.outcome : call.outcome && call.outcome.outcome;
  return outcome ? i18n.t(`expert.outcome.${outcome}`) : "";
}

function renderHistoryRows() {
  const body = $("history").querySelector("tbody");
  body.replaceChildren();
  for (const call of history) {
    const row = document.createElement("tr");
    row.dataset.call = call.id;
    const result = call.state === "ended" ? `call.end_reason.${call.end_reason}` : `call.state.${call.state}`;
    const cells = [
      new Date(call.launched_at).toLocaleString(i18n.current()),
      disputeName(call.dispute_type),
      i18n.t(result),
      duration(call),
      ratingText(call),
      outcomeText(call),
    ];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    body.append(row);
  }
  $("history-empty").hidden = history.length > 0;
}

// --- start --------------------------------------------------------------------------------------

function bind() {
  for (const toggle of document.querySelectorAll("[data-lang-toggle]")) i18n.bindToggle(toggle);
  i18n.onChange(() => {
    renderRings();
    renderDuty();
    renderHistoryRows();
    if (expert.call) $("call-info").textContent = i18n.t("expert.call.info", { type: disputeName(expert.call.dispute_type) });
    for (const id of ["login-error", "invite-status", "bookmark-status"]) {
      const el = $(id);
      if (el.dataset.key) el.textContent = i18n.t(el.dataset.key);
    }
  });
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("start-duty").addEventListener("click", startDuty);
  $("sound-on").addEventListener("click", enableSound);
  document.addEventListener("pointerdown", unlockOnGesture, true);
  document.addEventListener("keydown", unlockOnGesture, true);
  $("set-available").addEventListener("click", () => setAvailability("available").catch(() => {}));
  $("set-away").addEventListener("click", () => setAvailability("away").catch(() => {}));
  $("hangup").addEventListener("click", hangUp);
  $("invite").addEventListener("click", openInvite);
  $("invite-close").addEventListener("click", () => ($("invite-panel").hidden = true));
  $("invite-specialty-send").addEventListener("click", () => invites.sendInvite(expert.sig, expert.call, { specialty: $("invite-specialty").value }));
  $("invite-expert-send").addEventListener("click", () => invites.sendInvite(expert.sig, expert.call, { expert_id: $("invite-expert").value }));
  $("bookmark").addEventListener("click", () => {
    $("invite-panel").hidden = true;
    $("bookmark-status").textContent = "";
    $("bookmark-panel").hidden = false;
  });
  $("bookmark-close").addEventListener("click", () => ($("bookmark-panel").hidden = true));
  $("bookmark-save").addEventListener("click", saveBookmark);
  $("outcome-form").addEventListener("submit", submitOutcome);
  $("outcome-later").addEventListener("click", () => ($("outcome-form").hidden = true));
  setInterval(tickRings, 1000);
}

async function boot() {
  await i18n.init();
  bind();
  try {
    const { principal } = await api("GET", "/api/me");
    if (principal.role !== "expert") throw new Error("not an expert");
    signedIn({ id: principal.id, display_name: principal.display_name, role: principal.role });
  } catch {
    show("login");
  }
}

boot();
