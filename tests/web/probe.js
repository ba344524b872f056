// Injected by the tests into every page (never shipped): synchronous probes that
// page.wait_for_function can poll. They look only at REMOTE tiles, never the self-view.
(() => {
  const COUNTER_BITS = 16;
  const canvas = document.createElement("canvas");
  const counters = new Map(); // selector -> first counter seen
  let audio = null; // AudioContext for the tone probe
  const analysers = new Map(); // selector -> {stream, analyser}

  function frame(selector) {
    const video = document.querySelector(selector);
    if (!video || video.readyState < 2 || video.videoWidth === 0) return null;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    const g = canvas.getContext("2d", { willReadFrequently: true });
    g.drawImage(video, 0, 0);
    return g.getImageData(0, 0, canvas.width, canvas.height);
  }

  function luma(data, width, x, y) {
    const i = (y * width + x) * 4;
    return 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
  }

  /** Mean colour below the counter row and the painted counter (media/clips.py layout). */
  function sample(selector) {
    const image = frame(selector);
    if (!image) return null;
    const { data, width, height } = image;
    const block = width / 20; // 16 px blocks on a 320 px wide picture
    let r = 0, gr = 0, b = 0, n = 0;
    for (let y = Math.ceil(block * 2); y < height; y += 4) {
      for (let x = 0; x < width; x += 4) {
        const i = (y * width + x) * 4;
        r += data[i];
        gr += data[i + 1];
        b += data[i + 2];
        n += 1;
      }
    }
    let counter = 0;
    for (let bit = 0; bit < COUNTER_BITS; bit++) {
      const x = Math.floor(bit * block + block / 2);
      const y = Math.floor(block / 2);
      counter = (counter << 1) | (luma(data, width, x, y) > 128 ? 1 : 0);
    }
    return { rgb: [r / n, gr / n, b / n].map(Math.round), counter, width, height };
  }

  function colourNear(selector, rgb, tolerance) {
    const s = sample(selector);
    return !!s && s.rgb.every((v, i) => Math.abs(v - rgb[i]) <= tolerance);
  }

  /** True once the painted counter differs from the first one this probe saw: live video. */
  function counterAdvanced(selector, key = "") {
    const s = sample(selector);
    if (!s) return false;
    const name = `${key}|${selector}`;
    if (!counters.has(name)) {
      counters.set(name, s.counter);
      return false;
    }
    return s.counter !== counters.get(name);
  }

  /** The strongest of `tones` (Hz) in the remote stream of a tile, and its level in dB. */
  function tone(selector, tones) {
    const video = document.querySelector(selector);
    if (!video || !video.srcObject || video.srcObject.getAudioTracks().length === 0) return null;
    if (!audio) audio = new AudioContext();
    if (audio.state !== "running") {
      audio.resume();
      return null;
    }
    let entry = analysers.get(selector);
    if (!entry || entry.stream !== video.srcObject) {
      const analyser = audio.createAnalyser();
      analyser.fftSize = 4096;
      audio.createMediaStreamSource(video.srcObject).connect(analyser);
      entry = { stream: video.srcObject, analyser, created: performance.now() };
      analysers.set(selector, entry);
    }
    if (performance.now() - entry.created < 200) return null; // let the analyser fill
    return strongest(entry.analyser, tones);
  }

  function strongest(analyser, tones) {
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    const hz = analyser.context.sampleRate / analyser.fftSize;
    let best = null;
    for (const f of tones) {
      const i = Math.round(f / hz);
      const level = Math.max(bins[i - 1], bins[i], bins[i + 1]);
      if (!best || level > best.level) best = { tone: f, level };
    }
    return best;
  }

  function toneIs(selector, tones, expected, minDb) {
    const t = tone(selector, tones);
    return !!t && t.tone === expected && t.level > minDb;
  }

  /** Text a person sees (and reads out: aria-label, placeholder, title), with its language. */
  function visibleText() {
    const pageLang = document.documentElement.lang;
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const el = node.parentElement;
      const text = node.textContent.trim();
      if (!text || !el || !el.checkVisibility({ visibilityProperty: true })) continue;
      const tagged = el.closest("[lang]");
      if (tagged && tagged.lang !== pageLang && tagged !== document.documentElement) continue;
      if (el.closest("script, style")) continue;
      out.push(text);
    }
    for (const el of document.querySelectorAll("[aria-label], [placeholder], [title]")) {
      if (!el.checkVisibility()) continue;
      for (const attr of ["aria-label", "placeholder", "title"]) {
        if (el.hasAttribute(attr)) out.push(el.getAttribute(attr));
      }
    }
    out.push(document.title);
    return out;
  }

  /** The participant id of a remote tile showing about this colour, or null. */
  function tileNear(rgb, tolerance) {
    for (const tile of document.querySelectorAll(".tile[data-participant]")) {
      const selector = `.tile[data-participant="${tile.dataset.participant}"] video`;
      if (colourNear(selector, rgb, tolerance)) return tile.dataset.participant;
    }
    return null;
  }

  /** Every remote tile's sample, by participant id (for failure messages). */
  function tileSamples() {
    const out = {};
    for (const tile of document.querySelectorAll(".tile[data-participant]")) {
      const id = tile.dataset.participant;
      out[id] = sample(`.tile[data-participant="${id}"] video`);
    }
    return out;
  }

  window.__probe = {
    tileNear,
    tileSamples, sample, colourNear, counterAdvanced, tone, toneIs, visibleText, strongest };
})();
