"""Rules about devices: formatting, wiping, repartitioning, and writing onto them.

A tool is refused when an argument names a device (any ``/dev`` path but the harmless ones:
``/dev/null``, ``/dev/zero``, ``/dev/tty``, ``/dev/fd/*``, ``/dev/shm/*``...). The same tools on
a regular file pass: ``mkfs.ext4 -F /tmp/disk.img`` and ``mkswap /swapfile`` are everyday.
Read-only modes (``wipefs`` without ``-a``, ``sgdisk -p``, ``fdisk -l``, ``parted -l``,
``badblocks`` without ``-w``, ``hdparm -I``) pass too.
"""

from __future__ import annotations

import re

from mcp_bridge.policy import options
from mcp_bridge.policy.base import Context, Finding, confirm, from_verdict, unknown, worst
from mcp_bridge.policy.options import FLAG, OPTIONAL, VALUE
from mcp_bridge.policy.paths import device_verdict, write_verdict
from mcp_bridge.policy.words import Arg

MKFS_NAMES = frozenset({"mkfs", "mke2fs", "mkdosfs", "mkntfs", "mkexfatfs", "mkreiserfs", "mkudffs", "mkfatfs",
                        "mkhfs", "newfs"})


def is_mkfs(name: str) -> bool:
    return name in MKFS_NAMES or name.startswith(("mkfs.", "mkfs_", "newfs_", "mke2fs."))


def _devices(args: list[Arg], ctx: Context, rule: str, action: str, skip_options: bool = True) -> Finding | None:
    """A finding for the first operand that is a device, or one only known at run time."""
    found: list[Finding | None] = []
    for arg in args:
        if arg.value is None:
            found.append(unknown(arg, f"{action} a target only known at run time"))
            continue
        if skip_options and arg.value.startswith("-"):
            continue
        verdict = device_verdict(ctx.place(arg.value), arg.value, rule, action)
        if verdict is not None:
            found.append(Finding(verdict.decision, verdict.rule, verdict.what))
            if verdict.decision == "deny":
                break
    return worst(found)


def check_mkfs(name: str, args: list[Arg], ctx: Context) -> Finding | None:
    values = [a.value for a in args]
    if "--help" in values or "-V" in values or "--version" in values:
        return None
    return _devices(args, ctx, "disk-format", f"'{name}' creates a filesystem on, erasing")


def check_wipefs(args: list[Arg], ctx: Context) -> Finding | None:
    longs = {"all": FLAG, "backup": OPTIONAL, "force": FLAG, "help": FLAG, "noheadings": FLAG, "json": FLAG,
             "no-act": FLAG, "output": VALUE, "offset": VALUE, "parsable": FLAG, "quiet": FLAG, "types": VALUE,
             "version": FLAG, "lock": OPTIONAL}
    opts = options.parse(args, flags="afhiJnpqV", values="oOt", optional="b", longs=longs,
                         aliases={"-a": "--all", "-o": "--offset", "-n": "--no-act", "-h": "--help", "-V": "--version"})
    if opts.has("--help", "--version", "--no-act"):
        return None
    if not opts.has("--all", "--offset"):
        if opts.dynamic:
            return unknown(opts.dynamic[0], "wipefs with an argument only known at run time (it could be --all)")
        return None  # without --all/--offset wipefs only lists signatures
    return _devices(opts.operands, ctx, "disk-format", "wipefs --all erases the signatures of")


_SGDISK_READ_ONLY = frozenset({"-p", "--print", "-i", "--info", "-v", "--verify", "-b", "--backup", "-O",
                               "--print-mbr", "-L", "--list-types", "-?", "--help", "-V", "--version", "-a",
                               "--set-alignment", "-P", "--pretend", "-D", "--display-alignment"})


