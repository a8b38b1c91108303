"""Which rule family looks at which program, by its name (basename, case-folded)."""

from __future__ import annotations

from mcp_bridge.policy import options
from mcp_bridge.policy.base import Context, Finding, confirm, deny
from mcp_bridge.policy.options import FLAG, VALUE
from mcp_bridge.policy.rules_disk import (
    check_copy,
    check_dd,
    check_mkfs,
    check_partitioner,
    check_tee,
    check_wipe,
    check_wipefs,
    is_mkfs,
)
from mcp_bridge.policy.rules_files import check_find, check_mv, check_perms, check_rm, check_rsync
from mcp_bridge.policy.rules_power import (
    POWER_PROGRAMS,
    check_dbus,
    check_init,
    check_kexec,
    check_kill,
    check_loginctl,
    check_pkill,
    check_shutdown,
    check_systemctl,
)
from mcp_bridge.policy.sources import SHELLS
from mcp_bridge.policy.words import Arg

_WIPE_TOOLS = frozenset({"shred", "blkdiscard", "mkswap", "badblocks", "nvme", "hdparm", "cryptsetup", "mdadm",
                         "pvremove", "vgremove", "lvremove", "zpool", "zfs", "flashrom"})
_PARTITIONERS = frozenset({"sgdisk", "sfdisk", "fdisk", "gdisk", "cfdisk", "cgdisk", "parted"})
_DISKUTIL_ERASE = frozenset({"erasedisk", "erasevolume", "reformat", "partitiondisk", "zerodisk", "randomdisk",
                             "secureerase"})
# Programs whose copies or links would slip past the rules by name.
WATCHED = frozenset({"rm", "dd", "dcfldd", "dc3dd", "wipefs", "kill", "pkill", "killall", "killall5", "kexec",
                     "init", "telinit", "systemctl", "loginctl", "busctl", "find", "rsync", "mv", "chmod", "chown",
                     "eval", "env", "sudo", "doas", "xargs", "python", "python3", "perl", "ruby", "node"}
                    | POWER_PROGRAMS | _WIPE_TOOLS | _PARTITIONERS | SHELLS)


def program_name(text: str) -> str:
    return text.rstrip("/").rsplit("/", 1)[-1].casefold()


def is_watched(text: str) -> bool:
    name = program_name(text)
    return name in WATCHED or is_mkfs(name)


def check_program(name: str, args: list[Arg], ctx: Context) -> Finding | None:
    """The built-in rule finding for one program and its arguments, if any."""
    if name == "rm":
        return check_rm(args, ctx)
    if name == "mv":
        return check_mv(args, ctx)
    if name in ("chmod", "chown", "chgrp"):
        return check_perms(name, args, ctx)
    if name == "find":
        return check_find(args, ctx)
    if name == "rsync":
        return check_rsync(args, ctx)
    if is_mkfs(name):
        return check_mkfs(name, args, ctx)
    if name == "wipefs":
        return check_wipefs(args, ctx)
    if name == "diskutil":
        verb = (args[0].value or "").casefold() if args else ""
        if verb in _DISKUTIL_ERASE:
            return deny("disk-format", f"'diskutil {verb}' erases a disk")
        return None
    if name in _PARTITIONERS:
        return check_partitioner(name, args, ctx)
    if name in _WIPE_TOOLS:
        return check_wipe(name, args, ctx)
    if name in ("dd", "dcfldd", "dc3dd"):
        return check_dd(name, args, ctx)
    if name == "tee":
        return check_tee(args, ctx)
    if name in ("cp", "install", "ddrescue"):
        return check_copy(name, args, ctx) or _copies_watched(name, args)
    if name == "ln":
        return _copies_watched(name, args)
    if name == "lvm" and args and args[0].value:
        return check_program(program_name(args[0].value), args[1:], ctx)
    return _check_power(name, args)


def _check_power(name: str, args: list[Arg]) -> Finding | None:
    if name in POWER_PROGRAMS:
        return check_shutdown(name, args)
    if name in ("init", "telinit"):
        return check_init(name, args)
    if name == "systemctl":
        return check_systemctl(args)
    if name == "loginctl":
        return check_loginctl(args)
    if name in ("busctl", "dbus-send", "gdbus", "qdbus", "dbus"):
        return check_dbus(name, args)
    if name == "kexec":
        return check_kexec(args)
    if name == "kill":
        return check_kill(args)
    if name in ("pkill", "killall", "killall5"):
        return check_pkill(name, args)
    return None


