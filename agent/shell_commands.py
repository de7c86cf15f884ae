"""Recognise risky shell command lines by their structure, in sh, PowerShell and cmd.exe.

A line is only judged as a command when it has the shape of one: split into pipelines
and `;` / `&&` / `||` / `&` chains, each part is a first word that names a command we
know, followed by its arguments. Each rule reads the arguments the way that command
does (`rm --recursive --force`, `Remove-Item -Rec -Fo`, `del /S /Q`), so spellings
a regular expression on bare words misses are caught, while prose that merely contains
a command's name ("please format the document", "Reboot the router first") is not a
command and is never refused.

`risky_command(line)` returns why the line is risky, or None. Wrappers that run another
command (`sudo` is risky itself; `env`, `nohup`, `xargs`, `bash -c '…'`, `cmd /c …`,
`powershell -Command …`, `$(…)`) are unwrapped and their inner command judged too.
"""

from __future__ import annotations

import re
import shlex

# sh-style chain and pipe operators (cmd.exe and PowerShell use the same symbols).
_OPERATORS = {"|", "||", "&&", ";", "&", ";;", "|&"}
_REDIRECTS = {">", ">>", "1>", "2>", "&>", ">|"}
_SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "fish", "csh", "tcsh", "ash", "busybox"}
_INTERPRETERS = _SHELLS | {"python", "python3", "perl", "ruby", "node", "php", "pwsh",
                           "powershell", "iex", "invoke-expression", "cmd"}
_DOWNLOADERS = {"curl", "wget", "fetch", "iwr", "irm", "invoke-webrequest", "invoke-restmethod",
                "aria2c", "http", "https"}
# Commands that run the rest of their arguments as another command.
_PASS_THROUGH = {"env", "nohup", "time", "nice", "ionice", "exec", "command", "builtin",
                 "stdbuf", "setsid", "unbuffer", "caffeinate", "xargs", "watch", "strace",
                 "timeout", "chrt", "taskset", "flock"}
# Interpreters whose inline code (`python -c '…'`) may hand a command to a shell
# (os.system, subprocess, system(), exec): the code's string literals are judged.
_CODE_FLAGS = {"python": "-c", "python3": "-c", "perl": "-e", "ruby": "-e", "node": "-e",
               "php": "-r"}
_PRIVILEGE = {"sudo", "doas", "pkexec", "runas", "gsudo", "su"}
# Targets whose recursive deletion, chmod or chown wrecks the system or the home folder.
_PRECIOUS = re.compile(
    r"^(/|/\*|~|~/|~/\*|\$home|\$home/|\$home/\*|\$\{home\}|/(bin|boot|dev|etc|home|lib|lib64|"
    r"opt|root|sbin|srv|sys|usr|var)/?\*?|[a-z]:\\?\*?|\.\.?/?\*?|\*)$",
    re.IGNORECASE,
)
_DEVICE = re.compile(r"^/dev/(sd|hd|vd|xvd|nvme|mmcblk|disk|rdisk|md|dm-|mapper/|loop)",
                     re.IGNORECASE)
_DRIVE = re.compile(r"^[a-z]:\\?$", re.IGNORECASE)
# A function that pipes into itself in the background: `:(){ :|:& };:` and renamed kin.
_FORK_BOMB = re.compile(r"([\w:.]+)\s*\(\s*\)\s*\{[^}]*\1\s*\|\s*\1\s*&")
# A shell fed by a download inside the line: `bash -c "$(curl …)"`, `sh <(wget …)`,
# PowerShell's `iex (iwr …)` / `iex (New-Object Net.WebClient).DownloadString(…)`.
_SHELL_OF_DOWNLOAD = re.compile(
    r"(?<![\w.-])(sh|bash|zsh|dash|ksh|fish|python3?|perl|ruby|node|eval|source|\.)(?=\s)"
    r"[^;&|\n]*?"
    r"(\$\(|<\(|`)\s*(\S*/)?(curl|wget|fetch|aria2c)\b"
    r"|(?<![\w-])(iex|invoke-expression)\b[^;|\n]*?"
    r"\b(iwr|irm|invoke-webrequest|invoke-restmethod|downloadstring|net\.webclient)\b",
    re.IGNORECASE,
)
_POWER_WORDS = re.compile(r"^([-/+][\w:]*|now|\+?\d+(:\d+)?|[\d:]+|-?[hrPcskft])$", re.IGNORECASE)


