"""Test-only view: what Django received and concluded. Never enable it in production (SSOFORUM_DEBUG_ECHO)."""

import re

from django.http import JsonResponse


def _folded(key):
    return re.sub(r"[^A-Z]", "", key.upper())


def echo(request):
    """JSON: every request.META key that folds to an X-Auth-* header in any spelling (X_AUTH_USER, X.AUTH.USER, ...),
    and who Django thinks the user is."""
    user = request.user
    return JsonResponse(
        {
            "auth_headers": {k: v for k, v in request.META.items() if _folded(k).startswith(("HTTPXAUTH", "XAUTH"))},
            "authenticated": user.is_authenticated,
            "username": user.get_username() if user.is_authenticated else None,
            "email": user.email if user.is_authenticated else None,
            "nickname": user.st.nickname if user.is_authenticated else None,
        }
    )
