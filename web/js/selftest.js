// The camera and microphone self-test a caller device reports with `device.health`
// (docs/protocol.md): open both, wait for a first video frame, close them again. Given the
// stream a call already has, it tests that one and leaves it open: the camera is never opened
// a second time (a page reloaded in the middle of a call).
//
//   const health = await runSelfTest("station-web-1");
//   const health = await runSelfTest("kiosk-web-1", { stream: callStream });
//   // {camera: "ok" | "denied" | "missing" | "error", microphone: ..., app_build}
//
// The kiosk and the station use it through web/js/caller.js.

import { MediaProblem, openCamera, stopStream } from "./callview.js";

const FIRST_FRAME_MS = 4000;

export async function runSelfTest(appBuild, { stream = null } = {}) {
  const health = { camera: "ok", microphone: "ok", app_build: appBuild };
  const borrowed = stream !== null; // the call's: tested, not closed
  try {
    if (!borrowed) stream = await openCamera();
    health.camera = (await firstFrame(stream, FIRST_FRAME_MS)) ? "ok" : "error";
    const audio = stream.getAudioTracks()[0];
    health.microphone = audio && audio.readyState === "live" ? "ok" : "missing";
  } catch (err) {
    const reason = err instanceof MediaProblem ? err.reason : "failed";
    health.camera = health.microphone = reason === "failed" ? "error" : reason;
  } finally {
    if (!borrowed) stopStream(stream);
  }
  return health;
}

/** Resolves true once the stream shows a frame, false after `timeoutMs` without one. */
export function firstFrame(stream, timeoutMs) {
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
