#!/usr/bin/env python
"""Migrate the database, then serve the forum with waitress; prints `READY http://HOST:PORT/` once listening.

    SSOFORUM_DATA_DIR=/tmp/forum .venv/bin/python tests/forum/serve.py [--host 127.0.0.1] [--port 0]

Port 0 picks a free port; the READY line tells which. Runs until killed.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ssoforum.settings")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)

    from django.core.wsgi import get_wsgi_application
    from waitress.server import create_server

    server = create_server(get_wsgi_application(), host=args.host, port=args.port, threads=args.threads)
    print(f"READY http://{args.host}:{server.effective_port}/", flush=True)
    server.run()


if __name__ == "__main__":
    main()
