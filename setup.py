"""Build the one C extension (``firmware_bridge._watchdog``); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "firmware_bridge._watchdog",
            sources=["firmware_bridge/_watchdog.c"],
            extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
            libraries=["pthread"],
            optional=True,  # without a compiler: the pure-Python twin (refused where the profile
            #                  says require_native_watchdog = true)
        )
    ]
)
