"""Where a path argument points, and whether removing or writing it is destructive.

Paths are normalised the way the kernel would walk them, as far as that is knowable from the
command line: ``..`` and ``.``, ``~`` and ``~user``, the working directory a ``cd`` set,
``/proc/self/root`` (and ``/proc/1/root``, ``/proc/thread-self/root``) which is ``/``, the
well-known system symlinks (``/var/run`` is ``/run``, so ``/var/run/..`` is ``/``), and symlinks
or bind mounts made earlier in the same command (``ln -s / x; rm -rf x/``).

What cannot be pinned down becomes an *escape* (rule ``path-escape``, confirm): another
process's root or working directory, a ``..`` out of a home directory whose depth is unknown,
a ``..`` that lands inside a system directory tree (any component before it may be a symlink),
a link whose target is only known at run time.

The working directory at the start is unknown but taken to be a work directory (the node
runs commands in the login user's home): named paths below it are fine, emptying it
(``rm -rf *``, ``find . -delete``) needs a confirm, and a ``cd`` to something only known at
run time makes every relative target that could name a system directory need one too.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass

SYSTEM_DIRS = frozenset({
    "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "opt", "root", "sbin", "srv", "usr",
    "var", "sys", "proc", "run", "mnt", "media", "snap", "nix",
    "system", "library", "applications", "users", "private", "volumes", "cores",  # macOS
})
# On merged-/usr systems these are symlinks: even a non-recursive `rm /bin` breaks the node.
SYMLINKED_TOP = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32"})
KNOWN_SYMLINKS = {
    "/var/run": "/run", "/var/lock": "/run/lock", "/bin": "/usr/bin", "/sbin": "/usr/sbin", "/lib": "/usr/lib",
    "/lib32": "/usr/lib32", "/lib64": "/usr/lib64", "/libx32": "/usr/libx32", "/usr/tmp": "/var/tmp",
}
_ROOT_ALIASES = frozenset({"self", "thread-self", "1"})
_SAFE_DEV = re.compile(
    r"^/dev/(null|zero|full|random|urandom|tty\d*|console|stdin|stdout|stderr|ptmx|kmsg|log|termination-log"
    r"|(fd|pts|shm|mqueue|hugepages)(/.*)?)$"
)
_DEVICE_NAME = re.compile(r"^(sd[a-z]+\d*|hd[a-z]+\d*|vd[a-z]+\d*|xvd[a-z]+\d*|nvme\d+(n\d+(p\d+)?)?"
                          r"|mmcblk\d+(p\d+)?|dm-\d+|loop\d+|md\d+|r?disk\d+(s\d+)*)$")
POWER_FILES = frozenset({"/proc/sysrq-trigger", "/sys/power/state", "/sys/power/disk"})
ASSUMED_HOMES = ("/home/user", "/root")


@dataclass(frozen=True, slots=True)
class Cwd:
    """The working directory: ``start`` (where the command began; ``path`` is relative to it),
    ``known`` (``path`` absolute or ``~``-relative) or ``unknown``."""

    kind: str
    path: str = ""


START = Cwd("start")
UNKNOWN = Cwd("unknown")


@dataclass(frozen=True, slots=True)
class Place:
    kind: str  # "abs", "home", "start", "unknown"
    path: str  # "/a/b"; "~", "~/a", "~bob/a"; relative "a/b", "." or "../a"
    dotdot: bool = False  # a `..` was resolved lexically
    note: str = ""  # how it was resolved, for messages
    escape: str = ""  # why it cannot be pinned down


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: str  # "deny" or "confirm"
    rule: str
    what: str


Links = Mapping[str, tuple[str | None, bool]]  # place key -> (target, followed even when named exactly)


def resolve(text: str, cwd: Cwd, links: Links | None = None, follow_last: bool = True, _hops: int = 0) -> Place:
    """The place ``text`` names from ``cwd``; ``links`` are symlinks and bind mounts made earlier
    in the command."""
    if text.startswith("~"):
        slash = text.find("/")
        head, rest, kind = (text, "", "home") if slash < 0 else (text[:slash], text[slash + 1:], "home")
    elif text.startswith("/"):
        head, rest, kind = "", text, "abs"
    elif cwd.kind == "known":
        return resolve(cwd.path.rstrip("/") + "/" + text, START, links, follow_last, _hops)
    elif cwd.kind == "start":
        head, rest, kind = "", (cwd.path + "/" + text) if cwd.path else text, "start"
    else:
        head, rest, kind = "", text, "unknown"
    place = _normalise(kind, head, rest)
    if links and not place.escape and _hops < 8:
        followed = _through_links(place, text, links, follow_last, _hops)
        if followed is not None:
            return followed
    return place


def _normalise(kind: str, head: str, rest: str) -> Place:
    parts: list[str] = []
    dotdot = False
    note = ""
    for component in rest.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            dotdot = True
            if kind == "abs":
                prefix = "/" + "/".join(parts)
                if prefix in KNOWN_SYMLINKS:
                    note = f"{prefix} is a link to {KNOWN_SYMLINKS[prefix]}"
                    parts = KNOWN_SYMLINKS[prefix].strip("/").split("/")
            if parts and parts[-1] != "..":
                parts.pop()
            elif kind != "abs":
                parts.append("..")
            continue
        parts.append(component)
        if kind == "abs" and len(parts) == 3 and parts[0] == "proc":
            process, entry = parts[1], parts[2]
            if entry == "root" and process in _ROOT_ALIASES:
                note = f"/proc/{process}/root is /"
                parts = []
            elif entry in ("root", "cwd", "fd"):
                return Place(kind, "/" + "/".join(parts), dotdot, note,
                             escape=f"/proc/{process}/{entry} is another process's {entry}, unknown here")
    if kind == "abs":
        return Place(kind, "/" + "/".join(parts), dotdot, note)
    if kind == "home":
        return Place(kind, head + ("/" + "/".join(parts) if parts else ""), dotdot, note)
    return Place(kind, "/".join(parts) or ".", dotdot, note)


def _links_over(key: str, links: Links) -> list[str]:
    """The links made in this command that ``key`` is or lies under, in the order they were made.

    Looked up by the key's own parent folders (work grows with the path's depth, not with the
    number of links: a command making thousands of links stays linear)."""
    found = [key] if key in links else []
    for index, char in enumerate(key):
        if char == "/":
            found += [link for link in (key[:index], key[:index + 1]) if link in links and link not in found]
    if len(found) > 1:  # rare: nested links; the first made wins, as the shell would meet it
        return [link for link in links if link in found]
    return found


def _through_links(place: Place, text: str, links: Links, follow_last: bool, hops: int) -> Place | None:
    key = place_key(place)
    for link in _links_over(key, links):
        target, always = links[link]
        if key == link and not (follow_last or always) and not text.endswith("/"):
            return None  # the link itself (rm x removes only the link)
        shown = link.split(":", 1)[1]
        if target is None:
            return Place(place.kind, place.path, place.dotdot,
                         escape=f"'{shown}' is a link made in this command to a target only known at run time")
        remainder = key[len(link):]
        if target.startswith(("/", "~")):
            joined = target.rstrip("/") + remainder if target.rstrip("/") else remainder or "/"
            resolved = resolve(joined, START, links, follow_last, hops + 1)
        else:
            parent = shown.rsplit("/", 1)[0] if "/" in shown else ""
            kind = link.split(":", 1)[0]
            base = Cwd("known", parent or "/") if kind == "abs" else (
                Cwd("known", parent) if kind == "home" else Cwd(kind, parent))
            resolved = resolve(target.rstrip("/") + remainder, base, links, follow_last, hops + 1)
        note = f"'{shown}' is a link made in this command to '{target}'"
        return Place(resolved.kind, resolved.path, resolved.dotdot, note, resolved.escape)
    return None


def place_key(place: Place) -> str:
    return f"{place.kind}:{place.path}"


def wildcard_only(component: str) -> bool:
    """A component that matches (nearly) everything: ``*``, ``.*``, ``*.*``, ``?``."""
    return bool(component) and set(component) <= set("*?.[]!^") and bool(set(component) & {"*", "?", "["})


def _system_match(component: str) -> bool:
    lowered = component.casefold()
    if lowered in SYSTEM_DIRS:
        return True
    return any(ch in lowered for ch in "*?[") and any(fnmatch.fnmatchcase(d, lowered) for d in SYSTEM_DIRS)


def absolute_danger(path: str) -> str | None:
    """Which rm rule an absolute or ``~`` path falls under when removed recursively."""
    if path == "~" or path.startswith("~"):
        rest = path.split("/")[1:]
        return "rm-home" if all(wildcard_only(c) for c in rest) else None
    if path == "/":
        return "rm-root"
    first, *rest = path[1:].split("/")
    if first.casefold() in ("home", "users") and rest and rest[0] and not wildcard_only(rest[0]) \
            and all(wildcard_only(c) for c in rest[1:]):
        return "rm-home"  # /home/alice is someone's whole home directory
    if not all(wildcard_only(c) for c in rest):
        return None  # deeper than a system directory, such as /var/tmp/build
    if wildcard_only(first):
        return "rm-root"
    return "rm-system-dir" if _system_match(first) else None


def removal_verdict(place: Place, shown: str) -> Verdict | None:
    """Whether removing (recursively) what ``shown`` names is destructive or undecidable."""
    where = f"'{shown}'" + (f" ({place.path}; {place.note})" if place.note else
                            (f" ({place.path})" if place.path not in (shown, shown.rstrip("/")) else ""))
    if place.escape:
        return Verdict("confirm", "path-escape", f"{where}: {place.escape}")
    if place.kind == "abs":
        rule = absolute_danger(place.path)
        if rule:
            return Verdict("deny", rule, f"{where}, which is {_naming(rule, place.path)}")
        if place.dotdot and _system_match(place.path[1:].split("/")[0]):
            return Verdict("confirm", "path-escape",
                           f"{where} uses '..' inside a system directory, where a symlink can take it elsewhere")
        return None
    if place.kind == "home":
        if place.path.startswith(("~/..", "~/../")) or place.path.split("/")[1:2] == [".."]:
            homes = [absolute_danger(_normalise("abs", "", h + place.path[1:]).path) for h in ASSUMED_HOMES]
            if all(homes):
                assert homes[0] is not None
                return Verdict("deny", homes[0], f"{where} climbs out of the home directory to "
                               f"{_naming(homes[0], '/home')} for the usual home directories")
            return Verdict("confirm", "path-escape", f"{where} climbs out of the home directory with '..'")
        rule = absolute_danger(place.path)
        return Verdict("deny", rule, f"{where}, which is {_naming(rule, place.path)}") if rule else None
    parts = place.path.split("/")
    if place.kind == "start":
        if all(p == "." or wildcard_only(p) for p in parts):
            return Verdict("confirm", "dynamic-target",
                           f"{where}, which is everything in the directory the command starts in (only known at "
                           "run time)")
        if parts[0] == "..":
            rest = [p for p in parts if p != ".."]
            if not rest or all(wildcard_only(p) for p in rest):
                return Verdict("confirm", "path-escape", f"{where} climbs above the starting directory with '..'")
        return None
    first = parts[0]
    if first in (".", "..") or wildcard_only(first) or _system_match(first):
        return Verdict("confirm", "dynamic-target",
                       f"{where}, relative to a directory only known at run time (a cd to a computed path)")
    return None


def _naming(rule: str, path: str) -> str:
    if rule == "rm-root":
        return "the whole filesystem"
    if rule == "rm-home":
        return "a whole home directory"
    return f"the system directory /{path.lstrip('/').split('/')[0]}"


def write_verdict(place: Place, shown: str, device_rule: str) -> Verdict | None:
    """Whether writing to ``shown`` hits a block device or a power switch."""
    where = f"'{shown}'" + (f" ({place.path}; {place.note})" if place.note else "")
    if place.escape:
        return Verdict("confirm", "path-escape", f"{where}: {place.escape}")
    if place.kind == "abs":
        if place.path in POWER_FILES:
            return Verdict("deny", "power-state", f"writing {where} can reboot, halt or suspend the node")
        if is_device(place.path):
            return Verdict("deny", device_rule, f"{where}, a device, destroying what it holds")
        return None
    name = place.path.rsplit("/", 1)[-1]
    if place.kind == "unknown" and _DEVICE_NAME.match(name):
        return Verdict("confirm", "dynamic-target", f"{where} may be a device: the directory is only known at run time")
    return None


def is_device(path: str) -> bool:
    return path.startswith("/dev/") and not _SAFE_DEV.match(path)


def device_verdict(place: Place, shown: str, rule: str, action: str) -> Verdict | None:
    """For tools that act on devices (mkfs, shred, blkdiscard...): is ``shown`` a device?"""
    if place.escape:
        return Verdict("confirm", "path-escape", f"'{shown}': {place.escape}")
    if place.kind == "abs" and is_device(place.path):
        return Verdict("deny", rule, f"{action} the device '{shown}'" + (f" ({place.path})" if place.path != shown
                                                                          else ""))
    name = place.path.rsplit("/", 1)[-1]
    if place.kind == "unknown" and _DEVICE_NAME.match(name):
        return Verdict("confirm", "dynamic-target",
                       f"'{shown}' may be a device: the directory is only known at run time")
    return None
