"""The policy file: mode, fallback, and the user's deny and allow rules, validated field by field.

    mode: default            # default | strict | permissive
    on_unsure: deny          # deny | allow: what the MCP face does with `confirm` when it cannot ask
    deny:
      - id: no-apt-remove
        reason: packages are managed by the role
        argv0: apt*                         # program name (basename or full path), glob
        args_regex: '\\b(remove|purge)\\b'  # re.search over the arguments joined by spaces
    allow:
      - id: lab-reboot
        reason: lab nodes may be rebooted
        regex: '^reboot$'                   # re.search over the simple command's text

Every problem is a :class:`PolicyError` naming the file, the field and what to write instead;
a file that cannot be read or parsed is one too (never a traceback, never silently ignored:
a missing strict-mode file must not quietly mean the permissive default).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from mcp_bridge.errors import JexidaError
from mcp_bridge.policy.base import BUILTIN_RULES

Mode = Literal["default", "strict", "permissive"]
Fallback = Literal["deny", "allow"]
MODES = ("default", "strict", "permissive")
FALLBACKS = ("deny", "allow")
_TOP_KEYS = ("mode", "on_unsure", "deny", "allow")
_RULE_KEYS = frozenset({"id", "reason", "argv0", "args_regex", "regex"})
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class PolicyError(JexidaError):
    """A policy file that cannot be used; the message names the file and the field, and the fix."""


@dataclass(frozen=True)
class PolicyRule:
    """A user rule: matches a program (``argv0`` glob + optional ``args_regex``) or a text ``regex``."""

    id: str
    reason: str
    argv0: str | None = None
    args_regex: re.Pattern[str] | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, argv: Sequence[str], text: str) -> bool:
        if self.regex is not None:
            return self.regex.search(text) is not None
        if self.argv0 is None or not argv:
            return False
        name = argv[0].rstrip("/").rsplit("/", 1)[-1]
        if not (fnmatch.fnmatchcase(argv[0], self.argv0) or fnmatch.fnmatchcase(name, self.argv0)):
            return False
        return self.args_regex is None or self.args_regex.search(" ".join(argv[1:])) is not None


@dataclass
class UserRules:
    deny: list[PolicyRule] = field(default_factory=list)
    allow: list[PolicyRule] = field(default_factory=list)
    mode: Mode = "default"
    on_unsure: Fallback = "deny"
    source: str = "the policy file"


def load_file(path: str | Path) -> UserRules:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PolicyError(f"{file}: the policy file does not exist; create it, or point JEXIDA_POLICY at an "
                          "existing file (or unset it to use the built-in rules)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{file}: cannot read the policy file ({exc}); make it a readable UTF-8 YAML file") \
            from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{file}: not valid YAML ({exc}); fix the syntax at the place shown") from exc
    return from_mapping(data, source=str(file))


def from_mapping(data: Any, source: str = "<policy>") -> UserRules:
    if data is None:
        return UserRules(source=source)
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: the top level must be a mapping with the keys {', '.join(_TOP_KEYS)} "
                          f"(all optional), not a {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in _TOP_KEYS)
    if unknown:
        raise PolicyError(f"{source}: {unknown[0]}: unknown field; the policy file knows {', '.join(_TOP_KEYS)}")
    mode = data.get("mode", "default")
    if mode not in MODES:
        raise PolicyError(f"{source}: mode: {mode!r} is not a mode; use one of {', '.join(MODES)}")
    on_unsure = data.get("on_unsure", "deny")
    if on_unsure not in FALLBACKS:
        raise PolicyError(f"{source}: on_unsure: {on_unsure!r} is not a fallback; use deny or allow")
    seen: set[str] = set()
    lists: dict[str, list[PolicyRule]] = {}
    for kind in ("deny", "allow"):
        entries = data.get(kind)
        if entries is None:  # left out, or written with nothing after it
            entries = []
        if not isinstance(entries, list):
            raise PolicyError(f"{source}: {kind}: must be a list of rules (each a mapping with id, reason and "
                              "argv0 or regex)")
        lists[kind] = [_rule(entry, f"{kind}[{i}]", source, seen) for i, entry in enumerate(entries)]
    return UserRules(lists["deny"], lists["allow"], cast(Mode, mode), cast(Fallback, on_unsure), source)


def _rule(entry: Any, where: str, source: str, seen: set[str]) -> PolicyRule:
    def fail(name: str, problem: str) -> PolicyError:
        return PolicyError(f"{source}: {where}.{name}: {problem}" if name else f"{source}: {where}: {problem}")

    if not isinstance(entry, Mapping):
        raise fail("", "a rule must be a mapping with id, reason and argv0 or regex")
    unknown = sorted(str(key) for key in entry if key not in _RULE_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown field; a rule has {', '.join(sorted(_RULE_KEYS))}")
    for required in ("id", "reason"):
        value = entry.get(required)
        if not isinstance(value, str) or not value.strip():
            raise fail(required, "required, a non-empty string")
    rule_id = entry["id"]
    if not _RULE_ID.match(rule_id):
        raise fail("id", f"{rule_id!r} is not a valid id; use letters, digits, '.', '_', ':' and '-'")
    if rule_id in BUILTIN_RULES:
        raise fail("id", f"{rule_id!r} is the id of a built-in rule; choose another")
    if rule_id in seen:
        raise fail("id", f"{rule_id!r} is used by another rule; ids must be unique")
    seen.add(rule_id)
    for optional in ("argv0", "args_regex", "regex"):
        if optional in entry and (not isinstance(entry[optional], str) or not entry[optional]):
            raise fail(optional, "must be a non-empty string")
    if ("argv0" in entry) == ("regex" in entry):
        raise fail("argv0", "a rule needs exactly one of 'argv0' or 'regex'")
    if "args_regex" in entry and "argv0" not in entry:
        raise fail("args_regex", "only allowed together with 'argv0'")

    def compiled(name: str) -> re.Pattern[str] | None:
        if name not in entry:
            return None
        try:
            return re.compile(entry[name])
        except re.error as exc:
            raise fail(name, f"invalid regular expression ({exc}); check its brackets and escapes") from exc

    return PolicyRule(rule_id, entry["reason"].strip(), entry.get("argv0"), compiled("args_regex"),
                      compiled("regex"))
