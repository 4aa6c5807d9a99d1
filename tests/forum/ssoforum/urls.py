"""Spirit at the site root, as in Spirit's project template; /_sso/echo/ only with SSOFORUM_DEBUG_ECHO=1."""

from django.conf import settings
from django.urls import include, path

import spirit.urls

urlpatterns = [
    path("", include(spirit.urls)),
]

if settings.SSOFORUM_DEBUG_ECHO:
    from .debug import echo

    urlpatterns.append(path("_sso/echo/", echo))
