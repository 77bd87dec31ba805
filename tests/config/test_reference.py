"""docs/configuration.md and examples/mqttfast.toml agree with the code: every key is
documented with its default, every BrokerSettings field has a key, and the config
defaults are the broker's defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mqttfast.app.config import broker_settings, load_toml
from mqttfast.app.loader import FLAG_KEYS
from mqttfast.app.schema import SECTIONS, Config, reference_line, reference_rows
from mqttfast.codec.constants import MAX_PACKET_SIZE
from mqttfast.core.settings import BrokerSettings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "examples" / "mqttfast.toml"

# Keys with a flag but no BrokerSettings field of their own (the app reads them).
FLAG_FIELDS: dict[str, str] = {}


def test_every_key_documented_with_its_default() -> None:
    """Each key's row in docs/configuration.md is the schema's row: key, type, default
    and doc string (mqttfast.app.schema.reference_table prints a whole table)."""
    text = DOC.read_text().splitlines()
    for row in reference_rows():
        key = row[0]
        line = next((ln for ln in text if ln.startswith(f"| `{key}` |")), None)
        assert line is not None, f"{key} missing from {DOC.name}"
        assert line == reference_line(row), f"{key}: the doc says {line!r}"
    documented = {ln.split("`")[1] for ln in text if ln.startswith("| `") and "[" not in ln[:4]}
    keys = {r[0] for r in reference_rows()}
    stale = {k for k in documented if "." in k and k.split(".")[0] in SECTIONS} - keys
    assert not stale, f"documented keys that do not exist: {sorted(stale)}"


def test_every_flag_is_in_the_flag_table() -> None:
    """The doc's flag -> key table names every flag the loader applies."""
    text = DOC.read_text()
    for dest in [*FLAG_KEYS, "host", "port"]:
        flag = "--" + dest.replace("_", "-")
        assert f"`{flag}`" in text, f"{flag} missing from the flag table of {DOC.name}"


def test_every_broker_setting_has_a_key() -> None:
    covered = {"host", "port"}  # from the first [[listener]]
    for _name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.metadata.get("settings"):
                covered.add(f.metadata["settings"])
            if f.metadata.get("flag") in FLAG_FIELDS:
                covered.add(FLAG_FIELDS[f.metadata["flag"]])
    missing = {f.name for f in dataclasses.fields(BrokerSettings)} - covered
    assert not missing, f"BrokerSettings fields without a config key: {sorted(missing)}"


def test_config_defaults_are_the_broker_defaults() -> None:
    defaults = BrokerSettings()
    for name, cls in SECTIONS.items():
        obj = cls()
        for f in dataclasses.fields(cls):
            target = f.metadata.get("settings") or FLAG_FIELDS.get(f.metadata.get("flag") or "")
            if not target:
                continue
            value = getattr(obj, f.name)
            expected = getattr(defaults, target)
            if target == "max_packet_size":
                value = value or MAX_PACKET_SIZE
            assert value == expected, f"{name}.{f.name}: {value!r} != BrokerSettings {expected!r}"


def test_every_present_key_is_applied() -> None:
    """A file setting every settings-backed key to a non-default value changes that field."""
    data: dict = {}
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if not f.metadata.get("settings") and f.metadata.get("flag") not in FLAG_FIELDS:
                continue
            typ = str(f.type)
            if "bool" in typ:
                value = not getattr(cls(), f.name)
            elif "str" in typ:
                value = "relaxed" if f.metadata.get("choices") else "x-value"
            else:
                value = 2 if getattr(cls(), f.name) == 1 else 1
            data.setdefault(name, {})[f.name] = value
    from mqttfast.app.config import from_dict

    settings = broker_settings(from_dict(data))
    defaults = BrokerSettings()
    for name, table in data.items():
        for key in table:
            f = next(f for f in dataclasses.fields(SECTIONS[name]) if f.name == key)
            target = f.metadata.get("settings") or FLAG_FIELDS[f.metadata["flag"]]
            assert getattr(settings, target) != getattr(defaults, target), f"{name}.{key}"


def test_example_file_is_valid_and_in_the_docs() -> None:
    cfg = load_toml(str(EXAMPLE))
    assert isinstance(cfg, Config) and len(cfg.listener) == 3
    assert EXAMPLE.read_text() in DOC.read_text()
