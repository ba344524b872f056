// The one client module every page uses: signaling over WebSocket and WebRTC media.
//
//   const sig = new Signaling({credentials: () => ({device_token: token})});
//   sig.on("call.updated", (payload) => ...);
//   await sig.start();                       // resolves once authenticated
//   const {call} = await sig.request("call.launch", {dispute_type: "family", ...});
//   const media = new CallMedia(sig, call.id, {localStream, iceServers: sig.iceServers});
//   media.addEventListener("remote", ...);   // remote streams by participant id
//   await media.start();
//
// The protocol is docs/protocol.md. Signaling reconnects by itself (with the rejoin token)
// except after the close codes that say not to; a page whose protocol version the server no
// longer accepts reloads itself once (a newer page speaks the newer version). Media mirrors
// signaling/peer.py: the client's first offer goes with media.join, then only the server
// offers (media.offer → media.answer with its offer_id), candidates trickle with
// media.candidate, and the offer's `tracks` list says whose media each section carries.

export const PROTOCOL_VERSION = 1;
export const CLIENT_BUILD = "web-1";

const REQUEST_TIMEOUT_MS = 15000;
const KEEPALIVE_MS = 10000; // a ping when nothing came for this long ...
const KEEPALIVE_TIMEOUT_MS = 5000; // ... and a dead connection if it is not answered
const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

// Close codes after which reconnecting on our own is wrong (docs/protocol.md §8).
const TERMINAL_CLOSE = new Map([
  [4001, "auth_failed"],
  [4003, "protocol_version_unsupported"],
  [4004, "revoked"],
  [4009, "replaced"],
]);

export class SignalingError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
  }
}

function log(...args) {
  console.info("[client]", ...args);
}