def check_partitioner(name: str, args: list[Arg], ctx: Context) -> Finding | None:
    texts = [a.value or "" for a in args]
    if name == "sgdisk":
        opts = options.parse(args, flags="?CDeEFgGLmoOpPvVzZ", values="aAbcdhijlnrtuU",
                             longs={"print": FLAG, "info": VALUE, "verify": FLAG, "backup": VALUE, "zap-all": FLAG,
                                    "zap": FLAG, "clear": FLAG, "new": VALUE, "delete": VALUE, "pretend": FLAG,
                                    "help": FLAG, "version": FLAG, "list-types": FLAG, "print-mbr": FLAG})
        if opts.has("-P", "--pretend") or all(name_ in _SGDISK_READ_ONLY for name_, _ in opts.seen):
            return None
        return _devices(opts.operands, ctx, "disk-wipe", "sgdisk rewrites the partition table of")
    if name == "sfdisk":
        read_only = {"-l", "--list", "-d", "--dump", "-J", "--json", "-s", "--show-size", "-V", "--verify", "-g",
                     "--show-geometry", "-F", "--list-free", "-h", "--help", "-v", "--version", "-n", "--no-act",
                     "--part-type", "--part-label", "--part-uuid", "--part-attrs", "-T", "--list-types",
                     "--disk-id", "-r", "--reorder"}
        if any(t in read_only for t in texts) and "--delete" not in texts:
            return None
        return _devices(args, ctx, "disk-wipe", "sfdisk writes a new partition table (read from its input) onto")
    if name in ("fdisk", "gdisk", "cfdisk", "cgdisk", "sgdisk"):
        if any(t in ("-l", "--list", "-h", "--help", "-V", "--version", "-s", "--getsz") for t in texts):
            return None
        finding = _devices(args, ctx, "disk-wipe", f"'{name}' edits the partitions of")
        if finding is not None and finding.decision == "deny":
            return confirm("code-from-elsewhere", f"{finding.what}, with editing commands read from its "
                                                  "standard input that the policy cannot see")
        return finding
    # parted [options] [device [command...]]
    opts = options.parse(args, flags="hlmsvf", values="a", longs={"help": FLAG, "list": FLAG, "machine": FLAG,
                                                                  "script": FLAG, "version": FLAG, "align": VALUE,
                                                                  "fix": FLAG})
    if opts.has("-h", "--help", "-l", "--list", "-v", "--version") or not opts.operands:
        return None
    device, *commands = opts.operands
    destructive = {"mklabel", "mktable", "mkpart", "mkpartfs", "rm", "resizepart", "resize", "mkfs", "move",
                   "cp", "rescue"}
    words = [c.value.casefold() for c in commands if c.value is not None]
    if any(w in destructive for w in words):
        return _devices([device], ctx, "disk-wipe", f"parted {' '.join(words[:3])} rewrites")
    if any(c.value is None for c in commands):
        return unknown(next(c for c in commands if c.value is None), "parted with a command only known at run time")
    if not commands:
        finding = _devices([device], ctx, "disk-wipe", "parted edits")
        if finding is not None and finding.decision == "deny":
            return confirm("code-from-elsewhere", f"{finding.what}, with commands read from its standard input")
    return None


_NVME_WIPE = frozenset({"format", "sanitize", "delete-ns", "write-zeroes", "write", "dsm", "detach-ns"})
_HDPARM_WIPE = ("--security-erase", "--security-erase-enhanced", "--trim-sector-ranges", "--write-sector",
                "--make-bad-sector", "--dco-restore", "--fwdownload")
_VOLUME_REMOVERS = frozenset({"pvremove", "vgremove", "lvremove"})


