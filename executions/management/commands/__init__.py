"""The app's commands, one module each, as Django finds them."""
