// The in-call screen both the kiosk and the expert console show: remote tiles (one per
// participant, labelled from the server offer's `tracks` list), the own preview, mute and
// camera buttons, the recording indicator (on exactly while the call view says
// recording: "on") and "joined"/"left" notices.

import * as i18n from "./i18n.js";

const NOTICE_MS = 6000;
const PRESENT = new Set(["joining", "connected", "reconnecting"]);

/** Ask for camera and microphone; throws a MediaProblem with a reason the pages can show. */
export class MediaProblem extends Error {
  constructor(reason, cause) {
    super(reason);
    this.reason = reason; // "denied" | "missing" | "failed"
    this.cause = cause;
  }
}

export async function openCamera({ audio = true, video = true } = {}) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MediaProblem("missing");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: audio ? { echoCancellation: true, noiseSuppression: true } : false,
      video: video ? { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15 } } : false,
    });
  } catch (err) {
    const name = err && err.name;
    if (name === "NotAllowedError" || name === "SecurityError") throw new MediaProblem("denied", err);
    if (name === "NotFoundError" || name === "OverconstrainedError") {
      throw new MediaProblem("missing", err);
    }
    throw new MediaProblem("failed", err);
  }
}

export function stopStream(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

/**
 * The in-call view over the elements every in-call page names alike (#tiles,
 * #waiting-media, #self-video, #recording, #notices, #mute, #camera).
 * @param {object} opts {nameOf(participant) -> string}
 */
export function pageCallView(opts) {
  const $ = (id) => document.getElementById(id);
  return new CallView(
    {
      tiles: $("tiles"),
      waiting: $("waiting-media"),
      selfVideo: $("self-video"),
      recording: $("recording"),
      notices: $("notices"),
      mute: $("mute"),
      camera: $("camera"),
    },
    opts,
  );
}

export class CallView {
  /**
   * @param {object} els  {tiles, waiting, selfVideo, recording, notices, mute, camera}
   * @param {object} opts {nameOf(participant) -> string}
   */
  constructor(els, { nameOf }) {
    this.els = els;
    this.nameOf = nameOf;
    this.media = null;
    this.call = null;
    this.selfParticipantId = null;
    this.present = null; // participant ids present at the last update
    this.tiles = new Map(); // participant id -> {el, video, label, state}
    this.audioOn = true;
    this.videoOn = true;
    els.mute.addEventListener("click", () => this.toggleAudio());
    els.camera.addEventListener("click", () => this.toggleVideo());
    i18n.onChange(() => this.relabel());
  }

  reset() {
    for (const tile of this.tiles.values()) tile.el.remove();
    this.tiles.clear();
    this.media = null;
    this.call = null;
    this.present = null;
    this.selfParticipantId = null;
    this.els.notices.replaceChildren();
    this.els.selfVideo.srcObject = null;
    this.els.recording.hidden = true;
    this.els.waiting.hidden = false;
    this.audioOn = true;
    this.videoOn = true;
    this.relabel();
  }

  setLocal(stream) {
    this.els.selfVideo.srcObject = stream;
  }

  attach(media) {
    this.media = media;
    media.audioEnabled = this.audioOn;
    media.videoEnabled = this.videoOn;
    media.addEventListener("remote", (event) => {
      if (this.media === media) this.renderTiles(event.detail);
    });
    media.addEventListener("remote-state", () => {
      if (this.media === media) this.relabel();
    });
    this.renderTiles(media.remote);
  }

  /** A call view from the server (call.updated, snapshot, results). */
  update(call, selfPrincipalId) {
    this.call = call;
    this.els.recording.hidden = call.recording !== "on";
    const mine = call.participants.find((p) => p.principal_id === selfPrincipalId && PRESENT.has(p.state));
    if (mine) this.selfParticipantId = mine.id;
    const present = new Set(
      call.participants.filter((p) => PRESENT.has(p.state) || (p.state === "dropped" && p.reason === "media_timeout")).map((p) => p.id),
    );
    if (this.present !== null && call.state === "active") {
      for (const p of call.participants) {
        if (p.id === this.selfParticipantId) continue;
        if (present.has(p.id) && !this.present.has(p.id)) this.notice("call.joined", p);
        if (!present.has(p.id) && this.present.has(p.id)) this.notice("call.left", p);
      }
    }
    this.present = present;
    this.relabel();
  }

  notice(key, participant) {
    const item = document.createElement("div");
    item.className = "notice-item";
    item.dataset.notice = key === "call.joined" ? "joined" : "left";
    item.dataset.participant = participant.id;
    item.dataset.key = key;
    item.dataset.name = this.nameOf(participant);
    item.textContent = i18n.t(key, { name: item.dataset.name });
    this.els.notices.append(item);
    setTimeout(() => item.remove(), NOTICE_MS);
  }

  participant(id) {
    return this.call ? this.call.participants.find((p) => p.id === id) : undefined;
  }

  renderTiles(remote) {
    for (const [id, tile] of this.tiles) {
      if (!remote.has(id)) {
        tile.el.remove();
        this.tiles.delete(id);
      }
    }
    for (const [id, stream] of remote) {
      let tile = this.tiles.get(id);
      if (!tile) {
        const el = document.createElement("div");
        el.className = "tile";
        el.dataset.participant = id;
        const video = document.createElement("video");
        video.autoplay = true;
        video.playsInline = true;
        const label = document.createElement("span");
        label.className = "tile-label";
        const state = document.createElement("span");
        state.className = "tile-state";
        state.hidden = true;
        el.append(video, label, state);
        this.els.tiles.append(el);
        tile = { el, video, label, state };
        this.tiles.set(id, tile);
      }
      if (tile.video.srcObject !== stream) {
        tile.video.srcObject = stream;
        tile.video.play().catch(() => {}); // autoplay policy: plays after the page's first tap
      }
    }
    this.els.waiting.hidden = this.tiles.size > 0;
    this.els.tiles.dataset.count = String(this.tiles.size);
    this.relabel();
  }

  relabel() {
    for (const [id, tile] of this.tiles) {
      const p = this.participant(id);
      tile.el.dataset.role = p ? p.role : "";
      tile.label.textContent = p ? this.nameOf(p) : i18n.t("call.role.unknown");
      const remoteState = this.media ? this.media.remoteStates.get(id) : undefined;
      const notes = [];
      if (p && p.state === "reconnecting") notes.push(i18n.t("call.participant_reconnecting"));
      if (p && p.state === "dropped") notes.push(i18n.t("call.participant_dropped"));
      if (remoteState && !remoteState.audio) notes.push(i18n.t("call.muted"));
      if (remoteState && !remoteState.video) notes.push(i18n.t("call.camera_is_off"));
      tile.state.textContent = notes.join(" · ");
      tile.state.hidden = notes.length === 0;
    }
    for (const item of this.els.notices.children) {
      item.textContent = i18n.t(item.dataset.key, { name: item.dataset.name });
    }
    this.els.mute.setAttribute("aria-pressed", String(!this.audioOn));
    this.els.mute.textContent = i18n.t(this.audioOn ? "call.mute" : "call.unmute");
    this.els.camera.setAttribute("aria-pressed", String(!this.videoOn));
    this.els.camera.textContent = i18n.t(this.videoOn ? "call.camera_off" : "call.camera_on");
  }

  toggleAudio() {
    this.audioOn = !this.audioOn;
    if (this.media) this.media.setAudio(this.audioOn);
    this.relabel();
  }

  toggleVideo() {
    this.videoOn = !this.videoOn;
    if (this.media) this.media.setVideo(this.videoOn);
    this.relabel();
  }
}
