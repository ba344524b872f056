"""Export of one call's evidence into a self-describing folder a third party can check.

The bundle holds every object under the call's prefix at the same relative path, the
public keys its signatures name (`keys/<key_id>.pem`) and a README in Simplified Chinese and
English. The keys are there for convenience only: whoever checks must decide to trust them
(`mediation verify <folder> --trust keys/<key_id>.pem`, after comparing them with the keys
the operator publishes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recorder import evidence
from recorder.keyring import PublicKeyInfo
from recorder.segmenter import RecorderError
from recorder.verify import Source
from storage.objects import validate_key

__all__ = ["ExportError", "ExportSummary", "export_call", "readme"]

KEYS_DIR = "keys"


class ExportError(RecorderError):
    """The bundle cannot be written (folder not empty, nothing to export)."""


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    folder: Path
    prefix: str
    objects: int
    bytes: int
    key_ids: list[str] = field(default_factory=list)
    """Keys named by the chain and written to keys/."""
    missing_keys: list[str] = field(default_factory=list)
    """Keys named by the chain that the given public keys lack (not written)."""


def _check_folder(folder: Path) -> None:
    if folder.exists():
        if not folder.is_dir():
            raise ExportError(f"export folder {folder} exists and is not a folder")
        if any(folder.iterdir()):
            raise ExportError(f"export folder {folder} exists and is not empty")


def _named_key_ids(data: bytes) -> str | None:
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    key_id = obj.get("key_id") if isinstance(obj, dict) else None
    # Only a well-formed id can become a file name under keys/.
    if isinstance(key_id, str) and len(key_id) == 16 and set(key_id) <= set("0123456789abcdef"):
        return key_id
    return None


def export_call(
    source: Source, prefix: str, folder: Path, keyring_public: Sequence[PublicKeyInfo]
) -> ExportSummary:
    """Copy every object under `prefix` into `folder`, with the public keys and a README."""
    folder = Path(folder)
    evidence.call_id_of(prefix)
    _check_folder(folder)
    keys = sorted(source.list(prefix))
    if not keys:
        raise ExportError(f"no objects under {prefix}")
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    named: set[str] = set()
    for key in keys:
        rel = validate_key(key[len(prefix) :])
        path = folder.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        signed = key.endswith(".json") and (
            evidence.link_index(prefix, key) is not None or key == evidence.manifest_key(prefix)
        )
        head = b""
        with path.open("xb") as f:
            for chunk in source.open(key):
                f.write(chunk)
                total += len(chunk)
                if signed:
                    head += chunk
        if signed and (key_id := _named_key_ids(head)):
            named.add(key_id)
    published = {info.key_id: info for info in keyring_public}
    written = sorted(named & published.keys())
    if written:
        (folder / KEYS_DIR).mkdir()
    for key_id in written:
        (folder / KEYS_DIR / f"{key_id}.pem").write_text(published[key_id].public_pem, "ascii")
    summary = ExportSummary(
        folder=folder,
        prefix=prefix,
        objects=len(keys),
        bytes=total,
        key_ids=written,
        missing_keys=sorted(named - published.keys()),
    )
    (folder / "README.md").write_text(readme(summary, [published[k] for k in written]), "utf-8")
    return summary


def readme(summary: ExportSummary, keys: Sequence[PublicKeyInfo]) -> str:
    """The bundle's README: what is in it and how to check it, in zh-CN and English."""
    call_id = evidence.call_id_of(summary.prefix)
    first = keys[0].key_id if keys else "<key_id>"
    check_link = (
        f"openssl pkeyutl -verify -pubin -inkey keys/{first}.pem -rawin"
        " -in chain/000001.json -sigfile chain/000001.sig"
    )
    key_lines = "\n".join(
        f"- `keys/{k.key_id}.pem`: {k.created_utc} – {k.retired_utc or '(current / 当前)'}"
        for k in keys
    )
    if summary.missing_keys:
        key_lines += "\n" + "\n".join(
            f"- `{k}`: not included / 未包含 (ask the operator / 请向运营方索取)"
            for k in summary.missing_keys
        )
    return f"""# 通话证据包 / Call evidence bundle

- 通话 / Call: `{call_id}`
- 存储前缀 / Object prefix: `{summary.prefix}`
- 对象 / Objects: {summary.objects} ({summary.bytes} bytes)

公钥 / Public keys:

{key_lines or "- (none / 无)"}

## 中文

本文件夹包含一次调解通话的全部录像分段、哈希链、清单(manifest)及派生的回放文件,
相对路径与对象存储中的键一致:

- `<参与者id>/000001.webm`(或 `.mkv`):录像分段,每个分段可单独播放;
- `chain/000001.json` 与 `chain/000001.sig`:哈希链的第 1 个链接及其 Ed25519 签名
  (签名针对 `.json` 文件的原始字节);每个链接的 `prev` 为上一个链接文件的 SHA-256;
- `manifest.json` 与 `manifest.sig`:签名的清单,`chain.head` 为最后一个链接的 SHA-256;
- `replay/<参与者id>.webm`(或 `.mp4`):派生的回放文件,其哈希记录在清单中;
- `keys/<key_id>.pem`:签名公钥。

**重要:** 包内的公钥本身不可信。请先将其与运营方公布的公钥(`GET /api/keys`)或通过其他
可靠渠道获得的公钥进行比对,然后再明确指定信任。

### 用本软件校验

    mediation verify <本文件夹> --trust keys/{first}.pem

输出以 `OK` 开头表示全部通过;以 `FAILED` 开头时会逐条列出出错的对象及原因。
不带 `--trust` 时校验必然失败。

### 用标准工具手工校验(OpenSSL 3)

在本文件夹内执行:

1. 公钥的 key_id(应等于链接中的 `key_id`):

       openssl pkey -pubin -in keys/{first}.pem -outform DER | tail -c 32 | sha256sum | cut -c1-16

2. 校验一个链接的签名(应输出 `Signature Verified Successfully`):

       {check_link}

3. 链接之间的哈希:`sha256sum chain/000001.json` 的结果应等于 `chain/000002.json` 中的 `prev`;
   最后一个链接的哈希应等于 `manifest.json` 中的 `chain.head`,链接数应等于 `chain.count`。
4. 分段的哈希:`sha256sum <参与者id>/000001.webm` 应等于引用该分段的链接中的 `sha256`,
   文件大小(`stat -c %s`)应等于 `size`。
5. 清单签名同第 2 步(`-in manifest.json -sigfile manifest.sig`);回放文件的哈希与
   `manifest.json` 中 `replay` 的 `sha256` 比对。
6. 文件夹中不应有任何链接或清单未提及的文件(本说明和 `keys/` 除外)。

## English

This folder holds every recorded segment of one mediation call, its hash chain, its manifest
and the derived replay files, at the same relative paths as the object keys in storage:

- `<participant_id>/000001.webm` (or `.mkv`): recorded segments, each playable on its own;
- `chain/000001.json` and `chain/000001.sig`: link 1 of the hash chain and its Ed25519
  signature over the exact bytes of the `.json` file; each link's `prev` is the SHA-256 of the
  link file before it;
- `manifest.json` and `manifest.sig`: the signed manifest; `chain.head` is the SHA-256 of the
  last link;
- `replay/<participant_id>.webm` (or `.mp4`): derived replay files, hashed in the manifest;
- `keys/<key_id>.pem`: the signing public keys.

**Important:** the keys inside this bundle are not trusted by themselves. Compare them with
the keys the operator publishes (`GET /api/keys`) or that you obtained some other reliable
way, then trust them explicitly.

### Checking with this software

    mediation verify <this folder> --trust keys/{first}.pem

Output starting with `OK` means every check passed; `FAILED` lists each object that failed and
why. Without `--trust` the check always fails.

### Checking by hand with standard tools (OpenSSL 3)

In this folder:

1. The key id of a public key (must equal the links' `key_id`):

       openssl pkey -pubin -in keys/{first}.pem -outform DER | tail -c 32 | sha256sum | cut -c1-16

2. A link's signature (prints `Signature Verified Successfully`):

       {check_link}

3. The chain: `sha256sum chain/000001.json` equals the `prev` in `chain/000002.json`, and so
   on; the last link's hash equals `chain.head` in `manifest.json`, and the number of links
   equals `chain.count`.
4. A segment: `sha256sum <participant_id>/000001.webm` equals the `sha256` of the link naming
   it, and its size (`stat -c %s`) equals `size`.
5. The manifest's signature as in step 2 (`-in manifest.json -sigfile manifest.sig`); each
   replay file's hash against `replay` in `manifest.json`.
6. No file in the folder should be left unnamed by a link or the manifest (apart from this
   README and `keys/`).
"""
