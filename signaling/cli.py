"""`mediation`: serve, and manage users and devices in the metadata store."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import secrets
import ssl
import sys
from collections.abc import Sequence

from signaling.config import ConfigError, Settings, load_settings
from signaling.demo import format_logins, seed_demo
from signaling.logs import configure_logging
from signaling.permissions import ACCOUNT_ROLES, DEVICE_KINDS
from storage import MetadataStore, StorageError

log = logging.getLogger("signaling.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediation", description="Remote video mediation service."
    )
    parser.add_argument("--config", help="TOML settings file (default: $MEDIATION_CONFIG)")
    # `mediation serve --config FILE` works as well as `mediation --config FILE serve`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="TOML settings file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the service", description="Run the service.", parents=[common]
    )
    serve.add_argument("--host", help="listen address (setting host)")
    serve.add_argument("--port", type=int, help="listen port (setting port)")
    serve.add_argument("--data-dir", help="data folder (setting data_dir)")

    users = sub.add_parser(
        "users", help="manage people's accounts", parents=[common]
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    add = users.add_parser("add", help="create an account; prints a password if none is given")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=sorted(ACCOUNT_ROLES))
    add.add_argument("--display-name", required=True)
    add.add_argument(
        "--specialty", action="append", default=[], help="dispute type code (experts; repeat)"
    )
    add.add_argument("--on-duty", action="store_true", help="expert joins the duty pool")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    users.add_parser("list", help="list accounts")
    disable = users.add_parser("disable", help="disable an account (ends its connections)")
    disable.add_argument("username")
    passwd = users.add_parser("passwd", help="set a new random password and print it")
    passwd.add_argument("username")

    devices = sub.add_parser(
        "devices", help="manage kiosks and stations", parents=[common]
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    dadd = devices.add_parser("add", help="register a device; prints its token once")
    dadd.add_argument("--kind", required=True, choices=sorted(DEVICE_KINDS))
    dadd.add_argument("--name", required=True)
    devices.add_parser("list", help="list devices")
    ddisable = devices.add_parser("disable", help="disable a device (ends its connection)")
    ddisable.add_argument("device_id")
    rotate = devices.add_parser("rotate-token", help="issue a new token; the old one stops working")
    rotate.add_argument("device_id")

    verify = sub.add_parser(
        "verify",
        help="check a recording: every object, hash, link and signature",
        description=(
            "Re-read every object of a recording and check sizes, SHA-256 hashes, the hash "
            "chain, each Ed25519 signature against trusted keys, the manifest and, for a call "
            "id, the chain head kept in the database. Prints OK or each failed object and why; "
            "exits 1 on failure."
        ),
        parents=[common],
    )
    verify.add_argument("target", help="a call id, a manifest.json, or an export folder")
    verify.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="KEY",
        help="trusted public key: a PEM file, or keys.json / a saved GET /api/keys answer "
        "(repeat). A folder or manifest is checked against these only.",
    )
    export = sub.add_parser(
        "export",
        help="write a call's evidence bundle to a folder",
        description="Segments, chain links, manifest, replay files, public keys and a README "
        "(zh-CN and English) on how to verify, into a new folder.",
        parents=[common],
    )
    export.add_argument("call_id")
    export.add_argument("folder")
    sub.add_parser(
        "reindex",
        help="rebuild the recordings index from the object store alone",
        parents=[common],
    )
    keys = sub.add_parser("keys", help="evidence signing keys", parents=[common]).add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    keys.add_parser("list", help="list current and retired public keys")
    keys.add_parser("rotate", help="make a new current key; the old one is retired")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.command == "serve":
            changes = {
                name: value
                for name, value in (
                    ("host", args.host),
                    ("port", args.port),
                    ("data_dir", args.data_dir),
                )
                if value is not None
            }
            if changes:
                from pathlib import Path

                if "data_dir" in changes:
                    changes["data_dir"] = Path(changes["data_dir"])
                settings = settings.replace(**changes)
    except ConfigError as err:
        print(f"mediation: {err}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings)
    try:
        with MetadataStore.open(settings.db_path) as store:
            if args.command == "users":
                return _users(store, args)
            if args.command == "devices":
                return _devices(store, args)
            from signaling import evidence_cli

            return evidence_cli.run(settings, store, args)
    except StorageError as err:
        print(f"mediation: {err}", file=sys.stderr)
        return 1


def serve(settings: Settings) -> int:
    from aiohttp import web

    from signaling.app import create_app

    configure_logging(settings.log_format, settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.objects_dir.mkdir(parents=True, exist_ok=True)
    if settings.demo_accounts:
        with MetadataStore.open(settings.db_path) as store:
            logins = seed_demo(store)
        if logins:
            print(format_logins(logins), flush=True)
    ssl_context = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    loop = _new_loop()
    scheme = "https" if ssl_context else "http"

    def announce(*_: object) -> None:  # called by run_app once the socket listens
        print(f"mediation: serving on {scheme}://{settings.host}:{settings.port}/", flush=True)

    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ssl_context=ssl_context,
        shutdown_timeout=settings.shutdown_timeout_s,
        print=announce,
        loop=loop,
    )
    return 0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    if args.password_stdin:
        password = (
            sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
        )
        return password, False
    return secrets.token_urlsafe(9), True


def _users(store: MetadataStore, args: argparse.Namespace) -> int:
    if args.action == "add":
        password, generated = _read_password(args)
        if len(password) < 8:
            print("mediation: a password needs at least 8 characters", file=sys.stderr)
            return 2
        account = store.create_account(args.username, args.display_name, args.role, password)
        if args.role == "expert":
            store.set_expert_profile(account.id, args.specialty, args.on_duty)
        store.append_audit("cli", "account.created", account.id, {"role": args.role})
        print(f"created {account.role} {account.username} ({account.id})")
        if generated:
            print(f"password: {password}")
    elif args.action == "list":
        for a in store.list_accounts():
            state = "disabled" if a.disabled else "active"
            print(f"{a.id}  {a.username:<20} {a.role:<17} {state:<8} {a.display_name}")
    elif args.action in ("disable", "passwd"):
        found = store.find_account_by_username(args.username)
        if found is None:
            print(f"mediation: no account named {args.username!r}", file=sys.stderr)
            return 1
        if args.action == "disable":
            store.set_account_disabled(found.id, True)
            store.append_audit("cli", "account.disabled", found.id)
            print(f"disabled {found.username}")
        else:
            password = secrets.token_urlsafe(9)
            store.set_password(found.id, password)
            store.append_audit("cli", "account.password_changed", found.id)
            print(f"password: {password}")
    return 0


def _devices(store: MetadataStore, args: argparse.Namespace) -> int:
    if args.action == "add":
        device, token = store.create_device(args.kind, args.name)
        store.append_audit("cli", "device.created", device.id, {"kind": args.kind})
        print(f"created {device.kind} {device.name} ({device.id})")
        print(f"token: {token}")
    elif args.action == "list":
        for d in store.list_devices():
            state = "disabled" if d.disabled else "active"
            print(f"{d.id}  {d.kind:<8} {state:<8} last seen {d.last_seen_at}  {d.name}")
    elif args.action == "disable":
        store.set_device_disabled(args.device_id, True)
        store.append_audit("cli", "device.disable", args.device_id)
        print(f"disabled {args.device_id}")
    elif args.action == "rotate-token":
        token = store.rotate_device_token(args.device_id)
        store.append_audit("cli", "device.rotate-token", args.device_id)
        print(f"token: {token}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
