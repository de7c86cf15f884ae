"""The optional `local` extra: the in-process model engine and the trainer.

`pip install deskpilot` is the agent, the app and the remote backend, without torch.
Running a model in this process (`local:PATH`, the app's model panel, `deskpilot serve`,
`deskpilot train`) needs `pip install 'deskpilot[local]'`; asking for it without the
extra must say exactly that, not fail with "No module named 'torch'".
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

INSTALL_LOCAL = "pip install 'deskpilot[local]'"
# Top-level modules that only the `local` extra installs.
LOCAL_MODULES = frozenset(
    {
        "torch",
        "torchvision",
        "transformers",
        "tokenizers",
        "safetensors",
        "qwen_vl_utils",
        "peft",
        "triton",
    }
)


# What the engine imports when it loads a model (vlm/ and kernels/).
ENGINE_MODULES = ("torch", "safetensors", "tokenizers", "transformers", "qwen_vl_utils")


class MissingExtraError(ImportError):
    """A feature of the `local` extra was asked for, and the extra is not installed."""


def missing_local_module(exc: BaseException) -> str | None:
    """The `local`-only module whose absence `exc` reports, or None."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top in LOCAL_MODULES:
            return top
    return None


def missing_local_modules() -> list[str]:
    """The `local`-only modules the engine needs that cannot be found (without importing
    them: finding torch is instant, importing it takes seconds)."""
    missing = []
    for name in ENGINE_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_local(what: str = "a local model") -> None:
    """Raise MissingExtraError, saying what to install, unless the local engine can run."""
    missing = missing_local_modules()
    if missing:
        raise MissingExtraError(
            f"{what} needs the local engine, which is not installed "
            f"({', '.join(missing)} missing): {INSTALL_LOCAL}"
        )


def import_local(module: str = "vlm", *, what: str = "a local model") -> ModuleType:
    """`module` of the local engine, after require_local; a local-only module found
    missing while importing it is reported the same way."""
    require_local(what)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = missing_local_module(exc)
        if missing is None:
            raise
        raise MissingExtraError(
            f"{what} needs the local engine, which is not installed ({missing} missing): "
            f"{INSTALL_LOCAL}"
        ) from exc