export class Signaling extends EventTarget {
  /**
   * @param {object} options
   * @param {() => object} options.credentials  auth fields: {device_token} and/or {session_token}
   * @param {string} [options.url]             defaults to this page's origin + /ws
   * @param {string} [options.clientBuild]
   */
  constructor({ credentials, url, clientBuild } = {}) {
    super();
    this.credentials = credentials || (() => ({}));
    this.url = url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    this.clientBuild = clientBuild || CLIENT_BUILD;
    this.state = "idle"; // idle | connecting | open | reconnecting | closed
    this.history = []; // the last states, oldest first (diagnostics)
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer}
    this.handlers = new Map(); // event type -> Set of handlers
    this.rejoinToken = null;
    this.principal = null;
    this.snapshot = null;
    this.iceServers = [];
    this.serverOffsetMs = 0; // server clock minus ours
    this.closeReason = null;
    this.attempt = 0;
    this.lastHeard = 0;
    this.keepalive = null;
    this.retryTimer = null;
    this.startPromise = null;
  }

  /** Events: a handler gets the payload and the whole frame. Returns an unsubscribe function. */
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type).delete(handler);
  }

  emitLocal(type, payload, frame = null) {
    for (const handler of [...(this.handlers.get(type) || [])]) {
      try {
        handler(payload, frame);
      } catch (err) {
        console.error("[client] handler for", type, "failed", err);
      }
    }
  }

  setState(state, detail = {}) {
    if (this.state === state) return;
    log(`signaling ${this.state} -> ${state}`, detail.code ?? "");
    this.state = state;
    this.history.push(state);
    if (this.history.length > 50) this.history.shift();
    this.emitLocal("status", { state, ...detail });
  }

  /** Connect and authenticate; resolves with the auth result, rejects on a terminal refusal. */
  start() {
    if (!this.startPromise) {
      this.startPromise = new Promise((resolve, reject) => {
        this.firstAuth = { resolve, reject };
      });
      this.connect();
    }
    return this.startPromise;
  }

  serverNow() {
    return Date.now() + this.serverOffsetMs;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.setState(this.attempt === 0 && !this.principal ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.authenticate(ws);
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event.code, event.reason);
    ws.onerror = () => {}; // onclose follows with the code
  }

  async authenticate(ws) {
    const payload = {
      protocol_version: PROTOCOL_VERSION,
      client_build: this.clientBuild,
      ...this.credentials(),
    };
    if (this.rejoinToken) payload.rejoin_token = this.rejoinToken;
    try {
      const result = await this.send(ws, "auth", payload);
      this.attempt = 0;
      this.rejoinToken = result.rejoin_token;
      this.principal = result.principal;
      this.serverOffsetMs = result.server_time - Date.now();
      sessionStorage.removeItem("client.reloaded_for_version");
      this.startKeepalive(ws);
      this.setState("open", { resumed: result.resumed });
      if (this.firstAuth) {
        this.firstAuth.resolve(result);
        this.firstAuth = null;
      }
    } catch (err) {
      // The server closes the connection after a refused auth; onclose decides what next.
      log("auth refused", err.code || err);
    }
  }

  receive(ws, data) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if ((frame.type === "result" || frame.type === "error") && this.pending.has(frame.id)) {
      const entry = this.pending.get(frame.id);
      this.pending.delete(frame.id);
      clearTimeout(entry.timer);
      if (frame.type === "result") entry.resolve(frame.payload || {});
      else entry.reject(new SignalingError(frame.payload.code, frame.payload.message));
      return;
    }
    if (frame.type === "error") {
      log("error without a request", frame.payload);
      return;
    }
    if (frame.type === "snapshot") {
      this.snapshot = frame.payload;
      this.iceServers = frame.payload.ice_servers || [];
      this.serverOffsetMs = frame.payload.server_time - Date.now();
    }
    if (frame.type === "server.shutdown") {
      this.reconnectAfterMs = frame.payload.reconnect_after_ms;
    }
    this.emitLocal(frame.type, frame.payload, frame);
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopKeepalive();
    for (const [, entry] of this.pending) {
      clearTimeout(entry.timer);
      entry.reject(new SignalingError("disconnected", `connection closed (${code})`));
    }
    this.pending.clear();
    if (this.state === "closed") return;
    const terminal = TERMINAL_CLOSE.get(code);
    if (code === 4003) {
      // This page speaks a version the server no longer accepts: a reload fetches the
      // current page. Once only, so an old server cannot make it reload forever.
      if (!sessionStorage.getItem("client.reloaded_for_version")) {
        sessionStorage.setItem("client.reloaded_for_version", "1");
        log("protocol version refused: reloading the page");
        location.reload();
        return;
      }
    }
    if (terminal) {
      this.closeReason = terminal;
      this.setState("closed", { code, reason: terminal });
      if (this.firstAuth) {
        this.firstAuth.reject(new SignalingError(terminal, reason || terminal));
        this.firstAuth = null;
      }
      return;
    }
    this.scheduleReconnect(code);
  }

  scheduleReconnect(code) {
    let delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    if (code === 1012 && this.reconnectAfterMs) delay = this.reconnectAfterMs;
    if (code === 4008) delay = 10000;
    delay = delay * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    this.setState("reconnecting", { code });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startKeepalive(ws) {
    this.stopKeepalive();
    this.lastHeard = Date.now();
    this.keepalive = setInterval(async () => {
      if (ws !== this.ws || Date.now() - this.lastHeard < KEEPALIVE_MS) return;
      try {
        await this.send(ws, "ping", {}, KEEPALIVE_TIMEOUT_MS);
      } catch (err) {
        if (ws === this.ws && err.code === "timeout") {
          log("no answer to ping: the connection is dead");
          ws.close();
          this.closed(ws, 1006, "keepalive");
        }
      }
    }, KEEPALIVE_MS / 2);
  }

  stopKeepalive() {
    clearInterval(this.keepalive);
    this.keepalive = null;
  }

  send(ws, type, payload, timeoutMs = REQUEST_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new SignalingError("disconnected", "not connected"));
        return;
      }
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SignalingError("timeout", `${type} got no reply`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ type, id, payload }));
    });
  }

  /** A request on the authenticated connection; rejects with SignalingError(code). */
  request(type, payload = {}, { timeoutMs } = {}) {
    if (this.state !== "open") {
      return Promise.reject(new SignalingError("disconnected", "not connected"));
    }
    return this.send(this.ws, type, payload, timeoutMs);
  }

  /** Resolves when the connection is authenticated again (at once if it is). */
  whenOpen() {
    if (this.state === "open") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const off = this.on("status", ({ state }) => {
        if (state === "open") {
          off();
          resolve();
        } else if (state === "closed") {
          off();
          reject(new SignalingError(this.closeReason || "closed", "connection closed"));
        }
      });
    });
  }

  close() {
    this.setState("closed", { reason: "client" });
    clearTimeout(this.retryTimer);
    this.stopKeepalive();
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
  }

  /** Test hook: drop the connection as a network loss would (no close frame from us). */
  dropForTest() {
    if (this.ws) {
      const ws = this.ws;
      ws.close();
      this.closed(ws, 1006, "test");
    }
  }
}

// --- media ---------------------------------------------------------------------------------

/**
 * One participant's media in one call.
 *
 * Events (EventTarget): "remote" {detail: Map participant id -> MediaStream} whenever the set of
 * remote participants or their tracks changes; "state" {detail: connection state};
 * "remote-state" {detail: {participant_id, audio, video}} from media.state.
 */
