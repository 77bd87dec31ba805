"""The worked JWT plug-in: HS256 token as the MQTT password (RFC 7519/7515)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from mqttfast.app.security.auth import Authenticator, load_plugin
from mqttfast.app.security.jwt_example import JwtAuthPlugin, make_hs256_token
from mqttfast.app.security.passwords import PasswordFile
from mqttfast.codec.constants import ReasonCode

pytestmark = pytest.mark.timeout(30)

SECRET = b"k" * 32
NOW = 1_700_000_000
PEER = ("127.0.0.1", 1)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(claims: dict, secret: bytes = SECRET, header: dict | None = None) -> bytes:
    if header is None:
        return make_hs256_token(claims, secret).encode()
    h = b64(json.dumps(header).encode())
    p = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(sig)}".encode()


@pytest.fixture
def plugin() -> JwtAuthPlugin:
    return JwtAuthPlugin(
        {"secret": SECRET.decode(), "audience": "mqtt", "leeway": 5}, clock=lambda: NOW
    )


def good_claims(**extra) -> dict:
    return {"sub": "dev1", "aud": "mqtt", "exp": NOW + 60, "iat": NOW, **extra}


def test_valid_token_accepted(plugin: JwtAuthPlugin) -> None:
    assert plugin.authenticate("c", "dev1", token(good_claims()), PEER) is True


def test_independent_signature_matches() -> None:
    """Our signer against a hand-built RFC 7515 JWS: same header+payload, same signature."""
    claims = {"sub": "x", "exp": 1}
    ours = make_hs256_token(claims, SECRET)
    h, p, s = ours.split(".")
    assert json.loads(base64.urlsafe_b64decode(h + "==")) == {"alg": "HS256", "typ": "JWT"}
    expected = hmac.new(SECRET, f"{h}.{p}".encode(), hashlib.sha256).digest()
    assert s == b64(expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda: token(good_claims(exp=NOW - 10)),  # expired (beyond leeway)
        lambda: token({k: v for k, v in good_claims().items() if k != "exp"}),  # no exp
        lambda: token(good_claims(nbf=NOW + 60)),  # not yet valid
        lambda: token(good_claims(aud="other")),  # wrong audience
        lambda: token(good_claims(sub="dev2")),  # sub != username
        lambda: token(good_claims(), secret=b"x" * 32),  # wrong key
        lambda: token(good_claims(), header={"alg": "none"}),  # alg none
        lambda: token(good_claims(), header={"alg": "HS512"}),  # alg switch
        lambda: token(good_claims(), header={"alg": "HS256", "crit": ["x"]}),
        lambda: token(good_claims())[:-2] + b"AA",  # tampered signature
        lambda: b".".join(
            [
                token(good_claims()).split(b".")[0],
                b64(json.dumps(good_claims(sub="admin")).encode()).encode(),
                token(good_claims()).split(b".")[2],
            ]
        ),  # tampered payload
        lambda: b"a.b.c",  # garbage
    ],
)
def test_bad_tokens_refused(plugin: JwtAuthPlugin, make) -> None:
    assert plugin.authenticate("c", "dev1", make(), PEER) is False


def test_expiry_leeway(plugin: JwtAuthPlugin) -> None:
    assert plugin.authenticate("c", "dev1", token(good_claims(exp=NOW - 3)), PEER) is True


def test_non_jwt_password_defers_to_password_file(plugin: JwtAuthPlugin, tmp_path: Path) -> None:
    assert plugin.authenticate("c", "alice", b"plain password", PEER) is None
    assert plugin.authenticate("c", "alice", None, PEER) is None
    pw = tmp_path / "pw"
    pf = PasswordFile()
    pf.set("alice", "plain password", iterations=1000)
    pf.save(pw)
    auth = Authenticator(password_file=pw, plugins=[plugin])
    assert auth.authenticate("c", "alice", b"plain password", PEER) == ReasonCode.SUCCESS
    assert auth.authenticate("c", "dev1", token(good_claims()), PEER) == ReasonCode.SUCCESS
    assert (
        auth.authenticate("c", "dev1", token(good_claims(exp=NOW - 100)), PEER)
        == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    )


def test_topic_rights_from_claims(plugin: JwtAuthPlugin) -> None:
    rights = {"pub": ["dev1/out/#"], "sub": ["dev1/in/+", "$SYS/broker/uptime"]}
    auth = Authenticator(plugins=[plugin])
    assert auth.authenticate("c1", "dev1", token(good_claims(mqtt=rights)), PEER) == 0
    assert auth.authorise_publish("c1", "dev1", "dev1/out/temp")
    assert not auth.authorise_publish("c1", "dev1", "dev2/out/temp")
    assert auth.authorise_subscribe("c1", "dev1", "dev1/in/+")
    assert auth.authorise_subscribe("c1", "dev1", "dev1/#")  # overlaps dev1/in/+
    assert not auth.authorise_subscribe("c1", "dev1", "dev2/#")
    assert auth.authorise_subscribe("c1", "dev1", "#")  # overlaps dev1/in/+
    assert not auth.authorise_subscribe("c1", "dev1", "+/broker/uptime")  # [MQTT-4.7.2-1]
    assert auth.authorise_subscribe("c1", "dev1", "$SYS/broker/+")
    assert auth.authorise_receive("c1", "dev1", "$SYS/broker/uptime")
    assert not auth.authorise_receive("c1", "dev1", "dev1/in/a/b")
    # Another login with the same client id and no token does not inherit the rights.
    assert plugin.authenticate("c1", "dev1", b"password", PEER) is None
    assert plugin.authorise_publish("c1", "dev1", "dev1/out/temp") is None


def test_secret_rules(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        JwtAuthPlugin({"secret": "short"})
    keyfile = tmp_path / "jwt.key"
    keyfile.write_bytes(SECRET + b"\n")
    plugin = load_plugin(
        "mqttfast.app.security.jwt_example:JwtAuthPlugin", {"secret_file": str(keyfile)}
    )
    assert plugin.secret == SECRET
    keyfile.write_bytes(b"z" * 40)
    plugin.reload()
    assert plugin.secret == b"z" * 40


def test_oversized_token_refused(plugin: JwtAuthPlugin) -> None:
    big = token(good_claims(pad="x" * 10_000))
    assert plugin.authenticate("c", "dev1", big, PEER) is False