def risky_command(line: str) -> str | None:
    """Why `line` is a risky command (e.g. "rm deletes recursively or by force"), or None."""
    if not isinstance(line, str) or not line.strip():
        return None
    if _FORK_BOMB.search(line):
        return "it is a fork bomb (a function that starts copies of itself until the system hangs)"
    if _SHELL_OF_DOWNLOAD.search(line):
        return "it downloads a script and runs it in a shell"
    for text in _with_substitutions(line):
        for physical_line in text.splitlines():  # each line is submitted on its own
            for pipeline in _pipelines(_words(physical_line)):
                why = _judge_pipeline(pipeline)
                if why:
                    return why
    return None


# --- splitting ------------------------------------------------------------------------------


def _with_substitutions(line: str) -> list[str]:
    """The line and every `$(…)`, `<(…)` and backtick command inside it, innermost too."""
    texts = [line]
    for match in re.finditer(r"[$<]\(([^()]*(?:\([^()]*\)[^()]*)*)\)|`([^`]*)`", line):
        inner = match.group(1) if match.group(1) is not None else match.group(2)
        texts.extend(_with_substitutions(inner))
    return texts


def _words(text: str) -> list[str]:
    """Shell words with operators as their own words; never fails on unbalanced quotes."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    lexer.escape = ""  # backslashes are Windows paths as often as escapes
    try:
        return list(lexer)
    except ValueError:  # an unterminated quote: judge what is there, word by word
        return re.findall(r"[;&|<>]+|[^\s;&|<>]+", text)


def _pipelines(words: list[str]) -> list[list[list[str]]]:
    """Words -> pipelines (chains split at ; && || &), each a list of simple commands."""
    pipelines: list[list[list[str]]] = [[[]]]
    for word in words:
        if word in ("|", "|&"):
            pipelines[-1].append([])
        elif word in _OPERATORS:
            pipelines.append([[]])
        else:
            pipelines[-1][-1].append(word)
    return [[c for c in p if c] for p in pipelines if any(p)]


def _name(word: str) -> str:
    """`/usr/bin/rm` -> rm, `DEL` -> del, `Format.com` -> format, `mkfs.ext4` stays."""
    base = re.split(r"[/\\]", word)[-1].lower()
    return re.sub(r"\.(exe|com|cmd|bat)$", "", base)


# --- judging --------------------------------------------------------------------------------


def _judge_pipeline(commands: list[list[str]]) -> str | None:
    names = []
    for words in commands:
        inner = _unwrap(words)
        if isinstance(inner, str):
            return inner
        names.append(_name(inner[0]) if inner else "")
        why = _judge_command(inner) if inner else None
        if why:
            return why
    for i, name in enumerate(names):
        if name in _DOWNLOADERS and any(n in _INTERPRETERS for n in names[i + 1:]):
            return "it downloads a script and runs it in a shell"
    return None


def _unwrap(words: list[str]) -> list[str] | str:
    """Strip variable assignments and pass-through wrappers; a reason when one is risky."""
    while words:
        first = words[0]
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", first):
            words = words[1:]
            continue
        name = _name(first)
        if name in _PRIVILEGE:
            if name == "su" and len(words) > 1 and not words[1].startswith("-") and \
                    words[1].lower() != "root":
                return f"su switches to the user {words[1]}"
            return f"{name} runs a command with administrator (root) rights"
        if name in _PASS_THROUGH:
            words = _drop_options(words[1:])
            continue
        if name in ("pwsh", "powershell") and any(
            a.lower() in ("-encodedcommand", "-enc", "-ec", "-e") for a in words[1:]
        ):
            return f"{name} runs a hidden (base64-encoded) command"
        if name in _SHELLS | {"pwsh", "powershell", "cmd"}:
            script = _inline_script(name, words[1:])
            if script is not None:
                return risky_command(script) or []
        if name == "eval":
            return risky_command(" ".join(words[1:])) or []
        if name in _CODE_FLAGS and _CODE_FLAGS[name] in words[1:-1]:
            code = words[words.index(_CODE_FLAGS[name], 1) + 1]
            for literal in re.findall(r"'([^']*)'|\"([^\"]*)\"", code):
                why = risky_command(literal[0] or literal[1])
                if why:
                    return why
            return []
        return words
    return words


def _drop_options(words: list[str]) -> list[str]:
    """A wrapper's own options (and a leading duration for `timeout 5`) before its command."""
    while words and (words[0].startswith("-") or re.fullmatch(r"[\d.]+[smhd]?", words[0])):
        words = words[1:]
    return words


