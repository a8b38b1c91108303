"""Rules about the node's power state and its init process.

Options are read as the programs read them: ``shutdown`` takes the *last* of its action
options (``shutdown -c -r now`` reboots, ``shutdown -r -c`` cancels) and ``-k`` only sends the
wall message; ``reboot --help`` prints help but ``reboot -- --help`` reboots; ``telinit
--no-wall 6`` reboots. Besides the classic commands: ``systemctl`` power verbs and power
units (``isolate runlevel6.target``, ``start systemd-reboot.service``), ``loginctl reboot``,
D-Bus calls to logind/systemd (``busctl call ... Reboot``), ``kexec -e``, and any signal but
0 to PID 1 or to every process (``kill -INT 1`` makes systemd reboot).
"""

from __future__ import annotations

import re

from mcp_bridge.policy import options
from mcp_bridge.policy.base import Finding, deny, unknown
from mcp_bridge.policy.options import FLAG, VALUE
from mcp_bridge.policy.words import Arg

POWER_PROGRAMS = frozenset({"shutdown", "reboot", "halt", "poweroff"})
_POWER_VERBS = frozenset({"poweroff", "reboot", "halt", "kexec", "soft-reboot", "suspend", "hibernate",
                          "hybrid-sleep", "suspend-then-hibernate", "sleep", "rescue", "emergency", "exit"})
_POWER_UNITS = frozenset({
    "poweroff", "reboot", "halt", "kexec", "soft-reboot", "ctrl-alt-del", "runlevel0", "runlevel1", "runlevel6",
    "rescue", "emergency", "suspend", "hibernate", "hybrid-sleep", "suspend-then-hibernate", "sleep", "exit",
    "shutdown", "final", "systemd-reboot", "systemd-poweroff", "systemd-halt", "systemd-kexec",
    "systemd-soft-reboot", "systemd-suspend", "systemd-hibernate", "systemd-hybrid-sleep",
    "systemd-suspend-then-hibernate", "systemd-exit",
})
_STARTING_VERBS = frozenset({"start", "restart", "try-restart", "reload-or-restart", "try-reload-or-restart",
                             "isolate", "force-reload", "reload-or-try-restart", "enqueue"})
_DBUS_POWER = re.compile(r"(?:^|\.)(Reboot|PowerOff|Halt|KExec|SoftReboot|Suspend|Hibernate|HybridSleep|"
                         r"SuspendThenHibernate|Sleep|Exit)(?:WithFlags)?$")
_SYSTEMCTL_VALUES = {"type": VALUE, "state": VALUE, "property": VALUE, "signal": VALUE, "kill-whom": VALUE,
                     "kill-value": VALUE, "output": VALUE, "lines": VALUE, "host": VALUE, "machine": VALUE,
                     "root": VALUE, "image": VALUE, "job-mode": VALUE, "when": VALUE, "what": VALUE,
                     "message": VALUE, "reboot-argument": VALUE, "boot-loader-entry": VALUE,
                     "boot-loader-menu": VALUE, "timestamp": VALUE, "preset-mode": VALUE, "drop-in": VALUE,
                     "check-inhibitors": VALUE, "legend": VALUE, "help": FLAG, "version": FLAG}


def _any_dynamic(args: list[Arg], what: str) -> Finding | None:
    dynamic = next((a for a in args if a.value is None), None)
    return unknown(dynamic, what) if dynamic is not None else None


def check_shutdown(name: str, args: list[Arg]) -> Finding | None:
    if name == "shutdown":
        opts = options.parse(args, flags="HPrhkcafFnqt", longs={"help": FLAG, "halt": FLAG, "poweroff": FLAG,
                                                               "reboot": FLAG, "no-wall": FLAG, "show": FLAG})
        if opts.has("--help"):
            return None
        if opts.dynamic:
            return unknown(opts.dynamic[0], "shutdown with an argument only known at run time")
        if opts.has("-k"):
            return None  # -k: only the wall message, no power action
        action = "poweroff"
        for option, _ in opts.seen:
            if option in ("-H", "--halt"):
                action = "halt"
            elif option in ("-P", "--poweroff"):
                action = "poweroff"
            elif option in ("-r", "--reboot"):
                action = "reboot"
            elif option == "-h" and action != "halt":
                action = "poweroff"
            elif option == "-c":
                action = "cancel"
            elif option == "--show":
                action = "show"
        if action in ("cancel", "show"):
            return None
        return deny("power-state", f"shutdown ({action}, the last action option wins) shuts down or reboots "
                                   "the node")
    opts = options.parse(args, flags="pfwndhi", longs={"help": FLAG, "halt": FLAG, "poweroff": FLAG,
                                                       "reboot": FLAG, "force": FLAG, "wtmp-only": FLAG,
                                                       "no-wtmp": FLAG, "no-sync": FLAG, "no-wall": FLAG})
    if opts.has("--help"):
        return None
    if opts.dynamic:
        return unknown(opts.dynamic[0], f"{name} with an argument only known at run time")
    if opts.has("-w", "--wtmp-only"):
        return None  # only writes the wtmp record
    return deny("power-state", f"'{name}' shuts down or reboots the node")


