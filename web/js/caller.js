// The caller's side of a call, shared by the kiosk and the station's mediation room: placing
// the call (`call.launch`, camera first), the calling screen (queue position, estimated wait,
// "wait for this expert or anyone", cancel), the in-call screen (tiles, own preview, a new
// peer connection after a media drop or a reload), the rating, and the camera and microphone
// self-test reported with `device.health`. Everything follows the server's call view; after a
// reconnect or a reload the snapshot puts the page back where the call is.
//
// The pages keep what differs: set-up, the officer's sign-in, what is asked before the call
// (dispute type, expert, consent; the station's case and parties), their screens and messages.
//
//   const caller = new Caller({ name: "kiosk", appBuild, token: () => deviceToken,
//     screens: { show, message, toWelcome, current }, keys: {...}, refusalKey });
//   caller.attach(sig);                  // every new Signaling, before sig.start()
//   caller.launch(payload);              // the consent screen's call button
//
// Both pages have the same element ids for these screens (calling, call, rating, #selftest).
// Page hooks for tests: window.<name>Media (the call's CallMedia).

import * as i18n from "./i18n.js";
import { api, CallMedia } from "./client.js";
import { MediaProblem, openCamera, pageCallView, stopStream } from "./callview.js";
import { runSelfTest } from "./selftest.js";

const WAITING = new Set(["launching", "ringing", "queued"]);
const PHRASES = ["patient", "fair", "helpful", "hard_to_hear"];

const $ = (id) => document.getElementById(id);

export class Caller {
  /**
   * @param {object} o
   * @param {string} o.name            "kiosk" | "station": the log prefix and window.<name>Media
   * @param {string} o.appBuild        reported with device.health
   * @param {() => string} o.token     the device token (GET /api/experts, for the tiles' names)
   * @param {object} o.screens         the page's {show(screen), message(key), toWelcome(), current()}
   * @param {object} o.keys            {callerRole, selfTestProblem, cameraError(reason)}: the page's texts
   * @param {(code: string, payload: object) => string} o.refusalKey  the message for a refused launch
   * @param {number} [o.selfTestEveryMs]  test again between calls after this long (default: once)
   * @param {object} [o.hooks]         {onCall(call), onEnterCall(call, first), onLeaveCall()}
   */
  constructor({ name, appBuild, token, screens, keys, refusalKey, selfTestEveryMs = Infinity, hooks = {} }) {
    Object.assign(this, { name, appBuild, token, screens, keys, refusalKey, selfTestEveryMs, hooks });
    this.sig = null;
    this.call = null; // the live call view
    this.choiceOffered = null;
    this.media = null;
    this.localStream = null;
    this.starting = false; // media being set up
    this.ownState = null; // our participant's state in the last call view
    this.finished = new Set(); // ids of calls whose end was handled
    this.expertNames = new Map(); // expert id -> display name, for the tiles
    this.namesAsked = new Set();
    this.ratingCallId = null;
    this.stars = 0;
    this.phrases = new Set();
    this.health = null;
    this.selfTestedAt = 0;
    this.view = pageCallView({ nameOf: (p) => this.participantName(p) });
    this.bind();
  }

  log(...args) {
    console.info(`[${this.name}]`, ...args);
  }

  /** A call that has not ended: the call decides the screen, not the page. */
  get busy() {
    return !!this.call && this.call.state !== "ended";
  }

  bind() {
    $("choose-wait").addEventListener("click", () => this.choose("wait"));
    $("choose-anyone").addEventListener("click", () => this.choose("anyone"));
    $("calling-cancel").addEventListener("click", () => this.cancel());
    $("hangup").addEventListener("click", () => this.hangUp());
    $("rating-submit").addEventListener("click", () => this.submitRating());
    $("rating-skip").addEventListener("click", () => {
      this.ratingCallId = null;
      this.screens.toWelcome();
    });
    i18n.onChange(() => {
      this.renderSelfTest();
      const screen = this.screens.current();
      if (screen === "calling") this.renderCalling();
      if (screen === "rating") this.renderRating();
      const error = $("rating-error");
      if (error.dataset.key) error.textContent = i18n.t(error.dataset.key);
    });
    setInterval(() => {
      if (this.screens.current() === "calling" && this.choiceOffered) this.renderCalling();
    }, 1000);
  }

  // --- signaling --------------------------------------------------------------------------------

