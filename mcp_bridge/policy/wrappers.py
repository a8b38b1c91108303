"""Commands that run another command: ``sudo``, ``env``, ``nice``, ``timeout``, ``xargs``...

Each wrapper's options are parsed with its real option table (which options take a value,
how many operands come before the command: ``timeout DURATION``, ``chroot DIR``, ``flock
FILE``), so ``sudo -u root rm`` and ``timeout -s KILL 5 rm`` both reach ``rm``. Some wrappers
change how the command runs: ``watch`` and ``sg`` hand the words to ``sh -c``, ``flock -c``
runs a shell string, ``env -C``/``sudo -D`` change the directory, ``xargs`` appends words
read from its input (marked ``code-from-elsewhere``), ``sudo -l``/``command -v`` run nothing.
A word only known at run time among a wrapper's options leaves the command's position
uncertain: the analysis goes on with the likeliest reading and asks for a confirm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mcp_bridge.policy import options
from mcp_bridge.policy.options import FLAG, OPTIONAL, VALUE
from mcp_bridge.policy.words import Arg, dynamic_arg, joined_code

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass
class Unwrapped:
    argv: list[Arg]
    script: Arg | None = None  # shell text the wrapper hands to sh -c
    cwd: Arg | None = None  # directory the inner command starts in
    no_run: bool = False  # runs no command at all (sudo -l, command -v, taskset -p)
    stdin_shell: bool = False  # runs a shell that reads commands from standard input
    uncertain: Arg | None = None  # a run-time word where the wrapper's options are
    assigns: list[str] = field(default_factory=list)  # variables set for the inner command (env)
    variables: list[tuple[str, Arg]] = field(default_factory=list)  # their values


@dataclass(frozen=True)
class Spec:
    values: str = ""
    optional: str = ""
    longs: tuple[tuple[str, int], ...] = ()
    fixed: int = 0  # operands before the command
    no_run: frozenset[str] = frozenset()
    cwd: frozenset[str] = frozenset()
    script: frozenset[str] = frozenset()  # options whose value is a shell string
    join: str = ""  # an option that turns joining off ("-x" for watch); "always" joins
    shell_if_empty: bool = False


def _longs(values: str = "", flags: str = "", optional: str = "") -> tuple[tuple[str, int], ...]:
    return tuple([(n, VALUE) for n in values.split()] + [(n, FLAG) for n in flags.split()]
                 + [(n, OPTIONAL) for n in optional.split()])


SPECS: dict[str, Spec] = {
    "sudo": Spec("ugpCDrtTUR", longs=_longs(
        "user group prompt close-from chdir role type command-timeout other-user chroot host",
        "list validate version help edit remove-timestamp reset-timestamp shell login non-interactive set-home "
        "background askpass stdin bell", "preserve-env"),
        no_run=frozenset({"-l", "--list", "-v", "--validate", "-V", "--version", "-h", "--help", "-e", "--edit",
                          "-K", "--remove-timestamp"}),
        cwd=frozenset({"-D", "--chdir"}), shell_if_empty=True),
    "doas": Spec("uC", no_run=frozenset({"-C", "-L"}), shell_if_empty=True),
    "run0": Spec("ugD", longs=_longs("user group nice chdir setenv property description slice unit",
                                     "background no-ask-password"), cwd=frozenset({"-D", "--chdir"}),
                 shell_if_empty=True),
    "pkexec": Spec("", longs=_longs("user", "disable-internal-agent help version"),
                   no_run=frozenset({"--help", "--version"}), shell_if_empty=True),
    "nice": Spec("n", longs=_longs("adjustment", "help version")),
    "ionice": Spec("cnpPu", longs=_longs("class classdata pid pgid uid", "ignore help version"),
                   no_run=frozenset({"-p", "--pid", "-P", "--pgid", "-u", "--uid"})),
    "nohup": Spec(), "builtin": Spec(), "eatmydata": Spec(), "nocache": Spec(), "catchsegv": Spec(),
    "unbuffer": Spec(), "dbus-run-session": Spec(longs=_longs("config-file dbus-daemon")),
    "setsid": Spec(longs=_longs("", "ctty fork wait")),
    "stdbuf": Spec("ioe", longs=_longs("input output error")),
    "timeout": Spec("sk", longs=_longs("signal kill-after", "preserve-status foreground verbose"), fixed=1),
    "time": Spec("fo", longs=_longs("format output", "append portability verbose quiet")),
    "exec": Spec("a"),
    "command": Spec(no_run=frozenset({"-v", "-V"})),
    "chroot": Spec(longs=_longs("userspec groups", "skip-chdir"), fixed=1, shell_if_empty=True),
    "flock": Spec("wEc", longs=_longs("wait timeout conflict-exit-code command",
                                      "shared exclusive unlock nonblock close no-fork verbose"),
                  fixed=1, script=frozenset({"-c", "--command"})),
    "nsenter": Spec("tSG", optional="muinpCUTrw", longs=_longs(
        "target setuid setgid user-parent env", "all follow-context preserve-credentials no-fork",
        "mount uts ipc net pid cgroup user time root wd"), shell_if_empty=True),
    "unshare": Spec("RwSGl", optional="muinpUCT", longs=_longs(
        "root wd setuid setgid map-user map-group map-users map-groups propagation setgroups load-interp",
        "fork kill-child map-root-user map-current-user map-auto keep-caps monotonic boottime",
        "mount uts ipc net pid user cgroup time mount-proc mount-binfmt"), shell_if_empty=True),
    "taskset": Spec(longs=_longs("", "all-tasks cpu-list pid"), fixed=1, no_run=frozenset({"-p", "--pid"})),
    "chrt": Spec("TPD", longs=_longs("sched-runtime sched-period sched-deadline",
                                     "batch deadline fifo idle other rr reset-on-fork all-tasks max pid verbose"),
                 fixed=1, no_run=frozenset({"-p", "--pid", "-m", "--max"})),
    "watch": Spec("nqd", longs=_longs("interval equexit", "no-title beep errexit chgexit color no-color exec "
                                      "precise no-wrap no-rerun", "differences"), join="-x"),
    "systemd-run": Spec("pEuMH", longs=_longs(
        "unit property description slice setenv uid gid nice working-directory machine host on-active on-boot "
        "on-startup on-unit-active on-unit-inactive on-calendar timer-property path-property socket-property "
        "service-type expand-environment json",
        "user system scope remain-after-exit send-sighup pty pipe quiet wait collect shell no-block "
        "no-ask-password same-dir slice-inherit on-clock-change on-timezone-change verbose"),
        cwd=frozenset({"--working-directory"}), shell_if_empty=False),
    "setpriv": Spec(longs=_longs(
        "reuid regid ruid rgid euid egid groups inh-caps ambient-caps bounding-set securebits pdeathsig "
        "selinux-label apparmor-profile landlock-access landlock-rule",
        "nnp no-new-privs clear-groups keep-groups init-groups reset-env dump list-caps"),
        no_run=frozenset({"-d", "--dump", "--list-caps"})),
    "numactl": Spec("ipmNCP", longs=_longs("interleave preferred membind cpunodebind physcpubind preferred-many",
                                           "localalloc show hardware all balancing"),
                    no_run=frozenset({"-s", "--show", "-H", "--hardware"})),
    "strace": Spec("oepsuEaIbPXSUO", longs=_longs("output trace signal abbrev verbose raw read write",
                                                   "follow-forks summary-only"), no_run=frozenset({"-p"})),
    "ltrace": Spec("oepsuEaIbPXSUnAl", no_run=frozenset({"-p"})),
    "fakeroot": Spec("lsib", longs=_longs("lib faked", "unknown-is-real")),
    "proxychains": Spec("f"), "proxychains4": Spec("f"), "torsocks": Spec("udaP"),
    "cgexec": Spec("g", longs=_longs("", "sticky")),
    "setarch": Spec("B", fixed=1), "linux32": Spec(), "linux64": Spec(),
    "sshpass": Spec("pfdP"),
    "xvfb-run": Spec("nsfepw", longs=_longs("server-num server-args auth-file error-file xauth-protocol wait",
                                           "auto-servernum listen-tcp")),
    "caffeinate": Spec("tw"),
    "daemonize": Spec("acelopuE"),
    "firejail": Spec(), "valgrind": Spec(), "ccache": Spec(), "distcc": Spec(), "faketime": Spec(fixed=1),
    "sg": Spec(fixed=1, join="always"),
    "busybox": Spec(no_run=frozenset({"--list", "--list-full", "--help"})),
    "toybox": Spec(),
    "screen": Spec("SceDhpTXLs", no_run=frozenset({"-r", "-R", "-x", "-ls", "-list", "-wipe", "-v"}),
                   shell_if_empty=False),
}
RUNNERS = {("poetry", "run"), ("uv", "run"), ("pipenv", "run"), ("bundle", "exec"), ("pdm", "run"),
           ("hatch", "run"), ("npm", "exec"), ("pnpm", "exec"), ("yarn", "exec"), ("mise", "exec"),
           ("mise", "x"), ("asdf", "exec"), ("rbenv", "exec"), ("pyenv", "exec"), ("direnv", "exec"),
           ("machinectl", "shell")}
_RUNNER_VALUES = {"-p", "--python", "--with", "--directory", "--project", "--env-file", "--package", "--extra",
                  "--group", "-n", "--name", "--prefix", "-C", "--cwd"}


def unwrap(name: str, args: list[Arg]) -> Unwrapped | None:
    """The command ``name args...`` runs, when ``name`` is a wrapper; None otherwise."""
    if name == "env":
        return _env(args)
    if name == "xargs":
        return _xargs(args)
    if name == "runuser" and any(a.value in ("-u", "--user") or (a.value or "").startswith("--user=")
                                 for a in args):
        return _generic(Spec("ugGsw", longs=_longs("user group supp-group shell whitelist-environment"),
                             shell_if_empty=True), args)
    if name in ("npx", "pnpx", "bunx"):
        return _runner(args)
    if args and (name, args[0].value) in RUNNERS:
        return _runner(args[1:], fixed=1 if name in ("direnv", "machinectl") else 0)
    spec = SPECS.get(name)
    return _generic(spec, args) if spec is not None else None


def _generic(spec: Spec, args: list[Arg]) -> Unwrapped:
    opts = options.parse(args, flags="", values=spec.values, optional=spec.optional, longs=dict(spec.longs),
                         permute=False)
    uncertain = next((a for a in args[:len(args) - len(opts.operands)] if a.value is None), None)
    if opts.has(*spec.no_run):
        return Unwrapped([], no_run=True)
    operands = opts.operands
    uncertain = uncertain or next((a for a in operands[:spec.fixed] if a.value is None), None)
    operands = operands[spec.fixed:]
    if spec.script and operands and operands[0].value in spec.script:  # flock FILE -c 'string'
        code = operands[1] if len(operands) > 1 else Arg("", "")
        opts.seen.append((operands[0].value or "", code.value))
        operands = []
    script = next((Arg(v, v) if v is not None else dynamic_arg("", "a shell string only known at run time")
                   for n, v in opts.seen if n in spec.script), None)
    cwd = next((Arg(v, v) if v is not None else dynamic_arg("", "a directory only known at run time")
                for n, v in opts.seen if n in spec.cwd), None)
    if script is not None:
        return Unwrapped([], script=script, cwd=cwd, uncertain=uncertain)
    if spec.join and operands and (spec.join == "always" or not opts.has(spec.join, "--exec")):
        if spec.join == "always" and operands[0].value == "-c":
            operands = operands[1:]
        return Unwrapped([], script=joined_code(operands), cwd=cwd, uncertain=uncertain)
    return Unwrapped(list(operands), cwd=cwd, uncertain=uncertain,
                     stdin_shell=spec.shell_if_empty and not operands)


def _env(args: list[Arg]) -> Unwrapped:
    opts = options.parse(args, flags="i0v", values="uCS", longs=dict(_longs(
        "unset chdir split-string", "ignore-environment null debug list-signal-handling help version",
        "block-signal default-signal ignore-signal")), permute=False)
    if opts.has("--help", "--version", "--list-signal-handling"):
        return Unwrapped([], no_run=True)
    operands = list(opts.operands)
    assigns: list[str] = []
    variables: list[tuple[str, Arg]] = []
    while operands and operands[0].value is not None and _ASSIGNMENT.match(operands[0].value):
        name, value = operands[0].value.split("=", 1)
        assigns.append(name)
        variables.append((name, Arg(value, operands[0].raw)))
        operands = operands[1:]
    cwd_values = opts.values("-C", "--chdir")
    cwd = None
    if cwd_values:
        cwd = Arg(cwd_values[-1], cwd_values[-1]) if cwd_values[-1] is not None else dynamic_arg(
            "", "a directory only known at run time")
    splits = opts.values("-S", "--split-string")
    uncertain = opts.dynamic[0] if opts.dynamic and (not operands or opts.dynamic[0] is not operands[0]) else None
    if splits:
        if any(s is None for s in splits):
            return Unwrapped([], script=dynamic_arg("", "env -S splits a string only known at run time",
                                                    "code-from-elsewhere"), cwd=cwd)
        text = " ".join([*(s for s in splits if s is not None), *(o.raw for o in operands)])
        return Unwrapped([], script=Arg(text, text), cwd=cwd, assigns=assigns, variables=variables)
    return Unwrapped(operands, cwd=cwd, assigns=assigns, variables=variables, uncertain=uncertain)


def _xargs(args: list[Arg]) -> Unwrapped:
    opts = options.parse(args, flags="0oprtx", values="aEdILnPs", optional="eil", longs=dict(_longs(
        "arg-file delimiter max-args max-procs max-chars process-slot-var",
        "null no-run-if-empty interactive verbose exit open-tty show-limits help version",
        "eof replace max-lines")), permute=False)
    if opts.has("--help", "--version", "--show-limits"):
        return Unwrapped([], no_run=True)
    replace: str | None = None
    for name, value in opts.seen:
        if name == "-I" or (name == "--replace" and value):
            replace = value
        elif name in ("-i", "--replace"):
            replace = value or "{}"
    command = list(opts.operands) or [Arg("echo", "echo")]
    fed = dynamic_arg("", "xargs builds this argument from text read from its standard input", "code-from-elsewhere")
    if replace:
        command = [Arg(None, a.raw, why=f"xargs puts text read from its standard input in '{a.value}'",
                       rule="code-from-elsewhere") if a.value is not None and replace in a.value else a
                   for a in command]
        return Unwrapped(command)
    return Unwrapped([*command, Arg(None, "<input>", why=fed.why, rule=fed.rule)])


def _runner(args: list[Arg], fixed: int = 0) -> Unwrapped:
    """``uv run``, ``poetry run``, ``npx``...: options (a few take a value), then the command."""
    index = 0
    while index < len(args) and (args[index].value or "x").startswith("-"):
        text = args[index].value or ""
        index += 2 if text in _RUNNER_VALUES else 1
        if text == "--":
            break
    rest = args[index + fixed:]
    return Unwrapped(list(rest), no_run=not rest)


def parallel_template(args: list[Arg]) -> tuple[Arg | None, list[Arg], bool]:
    """GNU parallel: (the command template as shell text, the ::: arguments, reads stdin)."""
    opts = options.parse(args, flags="kvquegX0", values="jSaIdEnNLlCP", longs=dict(_longs(
        "jobs sshlogin arg-file joblog results tmpdir timeout delay colsep env workdir basefile",
        "keep-order verbose quote ungroup group-by halt-on-error dry-run pipe tag", "")), permute=False)
    separators = {":::", "::::", ":::+", "::::+"}
    words: list[Arg] = []
    inputs: list[Arg] = []
    seen_separator = False
    for arg in opts.operands:
        if arg.value in separators:
            seen_separator = True
        elif seen_separator:
            inputs.append(arg)
        else:
            words.append(arg)
    template = None
    if words:
        joined = joined_code(words)
        if joined.value is not None:
            text = re.sub(r"\{[^{}\s]*\}", '"$PARALLEL_ARG"', joined.value)
            template = Arg(text, joined.raw)
        else:
            template = joined
    return template, inputs, not seen_separator