def check_wipe(name: str, args: list[Arg], ctx: Context) -> Finding | None:
    """shred, blkdiscard, mkswap, badblocks -w, nvme format, hdparm --security-erase, cryptsetup
    luksFormat, mdadm --zero-superblock, lvremove, zpool destroy, flashrom -w: on a device."""
    texts = [a.value or "" for a in args]
    if any(t in ("--help", "-h", "--version", "-V") for t in texts) and name not in ("badblocks", "mkswap"):
        return None
    if name in ("shred", "blkdiscard", "mkswap"):
        return _devices(args, ctx, "disk-wipe", f"'{name}' overwrites")
    if name == "badblocks":
        if not any(t.startswith("-") and "w" in t and not t.startswith("--") for t in texts):
            return None
        return _devices(args, ctx, "disk-wipe", "badblocks -w overwrites")
    if name == "nvme":
        if texts and texts[0] in _NVME_WIPE:
            return _devices(args[1:], ctx, "disk-wipe", f"nvme {texts[0]} erases") or Finding(
                "deny", "disk-wipe", f"nvme {texts[0]} erases a namespace")
        return None
    if name == "hdparm":
        if any(t.startswith(_HDPARM_WIPE) for t in texts):
            return _devices(args, ctx, "disk-wipe", "hdparm erases or overwrites")
        return None
    if name == "cryptsetup":
        actions = [t.casefold() for t in texts if t and not t.startswith("-")]
        if actions and actions[0] in ("luksformat", "erase", "lukserase", "reencrypt"):
            return Finding("deny", "disk-wipe", f"cryptsetup {actions[0]} destroys the data or keys on the device")
        return None
    if name == "mdadm":
        if any(t in ("--zero-superblock", "--create", "-C") for t in texts):
            return Finding("deny", "disk-wipe", "mdadm --create/--zero-superblock destroys RAID metadata")
        return None
    if name in _VOLUME_REMOVERS:
        return Finding("deny", "disk-wipe", f"'{name}' removes LVM volumes and the data on them")
    if name in ("zpool", "zfs"):
        if texts and texts[0] in ("destroy", "labelclear"):
            return Finding("deny", "disk-wipe", f"'{name} {texts[0]}' destroys a pool or dataset")
        return None
    if name == "flashrom":
        if any(re.fullmatch(r"-[a-zA-Z]*[wE][a-zA-Z]*|--write|--erase", t) for t in texts):
            return Finding("deny", "disk-wipe", "flashrom rewrites the firmware")
        return None
    return None


def check_dd(name: str, args: list[Arg], ctx: Context) -> Finding | None:
    found: list[Finding | None] = []
    for arg in args:
        if arg.value is None:
            found.append(unknown(arg, f"{name} with an operand only known at run time (it could be of=)"))
            continue
        if arg.value.startswith("of="):
            target = arg.value[3:]
            verdict = write_verdict(ctx.place(target), target, "dd-block-device")
            if verdict is not None:
                found.append(from_verdict(verdict, f"{name} writes to"))
    return worst(found)


def check_written(arg: Arg, ctx: Context, writer: str) -> Finding | None:
    """A file some command writes (tee, a redirection, find -fprint): a device or a power switch."""
    if arg.value is None:
        return unknown(arg, f"{writer} writes to a file only known at run time")
    verdict = write_verdict(ctx.place(arg.value), arg.value, "redirect-block-device")
    return from_verdict(verdict, f"{writer} writes to") if verdict is not None else None


def check_tee(args: list[Arg], ctx: Context) -> Finding | None:
    opts = options.parse(args, flags="aip", longs={"append": FLAG, "ignore-interrupts": FLAG,
                                                   "output-error": OPTIONAL, "help": FLAG, "version": FLAG})
    return worst([check_written(a, ctx, "tee") for a in opts.operands])


def check_copy(name: str, args: list[Arg], ctx: Context) -> Finding | None:
    """cp, install, ddrescue, pv onto a device (``cp /dev/zero /dev/sda``)."""
    if name == "ddrescue":
        operands = [a for a in args if not (a.value or "x").startswith("-")]
        targets = operands[1:2]
    else:
        opts = options.parse(args, flags="abdfHilLnPprRsuvxTZ", values="tSgmo",
                             longs={"target-directory": VALUE, "suffix": VALUE, "backup": OPTIONAL,
                                    "reflink": OPTIONAL, "sparse": VALUE, "preserve": OPTIONAL, "mode": VALUE,
                                    "owner": VALUE, "group": VALUE, "help": FLAG, "version": FLAG})
        if opts.has("--help", "--version") or len(opts.operands) < 2:
            return None
        targets = [a for a in opts.operands[-1:] if a.value is not None]
        targets += [Arg(v, v) for v in opts.values("-t", "--target-directory") if v]
    for target in targets:
        if target.value is None:
            continue
        verdict = write_verdict(ctx.place(target.value), target.value, "disk-wipe")
        if verdict is not None and verdict.decision == "deny":
            return from_verdict(verdict, f"{name} copies onto")
    return None
