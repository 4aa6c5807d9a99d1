"""Settings of the Spirit test forum behind ssogate.

Spirit's `spirit startproject` template (spirit/extra/project_template/project_name/settings/base.py, django-spirit
0.14.3) trimmed to what a forum needs, plus the ssogate part, marked "ssogate" below. Environment:

    SSOFORUM_DATA_DIR       where the SQLite database, search index and uploads go (required)
    SSOFORUM_SECRET_KEY     Django's SECRET_KEY (default: a random one per process; sessions then end on restart)
    SSOFORUM_DEBUG_ECHO     "1" adds /_sso/echo/, a JSON view of the X-Auth-* headers Django received (tests only)
    SSOGATE_USER_HEADER     the header carrying the gateway id (default X-Auth-User)
"""

import os

from django.core.management.utils import get_random_secret_key

DATA_DIR = os.environ["SSOFORUM_DATA_DIR"]

SECRET_KEY = os.environ.get("SSOFORUM_SECRET_KEY") or get_random_secret_key()
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "spirit.core",
    "spirit.admin",
    "spirit.search",
    "spirit.user",
    "spirit.user.admin",
    "spirit.user.auth",
    "spirit.category",
    "spirit.category.admin",
    "spirit.topic",
    "spirit.topic.admin",
    "spirit.topic.favorite",
    "spirit.topic.moderate",
    "spirit.topic.notification",
    "spirit.topic.private",
    "spirit.topic.unread",
    "spirit.comment",
    "spirit.comment.bookmark",
    "spirit.comment.flag",
    "spirit.comment.flag.admin",
    "spirit.comment.history",
    "spirit.comment.like",
    "spirit.comment.poll",
    "djconfig",
    "haystack",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # ssogate: right after AuthenticationMiddleware, before Spirit's middleware that reads request.user.
    "ssoforum.sso.GatewayUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "spirit.user.middleware.TimezoneMiddleware",
    "spirit.user.middleware.LastIPMiddleware",
    "spirit.user.middleware.LastSeenMiddleware",
    "spirit.user.middleware.ActiveUserMiddleware",
    "spirit.core.middleware.PrivateForumMiddleware",
    "djconfig.middleware.DjConfigMiddleware",
]

# ssogate: the gateway is the only way in. Spirit's password backends (UsernameAuthBackend, EmailAuthBackend) are
# left out, so its login and registration forms log no one in.
AUTHENTICATION_BACKENDS = ["ssoforum.sso.GatewayUserBackend"]

# ssogate: behind a gateway that terminates TLS, trust its X-Forwarded-Proto so Django knows the request was HTTPS
# (and sends Secure cookies, checks Origin against https://). Only correct when the forum is reachable solely through
# the gateway, which overwrites that header.
# SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The gateway keeps the client's Host header, so CSRF's Origin check works without CSRF_TRUSTED_ORIGINS.

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.debug",
                "django.template.context_processors.i18n",
                "django.template.context_processors.media",
                "django.template.context_processors.static",
                "django.template.context_processors.tz",
                "django.template.context_processors.request",
                "django.contrib.messages.context_processors.messages",
                "djconfig.context_processors.config",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(DATA_DIR, "spirit.sqlite3"),
    }
}

# One process (serve.py): in-memory caches need no createcachetable.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "st_rate_limit": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "spirit_rl_cache",
        "TIMEOUT": None,
    },
}

HAYSTACK_CONNECTIONS = {
    "default": {
        "ENGINE": "haystack.backends.whoosh_backend.WhooshEngine",
        "PATH": os.path.join(DATA_DIR, "st_search"),
    }
}
HAYSTACK_SIGNAL_PROCESSOR = "spirit.search.signals.RealtimeSignalProcessor"

ROOT_URLCONF = "ssoforum.urls"

LOGIN_URL = "spirit:user:auth:login"
LOGIN_REDIRECT_URL = "spirit:user:update"
LOGOUT_REDIRECT_URL = "spirit:index"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = os.path.join(DATA_DIR, "static")
MEDIA_URL = "/media/"
MEDIA_ROOT = os.path.join(DATA_DIR, "media")
STORAGES = {
    "default": {"BACKEND": "spirit.core.storage.OverwriteFileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
ST_SITE_URL = "http://127.0.0.1/"

SSOFORUM_DEBUG_ECHO = os.environ.get("SSOFORUM_DEBUG_ECHO") == "1"

# Errors to stderr (the test prints it when something fails); no mail to admins.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["console"], "level": "ERROR"}},
}
