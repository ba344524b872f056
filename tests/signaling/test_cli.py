"""The `mediation` command as an operator runs it: real processes, real signals."""

from __future__ import annotations

import asyncio
import re
import signal

import pytest

from signaling import messages as m
from signaling.client import SignalingClient, login
from tests.serverproc import free_port, run, start_server


async def test_first_start_prints_demo_logins_once_and_a_second_start_reuses_them(
    tmp_path, servers
):
    port = free_port()
    first = await start_server(tmp_path, port)
    servers.append(first)
    assert "Demo accounts" in first.banner
    passwords = dict(re.findall(r"user (\S+)\s+password (\S+)", first.banner))
    assert set(passwords) >= {
        "admin",
        "evidence",
        "trainer",
        "officer",
        "expert_family",
        "expert_traffic",
        "expert_labour",
    }
    tokens = re.findall(r"token (dev_\S+)", first.banner)
    assert len(tokens) == 2  # one kiosk, one station
    assert (tmp_path / "data" / "metadata.sqlite3").exists()
    assert (tmp_path / "data" / "objects").is_dir()
    first.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(first.proc.wait(), 30) == 0

    second = await start_server(tmp_path, port)
    servers.append(second)
    assert "Demo accounts" not in second.banner
    token = await login(second.base_url, "expert_family", passwords["expert_family"])
    kiosk = await SignalingClient.connect(f"ws://127.0.0.1:{port}/ws", device_token=tokens[0])
    assert token.startswith("ses_")
    assert kiosk.auth["principal"]["role"] == "kiosk"
    await kiosk.close()


async def test_sigterm_tells_clients_to_reconnect_and_exits_in_time(tmp_path, servers):
    port = free_port()
    server = await start_server(tmp_path, port)
    servers.append(server)
    kiosk_token = re.findall(r"token (dev_\S+)", server.banner)[0]
    client = await SignalingClient.connect(f"ws://127.0.0.1:{port}/ws", device_token=kiosk_token)
    await client.next_event("snapshot")
    server.proc.send_signal(signal.SIGTERM)
    notice = await client.next_event("server.shutdown", timeout=10)
    assert notice["payload"]["reconnect_after_ms"] > 0
    assert await client.wait_closed(timeout=10) == m.CLOSE_SERVICE_RESTART
    assert await asyncio.wait_for(server.proc.wait(), 15) == 0


def test_a_bad_setting_stops_the_start_with_one_line_naming_it(tmp_path):
    result = run(["serve"], tmp_path, MEDIATION_RING_TIMEOUT_S="soon")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "ring_timeout_s" in lines[0] and "MEDIATION_RING_TIMEOUT_S" in lines[0]


def test_users_and_devices_are_managed_from_the_command_line(tmp_path):
    added = run(
        [
            "users",
            "add",
            "amy",
            "--role",
            "expert",
            "--display-name",
            "Amy",
            "--specialty",
            "family",
        ],
        tmp_path,
    )
    assert added.returncode == 0, added.stderr
    assert re.search(r"password: \S{8,}", added.stdout)
    listed = run(["users", "list"], tmp_path)
    assert "amy" in listed.stdout and "expert" in listed.stdout and "active" in listed.stdout
    assert run(["users", "disable", "amy"], tmp_path).returncode == 0
    assert "disabled" in run(["users", "list"], tmp_path).stdout
    assert re.search(r"password: \S{8,}", run(["users", "passwd", "amy"], tmp_path).stdout)
    missing = run(["users", "disable", "nobody"], tmp_path)
    assert missing.returncode == 1 and "nobody" in missing.stderr

    device = run(["devices", "add", "--kind", "kiosk", "--name", "Gate 3"], tmp_path)
    assert device.returncode == 0
    device_id = re.search(r"\((\S+)\)", device.stdout).group(1)
    first_token = re.search(r"token: (dev_\S+)", device.stdout).group(1)
    rotated = run(["devices", "rotate-token", device_id], tmp_path)
    new_token = re.search(r"token: (dev_\S+)", rotated.stdout).group(1)
    assert new_token != first_token
    assert run(["devices", "disable", device_id], tmp_path).returncode == 0
    listed = run(["devices", "list"], tmp_path).stdout
    assert device_id in listed and "disabled" in listed
    unknown = run(["devices", "disable", "no-such-device"], tmp_path)
    assert unknown.returncode == 1 and "not found" in unknown.stderr.lower()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["serve"],
        ["users"],
        ["users", "add"],
        ["users", "list"],
        ["users", "disable"],
        ["devices"],
        ["devices", "add"],
        ["devices", "list"],
        ["devices", "disable"],
        ["devices", "rotate-token"],
    ],
)
def test_every_command_has_help(tmp_path, args):
    result = run([*args, "--help"], tmp_path)
    assert result.returncode == 0 and "usage: mediation" in result.stdout


def test_a_bad_value_in_the_config_file_names_the_setting_and_the_file(tmp_path):
    config = tmp_path / "mediation.toml"
    config.write_text("port = 8099\nmax_participants = 3\n")
    result = run(["serve", "--config", str(config)], tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "max_participants" in line and str(config) in line


async def test_serve_over_tls_gives_secure_cookies(tmp_path, servers):
    """Browsers give cameras only to https pages: the service can serve TLS itself."""
    import datetime
    import ipaddress
    import ssl

    import aiohttp
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    port = free_port()
    server = await start_server(
        tmp_path,
        port,
        MEDIATION_TLS_CERT_FILE=str(cert_file),
        MEDIATION_TLS_KEY_FILE=str(key_file),
    )
    servers.append(server)
    banner = server.banner
    assert f"serving on https://127.0.0.1:{port}/" in banner
    password = dict(re.findall(r"user (\S+)\s+password (\S+)", banner))["officer"]
    client_ssl = ssl.create_default_context(cafile=str(cert_file))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"https://127.0.0.1:{port}/api/login",
            json={"username": "officer", "password": password},
            ssl=client_ssl,
        ) as resp:
            assert resp.status == 200
            cookie = resp.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
