#!/usr/bin/env python3
"""Sign-in links for a forum behind ssogate, minted with PyJWT the way Tribe's and MeltingSpot's JWT SSO docs do it
(`jwt.encode(user_data, private_key, algorithm='HS256')`).

    export SSOGATE_SSO_SECRET=...        # the secret in the gateway's sso.keys (never hard-code it)
    python mint.py --gateway https://forum.example.com --sub 42 --email ada@example.com \\
        --first-name Ada --last-name Lovelace [--return /spaces] [more claims: --help]

Prints one line per route, each a URL that signs the member in once, within 60 s:

    tribe: https://forum.example.com/api/auth/sso?jwt=...&redirect_uri=%2Fspaces
    meltingspot: https://forum.example.com/sso/jwt?ms_token=...&referrerUrl=%2Fspaces

Your app would use one of the two; import sign_in_urls() from your own server code. Exit status: 0, or 2 when an
argument or the secret is unusable (nothing is printed on stdout then).
"""

import argparse
import os
import re
import sys
import time
import uuid
from urllib.parse import quote, urlsplit

import jwt

# Both docs: "highly recommended to set it to 60 seconds from now".
LIFETIME_SECONDS = 60
# MeltingSpot's limit for sub, firstName, lastName and email; ssogate applies it to Tribe's sub, name, email too.
MAX_CHARS = 255
# ssogate refuses HS256 secrets shorter than this.
MIN_SECRET_BYTES = 32
MELTINGSPOT_LANGS = ("en", "fr", "de")

EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
# One leading /, not // or /\, printable ASCII without spaces: anything else the gateway replaces with /.
RETURN_PATH = re.compile(r"^/(?![/\\])[\x21-\x7e]*$")


class UsageError(ValueError):
    pass


def _required(value, label):
    value = (value or "").strip()
    if not value:
        raise UsageError(f"{label} is required")
    if len(value) > MAX_CHARS:
        raise UsageError(f"{label} is longer than {MAX_CHARS} characters")
    return value


def _check_member(member):
    email = _required(member.get("email"), "--email")
    if not EMAIL.match(email):
        raise UsageError(f"--email {email!r} is not an email address")
    picture = member.get("picture")
    if picture and not re.match(r"^https?://\S+$", picture):
        raise UsageError("--picture must be a full http:// or https:// URL")
    lang = member.get("lang")
    if lang and lang not in MELTINGSPOT_LANGS:
        raise UsageError(f"--lang must be one of {', '.join(MELTINGSPOT_LANGS)}")
    first = _required(member.get("first_name"), "--first-name")
    last = _required(member.get("last_name"), "--last-name")
    return {
        **member,
        "sub": _required(member.get("sub"), "--sub"),
        "email": email,
        "first_name": first,
        "last_name": last,
        "name": _required(member.get("name") or f"{first} {last}", "--name"),
    }


def _check_return_path(path):
    if not RETURN_PATH.match(path) or "\\" in path:
        raise UsageError(
            f"--return {path!r} must be a path on the forum starting with one /, "
            "with no spaces or raw non-ASCII (percent-encode them)"
        )
    return path


def _check_gateway(text):
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.netloc or url.path not in ("", "/") or url.query or url.fragment:
        raise UsageError("--gateway must be the forum's origin, e.g. https://forum.example.com")
    return f"{url.scheme}://{url.netloc}"


def _check_secret(secret):
    if not secret:
        raise UsageError("set SSOGATE_SSO_SECRET to the secret of the gateway's sso.keys entry")
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise UsageError(f"SSOGATE_SSO_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def _lifetime(now):
    """Issued now, valid 60 s, and a unique id so that the gateway can refuse a replay."""
    return {"iat": now, "exp": now + LIFETIME_SECONDS, "jti": str(uuid.uuid4())}


def tribe_claims(member, now):
    """Tribe / Bettermode: sub, email, name required; tagline, picture, spaceIds optional."""
    claims = {"sub": member["sub"], "email": member["email"], "name": member["name"]}
    if member.get("tagline"):
        claims["tagline"] = member["tagline"]
    if member.get("picture"):
        claims["picture"] = member["picture"]
    if member.get("spaces"):
        claims["spaceIds"] = list(member["spaces"])
    return {**claims, **_lifetime(now)}


def meltingspot_claims(member, now):
    """MeltingSpot: sub, firstName, lastName, email required; title, avatarUrl, lang, timezone optional."""
    claims = {
        "sub": member["sub"],
        "firstName": member["first_name"],
        "lastName": member["last_name"],
        "email": member["email"],
    }
    for field, claim in (("title", "title"), ("picture", "avatarUrl"), ("lang", "lang"), ("timezone", "timezone")):
        if member.get(field):
            claims[claim] = member[field]
    return {**claims, **_lifetime(now)}


def _sign(claims, secret):
    return jwt.encode(claims, secret, algorithm="HS256")


def sign_in_urls(gateway, secret, member, return_path="/"):
    """The two sign-in URLs for `member`, landing on `return_path`. Each token is single-use: mint one per sign-in."""
    origin = _check_gateway(gateway)
    key = _check_secret(secret)
    member = _check_member(member)
    back = quote(_check_return_path(return_path), safe="")
    now = round(time.time())
    return {
        "tribe": f"{origin}/api/auth/sso?jwt={_sign(tribe_claims(member, now), key)}&redirect_uri={back}",
        "meltingspot": f"{origin}/sso/jwt?ms_token={_sign(meltingspot_claims(member, now), key)}&referrerUrl={back}",
    }


def _parser():
    parser = argparse.ArgumentParser(
        description="Print ssogate sign-in URLs (Tribe and MeltingSpot routes); the secret comes from "
        "SSOGATE_SSO_SECRET."
    )
    parser.add_argument("--gateway", required=True, help="the forum's address through ssogate (https://forum.example.com)")
    parser.add_argument("--sub", required=True, help="the member's id in your app (both routes)")
    parser.add_argument("--email", required=True, help="a verified email address (both routes)")
    parser.add_argument("--first-name", required=True, help="MeltingSpot firstName")
    parser.add_argument("--last-name", required=True, help="MeltingSpot lastName")
    parser.add_argument("--name", help="Tribe name (default: first and last name)")
    parser.add_argument("--picture", help="Tribe picture / MeltingSpot avatarUrl (http or https)")
    parser.add_argument("--tagline", help="Tribe tagline")
    parser.add_argument("--title", help="MeltingSpot title")
    parser.add_argument("--lang", help="MeltingSpot lang: en, fr or de")
    parser.add_argument("--timezone", help="MeltingSpot timezone (IANA, e.g. Europe/Paris)")
    parser.add_argument("--space", action="append", default=[], help="Tribe spaceIds (repeatable)")
    parser.add_argument("--return", dest="return_path", default="/", help="where the member lands (default /)")
    return parser


def main(argv):
    args = _parser().parse_args(argv)  # exits 2 on a usage error, like the checks below
    member = {
        "sub": args.sub,
        "email": args.email,
        "first_name": args.first_name,
        "last_name": args.last_name,
        "name": args.name,
        "picture": args.picture,
        "tagline": args.tagline,
        "title": args.title,
        "lang": args.lang,
        "timezone": args.timezone,
        "spaces": args.space,
    }
    try:
        urls = sign_in_urls(args.gateway, os.environ.get("SSOGATE_SSO_SECRET"), member, args.return_path)
    except UsageError as error:
        print(f"mint.py: {error}", file=sys.stderr)
        return 2
    print(f"tribe: {urls['tribe']}")
    print(f"meltingspot: {urls['meltingspot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
