#!/usr/bin/env python3
"""Mint a JWT with PyJWT, the way Tribe's and MeltingSpot's docs do it.

    jwt.encode(user_data, private_key, algorithm='HS256')

Input: one JSON object, from argv[1] or (when argv[1] is absent or "-") stdin:

    {
      "claims":    {"sub": 42, "email": "...", "name": "...", "iat": "now", "exp": "now+60"},
      "secret":    "...",                      # HS256/384/512: the shared "private key" of the docs
      "private_key_pem": "-----BEGIN ...",     # RS*/PS*/ES*: instead of "secret"
      "algorithm": "HS256",                    # default HS256, as in the docs
      "headers":   {"kid": "next"}             # optional extra JWT header fields
    }

A claim whose value is the string "now", "now+N" or "now-N" becomes the Unix time in seconds (plus or minus N),
computed once per token as the docs' samples do (`Math.round(new Date().getTime() / 1000)`), here
`round(time.time())`. Prints the token and a newline.

With `--lines`, reads one such JSON object per line from stdin and prints one token per line (one process for
many tokens).

Exit status 2 on bad input, 1 when PyJWT refuses to sign.
"""

import json
import re
import sys
import time

import jwt

NOW = re.compile(r"^now(?:([+-])(\d+))?$")


def resolve(claims, now):
    out = {}
    for name, value in claims.items():
        if isinstance(value, str):
            match = NOW.match(value)
            if match:
                offset = int(match.group(2) or 0)
                value = now - offset if match.group(1) == "-" else now + offset
        out[name] = value
    return out


def mint(spec):
    if not isinstance(spec, dict) or not isinstance(spec.get("claims"), dict):
        raise ValueError('expected a JSON object with a "claims" object')
    algorithm = spec.get("algorithm", "HS256")
    if "private_key_pem" in spec:
        private_key = spec["private_key_pem"]
    elif "secret" in spec:
        private_key = spec["secret"]
    else:
        raise ValueError('give "secret" (HS*) or "private_key_pem" (RS*/PS*/ES*)')
    headers = spec.get("headers") or None
    user_data = resolve(spec["claims"], round(time.time()))
    return jwt.encode(user_data, private_key, algorithm=algorithm, headers=headers)


def main(argv):
    try:
        if len(argv) > 1 and argv[1] == "--lines":
            for line in sys.stdin:
                if line.strip():
                    print(mint(json.loads(line)))
            return 0
        text = argv[1] if len(argv) > 1 and argv[1] != "-" else sys.stdin.read()
        print(mint(json.loads(text)))
        return 0
    except (ValueError, json.JSONDecodeError) as error:
        print(f"mint.py: {error}", file=sys.stderr)
        return 2
    except jwt.PyJWTError as error:
        print(f"mint.py: PyJWT refused: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
