"""Template tags of the app: ``{% load progress %}`` for the live progress widget."""
