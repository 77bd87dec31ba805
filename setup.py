"""Build script for the optional Cython extensions (metadata lives in pyproject.toml).

Every extension is optional: if Cython or a C compiler is missing, or
MQTTFAST_NO_EXTENSIONS=1 is set while building, mqttfast installs as pure
Python (the pure twins in mqttfast/codec/*_py.py) and says so. The same
pattern as msgpack, yarl and multidict.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
# Modules with a Cython twin; a .pyx that does not exist yet is skipped.
CYTHON_MODULES = ("_primitives", "_matcher", "_codec")
KERNELS = "csrc/mqttfast_kernels.c"
NO_EXTENSIONS = os.environ.get("MQTTFAST_NO_EXTENSIONS", "") not in ("", "0")
# Set by the wheel builds: a wheel without its extensions is an error there.
REQUIRE_EXTENSIONS = os.environ.get("MQTTFAST_REQUIRE_EXTENSIONS", "") not in ("", "0")

PURE_PYTHON_NOTE = """
************************************************************************
mqttfast: {reason}
Installing the pure-Python implementation (mqttfast.codec.IMPLEMENTATION
will be "python"). It is complete and correct, only slower.
************************************************************************
"""


def announce_pure(reason: str) -> None:
    sys.stderr.write(PURE_PYTHON_NOTE.format(reason=reason))
    sys.stderr.flush()


def cython_extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        announce_pure("MQTTFAST_NO_EXTENSIONS is set, the C extensions are not built.")
        return []
    sources = [
        (name, f"mqttfast/codec/{name}.pyx")
        for name in CYTHON_MODULES
        if (HERE / "mqttfast" / "codec" / f"{name}.pyx").exists()
    ]
    if not sources:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        announce_pure("Cython is not installed, the C extensions are not built.")
        return []
    from Cython.Compiler.Errors import CompileError

    built: list[Extension] = []
    for name, pyx in sources:
        ext = Extension(
            f"mqttfast.codec.{name}",
            [pyx, KERNELS],
            include_dirs=["csrc"],
            depends=["csrc/mqttfast_kernels.h", "mqttfast/codec/_kernels.pxd"],
        )
        try:
            built += cythonize(
                [ext],
                compiler_directives={"language_level": "3", "embedsignature": True},
                quiet=True,
            )
        except CompileError as exc:
            # One broken .pyx must not take the other twins down with it; the
            # impl="cython" tests then fail loudly for the missing module.
            if REQUIRE_EXTENSIONS:
                raise
            announce_pure(f"Cython could not translate {pyx} ({exc}).")
    return built


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python instead of failing the install."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "msvc":
            flags = ["/O2"]
        else:
            flags = ["-O3", "-Wno-unused-function"]
            # Small wheels by default; MQTTFAST_DEBUG=1 keeps symbols for perf/gdb.
            if os.environ.get("MQTTFAST_DEBUG", "") in ("", "0"):
                flags.append("-g0")
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + flags
        super().build_extensions()

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all: DistutilsPlatformError & co.
            self._give_up(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # CCompilerError, DistutilsExecError, ...
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        if REQUIRE_EXTENSIONS:
            raise exc  # wheel builds (cibuildwheel) must not ship pure wheels by accident
        announce_pure(f"building the C extensions failed ({type(exc).__name__}: {exc}).")
        # Leave nothing half-built behind: drop all extensions, keep the install.
        self.extensions = []


setup(ext_modules=cython_extensions(), cmdclass={"build_ext": OptionalBuildExt})
