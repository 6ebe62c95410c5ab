"""Build the one C extension (``firmware_bridge._watchdog``); the rest is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "firmware_bridge._watchdog",
            sources=["firmware_bridge/_watchdog.c"],
            extra_compile_args=[
                "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration",
            ],
            libraries=["pthread"],
            # Without a compiler the package still installs, with the pure-Python twin; the
            # agent refuses to start on it where the profile says require_native_watchdog.
            optional=True,
        )
    ]
)
