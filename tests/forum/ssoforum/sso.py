"""Trust the member identity that ssogate puts in request headers (Django's "REMOTE_USER" pattern).

Copy this file into your Spirit project and, in settings.py:

    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
        "yourproject.sso.GatewayUserMiddleware",
    )
    AUTHENTICATION_BACKENDS = ["yourproject.sso.GatewayUserBackend"]

Only ever run the forum behind ssogate: the gateway removes any client-sent X-Auth-* header (in every spelling) and
sets them itself from the member's session, so whatever reaches the forum was put there by the gateway. Reachable
directly, anyone could send `X-Auth-User` and be anyone.

- Username: the gateway id (X-Auth-User, a UUID) lower-cased. It is stable across renames and e-mail changes,
  unique, and valid for Django (`[\\w.@+-]`, at most 150 characters) and Spirit (which lower-cases usernames).
  People see the nickname (Spirit's display name), which follows X-Auth-Name on every request.
- Email, first and last name follow X-Auth-Email, X-Auth-First-Name, X-Auth-Last-Name; the Spirit profile's time
  zone follows X-Auth-Timezone when it is a known zone.
- Values arrive percent-encoded UTF-8 (non-ASCII bytes and `%` as %XX) and are decoded here.
- No header, no user: RemoteUserMiddleware.force_logout_if_no_header (True) ends the Django login made from the
  header as soon as a request comes without it (after logout at the gateway, or an expired gateway session).
- With only GatewayUserBackend in AUTHENTICATION_BACKENDS, Spirit's own password login and registration never
  log anyone in: the gateway is the single source of identity.

Environment: SSOGATE_USER_HEADER (default X-Auth-User) if the gateway's `identity.headers.user` was renamed; the
other headers follow the gateway's defaults.
"""

import os
import zoneinfo
from urllib.parse import unquote

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.middleware import RemoteUserMiddleware


def meta_key(header):
    """The request.META key Django uses for an HTTP header: X-Auth-User -> HTTP_X_AUTH_USER."""
    return "HTTP_" + header.upper().replace("-", "_")


USER_HEADER = os.environ.get("SSOGATE_USER_HEADER", "X-Auth-User")
USER_KEY = meta_key(USER_HEADER)
EMAIL_KEY = meta_key("X-Auth-Email")
NAME_KEY = meta_key("X-Auth-Name")
FIRST_NAME_KEY = meta_key("X-Auth-First-Name")
LAST_NAME_KEY = meta_key("X-Auth-Last-Name")
TIMEZONE_KEY = meta_key("X-Auth-Timezone")


def header(request, key):
    """A header's value percent-decoded (UTF-8), or None when absent. WSGI hands values over as latin-1 text; the
    gateway's values are ASCII after percent-encoding, so this is exact."""
    value = request.META.get(key)
    if value is None:
        return None
    return unquote(value, encoding="utf-8", errors="replace").strip()


def _field_max(obj, name):
    """max_length of a model field (obj: a model, an instance, or request.user's lazy wrapper)."""
    return obj._meta.get_field(name).max_length


def sync_member(request, user):
    """Makes the Django user and its Spirit profile match the headers; saves only what changed."""
    email = header(request, EMAIL_KEY)
    first = header(request, FIRST_NAME_KEY)
    last = header(request, LAST_NAME_KEY)
    name = header(request, NAME_KEY) or " ".join(p for p in (first, last) if p) or (email or "").split("@")[0]

    changed = []
    for field, value in (("email", email), ("first_name", first), ("last_name", last)):
        if value is None:
            continue
        value = value[: _field_max(user, field)]
        if getattr(user, field) != value:
            setattr(user, field, value)
            changed.append(field)
    if changed:
        user.save(update_fields=changed)

    profile = getattr(user, "st", None)  # Spirit's UserProfile, created by Spirit's post_save signal
    if profile is None:
        return
    changed = []
    nickname = (name or user.get_username())[: _field_max(profile, "nickname")]
    if profile.nickname != nickname:
        profile.nickname = nickname
        changed.append("nickname")
    if not profile.is_verified:  # the gateway vouches for the member; Spirit's e-mail activation does not apply
        profile.is_verified = True
        changed.append("is_verified")
    zone = header(request, TIMEZONE_KEY)
    if zone and zone != profile.timezone and len(zone) <= _field_max(profile, "timezone"):
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
        else:
            profile.timezone = zone
            changed.append("timezone")
    if changed:
        profile.save(update_fields=changed)


class GatewayUserBackend(RemoteUserBackend):
    """Creates the Django user the first time a gateway member is seen (create_unknown_user)."""

    create_unknown_user = True

    def clean_username(self, username):
        return unquote(username).strip().lower()[: _field_max(get_user_model(), "username")]

    def configure_user(self, request, user, created=True):
        sync_member(request, user)
        return user

    def get_user(self, user_id):
        # As Spirit's own backends do: load the profile along with the user (every page reads it).
        User = get_user_model()
        try:
            user = User._default_manager.select_related("st").get(pk=user_id)
        except User.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None


class GatewayUserMiddleware(RemoteUserMiddleware):
    """RemoteUserMiddleware reading the gateway's header, keeping the profile in step on every request.

    For WSGI deployments (what Spirit documents); under ASGI, Django would call aprocess_request instead."""

    header = USER_KEY
    force_logout_if_no_header = True  # Django's default, stated: no header means logged out

    def process_request(self, request):
        super().process_request(request)
        user = request.user
        raw = request.META.get(self.header)
        if raw and user.is_authenticated and user.get_username() == GatewayUserBackend().clean_username(raw):
            sync_member(request, user)