export class CallMedia extends EventTarget {
  constructor(signaling, callId, { localStream = null, iceServers = null } = {}) {
    super();
    this.signaling = signaling;
    this.callId = callId;
    this.localStream = localStream;
    this.iceServers = iceServers;
    this.pc = null;
    this.participantId = null;
    this.trackMap = new Map(); // mid -> participant id (from the latest server offer)
    this.remoteStates = new Map(); // participant id -> {audio, video}
    this.chain = Promise.resolve(); // negotiations run one at a time
    this.lastOfferId = 0;
    this.lastAnswer = null; // {offerId, sdp, acknowledged}
    this.joined = false; // media.join sent for the current peer connection
    this.candidates = []; // gathered before media.join went out
    this.audioEnabled = true;
    this.videoEnabled = true;
    this.closed = false;
    this.rejoining = null;
    this.remote = new Map();
    this.unsubscribe = [
      signaling.on("media.offer", (payload) => {
        if (payload.call_id === this.callId) this.enqueue(() => this.applyOffer(payload));
      }),
      signaling.on("media.state", (payload) => {
        if (payload.call_id !== this.callId) return;
        this.remoteStates.set(payload.participant_id, {
          audio: payload.audio,
          video: payload.video,
        });
        this.dispatchEvent(new CustomEvent("remote-state", { detail: payload }));
      }),
    ];
  }

  enqueue(step) {
    const run = this.chain.then(() => (this.closed ? undefined : step()));
    this.chain = run.catch((err) => console.error("[client] media negotiation failed", err));
    return run;
  }

  get connectionState() {
    return this.pc ? this.pc.connectionState : "new";
  }

  /** First offer with media.join (also used to rejoin with a new peer connection). */
  start() {
    return this.enqueue(() => this.join());
  }

  /** A new peer connection for the same participant (after a media timeout); one at a time. */
  restart() {
    if (!this.rejoining) {
      this.rejoining = this.enqueue(() => this.join()).finally(() => {
        this.rejoining = null;
      });
    }
    return this.rejoining;
  }

