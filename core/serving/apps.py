"""The serving package as a Django app, so that ``manage.py serve`` is found.

The app has no models and no ``ready()``: installing it changes nothing else.
"""

from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "core.serving"
    label = "serving"
