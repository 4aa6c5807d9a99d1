"""URLs of the demo forum in docker-compose.yml: tests/forum's, plus /static/ served from STATIC_ROOT."""

from django.conf import settings
from django.urls import re_path
from django.views.static import serve

from ssoforum.urls import urlpatterns as forum_urlpatterns

urlpatterns = [
    re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT}),
    *forum_urlpatterns,
]
