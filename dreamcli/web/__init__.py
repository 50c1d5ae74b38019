"""``dream serve``: a local web page to try styles on a photo, side by side.

``server`` is the Starlette app (the routes, the token, Origin and Host checks,
one-line JSON errors); ``work`` holds the uploads, the jobs and the one worker
thread that runs them on the loaded network, in turn; ``inside`` and
``inside_tasks`` make and run the page's explanations and unit pages;
``commands`` writes the ``dream ...`` line that reproduces a tile or an
explanation; ``static/`` is the page (plain HTML, CSS and JavaScript, no build
step, nothing from a CDN).  Needs the ``web`` extra (``pip install
'dreamcli[web]'``); nothing here knows Click.
"""