def check_init(name: str, args: list[Arg]) -> Finding | None:
    opts = options.parse(args, flags="", longs={"help": FLAG, "no-wall": FLAG, "version": FLAG})
    if opts.has("--help", "--version") or not opts.operands:
        return None
    level = opts.operands[0]
    if level.value is None:
        return unknown(level, f"'{name}' to a runlevel only known at run time")
    if level.value in ("0", "6"):
        return deny("power-state", f"'{name} {level.value}' shuts down or reboots the node")
    if level.value in ("1", "s", "S", "single"):
        return deny("power-state", f"'{name} {level.value}' drops the node to rescue mode (ssh stops)")
    return None


def check_systemctl(args: list[Arg]) -> Finding | None:
    opts = options.parse(args, flags="aflqiH", values="tspnoHMH", longs=_SYSTEMCTL_VALUES)
    if opts.has("--help", "--version") or not opts.operands:
        return _any_dynamic(opts.dynamic, "systemctl with an argument only known at run time")
    verb, *units = opts.operands
    if verb.value is None:
        return unknown(verb, "systemctl with a verb only known at run time")
    lowered = verb.value.casefold()
    if lowered in _POWER_VERBS:
        return deny("power-state", f"'systemctl {lowered}' shuts down, reboots or suspends the node")
    if lowered in _STARTING_VERBS:
        for unit in units:
            if unit.value is None:
                return unknown(unit, f"systemctl {lowered} of a unit only known at run time")
            base = unit.value.casefold().rsplit("/", 1)[-1]
            base = re.sub(r"\.(target|service)$", "", base)
            if base in _POWER_UNITS:
                return deny("power-state", f"'systemctl {lowered} {unit.value}' shuts down, reboots or "
                                           "suspends the node")
    return None


def check_loginctl(args: list[Arg]) -> Finding | None:
    opts = options.parse(args, flags="alp", values="HMpo", longs={"host": VALUE, "machine": VALUE, "help": FLAG,
                                                                  "property": VALUE, "output": VALUE})
    if not opts.operands:
        return None
    verb = opts.operands[0]
    if verb.value is None:
        return unknown(verb, "loginctl with a verb only known at run time")
    if verb.value.casefold() in _POWER_VERBS:
        return deny("power-state", f"'loginctl {verb.value}' shuts down, reboots or suspends the node")
    return None


def check_dbus(name: str, args: list[Arg]) -> Finding | None:
    """busctl, dbus-send, gdbus, qdbus calling a power method of logind or systemd."""
    texts = [a.value for a in args if a.value is not None]
    targets_manager = any("login1" in t or "systemd1" in t for t in texts)
    if not targets_manager:
        return None
    for text in texts:
        match = _DBUS_POWER.search(text.split("=", 1)[-1])
        if match:
            return deny("power-state", f"'{name}' calls {match.group(1)} on the login or system manager")
    return _any_dynamic(args, f"'{name}' calls the login or system manager with an argument only known at run time")


def check_kexec(args: list[Arg]) -> Finding | None:
    opts = options.parse(args, flags="lpuefhvsSdxcai", longs={
        "load": FLAG, "load-panic": FLAG, "unload": FLAG, "exec": FLAG, "force": FLAG, "help": FLAG,
        "version": FLAG, "kexec-file-syscall": FLAG, "kexec-syscall": FLAG, "status": FLAG, "debug": FLAG,
        "append": VALUE, "command-line": VALUE, "initrd": VALUE, "ramdisk": VALUE, "reuse-cmdline": FLAG,
        "type": VALUE, "mem-min": VALUE, "mem-max": VALUE, "dtb": VALUE, "load-preserve-context": FLAG,
        "load-jump-back-helper": FLAG, "entry": VALUE, "reuse-initrd": FLAG})
    if opts.has("-h", "--help", "-v", "--version"):
        return None
    if opts.has("-e", "--exec", "-f", "--force"):
        return deny("kexec", "kexec -e/-f boots another kernel at once, like a reboot")
    if opts.has("-l", "--load", "-p", "--load-panic", "-u", "--unload", "-S", "--status"):
        return None  # only loads, unloads or reports; nothing boots
    return deny("kexec", "kexec without -l loads and boots another kernel")