  newPeerConnection() {
    if (this.pc) {
      this.pc.onicecandidate = this.pc.ontrack = this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers ?? this.signaling.iceServers ?? [],
      bundlePolicy: "max-bundle",
      rtcpMuxPolicy: "require",
    });
    this.pc = pc;
    this.joined = false;
    this.candidates = [];
    this.lastOfferId = 0;
    this.lastAnswer = null;
    pc.onicecandidate = (event) => {
      if (pc !== this.pc) return;
      const c = event.candidate;
      const message = {
        call_id: this.callId,
        candidate: c ? c.candidate : "",
        sdp_mid: c && c.sdpMid != null ? c.sdpMid : undefined,
        sdp_mline_index: c && c.sdpMLineIndex != null ? c.sdpMLineIndex : undefined,
      };
      if (this.joined) this.sendCandidate(message);
      else this.candidates.push(message);
    };
    pc.ontrack = () => this.refreshRemote();
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      log(`media ${pc.connectionState}`);
      this.dispatchEvent(new CustomEvent("state", { detail: pc.connectionState }));
    };
    return pc;
  }

  sendCandidate(message) {
    this.signaling.request("media.candidate", message).catch((err) => {
      log("candidate not taken", err.code || err);
    });
  }

  async join() {
    const pc = this.newPeerConnection();
    const tracks = this.localStream ? this.localStream.getTracks() : [];
    const audio = tracks.find((t) => t.kind === "audio");
    const video = tracks.find((t) => t.kind === "video");
    // One audio and one video section at most (the server refuses more); sendonly: the server
    // sends everyone else's media on sections it adds with its own offers.
    if (audio) pc.addTransceiver(audio, { direction: "sendonly", streams: [this.localStream] });
    else pc.addTransceiver("audio", { direction: "recvonly" });
    if (video) {
      pc.addTransceiver(video, { direction: "sendonly", streams: [this.localStream] });
    }
    if (audio) audio.enabled = this.audioEnabled;
    if (video) video.enabled = this.videoEnabled;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.joined = true;
    const joining = this.signaling.request("media.join", {
      call_id: this.callId,
      sdp: pc.localDescription.sdp,
    });
    // Requests are handled in order: candidates sent after media.join reach the server after it.
    for (const message of this.candidates.splice(0)) this.sendCandidate(message);
    const result = await joining;
    if (pc !== this.pc) return;
    this.participantId = result.participant_id;
    this.firstOfferSdp = pc.localDescription.sdp; // for diagnostics
    this.lastRemoteSdp = result.sdp;
    await pc.setRemoteDescription({ type: "answer", sdp: result.sdp });
    if (!this.audioEnabled || !this.videoEnabled) this.sendState();
    this.refreshRemote();
  }

  async applyOffer(payload) {
    const pc = this.pc;
    if (!pc) return;
    if (payload.offer_id <= this.lastOfferId) {
      // A repeat of an offer we answered. If our answer was lost with the connection,
      // send the same answer again; never apply an offer twice.
      const last = this.lastAnswer;
      if (last && last.offerId === payload.offer_id && !last.acknowledged) {
        await this.sendAnswer(last);
      }
      return;
    }
    this.lastOfferId = payload.offer_id;
    this.trackMap = new Map((payload.tracks || []).map((t) => [t.mid, t.participant_id]));
    this.lastRemoteSdp = payload.sdp; // for diagnostics
    await pc.setRemoteDescription({ type: "offer", sdp: payload.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this.lastAnswer = { offerId: payload.offer_id, sdp: pc.localDescription.sdp, acknowledged: false };
    this.refreshRemote();
    await this.sendAnswer(this.lastAnswer);
  }

  async sendAnswer(answer) {
    try {
      await this.signaling.request("media.answer", {
        call_id: this.callId,
        sdp: answer.sdp,
        offer_id: answer.offerId,
      });
      answer.acknowledged = true;
    } catch (err) {
      // Lost with the connection: the server offers again with the same id and we answer then.
      log("answer not delivered", err.code || err);
    }
  }

  /** Remote media by participant: the receiving sections the server's last offer named. */
  refreshRemote() {
    if (!this.pc) return;
    const byParticipant = new Map();
    for (const transceiver of this.pc.getTransceivers()) {
      const mid = transceiver.mid;
      const participant = mid != null ? this.trackMap.get(mid) : undefined;
      if (!participant) continue;
      const direction = transceiver.currentDirection || transceiver.direction;
      if (direction !== "recvonly" && direction !== "sendrecv") continue;
      if (!byParticipant.has(participant)) byParticipant.set(participant, []);
      byParticipant.get(participant).push(transceiver.receiver.track);
    }
    // Keep a participant's MediaStream while its tracks are the same (no flicker in the tiles).
    const next = new Map();
    for (const [participant, tracks] of byParticipant) {
      const old = this.remote.get(participant);
      const same =
        old &&
        old.getTracks().length === tracks.length &&
        tracks.every((t) => old.getTracks().includes(t));
      next.set(participant, same ? old : new MediaStream(tracks));
    }
    const changed =
      next.size !== this.remote.size ||
      [...next].some(([participant, stream]) => this.remote.get(participant) !== stream);
    this.remote = next;
    if (changed) this.dispatchEvent(new CustomEvent("remote", { detail: next }));
  }

  setAudio(enabled) {
    this.audioEnabled = enabled;
    for (const t of this.localStream ? this.localStream.getAudioTracks() : []) t.enabled = enabled;
    return this.sendState();
  }

  setVideo(enabled) {
    this.videoEnabled = enabled;
    for (const t of this.localStream ? this.localStream.getVideoTracks() : []) t.enabled = enabled;
    return this.sendState();
  }

  sendState() {
    return this.signaling
      .request("media.state", {
        call_id: this.callId,
        audio: this.audioEnabled,
        video: this.videoEnabled,
      })
      .catch((err) => log("media.state not delivered", err.code || err));
  }

  close() {
    this.closed = true;
    for (const off of this.unsubscribe) off();
    if (this.pc) {
      this.pc.onicecandidate = this.pc.ontrack = this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    this.remote = new Map();
  }
}

// --- HTTP ----------------------------------------------------------------------------------

export class HttpError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

/** JSON over HTTP with an optional bearer token; rejects with HttpError. */
export async function api(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  if ((response.headers.get("Content-Type") || "").includes("application/json")) {
    data = await response.json();
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new HttpError(response.status, error.code || "http_error", error.message || "");
  }
  return data;
}

/** The catalogue key for a failed `POST /api/login` on `page` (expert, station, admin): a
 * wrong password, too many failures (wait), or the service not reachable (nothing said of
 * the password then). Errors the page raised itself carry their own `key`. */
export function loginRefusalKey(err, page) {
  if (err.key) return err.key;
  if (err.code === "auth_failed") return `${page}.login.failed`;
  if (err.code === "rate_limited") return "common.login_throttled";
  return "common.login_unavailable";
}

/** The catalogue key for a refused `POST /api/enrol`, as a kiosk or station page shows it. */
export function enrolRefusalKey(err, kind) {
  if (err.code === "wrong_device_kind") return `${kind}.enrol.wrong_kind`;
  if (err.code === "enrolment_failed") return "kiosk.enrol.failed";
  if (err.code === "rate_limited") return "kiosk.enrol.throttled";
  return "kiosk.enrol.unavailable";
}