def _inline_script(shell: str, args: list[str]) -> str | None:
    """The script of `bash -c '…'`, `cmd /c …`, `powershell -Command …`, if any."""
    for i, arg in enumerate(args):
        lower = arg.lower()
        if shell == "cmd" and lower in ("/c", "/k"):
            return " ".join(args[i + 1:])
        if shell in ("pwsh", "powershell") and lower in ("-c", "-command"):
            return " ".join(args[i + 1:])
        if shell not in ("cmd", "pwsh", "powershell") and re.fullmatch(r"-[a-z]*c[a-z]*", lower):
            return args[i + 1] if i + 1 < len(args) else ""
    return None


def _judge_command(words: list[str]) -> str | None:
    name, args = _name(words[0]), words[1:]
    lower = [a.lower() for a in args]
    for i, arg in enumerate(args[:-1]):
        if arg in _REDIRECTS and _DEVICE.match(args[i + 1]):
            return f"it writes over the disk device {args[i + 1]}"
    rule = _RULES.get(name)
    if rule is None and name.startswith(("mkfs", "mke2fs", "mkswap")):
        rule = _mkfs
    return rule(name, args, lower) if rule else None


def _short_flags(lower: list[str]) -> str:
    """The letters of every single-dash cluster: `-rf -v` -> "rfv" (case kept, lowered)."""
    return "".join(a[1:] for a in lower if re.fullmatch(r"-[a-z]+", a))


def _rm(name, args, lower):
    long = {a.split("=")[0] for a in lower if a.startswith("--")}
    if "--no-preserve-root" in long:
        return "rm --no-preserve-root deletes the whole system"
    if long & {"--recursive", "--force", "--dir"}:
        return f"{name} deletes recursively or by force"
    for arg in args:
        if not re.fullmatch(r"-[A-Za-z]+", arg):
            continue
        letters = arg[1:]
        if set(letters) <= set("fiIrRdv"):  # a cluster of rm's own short options: -rf
            if set(letters) & set("rRf"):
                return f"{name} deletes recursively or by force"
        elif _powershell_switch(letters, "recurse", 1) or _powershell_switch(letters, "force", 2):
            # PowerShell's rm is Remove-Item: -Rec… / -Fo… are -Recurse and -Force
            return f"{name} deletes recursively or by force"
    if any(_PRECIOUS.match(a) for a in args if not a.startswith("-")):
        return f"{name} deletes a system or home folder, or everything in the current one"
    return None


def _powershell_switch(given: str, switch: str, shortest: int) -> bool:
    """PowerShell accepts any unambiguous prefix of a parameter: -Rec for -Recurse."""
    return len(given) >= shortest and switch.startswith(given.lower())


