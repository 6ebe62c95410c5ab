"""firmware_bridge: the native watchdog (C extension ``_watchdog``) and its pure-Python twin."""
