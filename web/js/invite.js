// Inviting another expert into a call, shared by the station and the expert console: the
// panel's choices (#invite-specialty, #invite-expert, #invite-expert-send) and the request
// with its outcome in #invite-status.

import * as i18n from "./i18n.js";

const $ = (id) => document.getElementById(id);
const PRESENT = new Set(["joining", "connected", "reconnecting"]);
const KNOWN_ERRORS = ["expert_unavailable", "no_expert_available", "call_full"];

/** The dispute types as specialties to invite by, the call's own selected. */
export function fillSpecialties(types, call) {
  const specialty = $("invite-specialty");
  specialty.replaceChildren();
  for (const type of types) {
    const option = document.createElement("option");
    option.value = type.code;
    option.textContent = i18n.pick(type.name_zh, type.name_en);
    specialty.append(option);
  }
  if (call) specialty.value = call.dispute_type;
}

/** The experts not in the call (nor `selfId`), the available ones choosable, the first chosen. */
export function fillExperts(experts, call, selfId = null) {
  const inCall = new Set(
    (call ? call.participants : []).filter((p) => PRESENT.has(p.state)).map((p) => p.principal_id),
  );
  const select = $("invite-expert");
  select.replaceChildren();
  for (const e of experts) {
    if (inCall.has(e.id) || e.id === selfId) continue;
    const option = document.createElement("option");
    option.value = e.id;
    option.textContent = `${e.display_name} · ${i18n.t(`expert.availability.${e.availability}`)}`;
    option.disabled = e.availability !== "available";
    select.append(option);
  }
  const firstFree = [...select.options].find((o) => !o.disabled);
  if (firstFree) select.value = firstFree.value;
  $("invite-expert-send").disabled = !firstFree;
}

/** `call.invite` by specialty or expert; the outcome, worded, in #invite-status. */
export async function sendInvite(sig, call, payload) {
  if (!call) return;
  const status = $("invite-status");
  try {
    await sig.request("call.invite", { call_id: call.id, ...payload });
    status.dataset.key = "expert.invite.sent";
  } catch (err) {
    console.info("[invite]", err.code);
    status.dataset.key = KNOWN_ERRORS.includes(err.code)
      ? `expert.invite.error.${err.code}`
      : "expert.invite.error.other";
  }
  status.textContent = i18n.t(status.dataset.key);
}