  attach(sig) {
    this.sig = sig;
    const on = (type, handler) => sig.on(type, (payload) => this.sig === sig && handler(payload));
    on("snapshot", (snapshot) => this.reconcile(snapshot));
    on("call.updated", ({ call }) => this.onCall(call));
    on("call.queue_position", ({ call_id, position, estimated_wait_s }) => {
      if (this.call && this.call.id === call_id) {
        this.call = { ...this.call, queue_position: position, estimated_wait_s };
        this.renderCalling();
      }
    });
    on("call.choice_offered", (payload) => {
      if (this.call && this.call.id === payload.call_id) {
        this.choiceOffered = payload;
        this.renderCalling();
      }
    });
  }

  /** After every (re)authentication: the snapshot holds our live call, if any. */
  reconcile(snapshot) {
    const live = (snapshot.calls || []).find((c) => c.state !== "ended");
    if (live) {
      this.onCall(live); // the self-test waits for the call's camera (enterCall)
      return;
    }
    const ended = this.busy ? this.call : null; // our call ended while we were away
    if (ended) this.abandon();
    this.selfTestIfDue(); // no call has the camera
    if (ended && ended.answered_at) this.toRating(ended.id);
    else if (ended) this.screens.toWelcome();
    else if (this.screens.current() === "starting") this.screens.show("welcome");
  }

  /** A call view from a request's result: its events came first and are at least as new. */
  onResult(call) {
    if (this.call && this.call.id === call.id) return;
    this.onCall(call);
  }

  onCall(call) {
    if (this.finished.has(call.id)) return; // an end already shown
    if (this.call && this.call.id !== call.id && call.state === "ended") return; // an old call
    const before = this.call;
    this.call = call;
    if (this.hooks.onCall) this.hooks.onCall(call);
    // Answered, or the choice's deadline passed (the server goes to anyone): no choice left.
    if (call.state !== "queued" || call.preference !== "choice") this.choiceOffered = null;
    else if (!this.choiceOffered && call.choice_deadline) {
      // A choice pending from before a reload or reconnect (its event came to the old page).
      this.choiceOffered = { call_id: call.id, expert_id: call.named_expert_id, deadline: call.choice_deadline };
    }
    if (WAITING.has(call.state)) {
      if (this.media) {
        this.view.update(call, this.sig.principal.id); // the experts dropped: wait in the call
      } else {
        this.screens.show("calling");
        this.renderCalling();
      }
    } else if (call.state === "active") {
      this.enterCall(call);
    } else if (call.state === "ended") {
      this.finished.add(call.id);
      this.call = null;
      const wasInCall = !!this.media || (before && before.state === "active");
      this.leaveCall();
      if (call.answered_at || wasInCall) this.toRating(call.id);
      else if (call.end_reason === "cancelled") this.screens.toWelcome();
      else if (call.end_reason === "no_answer") this.screens.message("kiosk.error.no_answer");
      else this.screens.message("kiosk.error.call_failed");
    }
  }

  /** The connection is gone for good: drop the call's media without waiting for its end. */
  abandon() {
    this.leaveCall();
    this.call = null;
  }

  // --- placing the call and waiting ---------------------------------------------------------------

  /** `call.launch`; with `camera`, the camera is opened first (no call without a picture). */
  async launch(payload, { camera = true } = {}) {
    if (camera) {
      this.screens.show("starting");
      try {
        this.localStream = await openCamera();
      } catch (err) {
        const reason = err instanceof MediaProblem ? err.reason : "failed";
        this.log("camera:", reason, err.cause ? err.cause.name : "");
        this.screens.message(this.keys.cameraError(reason));
        return;
      }
    }
    try {
      const { call } = await this.sig.request("call.launch", payload);
      this.onResult(call);
    } catch (err) {
      this.log("launch refused:", err.code);
      stopStream(this.localStream);
      this.localStream = null;
      this.screens.message(this.refusalKey(err.code, payload));
    }
  }

  renderCalling() {
    const call = this.call;
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
    const offered = this.choiceOffered;
    $("choice-panel").hidden = !offered;
    if (offered) {
      const seconds = Math.max(0, Math.round((offered.deadline - this.sig.serverNow()) / 1000));
      $("choice-deadline").textContent = i18n.t("kiosk.choice.deadline", { seconds });
    }
  }

