"""Demo accounts and devices created on a first start with embedded defaults."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from storage import MetadataStore

# username, display name, role, specialties (dispute type codes), on duty
DEMO_PEOPLE = (
    ("admin", "管理员 Admin", "admin", (), False),
    ("evidence", "证据管理员 Evidence officer", "evidence_officer", (), False),
    ("trainer", "培训师 Trainer", "trainer", (), False),
    ("officer", "民警 Station officer", "station_officer", (), False),
    ("expert_family", "张调解员 Expert (family)", "expert", ("family", "neighbours"), True),
    ("expert_traffic", "李律师 Expert (traffic)", "expert", ("traffic", "consumer"), False),
    ("expert_labour", "王专家 Expert (labour)", "expert", ("labour", "property", "other"), False),
)
DEMO_DEVICES = (("kiosk", "演示警务亭 Demo kiosk"), ("station", "演示调解室 Demo station"))


@dataclass(frozen=True)
class DemoLogin:
    kind: str  # "account" | "device"
    name: str  # username or device name
    role: str
    secret: str  # password or device token, shown once


def seed_demo(store: MetadataStore) -> list[DemoLogin]:
    """Create the demo set if the store has no accounts yet; returns the logins made."""
    if store.list_accounts():
        return []
    made: list[DemoLogin] = []
    with store.transaction():
        for username, display_name, role, specialties, on_duty in DEMO_PEOPLE:
            password = secrets.token_urlsafe(9)
            account = store.create_account(username, display_name, role, password)
            if role == "expert":
                store.set_expert_profile(account.id, list(specialties), on_duty)
            made.append(DemoLogin("account", username, role, password))
        for kind, name in DEMO_DEVICES:
            device, token = store.create_device(kind, name)
            made.append(DemoLogin("device", f"{name} ({device.id})", kind, token))
        store.append_audit("system", "demo.seeded", None, {"accounts": len(DEMO_PEOPLE)})
    return made


def format_logins(logins: list[DemoLogin]) -> str:
    lines = [
        "Demo accounts (shown once; reset a password with `mediation users passwd NAME`):",
    ]
    for login in logins:
        if login.kind == "account":
            lines.append(f"  {login.role:<17} user {login.name:<15} password {login.secret}")
        else:
            lines.append(f"  {login.role:<17} device {login.name}\n{'':21}token {login.secret}")
    return "\n".join(lines)