def _signal_zero(signal: str | None) -> bool:
    return signal is not None and signal.upper().removeprefix("SIG") in ("0",)


def check_kill(args: list[Arg]) -> Finding | None:
    signal: str | None = "TERM"
    signal_given = False
    pids: list[Arg] = []
    index = 0
    while index < len(args):  # options come before the first pid; a later -N is a process group
        arg = args[index]
        text = arg.value
        index += 1
        if text is None or pids:
            pids.append(arg)
        elif text == "--":
            pids.extend(args[index:])
            break
        elif text in ("-l", "-L", "--list", "--table"):
            return None
        elif text in ("-s", "-n", "--signal"):
            signal = args[index].value if index < len(args) else None
            signal_given = True
            index += 1
        elif text.startswith("--signal="):
            signal, signal_given = text.split("=", 1)[1], True
        elif text in ("-q", "--queue"):
            index += 1
        elif text == "--timeout":
            index += 2
        elif text.startswith("-") and len(text) > 1 and not signal_given:
            signal, signal_given = text[1:], True
        else:
            pids.append(arg)
    hits = [p for p in pids if p.value in ("1", "-1")]
    if hits and not _signal_zero(signal):
        target = "PID 1 (init)" if hits[0].value == "1" else "every process (-1)"
        return deny("kill-init", f"kill sends SIG{(signal or '?').upper().removeprefix('SIG')} to {target}, "
                                 "which reboots, halts or kills the node's services")
    dynamic = next((p for p in pids if p.value is None), None)
    if dynamic is not None and not _signal_zero(signal):
        return unknown(dynamic, "kill of a process only known at run time (it could be PID 1)")
    return None


_INIT_NAMES = ("systemd", "init")


def check_pkill(name: str, args: list[Arg]) -> Finding | None:
    if name == "killall5":
        return deny("kill-init", "killall5 signals every process on the node")
    opts = options.parse(args, flags="cefilnoOqrRvwxVIZ", values="sgGPtuUFLpdC", optional="",
                         longs={"signal": VALUE, "exact": FLAG, "full": FLAG, "user": VALUE, "uid": VALUE,
                                "help": FLAG, "version": FLAG, "list": FLAG, "ignore-case": FLAG, "newest": FLAG,
                                "oldest": FLAG, "older-than": VALUE, "younger-than": VALUE, "regexp": FLAG,
                                "wait": FLAG, "interactive": FLAG, "quiet": FLAG, "verbose": FLAG, "count": FLAG,
                                "euid": VALUE, "group": VALUE, "parent": VALUE, "session": VALUE,
                                "terminal": VALUE, "pidfile": VALUE, "ns": VALUE, "nslist": VALUE, "echo": FLAG})
    if opts.has("--help", "--version", "-l", "--list", "-V"):
        return None
    signals = [s for s in opts.values("-s", "--signal") if s]
    signals += [n.lstrip("-") for n, _ in opts.seen if re.fullmatch(r"-(\d+|[A-Z]+[0-9A-Z+-]*)", n)]
    if any(_signal_zero(s) for s in signals):
        return None
    if opts.dynamic:
        return unknown(opts.dynamic[0], f"'{name}' of processes only known at run time (they could include init)")
    patterns = opts.static_operands()
    if not patterns and opts.has("-u", "--user", "-U", "--uid", "--euid"):
        users = [v for n, v in opts.seen if n in ("-u", "--user", "-U", "--uid", "--euid")]
        if any(u in ("root", "0") for u in users):
            return deny("kill-init", f"'{name} -u root' signals every process of root, sshd and init included")
    exact = name == "killall" or opts.has("-x", "--exact")
    for pattern in patterns:
        for target in _INIT_NAMES:
            try:
                matched = re.fullmatch(pattern, target) if exact else re.search(pattern, target)
            except re.error:
                matched = None
            if matched:
                return deny("kill-init", f"'{name} {pattern}' signals {target}, the node's init process")
    return None
