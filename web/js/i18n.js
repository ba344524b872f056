// Every visible string comes from one catalogue per language: web/i18n/<language>.json.
// Simplified Chinese is the default; English is one tap away (the choice is remembered).
//
//   await i18n.init();                 // loads the remembered language, translates the page
//   i18n.t("kiosk.calling.queue_position", {position: 2})
//   <button data-i18n="common.cancel"></button>
//   <input data-i18n-attr="placeholder:expert.login.username,aria-label:expert.login.username">

export const LANGUAGES = ["zh-CN", "en"];
const DEFAULT_LANGUAGE = "zh-CN";
const STORAGE_KEY = "ui.language";

const catalogues = new Map();
let language = DEFAULT_LANGUAGE;
const listeners = new Set();

async function load(lang) {
  if (!catalogues.has(lang)) {
    const response = await fetch(`/web/i18n/${lang}.json`, { cache: "no-cache" });
    if (!response.ok) throw new Error(`catalogue ${lang}: HTTP ${response.status}`);
    catalogues.set(lang, await response.json());
  }
  return catalogues.get(lang);
}

export function current() {
  return language;
}

/** The string for `key` in the current language, with {name} placeholders filled in. */
export function t(key, params = {}) {
  const catalogue = catalogues.get(language) || {};
  let text = catalogue[key];
  if (text === undefined) {
    console.warn("[i18n] missing", language, key);
    text = key;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    params[name] === undefined || params[name] === null ? whole : String(params[name]),
  );
}

/** Pick the text of a server object that carries both names (e.g. dispute types). */
export function pick(zh, en) {
  return language === "en" ? en || zh : zh || en;
}

/** Translate every marked element under `root`. */
export function apply(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(",")) {
      const [attr, key] = pair.split(":").map((s) => s.trim());
      el.setAttribute(attr, t(key));
    }
  }
  if (root === document) {
    document.documentElement.lang = language;
    const title = document.querySelector("title[data-i18n]");
    if (title) document.title = title.textContent;
  }
}

export async function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) lang = DEFAULT_LANGUAGE;
  await load(lang);
  language = lang;
  localStorage.setItem(STORAGE_KEY, lang);
  apply();
  for (const listener of listeners) listener(lang);
}

/** Called after every language change (pages re-render their dynamic parts). */
export function onChange(listener) {
  listeners.add(listener);
}

/** The language toggle: a button that switches between the two languages. */
export function bindToggle(button) {
  button.addEventListener("click", () =>
    setLanguage(language === "en" ? "zh-CN" : "en"),
  );
}

export async function init() {
  const params = new URLSearchParams(location.search);
  const wanted = params.get("lang") || localStorage.getItem(STORAGE_KEY) || DEFAULT_LANGUAGE;
  await setLanguage(wanted);
}
