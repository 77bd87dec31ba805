"""``mqttfast passwd``: manage a mosquitto-compatible password file.

    mqttfast passwd [-c] [-b] [-D] [-I N] FILE USER [PASSWORD]
    mqttfast passwd -U FILE

Like ``mosquitto_passwd``: ``-c`` creates (overwrites) the file, ``-b`` takes
the password from the command line (otherwise it is prompted for twice),
``-D`` deletes the user, ``-U`` hashes a file of plain-text ``user:password``
lines in place. Entries are written as ``$7$`` PBKDF2-SHA512 with
``DEFAULT_ITERATIONS`` unless ``-I`` says otherwise. Every error is one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence

from .passwords import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    PasswordFile,
    PasswordFileError,
    PasswordHash,
    validate_username,
)

PROG = "mqttfast passwd"
EXIT_OK = 0
EXIT_ERROR = 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _parser() -> _Parser:
    p = _Parser(
        prog=PROG, description="Manage a mosquitto-compatible password file.", allow_abbrev=False
    )
    p.add_argument(
        "-c",
        dest="create",
        action="store_true",
        help="create a new password file, overwriting an existing one",
    )
    p.add_argument(
        "-b", dest="batch", action="store_true", help="take the password from the command line"
    )
    p.add_argument("-D", dest="delete", action="store_true", help="delete the user")
    p.add_argument(
        "-U",
        dest="upgrade",
        action="store_true",
        help="hash a file of plain-text user:password lines in place",
    )
    p.add_argument(
        "-I",
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help=f"PBKDF2 iterations (default {DEFAULT_ITERATIONS})",
    )
    p.add_argument("file")
    p.add_argument("user", nargs="?")
    p.add_argument("password", nargs="?")
    return p


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _prompt_password() -> str:
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Reenter password: ")
    if first != second:
        raise _UsageError("passwords do not match")
    return first


def _upgrade_plaintext(path: str, iterations: int) -> None:
    """``-U``: replace plain-text passwords by hashes; lines that are hashes stay."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    out = PasswordFile()
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            out._lines.append(("raw", line))
            continue
        user, _, secret = stripped.partition(":")
        user = user.strip()
        try:
            validate_username(user)
        except ValueError as exc:
            raise PasswordFileError(str(exc), path, lineno) from None
        try:
            out.set_hash(user, PasswordHash.parse(secret))
            continue  # already hashed
        except ValueError:
            pass
        if not secret:
            raise PasswordFileError(f"empty password for {user!r}", path, lineno)
        out.set(user, secret, iterations)
    out.save(path)


def run(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if not 1 <= args.iterations <= MAX_ITERATIONS:
        raise _UsageError(f"-I must be between 1 and {MAX_ITERATIONS}")
    if args.upgrade:
        if args.create or args.delete or args.batch or args.user is not None:
            raise _UsageError("-U takes only a password file")
        _upgrade_plaintext(args.file, args.iterations)
        return EXIT_OK
    if args.create and args.delete:
        raise _UsageError("-c and -D cannot be used together")
    if args.user is None:
        raise _UsageError("missing USER")
    validate_username(args.user)
    if args.delete:
        if args.batch or args.password is not None:
            raise _UsageError("-D takes no password")
    elif args.batch:
        if args.password is None:
            raise _UsageError("-b needs a PASSWORD argument")
    elif args.password is not None:
        raise _UsageError("a PASSWORD argument needs -b")

    if args.create:
        pwfile = PasswordFile()
    else:
        if not os.path.exists(args.file):
            raise _UsageError(f"password file {args.file} does not exist (use -c to create it)")
        pwfile = PasswordFile.load(args.file)

    if args.delete:
        if not pwfile.delete(args.user):
            raise _UsageError(f"user {args.user} not found in {args.file}")
    else:
        password: str | None = args.password if args.batch else _prompt_password()
        if password is None:
            raise _UsageError("-b needs the password on the command line")
        pwfile.set(args.user, password, args.iterations)
    pwfile.save(args.file)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``mqttfast passwd``; ``argv`` excludes the program/subcommand name."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (_UsageError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    except (KeyboardInterrupt, EOFError):
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
