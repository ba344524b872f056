"""The picture size an H.264 key frame announces, read from its sequence parameter set.

Pure: the recorder needs it to start a new segment when a publisher changes resolution (a
Matroska file has one video size). ITU-T H.264 (08/2021) 7.3.2.1.1 and, for the cropping,
7.4.2.1.1 (CropUnitX/CropUnitY, table 6-1).
"""

from __future__ import annotations

# profile_idc values whose SPS carries chroma format, bit depths and scaling matrices.
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class SpsError(ValueError):
    """Not a readable H.264 sequence parameter set."""


def _rbsp(nal: bytes) -> bytes:
    """The NAL unit's payload without its header byte and emulation-prevention bytes."""
    out = bytearray()
    zeros = 0
    for byte in nal[1:]:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        index = self.pos >> 3
        if index >= len(self.data):
            raise SpsError("sequence parameter set ends early")
        value = (self.data[index] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        """Unsigned Exp-Golomb (9.1)."""
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise SpsError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale if next_scale != 0 else last


def sps_size(nal: bytes) -> tuple[int, int]:
    """(width, height) in pixels, after cropping, of one SPS NAL unit (header byte first)."""
    if not nal or nal[0] & 0x1F != 7:
        raise SpsError("not a sequence parameter set")
    bits = _Bits(_rbsp(nal))
    profile_idc = bits.bits(8)
    bits.bits(16)  # constraint flags, reserved bits, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = 0
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc == 3:
            separate_colour_plane = bits.bit()
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.bit()  # qpprime_y_zero_transform_bypass_flag
        if bits.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.bit():
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.bit()  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field_flag
    bits.bit()  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if bits.bit():  # frame_cropping_flag
        crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue())
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_map_units * 16
    if chroma_format_idc == 0 or separate_colour_plane:
        unit_x, unit_y = 1, 2 - frame_mbs_only
    else:
        unit_x = 2 if chroma_format_idc in (1, 2) else 1
        unit_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
    width -= unit_x * (crop[0] + crop[1])
    height -= unit_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise SpsError(f"cropping leaves no picture ({width}x{height})")
    return width, height


def h264_size(annexb: bytes) -> tuple[int, int] | None:
    """The size the first SPS in an Annex-B access unit announces; None without an SPS."""
    for chunk in annexb.split(b"\x00\x00\x01"):
        nal = chunk.rstrip(b"\x00")  # a 4-byte start code leaves a zero on the previous unit
        if nal and nal[0] & 0x1F == 7:
            return sps_size(nal)
    return None
