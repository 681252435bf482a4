"""Django, set up for a benchmark that runs the service as processes (``bench.faults``).

Imported first, for its effect: what such a benchmark imports (the fault
scenarios and their frame checks) needs Django's apps loaded, and the settings
refuse to load without a secret key unless debug is on. No database is touched
here; the benchmark makes its own.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")  # a development secret key, as dev.py sets
django.setup()
