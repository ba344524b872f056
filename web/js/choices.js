// The choices a caller page offers before a call, shared by the kiosk and the station: the
// dispute types (icon and name), the experts for one of them (available first, "anyone" on
// top), and the recording notice in the page's language.

import * as i18n from "./i18n.js";
import { api } from "./client.js";

const ICONS = new Set(["neighbours", "family", "traffic", "labour", "consumer", "property", "other"]);
const AVAILABILITY_ORDER = { available: 0, busy: 1, away: 2, offline: 3 };

/** A dispute type's name in the page's language (its code when unknown). */
export function disputeName(types, code) {
  const type = types.find((d) => d.code === code);
  return type ? i18n.pick(type.name_zh, type.name_en) : code;
}

function icon(code) {
  const img = document.createElement("img");
  img.src = `/web/icons/${ICONS.has(code) ? code : "other"}.svg`;
  img.alt = "";
  return img;
}

function span(text, className = "") {
  const el = document.createElement("span");
  el.textContent = text;
  if (className) el.className = className;
  return el;
}

function choiceButton(className, data, parts, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  Object.assign(button.dataset, data);
  button.append(...parts);
  button.addEventListener("click", onClick);
  return button;
}

/** One large button per dispute type into `box`; `onChoose(code)` on a tap. */
export function renderDisputeTypes(box, types, onChoose) {
  box.replaceChildren(
    ...types.map((type) =>
      choiceButton(
        "choice",
        { code: type.code },
        [icon(type.code), span(i18n.pick(type.name_zh, type.name_en))],
        () => onChoose(type.code),
      ),
    ),
  );
}

/**
 * "Anyone" and then each of `experts` (available first) into `box`; `onChoose(id)` on a tap,
 * null for anyone. `types` names their specialties.
 */
export function renderExperts(box, experts, types, onChoose) {
  const anyone = choiceButton(
    "choice primary",
    { expert: "" },
    [span(i18n.t("kiosk.expert.anyone")), span(i18n.t("kiosk.expert.anyone_hint"), "sub")],
    () => onChoose(null),
  );
  const sorted = [...experts].sort(
    (a, b) => AVAILABILITY_ORDER[a.availability] - AVAILABILITY_ORDER[b.availability],
  );
  const buttons = sorted.map((expert) =>
    choiceButton(
      "choice",
      { expert: expert.id },
      [
        icon("expert"),
        span(expert.display_name),
        span(expert.specialties.map((c) => disputeName(types, c)).join(" · "), "sub"),
        span(i18n.t(`kiosk.expert.${expert.availability}`), `availability ${expert.availability}`),
      ],
      () => onChoose(expert.id),
    ),
  );
  box.replaceChildren(anyone, ...buttons);
}

/**
 * The recording notice in the page's language, shown in `el`: {version, language, body}.
 * When the server cannot serve it, the catalogue's text with `fallbackVersion`.
 */
export async function loadNotice(token, el, fallbackVersion) {
  const language = i18n.current();
  let notice;
  try {
    const got = await api("GET", `/api/notice?language=${encodeURIComponent(language)}`, {
      token,
    });
    notice = { version: got.version, language: got.language, body: got.body };
  } catch (err) {
    notice = { version: fallbackVersion, language, body: null };
  }
  el.textContent = notice.body ?? i18n.t("kiosk.consent.notice_fallback");
  el.dataset.version = notice.version ?? "";
  return notice;
}
