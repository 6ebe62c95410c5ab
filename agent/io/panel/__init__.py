"""The operator's panel: ``leds`` (the three status LEDs, gpiozero), ``button`` (the reset
button), ``sdnotify`` (systemd's notify socket) and ``panel`` (the three with the status
socket, as the runtime drives them). What the LEDs show is ``agent.core.leds``."""