def _copies_watched(name: str, args: list[Arg]) -> Finding | None:
    """``ln -s /sbin/reboot x`` or ``cp /bin/rm ./x`` gives a watched program a name no rule knows."""
    opts = options.parse(args, flags="bdfFiLnPrsTvaHlRux", values="StZ",
                         longs={"target-directory": VALUE, "suffix": VALUE, "symbolic": FLAG, "force": FLAG})
    if len(opts.operands) != 2 or opts.values("-t", "--target-directory"):
        return None  # a link or copy in a directory keeps the program's own name
    source, target = opts.operands
    if target.value is None or target.value.endswith("/"):
        return None
    new_name = program_name(target.value)
    if source.value is not None and "/" in source.value and is_watched(source.value) and not is_watched(new_name):
        return confirm("dynamic-program", f"{name} gives '{source.value}', a program the policy watches, "
                                          f"the name '{new_name}' the rules do not know")
    return None


def symlinks_made(args: list[Arg]) -> list[tuple[Arg, Arg]] | None:
    """(link name, target) pairs ``ln -s`` creates; None when it makes no symbolic link."""
    opts = options.parse(args, flags="bdfFiLnPrsTv", values="St",
                         longs={"symbolic": FLAG, "target-directory": VALUE, "suffix": VALUE, "force": FLAG,
                                "no-dereference": FLAG, "relative": FLAG, "verbose": FLAG, "backup": FLAG,
                                "no-target-directory": FLAG, "interactive": FLAG, "logical": FLAG,
                                "physical": FLAG})
    if not opts.has("-s", "--symbolic"):
        return None
    operands = opts.operands
    directory = next((v for v in opts.values("-t", "--target-directory")), None)
    made: list[tuple[Arg, Arg]] = []

    def inside(folder: Arg | str | None, target: Arg) -> Arg:
        base = (target.value or "").rstrip("/").rsplit("/", 1)[-1]
        folder_text = folder.value if isinstance(folder, Arg) else folder
        if folder_text is None or target.value is None:
            return Arg(None, target.raw, why="a link name only known at run time")
        text = folder_text.rstrip("/") + "/" + base
        return Arg(text, text)

    if directory is not None or opts.values("-t", "--target-directory"):
        made = [(inside(directory, target), target) for target in operands]
    elif len(operands) == 1:
        made = [(inside(".", operands[0]), operands[0])]
    elif len(operands) == 2:
        made = [(operands[1], operands[0]), (inside(operands[1], operands[0]), operands[0])]
    elif operands:
        made = [(inside(operands[-1], target), target) for target in operands[:-1]]
    return made


_MOUNT_LONGS = {"bind": FLAG, "rbind": FLAG, "move": FLAG, "options": VALUE, "types": VALUE, "label": VALUE,
                "uuid": VALUE, "source": VALUE, "target": VALUE, "fstab": VALUE, "namespace": VALUE,
                "test-opts": VALUE, "read-only": FLAG, "read-write": FLAG, "verbose": FLAG}


def bind_mounts(args: list[Arg]) -> list[tuple[Arg, Arg]]:
    """``mount --bind SRC DST`` (and --rbind, -B, -R, -o bind, -obind,...): DST now shows SRC."""
    opts = options.parse(args, flags="afFnrvwBMRlcsihV", values="oOtLUTN", longs=_MOUNT_LONGS,
                         aliases={"-B": "--bind", "-R": "--rbind", "-o": "--options", "-t": "--types"})
    binds = opts.has("--bind", "--rbind") or any(
        word in ("bind", "rbind") for value in opts.values("--options") for word in (value or "").split(","))
    if not binds:
        return []
    operands = list(opts.operands)
    source, target = opts.values("--source"), opts.values("--target")
    if source and source[-1] is not None:
        operands.insert(0, Arg(source[-1], source[-1]))
    if target and target[-1] is not None:
        operands.append(Arg(target[-1], target[-1]))
    return [(operands[-1], operands[-2])] if len(operands) >= 2 else []
