"""Guard: the aiortc/aioice internals media.hooks relies on are still there.

If an upgrade moves any of them this fails loudly, before a call silently stops
forwarding. Versions are pinned in pyproject.toml; this checks them too.
"""

from __future__ import annotations

import aioice
import aioice.ice
import aiortc
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport

from media import hooks


def test_pinned_versions_are_the_ones_the_hooks_were_written_for():
    assert aiortc.__version__.startswith(hooks.SUPPORTED_AIORTC)
    assert aioice.__version__.startswith(hooks.SUPPORTED_AIOICE)
    hooks.check_versions()


async def test_private_attributes_used_by_the_hooks_exist():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        receiver, sender = transceiver.receiver, transceiver.sender
        assert isinstance(receiver, RTCRtpReceiver) and isinstance(sender, RTCRtpSender)
        assert isinstance(transceiver, RTCRtpTransceiver)
        for name in ("_RTCRtpReceiver__remote_streams", "_RTCRtpReceiver__codecs"):
            assert hasattr(receiver, name), name
        for name in (
            "_handle_rtp_packet",
            "_handle_rtcp_packet",
            "_send_rtcp_pli",
            "_send_rtcp_nack",
        ):
            assert callable(getattr(receiver, name)), name
        for name in (
            "_RTCRtpSender__ntp_timestamp",
            "_RTCRtpSender__rtp_timestamp",
            "_RTCRtpSender__octet_count",
            "_RTCRtpSender__packet_count",
            "_ssrc",
        ):
            assert hasattr(sender, name), name
        assert callable(sender._handle_rtcp_packet) and callable(sender._send_keyframe)
        assert transceiver._codecs == []
        dtls = receiver.transport
        assert isinstance(dtls, RTCDtlsTransport)
        assert hasattr(dtls, "_tx_srtp") and hasattr(dtls, "_rx_srtp")
        assert dtls._state is hooks.DtlsState.NEW
        connection = dtls.transport._connection
        assert isinstance(connection, aioice.Connection)
        assert connection._nominated == {}
        assert callable(aioice.ice.get_host_addresses)
    finally:
        await pc.close()


def test_pylibsrtp_internals_for_in_place_protection_exist():
    import pylibsrtp
    from pylibsrtp._binding import lib

    assert callable(lib.srtp_protect)
    key = bytes(range(30))
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    session = pylibsrtp.Session(policy)
    assert len(session._cdata) >= 1500 and len(session._buffer) == len(session._cdata)
    assert session._srtp[0] is not None


def test_in_place_protection_gives_the_same_bytes_as_pylibsrtp():
    import pylibsrtp

    from media.rtp import build_header

    key = bytes(range(30))

    def session():
        return pylibsrtp.Session(
            pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        )

    ours, theirs = session(), session()
    for seq in range(3):
        header = build_header(seq == 2, 96, 1000 + seq, 90000 * seq, 0xABCDEF)
        payload = bytes([seq]) * 900
        assert hooks.protect_in_place(ours, header, payload) == theirs.protect(header + payload)


def test_our_ntp_clock_agrees_with_aiortcs():
    from aiortc.clock import current_ntp_time

    assert abs(hooks.ntp_now() - current_ntp_time()) < (1 << 32) // 100  # within 10 ms


def test_in_place_unprotection_recovers_the_packet():
    import pylibsrtp

    from media.rtp import build_header

    key = bytes(range(30))
    sender = pylibsrtp.Session(
        pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    )
    receiver = pylibsrtp.Session(
        pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    )
    packet = build_header(True, 96, 7, 1234, 42) + b"payload" * 50
    view = hooks.unprotect_in_place(receiver, sender.protect(packet))
    assert view is not None and bytes(view) == packet
    assert hooks.unprotect_in_place(receiver, b"\x80" + bytes(40)) is None  # fails authentication
