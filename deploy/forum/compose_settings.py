"""Settings of the demo forum in docker-compose.yml: tests/forum's (ssoforum.settings) plus what a container needs.

    SSOFORUM_ALLOWED_HOSTS  comma-separated host names the forum answers to: the host of the gateway's public_url
                            (the gateway passes the browser's Host through). Default: localhost,127.0.0.1
    SSOFORUM_STATIC_ROOT    where `collectstatic` puts Spirit's CSS and JavaScript (default /app/static, in the image)
    SSOFORUM_SITE_URL       the forum's address, for links in e-mails (default http://localhost:8080/)

The rest (SSOFORUM_DATA_DIR, SSOFORUM_SECRET_KEY) is read by ssoforum.settings.
"""

import os

from ssoforum.settings import *  # noqa: F401,F403 -- this module only adjusts tests/forum's settings

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("SSOFORUM_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
    if host.strip()
]

# waitress serves no files and DEBUG is off, so the forum serves its own static files (compose_urls). Enough for a
# demo forum; a busy one would put a web server or CDN in front for /static/.
STATIC_ROOT = os.environ.get("SSOFORUM_STATIC_ROOT", "/app/static")
ROOT_URLCONF = "compose_urls"

ST_SITE_URL = os.environ.get("SSOFORUM_SITE_URL", "http://localhost:8080/")