  /** "Wait for this expert" or "anyone", after `call.choice_offered`. */
  async choose(choice) {
    const offered = this.choiceOffered;
    if (!offered) return;
    this.choiceOffered = null;
    this.renderCalling();
    try {
      const { call } = await this.sig.request("call.choose", { call_id: offered.call_id, choice });
      this.onResult(call);
    } catch (err) {
      this.log("choice not taken:", err.code);
    }
  }

  async cancel() {
    const call = this.call;
    if (!call) return this.screens.toWelcome();
    const button = $("calling-cancel");
    button.disabled = true; // taken: "cancelling…" until the server has it
    button.dataset.i18n = "kiosk.calling.cancelling";
    i18n.apply(button.parentElement);
    try {
      await this.cancelUntilSent(call);
    } finally {
      button.disabled = false;
      button.dataset.i18n = "kiosk.calling.cancel";
      i18n.apply(button.parentElement);
    }
  }

  async cancelUntilSent(call) {
    for (;;) {
      try {
        const result = await this.sig.request("call.cancel", { call_id: call.id });
        this.onResult(result.call);
        return;
      } catch (err) {
        this.log("cancel:", err.code);
        // Not connected, or no answer: the citizen still wants out. Sent again once the
        // connection is back (else an expert could be rung for an empty kiosk), unless the
        // call has ended or been answered meanwhile.
        if (err.code !== "disconnected" && err.code !== "timeout") return;
        try {
          await this.sig.whenOpen();
        } catch {
          return; // the connection is gone for good
        }
        if (!this.call || this.call.id !== call.id || !WAITING.has(this.call.state)) return;
      }
    }
  }

  // --- in call ----------------------------------------------------------------------------------

  async enterCall(call) {
    const first = this.screens.current() !== "call";
    if (first) {
      this.screens.show("call");
      this.view.reset();
    }
    if (this.hooks.onEnterCall) this.hooks.onEnterCall(call, first);
    this.learnExpertNames(call);
    this.view.update(call, this.sig.principal.id);
    const mine = call.participants.find((p) => p.principal_id === this.sig.principal.id);
    const ownState = mine ? mine.state : null;
    const droppedNow = ownState === "dropped" && this.ownState !== "dropped";
    this.ownState = ownState;
    if (this.media && this.media.callId === call.id) {
      // The server dropped our media (no packets for a while): a new peer connection, same
      // participant. Only once per drop: the state stays "dropped" until media flows again.
      if (droppedNow || this.media.connectionState === "failed") {
        this.log("media dropped by the server: rejoining with a new connection");
        this.media.restart();
      }
      return;
    }
    if (this.starting) return;
    this.starting = true;
    try {
      if (!this.localStream) {
        try {
          this.localStream = await openCamera(); // a reload in the middle of a call
        } catch (err) {
          const reason = err instanceof MediaProblem ? err.reason : "failed";
          await this.sig.request("call.leave", { call_id: call.id }).catch(() => {});
          this.call = null;
          this.screens.message(this.keys.cameraError(reason));
          return;
        }
      }
      this.view.setLocal(this.localStream);
      const media = new CallMedia(this.sig, call.id, { localStream: this.localStream });
      this.media = media;
      window[`${this.name}Media`] = media;
      this.view.attach(media);
      media.addEventListener("state", ({ detail }) => {
        if (detail === "failed" && this.media === media && this.sig && this.sig.state === "open") {
          this.log("media failed: rejoining");
          media.restart();
        }
      });
      this.selfTestIfDue(); // after a reload mid-call: on the call's camera, not a second one
      await media.start().catch((err) => this.log("media.join:", err.code || err));
    } finally {
      this.starting = false;
    }
  }

  leaveCall() {
    if (this.media) this.media.close();
    this.media = null;
    window[`${this.name}Media`] = null;
    stopStream(this.localStream);
    this.localStream = null;
    this.ownState = null;
    this.view.reset();
    if (this.hooks.onLeaveCall) this.hooks.onLeaveCall();
  }

  async hangUp() {
    const call = this.call;
    if (!call) return;
    try {
      const result = await this.sig.request("call.leave", { call_id: call.id });
      this.onResult(result.call);
    } catch (err) {
      this.log("leave:", err.code);
    }
  }

  /** Names for the experts' tiles (the pages pass on the lists they load anyway). */
  rememberExperts(experts) {
    for (const e of experts) this.expertNames.set(e.id, e.display_name);
  }

