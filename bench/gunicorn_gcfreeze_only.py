# Bench-only gunicorn conf for lazy loading (no --preload, no forkhooks):
# gc.freeze() in the master before the first fork. The master has not loaded
# the app, so this is the control that shows what freezing buys without preload.
import gc


def when_ready(server):
    gc.freeze()
    server.log.info("bench: gc.freeze() in the master, %d objects frozen", gc.get_freeze_count())