def _mv(name, args, lower):
    paths = [a for a in args if not a.startswith("-")]
    if paths and (paths[-1] == "/dev/null" or any(_PRECIOUS.match(p) for p in paths[:-1])):
        return f"{name} moves a system or home folder away (or into /dev/null)"
    return None


def _remove_item(name, args, lower):
    switches = [a[1:] for a in lower if re.fullmatch(r"-[a-z]+", a)]
    if any(_powershell_switch(s, "recurse", 1) or _powershell_switch(s, "force", 1)
           for s in switches):
        return f"{name} deletes recursively or by force"
    if any(_PRECIOUS.match(a) for a in args if not a.startswith("-")):
        return f"{name} deletes a system or home folder"
    return None


def _find(name, args, lower):
    if "-delete" in lower:
        return "find -delete deletes every file it matches"
    for i, arg in enumerate(lower):
        if arg in ("-exec", "-execdir", "-ok", "-okdir") and i + 1 < len(lower):
            if _name(lower[i + 1]) in {"rm", "shred", "unlink", "rmdir", "mv", "chmod", "chown",
                                       "dd", "truncate"}:
                return f"find {arg} {lower[i + 1]} changes or deletes every file it matches"
    return None


def _dd(name, args, lower):
    for arg in args:
        if arg.lower().startswith("of=") and _DEVICE.match(arg[3:]):
            return f"dd writes over the disk device {arg[3:]}"
    return None


def _mkfs(name, args, lower):
    return f"{name} formats a disk, erasing it"


def _disk_tool(name, args, lower):
    return f"{name} changes a disk's partitions or erases it"


def _recursive_owner(name, args, lower):
    letters = _short_flags(lower)
    recursive = "r" in letters or "--recursive" in lower
    targets = [a for a in args if not a.startswith("-")]
    if recursive and any(_PRECIOUS.match(t) for t in targets[1:] or targets):
        return f"{name} -R changes the owner or permissions of a whole system or home folder"
    return None


def _power(name, args, lower):
    if all(_POWER_WORDS.match(a) for a in args):
        return f"{name} shuts down or restarts the computer"
    return None


def _systemctl(name, args, lower):
    verbs = {"poweroff", "reboot", "halt", "kexec", "suspend", "hibernate", "rescue",
             "emergency", "isolate", "soft-reboot"}
    if any(a in verbs for a in lower):
        return f"systemctl {next(a for a in lower if a in verbs)} stops or restarts the system"
    return None


def _init(name, args, lower):
    if lower and lower[0] in ("0", "1", "6", "s", "single"):
        return f"{name} {lower[0]} shuts down or restarts the system"
    return None


def _kill(name, args, lower):
    # `kill -9 -1` / `kill -- -1`: process id -1 is every process the user may signal
    # (a lone `kill -1 PID` is signal 1 to PID, harmless).
    if len(lower) >= 2 and lower[-1] == "-1":
        return f"{name} -1 kills every process of the user"
    return None


def _pkill_all(name, args, lower):
    if "-u" in lower or "--user" in lower or "-v" in lower:
        return f"{name} kills every process of a user"
    return None


def _git(name, args, lower):
    if not lower:
        return None
    verb, rest = lower[0], lower[1:]
    flags = _short_flags(rest)
    if verb == "push" and ("f" in flags or any(a.startswith("--force") for a in rest)
                           or any(a.startswith("+") for a in rest)):
        return "git push --force overwrites the remote branch's history"
    if verb == "clean" and "f" in flags:
        return "git clean -f deletes untracked files"
    if verb == "reset" and "--hard" in rest:
        return "git reset --hard discards uncommitted work"
    return None


def _crontab(name, args, lower):
    if "r" in _short_flags(lower):
        return "crontab -r deletes every scheduled job"
    return None


def _del(name, args, lower):
    switches = {a for a in lower if a.startswith("/")}
    if switches & {"/s", "/q", "/f"} or any(re.fullmatch(r"/[sqfa]+", s) for s in switches):
        return f"{name} {' '.join(sorted(switches))} deletes files without asking"
    if any(_PRECIOUS.match(a) for a in args if not a.startswith("/")):
        return f"{name} deletes a system or home folder"
    return None


