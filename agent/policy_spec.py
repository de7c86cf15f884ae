"""Turn a policy spec string into a Policy: `local:PATH`, `remote:URL`, `script:FILE`,
`replay:RUN`.

One parser for the CLI and the app, so both accept the same strings. Each backend is
imported only when chosen: a scripted run must not pay for (or need) torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCHEMES = ("local", "remote", "script", "replay")


class PolicySpecError(ValueError):
    """A policy spec that names no usable backend or source."""


def parse_spec(spec: str) -> tuple[str, str]:
    """ "scheme:target" -> (scheme, target); raises PolicySpecError with the accepted forms."""
    scheme, sep, target = (spec or "").partition(":")
    scheme = scheme.strip().lower()
    target = target.strip()
    if not sep or scheme not in SCHEMES:
        raise PolicySpecError(
            f"unknown policy {spec!r}: use local:PATH, remote:URL, script:FILE or replay:RUN"
        )
    if not target:
        raise PolicySpecError(f"policy {spec!r} names no {scheme} source after the colon")
    return scheme, target


def _existing(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise PolicySpecError(f"{what} not found: {p}")
    return p


def local_model_source(target: str) -> str:
    """What to load for a local model: an existing checkpoint folder, or a hub id (a name
    with one slash that is not a folder). Raises PolicySpecError before anything loads."""
    path = Path(target).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").is_file():
            raise PolicySpecError(f"{path} is not a checkpoint folder: it has no config.json")
        return str(path)
    if target.startswith((".", "/", "~")) or target.count("/") != 1:
        raise PolicySpecError(f"local checkpoint not found: {path}")
    return target


def make_policy(spec: str, settings: Any = None) -> Any:
    """A Policy for `spec`. `settings` (agent.settings.Settings) supplies device, dtype,
    remote model name and the API key's environment variable where it has them."""
    scheme, target = parse_spec(spec)
    if scheme == "script":
        from agent.policies import ScriptPolicy

        return ScriptPolicy(_existing(target, "script file"))
    if scheme == "replay":
        from agent.trajectory import ReplayPolicy

        return ReplayPolicy(_existing(target, "recorded run"))
    if scheme == "remote":
        if not target.startswith(("http://", "https://")):
            raise PolicySpecError(f"remote policy needs an http(s) URL, got {target!r}")
        from agent.remote import RemotePolicy

        key_env = getattr(settings, "remote_api_key_env", "") or "DESKPILOT_API_KEY"
        return RemotePolicy(
            target,
            model=getattr(settings, "remote_model", "") or "",
            api_key_env=key_env,  # read (and named in errors) by RemotePolicy itself
        )
    source = local_model_source(target)
    from agent.extras import import_local

    vlm = import_local("vlm", what=f"the local model {target!r}")
    device = getattr(settings, "device", "auto")
    dtype = getattr(settings, "dtype", "auto")
    return vlm.load(
        source,
        device=None if device in (None, "", "auto") else device,
        dtype=None if dtype in (None, "", "auto") else dtype,
    )


class DialectUnknownError(ValueError):
    """The dialect cannot be told from the policy: the person must name it."""


def remote_dialect(policy: Any) -> str:
    """The dialect of a remote policy's model, from its id (GET /v1/models when the
    settings name no model). Never a guess: an id that does not say raises."""
    from agent.dialects import DIALECT_NAMES, dialect_for_model_id

    model_id = policy.served_model_id()
    name = dialect_for_model_id(model_id)
    if name is None:
        raise DialectUnknownError(
            f"cannot tell which dialect the served model {model_id!r} speaks; "
            f"give it with --dialect ({', '.join(DIALECT_NAMES)})"
        )
    return name
