# Enable forkhooks by importing all its hooks into your gunicorn.conf.py.
#   gunicorn -c gunicorn_conf/star.py forkhooks.demo.site.wsgi:application
from forkhooks.gunicorn import *  # noqa: F403

preload_app = True
workers = 4