def _rd(name, args, lower):
    if "/s" in lower:
        return f"{name} /s deletes a folder and everything in it"
    return _rm(name, args, lower)


def _format(name, args, lower):
    targets = [a for a in args if not a.startswith(("/", "-"))]
    if len(targets) == 1 and (_DRIVE.match(targets[0]) or _DEVICE.match(targets[0])):
        return f"format {targets[0]} erases the drive"
    return None


def _always(reason: str):
    return lambda name, args, lower: f"{name} {reason}"


def _reg(name, args, lower):
    if lower and lower[0] == "delete":
        return "reg delete removes registry keys"
    return None


def _vssadmin(name, args, lower):
    if lower[:2] == ["delete", "shadows"]:
        return "vssadmin delete shadows destroys the backups (shadow copies)"
    return None


def _cipher(name, args, lower):
    if any(a.startswith("/w") for a in lower):
        return "cipher /w wipes the free space of a drive"
    return None


def _diskutil(name, args, lower):
    if lower and lower[0] in ("erasedisk", "erasevolume", "zerodisk", "randomdisk",
                              "partitiondisk", "secureerase"):
        return f"diskutil {lower[0]} erases a disk"
    return None


def _sql_drop(name, args, lower):
    """`DROP TABLE x;` typed into a database prompt (TRUNCATE TABLE empties one)."""
    if lower and lower[0] in (("table",) if name == "truncate" else ("table", "database",
                                                                       "schema")):
        return f"{name} {lower[0]} destroys the data"
    return None


def _stop_process(name, args, lower):
    if any(re.fullmatch(r"-fo\w*|-f", a) for a in lower):
        return f"{name} -Force kills processes without saving"
    return None


def _set_execution_policy(name, args, lower):
    if any(a in ("unrestricted", "bypass") for a in lower):
        return "Set-ExecutionPolicy lets any downloaded script run"
    return None


# First word (lowercased, path and .exe stripped) -> the rule that reads its arguments.
_RULES = {
    # deleting: sh, PowerShell (rm/ri/del/erase/rd/rmdir are Remove-Item aliases there)
    "rm": _rm, "shred": _always("overwrites files so they cannot be recovered"),
    "rmdir": _rd, "rd": _rd, "remove-item": _remove_item, "ri": _remove_item,
    "erase": _del, "del": _del, "find": _find, "mv": _mv, "move-item": _mv,
    # disks
    "dd": _dd, "format": _format, "wipefs": _disk_tool, "fdisk": _disk_tool,
    "sfdisk": _disk_tool, "gdisk": _disk_tool, "sgdisk": _disk_tool, "parted": _disk_tool,
    "diskpart": _disk_tool, "diskutil": _diskutil, "cipher": _cipher,
    "format-volume": _always("erases a drive"), "clear-disk": _always("erases a disk"),
    "initialize-disk": _always("erases a disk's partition table"),
    "remove-partition": _always("deletes a partition"),
    # permissions
    "chmod": _recursive_owner, "chown": _recursive_owner, "chgrp": _recursive_owner,
    # power and processes
    "shutdown": _power, "reboot": _power, "poweroff": _power, "halt": _power,
    "systemctl": _systemctl, "init": _init, "telinit": _init,
    "stop-computer": _always("shuts down the computer"),
    "restart-computer": _always("restarts the computer"),
    "kill": _kill, "pkill": _pkill_all, "killall": _pkill_all, "stop-process": _stop_process,
    # work and configuration that cannot be recovered
    "git": _git, "crontab": _crontab, "reg": _reg, "vssadmin": _vssadmin,
    "bcdedit": _always("changes how the computer boots"),
    "set-executionpolicy": _set_execution_policy,
    "drop": _sql_drop, "truncate": _sql_drop,
}
