#!/usr/bin/env bash
# Installs everything deskpilot needs on a fresh Debian 12 machine, idempotently:
# system packages (only when run as root), a virtual environment in .venv, and the
# project with its pinned torch. Re-running is fast when nothing changed: each part
# records a stamp of its inputs and is skipped while the stamp matches.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(
  python3 python3-venv python3-dev python3-tk   # a system Python that can make venvs
  xvfb xauth xdotool xclip xsel                  # virtual screen, key events, clipboard
  libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxcb-xfixes0
  libxkbcommon-x11-0 libxkbcommon0 libegl1 libgl1 libfontconfig1 libdbus-1-3
  libglib2.0-0 fonts-dejavu-core fonts-noto-cjk fonts-noto-color-emoji
)

install_system_packages() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    return 0
  fi
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_python_packages() {
  local python="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  local stamp
  stamp="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
  if [ -f .venv/.deskpilot-stamp ] && [ "$(cat .venv/.deskpilot-stamp)" = "$stamp" ]; then
    return 0
  fi
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned: the CUDA build works on CPU too, and this exact pair is the
  # one whose torchvision imports (qwen-vl-utils needs torchvision).
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/python -m pip install -q -e ".[local,dev]"
  echo "$stamp" > .venv/.deskpilot-stamp
}

install_system_packages
install_python_packages
# pyautogui's X11 backend refuses to start without an Xauthority file.
[ -f "$HOME/.Xauthority" ] || touch "$HOME/.Xauthority"
