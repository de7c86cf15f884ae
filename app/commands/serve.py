"""`deskpilot serve MODEL`: keep a model warm behind an OpenAI-compatible HTTP API.

The agent (`--policy remote:http://HOST:PORT/v1`) or any OpenAI client can then use it
from another process or machine. Binds 127.0.0.1 unless told otherwise; `--api-key-env`
names an environment variable holding the key clients must send (the key itself never
goes on the command line, where `ps` would show it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deskpilot serve",
        description="Serve a local model over an OpenAI-compatible HTTP API "
        "(POST /v1/chat/completions, GET /v1/models, GET /health).",
    )
    parser.add_argument("model", help="checkpoint folder or hub id")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument("--api-key-env", metavar="NAME", default=None,
                        help="environment variable holding the API key clients must send")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    parser.add_argument("--dtype", default=None, help="bfloat16, float16 or float32")
    parser.add_argument("--max-body-mb", type=float, default=64.0,
                        help="largest request body accepted, in MiB (default 64)")
    parser.add_argument("--model-name", default=None,
                        help="model id reported by /v1/models (default: the checkpoint's name)")
    parser.add_argument("--max-tokens", type=int, default=512,
                        help="reply length limit when a request gives none (default 512)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if not 0 <= args.port <= 65535:
        print(f"deskpilot serve: --port must be in 0..65535, got {args.port}", file=sys.stderr)  # noqa: T201
        return 2
    if args.max_body_mb <= 0:
        print("deskpilot serve: --max-body-mb must be positive", file=sys.stderr)  # noqa: T201
        return 2
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "")
        if not api_key:
            print(  # noqa: T201
                f"deskpilot serve: --api-key-env {args.api_key_env} is set but the environment "
                "variable is empty or missing", file=sys.stderr,
            )
            return 2
    elif args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without an API key: anyone who can reach it can use it",
                    args.host)
    # The model must exist and the engine be installed before the port is taken: a typo
    # should fail at once, not leave a server answering "loading" that never loads.
    from agent.extras import MissingExtraError, import_local
    from agent.policy_spec import PolicySpecError, local_model_source

    try:
        local_model_source(args.model)
        import_local("vlm", what="deskpilot serve")
    except (PolicySpecError, MissingExtraError) as exc:
        print(f"deskpilot serve: {exc}", file=sys.stderr)  # noqa: T201
        return 2

    from app.server import ChatServer, bind_socket, serve

    # Bind first, so a busy port fails in a second rather than after minutes of loading.
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"deskpilot serve: cannot listen on {args.host}:{args.port}: {exc}",  # noqa: T201
              file=sys.stderr)
        return 1

    import vlm

    def load(progress):
        log.info("loading %s", args.model)
        return vlm.load(args.model, device=args.device, dtype=args.dtype, progress=progress)

    server = ChatServer(
        model_name=args.model_name or args.model,
        api_key=api_key,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        default_max_tokens=args.max_tokens,
    )
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    # Printed before the model is loaded: /health answers "loading" until it is.
    print(f"serving {server.model_name} at http://{shown}:{port}/v1", flush=True)  # noqa: T201
    try:
        serve(server, sock, loader=load, log_level=args.log_level)
    except KeyboardInterrupt:
        pass
    if server.load_error is not None:
        print(f"deskpilot serve: could not load {args.model}: {server.load_error}",  # noqa: T201
              file=sys.stderr)
        return 1
    return 0
