"""The journeys of issue 6 in real Chromium: kiosk and expert console against the service."""

from __future__ import annotations

import pytest

from recorder.verify import verify
from storage import ids
from storage.errors import NotFound
from storage.records import Rating
from tests.media.util import until
from tests.web.conftest import BLUE, GREEN, RED, YELLOW
from tests.web.journeys import (
    accept_ring,
    enrolment_code,
    expert_on_duty,
    hears,
    kiosk_calls,
    open_kiosk,
    screen,
    sees,
    sees_among_tiles,
    tile,
    url,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_kiosk_call_shows_each_side_live_and_is_recorded(service, pages, shots):
    """A kiosk enrols with the admin's code on its keypad, calls, the expert is rung and
    accepts; each sees and hears the other; the call is recorded while it runs and its
    recording verifies after hang-up."""
    service.add_person("amy", "expert", specialties=["family"])
    device_id, _ = service.add_device("kiosk", "Kiosk Hall A")
    enrolment = await enrolment_code(service, device_id)
    expert = await expert_on_duty(pages, service, "amy", shots)
    kiosk = await pages.open("kiosk-red", url(service, "kiosk.html"))
    await screen(kiosk, "enrol")
    for digit in enrolment["code"]:
        await kiosk.click(f"#keypad [data-digit='{digit}']")
    await shots(kiosk, "kiosk-enrol-code-typed")
    await kiosk.click("#enrol-submit")
    await screen(kiosk, "welcome")
    await kiosk.wait_for_selector("#selftest[data-reported=yes]")
    health = service.store.get_device_health(device_id)
    assert health is not None
    assert (health.camera, health.microphone) == ("ok", "ok")
    assert health.app_build.startswith("kiosk-web")
    await shots(kiosk, "kiosk-welcome")

    await kiosk_calls(kiosk, "family", shots)
    await accept_ring(expert, shots)
    await screen(kiosk, "call")

    await sees(kiosk, tile("expert"), GREEN, "kiosk sees the expert")
    await sees(expert, tile("caller"), RED, "expert sees the kiosk")
    await hears(kiosk, tile("expert"), 660, "kiosk hears the expert")
    await hears(expert, tile("caller"), 440, "expert hears the kiosk")
    await kiosk.wait_for_selector("#recording", state="visible")
    await expert.wait_for_selector("#recording", state="visible")
    await shots(kiosk, "kiosk-in-call")
    await shots(expert, "expert-in-call")

    call_id = await kiosk.evaluate("window.kioskMedia.callId")
    await expert.click("#hangup")
    await expert.wait_for_selector("#outcome-form", state="visible")
    await shots(expert, "expert-outcome-form")
    await screen(kiosk, "rating")
    await kiosk.wait_for_selector("#recording", state="hidden")
    await shots(kiosk, "kiosk-rating")
    # The citizen's rating was stored but the reply was lost (a dropped connection), so the
    # page offers the form again: sending it again thanks them; it does not say "not saved".
    service.store.add_rating(Rating(call_id, 5, None, device_id, None, ids.now_ms()))
    await kiosk.click("#stars [data-stars='5']")
    await kiosk.click("#rating-submit")
    await kiosk.wait_for_selector("#message-text[data-key='kiosk.rating.thanks']")

    recordings = service.hub.recordings
    await until(
        lambda: service.store.get_recording(call_id).status != "recording",
        recordings.changed,
        30,
    )
    await recordings.uploader.wait_idle(30)
    rec = service.store.get_recording(call_id)
    assert rec.status == "complete"
    report = verify(
        recordings.object_store,
        rec.prefix,
        recordings.keyring.trusted(),
        expected_head=(rec.chain_count, rec.chain_head),
    )
    assert report.ok, report.format_report()


async def test_b_queue_second_kiosk_sees_its_place_and_is_served_next(service, pages, shots):
    """With the only expert busy, a second kiosk is told its place in the queue, and is
    rung through to the expert as soon as the first call ends."""
    service.add_person("amy", "expert", specialties=["neighbours"])
    _, first_token = service.add_device("kiosk", "Kiosk A")
    second_id, _ = service.add_device("kiosk", "Kiosk B")
    expert = await expert_on_duty(pages, service, "amy")
    first = await open_kiosk(pages, service, first_token)
    # The second kiosk is set up from the enrolment link (the admin's QR code).
    link = (await enrolment_code(service, second_id))["link"]
    assert link.startswith(service.base_url + "/web/kiosk.html#enrol=")
    second = await pages.open("kiosk-yellow", link)
    await screen(second, "welcome")
    # The link opened again (the QR code scanned twice): its code is spent, and the kiosk
    # keeps the token it has instead of stopping at the set-up screen.
    await second.goto(link)  # the page had dropped the fragment: only the fragment changes
    await second.reload()  # so load it afresh, as a scan opens it
    await screen(second, "welcome")
    assert await second.is_hidden("#enrol-error")

    await kiosk_calls(first, "neighbours")
    await accept_ring(expert)
    await sees(expert, tile("caller"), RED, "expert sees the first kiosk")

    await kiosk_calls(second, "neighbours", name="second-kiosk")
    await screen(second, "calling")
    await second.wait_for_selector("#queue-position[data-position='1']")
    assert "1" in await second.inner_text("#queue-position")
    await shots(second, "second-kiosk-queued")

    await first.click("#hangup")
    await screen(first, "rating")
    await shots(first, "first-kiosk-rating")
    await accept_ring(expert, shots, name="expert-second-call")
    await screen(second, "call")
    await sees(expert, tile("caller"), YELLOW, "expert sees the second kiosk")
    await sees(second, tile("expert"), GREEN, "second kiosk sees the expert")
    await shots(second, "second-kiosk-in-call")


async def test_c_expert_invites_a_second_expert_and_all_three_see_each_other(service, pages, shots):
    """An expert invites a colleague by name; the colleague's console rings, and once accepted
    every one of the three browsers shows the other two, live, in their colours."""
    service.add_person("amy", "expert", specialties=["labour"])
    bob_id = service.add_person("bob", "expert", specialties=["property"])
    _, token = service.add_device("kiosk", "Kiosk A")
    amy = await expert_on_duty(pages, service, "amy")
    bob = await expert_on_duty(pages, service, "bob", device="expert-blue")
    kiosk = await open_kiosk(pages, service, token)

    await kiosk_calls(kiosk, "labour")
    await accept_ring(amy)
    await sees(amy, tile("caller"), RED, "amy sees the kiosk")

    await amy.click("#invite")
    await amy.wait_for_selector(
        f'#invite-expert option[value="{bob_id}"]:not([disabled])', state="attached"
    )
    await amy.select_option("#invite-expert", bob_id)
    await shots(amy, "amy-invite-panel")
    await amy.click("#invite-expert-send")
    await amy.wait_for_selector("#invite-status[data-key='expert.invite.sent']")
    await bob.wait_for_selector("#rings .ring")
    await shots(bob, "bob-invited")
    await accept_ring(bob)

    for page, who, colours in (
        (kiosk, "kiosk", (GREEN, BLUE)),
        (amy, "amy", (RED, BLUE)),
        (bob, "bob", (RED, GREEN)),
    ):
        for colour in colours:
            await sees_among_tiles(page, colour, f"{who} sees {colour}")
    await kiosk.wait_for_selector(".notice-item[data-notice=joined]")
    await shots(kiosk, "kiosk-three-party")
    await shots(amy, "amy-three-party")
    await shots(bob, "bob-three-party")


async def test_d_camera_denied_shows_a_message_and_returns_to_welcome(service, pages, shots):
    """Without camera permission the kiosk says so in words, places no call, and comes back
    to the welcome screen by itself."""
    device_id, token = service.add_device("kiosk", "Kiosk A")
    kiosk = await open_kiosk(pages, service, token, query="message_s=1", fake_ui=False)
    await kiosk.wait_for_selector("#selftest[data-reported=yes]")
    assert service.store.get_device_health(device_id).camera == "denied"
    await shots(kiosk, "kiosk-welcome-selftest-denied")
    await kiosk_calls(kiosk, "family")
    await kiosk.wait_for_selector("#message-text[data-key='kiosk.error.camera_denied']")
    await shots(kiosk, "kiosk-camera-denied")
    await screen(kiosk, "welcome")
    await shots(kiosk, "kiosk-back-to-welcome")
    assert service.store.list_calls() == []


async def test_e_expert_console_rings_audibly_after_start_duty_without_autoplay(
    service, pages, shots
):
    """In a browser that blocks sound until a user gesture, the "start duty" click unlocks
    it: an incoming call rings out loud (a running AudioContext playing the ring tones)."""
    service.add_person("amy", "expert", specialties=["consumer"])
    _, token = service.add_device("kiosk", "Kiosk A")
    # No page.evaluate before the click: Playwright evaluates with a user gesture.
    expert = await expert_on_duty(pages, service, "amy", autoplay=False, boot_audio_probe=True)
    kiosk = await open_kiosk(pages, service, token)
    await kiosk_calls(kiosk, "consumer")
    await expert.wait_for_selector("#rings .ring")
    await expert.wait_for_selector("body[data-ringing='1']")
    assert await expert.evaluate("window.expertRinger.context.state") == "running"
    await expert.wait_for_function(
        "() => window.expertRinger.oscillatorsStarted > 0 && "
        "window.__probe.strongest(window.expertRinger.analyser, [440, 480, 1000]).level > -40",
        polling=50,
    )
    await shots(expert, "expert-ringing-audibly")
    # The flag is really off in this browser: sound made at page load, without a gesture,
    # stayed suspended.
    assert await expert.evaluate("window.__bootAudioState") == "suspended"
    await expert.click("#rings .ring [data-action=decline]")
    await expert.wait_for_selector("body[data-ringing='']")
    assert await expert.evaluate("window.expertRinger.timer") is None


async def test_f_english_pages_show_no_chinese_on_any_state(service, pages, shots):
    """One tap switches each page to English; a whole call (including mute and camera-off as
    the other side sees them, the rating and the outcome form) shows no Chinese text, which
    every screenshot checks."""
    service.add_person("amy", "expert", specialties=["traffic"])
    _, token = service.add_device("kiosk", "Kiosk A")
    expert = await expert_on_duty(pages, service, "amy", shots, english=True)

    kiosk = await open_kiosk(pages, service, token)
    await kiosk.click("#lang-toggle")
    await kiosk.wait_for_selector("html[lang=en]", state="attached")
    await shots(kiosk, "kiosk-welcome-en")
    await kiosk_calls(kiosk, "traffic", shots, training=True)
    await screen(kiosk, "calling")
    await shots(kiosk, "kiosk-calling-en")
    await accept_ring(expert, shots)
    await screen(kiosk, "call")
    await sees(expert, tile("caller"), RED, "expert sees the kiosk")
    await kiosk.click("#mute")
    await kiosk.click("#camera")
    await expert.wait_for_selector(".tile[data-role=caller] .tile-state:not([hidden])")
    state = await expert.inner_text(".tile[data-role=caller] .tile-state")
    assert "Muted" in state and "Camera off" in state, state
    await shots(kiosk, "kiosk-muted-camera-off-en")
    await shots(expert, "expert-sees-muted-kiosk-en")
    await expert.click("#bookmark")
    await expert.fill("#bookmark-note", "The drivers agree on the facts")
    await expert.click("#bookmark-save")
    await expert.wait_for_selector("#bookmark-status[data-key='expert.bookmark.saved']")
    await shots(expert, "expert-bookmark-saved-en")

    await kiosk.click("#hangup")
    await screen(kiosk, "rating")
    await kiosk.click("#stars [data-stars='4']")
    await kiosk.click("#phrases [data-phrase=patient]")
    await shots(kiosk, "kiosk-rating-en")
    await kiosk.click("#rating-submit")
    await kiosk.wait_for_selector("#message-text[data-key='kiosk.rating.thanks']")
    await shots(kiosk, "kiosk-rating-sent-en")

    await expert.wait_for_selector("#outcome-form", state="visible")
    await expert.check("#outcome-form input[value=settled]")
    await expert.fill("#outcome-summary", "Both drivers share the repair costs.")
    await shots(expert, "expert-outcome-en")
    await expert.click("#outcome-submit")
    await expert.wait_for_selector("#outcome-form", state="hidden")
    row = expert.locator("#history tbody tr").first
    await row.locator("td:nth-child(5)", has_text="★★★★").wait_for()
    await row.locator("td:nth-child(6)", has_text="Settled").wait_for()
    await shots(expert, "expert-history-en")


async def test_g_kiosk_reload_mid_call_rejoins_as_the_same_participant(service, pages, shots):
    """A kiosk page reloaded in the middle of a call comes back into it as the same
    participant: new frames in its colour reach the expert, and it sees the expert again."""
    service.add_person("amy", "expert", specialties=["family"])
    _, token = service.add_device("kiosk", "Kiosk A")
    expert = await expert_on_duty(pages, service, "amy")
    kiosk = await open_kiosk(pages, service, token)
    await kiosk_calls(kiosk, "family")
    await accept_ring(expert)
    await sees(expert, tile("caller"), RED, "expert sees the kiosk")
    before = await kiosk.evaluate("window.kioskMedia.participantId")

    await kiosk.reload()
    await screen(kiosk, "call")
    await kiosk.wait_for_function("window.kioskMedia && window.kioskMedia.participantId")
    assert await kiosk.evaluate("window.kioskMedia.participantId") == before
    await sees(kiosk, tile("expert"), GREEN, "kiosk sees the expert after its reload")
    await sees(expert, tile("caller"), RED, "expert sees the kiosk", since="after the reload")
    await shots(kiosk, "kiosk-after-reload")


async def test_h_kiosk_reconnects_after_its_websocket_is_cut_at_the_server(service, pages, shots):
    """The server aborts the kiosk's WebSocket mid-call: the kiosk shows it is reconnecting,
    comes back as the same participant, and its media keeps reaching the expert."""
    service.add_person("amy", "expert", specialties=["family"])
    device_id, token = service.add_device("kiosk", "Kiosk A")
    expert = await expert_on_duty(pages, service, "amy")
    kiosk = await open_kiosk(pages, service, token)
    await kiosk_calls(kiosk, "family")
    await accept_ring(expert)
    await sees(expert, tile("caller"), RED, "expert sees the kiosk")
    participant = await kiosk.evaluate("window.kioskMedia.participantId")

    for session in service.hub.sessions_of(device_id):
        if session.connection is not None:
            session.connection.ws._req.transport.abort()  # the network drops, no goodbye
    await kiosk.wait_for_function(
        "() => window.kioskSignaling.history.slice(-2).join() === 'reconnecting,open'"
    )
    await screen(kiosk, "call")
    assert await kiosk.evaluate("window.kioskMedia.participantId") == participant
    await sees(expert, tile("caller"), RED, "expert sees the kiosk", since="after the drop")
    await sees(kiosk, tile("expert"), GREEN, "kiosk sees the expert after the drop")
    await kiosk.wait_for_selector("#reconnecting", state="hidden")
    await shots(kiosk, "kiosk-after-reconnect")


@pytest.mark.parametrize("policy", ["refuse", "unrecorded"])
async def test_i_consent_declined_follows_the_kiosk_setting_and_records_nothing(
    make_service, pages, shots, policy
):
    """A citizen who refuses recording: with `kiosk_without_consent = "refuse"` the kiosk says
    a call needs consent and goes back to welcome; with "unrecorded" the call runs without
    the recording indicator. Either way nothing is recorded."""
    service = await make_service(kiosk_without_consent=policy)
    service.add_person("amy", "expert", specialties=["other"])
    _, token = service.add_device("kiosk", "Kiosk A")
    expert = await expert_on_duty(pages, service, "amy")
    kiosk = await open_kiosk(pages, service, token, query="message_s=1")
    await kiosk_calls(kiosk, "other", consent=False)
    if policy == "refuse":
        await kiosk.wait_for_selector("#message-text[data-key='kiosk.consent.required']")
        await shots(kiosk, "kiosk-consent-required")
        await screen(kiosk, "welcome")
        assert service.store.list_calls() == []
        return
    await accept_ring(expert)
    await screen(kiosk, "call")
    await sees(expert, tile("caller"), RED, "expert sees the kiosk")
    await sees(kiosk, tile("expert"), GREEN, "kiosk sees the expert")
    assert await kiosk.is_hidden("#recording") and await expert.is_hidden("#recording")
    await shots(kiosk, "kiosk-unrecorded-call")
    (call,) = service.store.list_calls()
    await kiosk.click("#hangup")
    await screen(kiosk, "rating")
    assert service.store.list_recording_objects(call.id) == []
    with pytest.raises(NotFound):
        service.store.get_recording(call.id)


# Counts the page's getUserMedia calls (window.__cameraOpens), from the start of each document.
COUNT_CAMERA_OPENS = """
window.__cameraOpens = 0;
if (navigator.mediaDevices) {
  const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => {
    window.__cameraOpens += 1;
    return open(constraints);
  };
}
"""


async def test_j_kiosk_reloaded_mid_call_tests_itself_on_the_calls_camera(service, pages, shots):
    """A kiosk reloaded in the middle of a call opens its camera once, for the call, and reports
    its camera and microphone self-test (device.health) from that camera instead of opening it
    a second time."""
    service.add_person("amy", "expert", specialties=["family"])
    device_id, token = service.add_device("kiosk", "Kiosk A")
    expert = await expert_on_duty(pages, service, "amy")
    kiosk = await open_kiosk(pages, service, token, init_script=COUNT_CAMERA_OPENS)
    await kiosk.wait_for_selector("#selftest[data-reported=yes]")
    before = service.store.get_device_health(device_id)
    assert before is not None
    await kiosk_calls(kiosk, "family")
    await accept_ring(expert)
    await sees(expert, tile("caller"), RED, "expert sees the kiosk")

    await kiosk.reload()
    await screen(kiosk, "call")
    await kiosk.wait_for_selector("#selftest[data-reported=yes]", state="attached")
    await sees(expert, tile("caller"), RED, "expert sees the kiosk", since="after the reload")
    await sees(kiosk, tile("expert"), GREEN, "kiosk sees the expert after its reload")
    await shots(kiosk, "kiosk-after-reload-self-tested")
    assert await kiosk.evaluate("window.__cameraOpens") == 1
    assert await kiosk.get_attribute("#selftest", "data-camera") == "ok"
    after = service.store.get_device_health(device_id)
    assert after is not None and after.at > before.at
    assert (after.camera, after.microphone) == ("ok", "ok")
    assert after.app_build.startswith("kiosk-web")


async def test_k_a_pending_choice_survives_a_reload_and_closes_at_its_deadline(
    make_service, pages, shots
):
    """The kiosk's named expert is offline and nobody else is free: the choice panel shows,
    shows again after a reload (from the call view), and closes by itself when the server's
    deadline passes; the call waits on for anyone."""
    service = await make_service(ring_timeout_s=8)
    nina_id = service.add_person("nina", "expert", specialties=["neighbours"])
    _, token = service.add_device("kiosk", "Kiosk A")
    kiosk = await open_kiosk(pages, service, token)
    await kiosk_calls(kiosk, "neighbours", expert_id=nina_id)
    await screen(kiosk, "calling")
    await kiosk.wait_for_selector("#choice-panel", state="visible")
    await shots(kiosk, "kiosk-choice-offered")
    await kiosk.reload()
    await screen(kiosk, "calling")
    await kiosk.wait_for_selector("#choice-panel", state="visible")
    assert await kiosk.inner_text("#choice-deadline") != ""
    await shots(kiosk, "kiosk-choice-after-reload")
    await kiosk.wait_for_selector("#choice-panel", state="hidden", timeout=20000)
    await screen(kiosk, "calling")
    (call,) = service.store.list_calls()
    assert call.state == "queued"


async def test_l_cancel_pressed_while_the_kiosk_is_offline_is_sent_when_it_is_back(
    service, pages, shots
):
    """Nobody answers; the kiosk's network drops and the citizen taps "cancel" meanwhile: the
    cancel goes out once the connection is back, so no expert is rung for an empty kiosk."""
    service.add_person("nina", "expert", specialties=["neighbours"])  # offline: no answer
    device_id, token = service.add_device("kiosk", "Kiosk A")
    kiosk = await open_kiosk(pages, service, token)
    await kiosk_calls(kiosk, "neighbours")
    await screen(kiosk, "calling")
    await kiosk.context.set_offline(True)
    for session in service.hub.sessions_of(device_id):
        if session.connection is not None:
            session.connection.ws._req.transport.abort()  # the network drops, no goodbye
    await kiosk.wait_for_selector("#reconnecting", state="visible")
    await kiosk.click("#calling-cancel")
    await kiosk.wait_for_selector("#calling-cancel[data-i18n='kiosk.calling.cancelling']:disabled")
    await shots(kiosk, "kiosk-cancel-while-offline")
    (call,) = service.store.list_calls()
    assert call.state != "ended"  # nothing could reach the server yet
    await kiosk.context.set_offline(False)
    await screen(kiosk, "welcome")
    (call,) = service.store.list_calls()
    assert (call.state, call.end_reason) == ("ended", "cancelled")