  /** An expert whose name is not known yet (invited): the tile is relabelled when it comes. */
  learnExpertNames(call) {
    const unknown = call.participants
      .filter((p) => p.role === "expert" && !this.expertNames.has(p.principal_id))
      .filter((p) => !this.namesAsked.has(p.principal_id));
    if (unknown.length === 0) return;
    for (const p of unknown) this.namesAsked.add(p.principal_id);
    api("GET", "/api/experts", { token: this.token() }).then(
      ({ experts }) => {
        this.rememberExperts(experts);
        if (this.call && this.sig) this.view.update(this.call, this.sig.principal.id);
      },
      (err) => this.log("experts not loaded", err.status),
    );
  }

  participantName(p) {
    if (p.role === "caller") return i18n.t(this.keys.callerRole);
    const name = this.expertNames.get(p.principal_id);
    return name ? i18n.t("call.role.expert_named", { name }) : i18n.t("call.role.expert");
  }

  // --- rating -----------------------------------------------------------------------------------

  toRating(callId) {
    this.ratingCallId = callId;
    this.stars = 0;
    this.phrases.clear();
    $("comment").value = "";
    $("rating-error").hidden = true;
    this.renderRating();
    this.screens.show("rating");
  }

  renderRating() {
    const stars = $("stars");
    stars.replaceChildren();
    for (let n = 1; n <= 5; n++) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "★";
      button.dataset.stars = String(n);
      button.setAttribute("aria-label", i18n.t("kiosk.rating.star", { n }));
      button.setAttribute("aria-pressed", String(n <= this.stars));
      button.addEventListener("click", () => {
        this.stars = n;
        this.renderRating();
        stars.querySelector(`[data-stars="${n}"]`).focus(); // the buttons were replaced
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
      button.setAttribute("aria-pressed", String(this.phrases.has(phrase)));
      button.addEventListener("click", () => {
        if (this.phrases.has(phrase)) this.phrases.delete(phrase);
        else this.phrases.add(phrase);
        this.renderRating();
        phrases.querySelector(`[data-phrase="${phrase}"]`).focus();
      });
      phrases.append(button);
    }
    $("rating-submit").disabled = this.stars === 0;
  }

  async submitRating() {
    const parts = [...this.phrases].map((p) => i18n.t(`kiosk.rating.phrase.${p}`));
    const typed = $("comment").value.trim();
    if (typed) parts.push(typed);
    const payload = { call_id: this.ratingCallId, stars: this.stars };
    if (parts.length) payload.comment = parts.join("; ").slice(0, 500);
    $("rating-submit").disabled = true;
    try {
      await this.sig.request("call.rate", payload);
      this.screens.message("kiosk.rating.thanks");
    } catch (err) {
      if (err.code === "already_rated") {
        // Stored before (an earlier reply lost to a dropped connection): it is saved.
        this.screens.message("kiosk.rating.thanks");
        return;
      }
      this.log("rating not taken:", err.code);
      const error = $("rating-error");
      error.dataset.key = "kiosk.rating.failed";
      error.textContent = i18n.t(error.dataset.key);
      error.hidden = false;
      $("rating-submit").disabled = false;
    }
  }

  // --- self-test (device health) ------------------------------------------------------------------

  /**
   * Test the camera and microphone unless done within `selfTestEveryMs`. While a call is
   * being set up it waits for the call's camera (enterCall calls again), and a call's camera
   * is tested as it is: the camera is never opened a second time.
   */
  selfTestIfDue() {
    if (!this.sig || this.sig.state !== "open") return;
    if (this.busy && !this.localStream) return;
    if (this.selfTestedAt && Date.now() - this.selfTestedAt < this.selfTestEveryMs) return;
    this.selfTest();
  }

  async selfTest() {
    this.selfTestedAt = Date.now();
    const health = await runSelfTest(this.appBuild, { stream: this.localStream });
    this.health = health;
    this.renderSelfTest();
    this.log("self-test", JSON.stringify(health));
    try {
      await this.sig.request("device.health", health);
      $("selftest").dataset.reported = "yes";
    } catch (err) {
      this.log("device.health not taken:", err.code);
      $("selftest").dataset.reported = "no";
    }
  }

  renderSelfTest() {
    const health = this.health;
    const el = $("selftest");
    if (!health) {
      el.textContent = "";
      return;
    }
    const ok = health.camera === "ok" && health.microphone === "ok";
    el.dataset.camera = health.camera;
    el.dataset.microphone = health.microphone;
    el.textContent = i18n.t(ok ? "kiosk.selftest.ok" : this.keys.selfTestProblem);
  }
}
