"""The server-rendered pages: the list, one execution, and the start form.

An edge: its views parse, call one service or selector, and render; the
browser script (``static/js/execution-page.js``) words what they show.
"""
