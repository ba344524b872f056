"""H.264 SPS sizes: what the recorder reads from a key frame equals what FFmpeg decodes."""

from __future__ import annotations

import fractions
from typing import Any

import av
import pytest

from recorder.h264 import SpsError, _rbsp, h264_size, sps_size


def key_frame(width: int, height: int, **options: str) -> bytes:
    """One Annex-B IDR access unit from libx264 (SPS and PPS in band)."""
    ctx: Any = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 15)
    ctx.options = {"tune": "zerolatency", **options}
    picture = av.VideoFrame(width, height, "yuv420p")
    for plane in picture.planes:
        plane.update(bytes([128]) * plane.buffer_size)
    picture.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(picture))
    data += b"".join(bytes(p) for p in ctx.encode(None))
    return data


def decoded_size(annexb: bytes) -> tuple[int, int]:
    ctx: Any = av.CodecContext.create("h264", "r")
    frames = ctx.decode(av.Packet(annexb)) + ctx.decode(None)
    return frames[0].width, frames[0].height


@pytest.mark.parametrize(
    ("width", "height", "options"),
    [
        (320, 240, {}),  # high profile: chroma format and bit depths in the SPS
        (640, 480, {"profile": "baseline"}),
        (1280, 720, {"profile": "main"}),
        (326, 246, {}),  # not a multiple of 16: frame cropping
        (176, 144, {"profile": "baseline"}),
    ],
)
def test_the_sps_size_is_the_decoded_size(width: int, height: int, options: dict[str, str]) -> None:
    data = key_frame(width, height, **options)
    assert h264_size(data) == (width, height) == decoded_size(data)


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def nal(self, header: int) -> bytes:
        bits = self.bits + [1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)
        rbsp = bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))
        out, zeros = bytearray([header]), 0
        for byte in rbsp:  # emulation prevention (7.4.1)
            if zeros >= 2 and byte <= 3:
                out.append(3)
                zeros = 0
            out.append(byte)
            zeros = zeros + 1 if byte == 0 else 0
        return bytes(out)


def test_a_high_profile_interlaced_sps_with_scaling_lists_and_cropping() -> None:
    """What libx264 does not write by default: scaling lists (skipped), POC type 1 with a
    cycle, field coding (heights in map units of two macroblocks) and bottom cropping in
    4:2:0 (two lines per unit, doubled for fields)."""
    w = BitWriter()
    w.u(8, 100)  # profile_idc: high
    w.u(16, 0)  # constraint flags, level_idc 0 (makes zero bytes to escape)
    w.ue(0)  # seq_parameter_set_id
    w.ue(1)  # chroma_format_idc 4:2:0
    w.ue(0)
    w.ue(0)  # bit depths
    w.u(1, 0)  # qpprime_y_zero_transform_bypass_flag
    w.u(1, 1)  # seq_scaling_matrix_present_flag
    for i in range(8):
        present = i in (0, 6)
        w.u(1, int(present))
        if present:
            for delta in [3] + [0] * (15 if i < 6 else 63):
                w.se(delta)
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(1)  # pic_order_cnt_type 1
    w.u(1, 0)
    w.se(-2)
    w.se(1)
    w.ue(2)
    w.se(4)
    w.se(-4)
    w.ue(1)  # max_num_ref_frames
    w.u(1, 0)
    w.ue(19)  # 20 macroblocks wide: 320
    w.ue(14)  # 15 map units of 32 lines: 480
    w.u(1, 0)  # frame_mbs_only_flag: fields
    w.u(1, 1)  # mb_adaptive_frame_field_flag
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, 1)  # frame_cropping_flag
    for offset in (0, 0, 0, 2):
        w.ue(offset)
    w.u(1, 0)  # vui_parameters_present_flag
    sps = w.nal(0x67)
    assert sps_size(sps) == (320, 480 - 2 * 2 * 2)
    assert h264_size(b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01\x68\xce") == (320, 472)


def test_emulation_prevention_bytes_are_removed() -> None:
    assert _rbsp(b"\x67\x00\x00\x03\x01\x00\x00\x03\x00\x05") == b"\x00\x00\x01\x00\x00\x00\x05"


def test_no_sps_and_damaged_sps() -> None:
    data = key_frame(320, 240)
    without_sps = b"".join(
        b"\x00\x00\x01" + nal for nal in data.split(b"\x00\x00\x01") if nal and nal[0] & 0x1F != 7
    )
    assert h264_size(without_sps) is None
    sps = next(nal for nal in data.split(b"\x00\x00\x01") if nal and nal[0] & 0x1F == 7)
    with pytest.raises(SpsError, match="ends early"):
        sps_size(sps[:5])
    with pytest.raises(SpsError, match="not a sequence parameter set"):
        sps_size(b"\x68\xce\x38\x80")  # a PPS
