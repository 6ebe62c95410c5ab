"""Build the one C extension (``firmware_bridge._watchdog``); the rest is in pyproject.toml.

Without a compiler the package still installs, with the pure-Python twin (the agent refuses
to start on it where the profile says ``require_native_watchdog``); the build then says so
in a WARNING block (shown by ``pip install -v``; ``twinguard check`` warns too).
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """build_ext that says loudly what a failed optional build means."""

    def run(self) -> None:
        super().run()
        for ext in self.extensions:
            if not _built(self, ext):
                sys.stderr.write(
                    "\n" + "=" * 78 + "\nWARNING: twinguard's native watchdog "
                    f"({ext.name}) was NOT built (no C compiler or Python headers?).\n"
                    "The package works with the pure-Python watchdog, which cannot fire while\n"
                    "Python holds the GIL; profiles with require_native_watchdog = true refuse\n"
                    "to run. Install gcc and python3-dev, then reinstall.\n" + "=" * 78 + "\n")


def _built(cmd: build_ext, ext: Extension) -> bool:
    import os  # noqa: PLC0415 - build-time only

    return os.path.exists(cmd.get_ext_fullpath(ext.name))


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "firmware_bridge._watchdog",
            sources=["firmware_bridge/_watchdog.c"],
            extra_compile_args=[
                "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration",
            ],
            libraries=["pthread"],
            optional=True,
        )
    ]
)
