"""Mosquitto-compatible password files.

A password file has one ``username:hash`` entry per line. Two hash forms are
read, exactly as mosquitto stores them (``src/security_default.c`` and
``apps/mosquitto_passwd``):

* ``$6$<salt>$<hash>``: SHA-512 over ``password || salt`` (mosquitto <= 1.6).
* ``$7$<iterations>$<salt>$<hash>``: PBKDF2-HMAC-SHA512 (mosquitto >= 2.0).

Salt (12 bytes) and hash (64 bytes) are standard base64. Entries are always
*written* as ``$7$`` with :data:`DEFAULT_ITERATIONS`; mosquitto itself writes
101 iterations but reads any count, so files written here stay usable by
mosquitto.

Verification is CPU-bound on purpose (PBKDF2): call it off the event loop
(``loop.run_in_executor``); ``hashlib.pbkdf2_hmac`` releases the GIL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_ITERATIONS",
    "PasswordFile",
    "PasswordFileError",
    "PasswordHash",
]

log = logging.getLogger("mqttfast.security.passwords")

#: OWASP (2023) guidance for PBKDF2-HMAC-SHA512; mosquitto's default is 101.
DEFAULT_ITERATIONS = 210_000
SALT_LEN = 12  # mosquitto rejects any other salt length
HASH_LEN = 64  # SHA-512 output; mosquitto rejects any other length
MAX_ITERATIONS = 10_000_000  # refuse absurd counts in a file (CPU denial of service)
MAX_FIELD_BYTES = 65535  # MQTT string limit, also mosquitto's per-field limit

BytesOrStr = bytes | bytearray | memoryview | str


class PasswordFileError(ValueError):
    """A problem with a password file or entry; ``str()`` is ``file:line: message``."""

    def __init__(
        self, message: str, path: str | os.PathLike[str] | None = None, lineno: int | None = None
    ) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.lineno = lineno
        where = ""
        if self.path is not None:
            where = f"{self.path}:{lineno}: " if lineno is not None else f"{self.path}: "
        super().__init__(where + message)


def _to_bytes(value: BytesOrStr) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """One stored hash. ``scheme`` is ``"6"`` (salted SHA-512) or ``"7"`` (PBKDF2)."""

    scheme: str
    salt: bytes
    digest: bytes
    iterations: int = 0

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Parse ``$6$salt$hash`` or ``$7$iterations$salt$hash``; ValueError if invalid."""
        parts = text.strip().split("$")
        if len(parts) < 2 or parts[0] != "":
            raise ValueError("not a $6$ or $7$ password hash")
        scheme = parts[1]
        if scheme == "6" and len(parts) == 4:
            iterations, salt_s, digest_s = 0, parts[2], parts[3]
        elif scheme == "7" and len(parts) == 5:
            if not parts[2].isdigit():
                raise ValueError("invalid iteration count")
            iterations = int(parts[2])
            if not 1 <= iterations <= MAX_ITERATIONS:
                raise ValueError(f"iteration count {iterations} outside 1..{MAX_ITERATIONS}")
            salt_s, digest_s = parts[3], parts[4]
        elif scheme in ("6", "7"):
            raise ValueError(f"malformed ${scheme}$ hash")
        else:
            raise ValueError(f"unsupported hash type ${scheme}$")
        try:
            salt = _b64decode(salt_s)
            digest = _b64decode(digest_s)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ValueError("salt or hash is not valid base64") from None
        if len(salt) != SALT_LEN:
            raise ValueError(f"salt must be {SALT_LEN} bytes, got {len(salt)}")
        if len(digest) != HASH_LEN:
            raise ValueError(f"hash must be {HASH_LEN} bytes, got {len(digest)}")
        return cls(scheme, salt, digest, iterations)

    @classmethod
    def create(
        cls, password: BytesOrStr, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
    ) -> PasswordHash:
        """A new ``$7$`` hash of ``password`` with a random 12-byte salt."""
        if not 1 <= iterations <= MAX_ITERATIONS:
            raise ValueError(f"iterations must be in 1..{MAX_ITERATIONS}")
        salt = secrets.token_bytes(SALT_LEN) if salt is None else bytes(salt)
        if len(salt) != SALT_LEN:
            raise ValueError(f"salt must be {SALT_LEN} bytes")
        digest = hashlib.pbkdf2_hmac("sha512", _to_bytes(password), salt, iterations, HASH_LEN)
        return cls("7", salt, digest, iterations)

    @classmethod
    def create_sha512(cls, password: BytesOrStr, salt: bytes | None = None) -> PasswordHash:
        """A legacy ``$6$`` hash (mosquitto 1.x). Weak: for tests and interop only."""
        salt = secrets.token_bytes(SALT_LEN) if salt is None else bytes(salt)
        if len(salt) != SALT_LEN:
            raise ValueError(f"salt must be {SALT_LEN} bytes")
        return cls("6", salt, hashlib.sha512(_to_bytes(password) + salt).digest(), 0)

    def compute(self, password: BytesOrStr) -> bytes:
        """The digest ``password`` would have under this entry's scheme and salt."""
        pw = _to_bytes(password)
        if self.scheme == "6":
            return hashlib.sha512(pw + self.salt).digest()
        return hashlib.pbkdf2_hmac("sha512", pw, self.salt, self.iterations, HASH_LEN)

    def verify(self, password: BytesOrStr) -> bool:
        """Constant-time comparison of the computed and stored digests."""
        return hmac.compare_digest(self.compute(password), self.digest)

    def format(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        digest = base64.b64encode(self.digest).decode("ascii")
        if self.scheme == "6":
            return f"$6${salt}${digest}"
        return f"$7${self.iterations}${salt}${digest}"

    @property
    def is_weak(self) -> bool:
        """True for ``$6$`` or PBKDF2 below the default: worth re-hashing."""
        return self.scheme == "6" or self.iterations < DEFAULT_ITERATIONS


def validate_username(username: str) -> None:
    """Raise ValueError for names that cannot be stored in a mosquitto password file."""
    if not isinstance(username, str) or not username:
        raise ValueError("username must be a non-empty string")
    if ":" in username:
        raise ValueError("username must not contain ':'")
    if any(c in username for c in "\r\n\x00"):
        raise ValueError("username must not contain line breaks or NUL")
    if username != username.strip() or username.startswith("#"):
        # mosquitto trims blanks around names and skips lines starting with '#'.
        raise ValueError("username must not start with '#' or start/end with whitespace")
    if len(username.encode("utf-8")) > MAX_FIELD_BYTES:
        raise ValueError("username longer than 65535 bytes")


class PasswordFile:
    """Users and their hashes, in file order; comments and unreadable lines are kept verbatim.

    Unparseable entries are skipped for verification (logged, like mosquitto
    does) but written back unchanged by :meth:`save`, so a tool never silently
    deletes an administrator's data.
    """

    def __init__(self) -> None:
        self._hashes: dict[str, PasswordHash] = {}
        # Each item is ("user", name) or ("raw", line) to preserve file order on save.
        self._lines: list[tuple[str, str]] = []
        self.warnings: list[str] = []
        self._dummy: PasswordHash | None = None

    # ----------------------------------------------------------------- reading
    @classmethod
    def load(cls, path: str | os.PathLike[str], strict: bool = False) -> PasswordFile:
        """Read ``path``. OSError if unreadable; PasswordFileError if not UTF-8.

        Bad entries become warnings (``file:line: message``) unless ``strict``,
        in which case the first one raises PasswordFileError.
        """
        raw = Path(path).read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PasswordFileError(f"not valid UTF-8 ({exc.reason})", path) from None
        return cls.parse(text, path=path, strict=strict)

    @classmethod
    def parse(
        cls, text: str, path: str | os.PathLike[str] | None = None, strict: bool = False
    ) -> PasswordFile:
        pf = cls()
        where = os.fspath(path) if path is not None else "<string>"
        for lineno, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#") or ":" not in stripped:
                if stripped and not stripped.startswith("#"):
                    pf._problem("line without ':' ignored", where, lineno, strict)
                pf._lines.append(("raw", line))
                continue
            # mosquitto splits at the first ':' and trims blanks around both fields.
            user, _, hashtext = stripped.partition(":")
            user, hashtext = user.strip(), hashtext.strip()
            try:
                validate_username(user)
                pwhash = PasswordHash.parse(hashtext)
            except ValueError as exc:
                pf._problem(f"entry for {user!r} ignored: {exc}", where, lineno, strict)
                pf._lines.append(("raw", line))
                continue
            if user in pf._hashes:
                # mosquitto's hash table keeps the first one; say so rather than guess silently.
                pf._problem(f"duplicate entry for {user!r} ignored", where, lineno, strict)
                pf._lines.append(("raw", line))
                continue
            pf._hashes[user] = pwhash
            pf._lines.append(("user", user))
        return pf

    def _problem(self, message: str, where: str, lineno: int, strict: bool) -> None:
        if strict:
            raise PasswordFileError(message, where, lineno)
        text = f"{where}:{lineno}: {message}"
        self.warnings.append(text)
        log.warning("%s", text)

    # ------------------------------------------------------------------ access
    def __contains__(self, user: object) -> bool:
        return user in self._hashes

    def __len__(self) -> int:
        return len(self._hashes)

    def users(self) -> list[str]:
        return list(self._hashes)

    def get(self, user: str) -> PasswordHash | None:
        return self._hashes.get(user)

    def verify(self, user: str | None, password: BytesOrStr | None) -> bool:
        """True if ``user`` exists and ``password`` matches, compared in constant time.

        An unknown user or a missing password still costs one hash computation
        with the file's typical parameters, so response time does not reveal
        which usernames exist.
        """
        entry = self._hashes.get(user) if user is not None else None
        if entry is None or password is None:
            self._dummy_hash().verify(b"" if password is None else password)
            return False
        return entry.verify(password)

    def _dummy_hash(self) -> PasswordHash:
        if self._dummy is None:
            common = Counter((h.scheme, h.iterations) for h in self._hashes.values())
            scheme, iterations = (
                common.most_common(1)[0][0] if common else ("7", DEFAULT_ITERATIONS)
            )
            salt = secrets.token_bytes(SALT_LEN)
            self._dummy = PasswordHash(scheme, salt, secrets.token_bytes(HASH_LEN), iterations)
        return self._dummy

    # ----------------------------------------------------------------- editing
    def set(self, user: str, password: BytesOrStr, iterations: int = DEFAULT_ITERATIONS) -> None:
        """Add or replace ``user`` with a fresh ``$7$`` hash of ``password``."""
        validate_username(user)
        pw = _to_bytes(password)
        if not pw:
            raise ValueError("empty password")
        if b"\x00" in pw:
            # mosquitto hashes strlen(password): a NUL would make the entry unusable there.
            raise ValueError("password must not contain NUL")
        self.set_hash(user, PasswordHash.create(pw, iterations))

    def set_hash(self, user: str, pwhash: PasswordHash) -> None:
        validate_username(user)
        if user not in self._hashes:
            self._lines.append(("user", user))
        self._hashes[user] = pwhash
        self._dummy = None

    def delete(self, user: str) -> bool:
        """Remove ``user``; False if it was not there."""
        if user not in self._hashes:
            return False
        del self._hashes[user]
        self._lines = [item for item in self._lines if item != ("user", user)]
        self._dummy = None
        return True

    # ----------------------------------------------------------------- writing
    def dumps(self) -> str:
        out = []
        for kind, value in self._lines:
            out.append(f"{value}:{self._hashes[value].format()}" if kind == "user" else value)
        return "".join(line + "\n" for line in out)

    def save(self, path: str | os.PathLike[str], mode: int = 0o600) -> None:
        """Write atomically: a private temp file in the same directory, fsync, rename."""
        target = Path(path)
        directory = target.parent if str(target.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, mode)  # mkstemp already uses 0600; honour a different request
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(self.dumps())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        try:
            dfd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)
