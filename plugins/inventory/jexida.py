# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""The jexida inventory: worker nodes from the node registry, grouped by tags and live load."""

# Ansible's layout puts DOCUMENTATION/EXAMPLES/RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
name: jexida
version_added: "0.1.0"
short_description: Worker nodes from the jexida node registry, grouped by tags and live load
description:
  - Lists the nodes of the jexida node registry (O(nodes) and/or O(nodes_file)) with the
    host variables C(ansible_host), C(ansible_port), C(ansible_user), the node's C(vars),
    C(jexida_tags), C(jexida_active) and C(jexida_facts).
  - With O(probe) on, every active node is probed with ONE SSH round trip (a POSIX C(sh)
    script reading C(/proc) on Linux and C(sysctl)/C(vm_stat) on macOS), all nodes in
    parallel, bounded by O(connect_timeout), O(retries) and the total O(deadline). The
    probe uses the connection settings Ansible would use for the host (user, port, private
    key, C(ansible_ssh_common_args)/C(ansible_ssh_extra_args), C([ssh_connection] ssh_args))
    and the same ControlPath as the C(ansible.builtin.ssh) connection plugin, so it leaves a
    warm ControlPersist master for the next Ansible run. Nodes with
    C(ansible_connection=local) run the script locally. No Ansible fact gathering happens.
  - A node whose C(host) does not resolve or answer is tried at each of its
    C(fallback_hosts) in order; the address that answered becomes C(ansible_host).
  - "A node with C(via: <node>) is reached through that node (a bastion reached directly, over SSH;
    no chains): the plugin appends C(-o ProxyCommand=ssh ... -W %h:%p <bastion>) to the node's
    C(ansible_ssh_common_args) (or to the configured C(ssh_common_args)) and sets C(jexida_via). The hop
    logs in as Ansible would to the bastion (its host, port, user, key, own ssh args: known_hosts), reusing
    its ControlPersist master when up, so Ansible, the probe, the jexida bridge and bootstrap all go through
    it. Not C(ProxyJump): its hop sees no C(-o) option of the command line, only ssh_config files. The
    probe error of such a node says whether the bastion answered (C(bastion 'b1' is unreachable: ...))."
  - "A node with C(execution_node: <node>) has its commands and jobs run by that node with ansible-runner's
    streaming interface (the jexida bridge). The plugin sets C(jexida_execution_node) and probes the node
    with the execution node as an ssh hop, so the execution node needs C(jexida_worker_allow_jump).
    Plain C(ansible) does not use it."
  - A node that cannot be probed (timeout, refused, authentication failure, garbage output)
    is listed with C(jexida_facts.reachable=false) and C(jexida_facts.error); the inventory
    never fails because of a node.
  - "Groups: C(tag_<tag>) for every tag; for probed nodes C(os_<os>), C(arch_<arch>),
    C(cap_<capability>) (gpu, docker, podman), exactly one of C(load_idle), C(load_normal),
    C(load_busy), C(load_overloaded), and C(available) (active, reachable, not overloaded);
    C(unreachable) for active nodes that did not answer; C(inactive) for nodes with
    C(active=false), which are never probed. Names pass through the group name sanitizer; tags
    that change when sanitized (C(gpu-large) becomes group C(tag_gpu_large)) get one warning."
  - "Load groups use the 1-minute load average per CPU (C(load_per_cpu)):
    C(load_idle) below O(thresholds.idle_load_per_cpu);
    C(load_normal) from there up to below O(thresholds.busy_load_per_cpu);
    C(load_busy) from there up;
    C(load_overloaded) when memory use is at or above O(thresholds.overloaded_mem_pct), or the load
    per CPU is at or above O(thresholds.overloaded_load_per_cpu) while the CPU is at least
    O(thresholds.overloaded_cpu_busy_pct) busy in the probe's own sample (load averages lag by a
    minute; a node that has just finished its work is busy, not overloaded). Where the CPU
    sample is not available (macOS), the load alone decides."
  - "With caching on (O(cache)), the probed facts (including the address that answered) are
    cached, so a cached listing touches no node; C(ansible-inventory --flush-cache) or
    C(meta: refresh_inventory) probe again. Nodes added since the cache was written, or whose
    host, port, user, fallback hosts or connection changed, are probed and the cache updated."
  - The plugin never writes the registry; use M(jexida.cluster.node_registry) for that.
  - Only files named C(*.jexida.yml) or C(*.jexida.yaml) are read by this plugin.
author:
  - jexida-cluster team (!UNKNOWN)
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks the file as a source for this plugin.
    required: true
    type: str
    choices: [jexida.cluster.jexida]
  nodes:
    description:
      - Nodes written inline, in the node registry's format (C(name) required; C(host), C(port),
        C(user), C(tags), C(active), C(vars), C(fallback_hosts), C(via), C(execution_node)).
      - Merged with the nodes of O(nodes_file). A name present in both is an error, so each
        node is described in exactly one place.
    type: list
    elements: dict
    default: []
  nodes_file:
    description:
      - The node registry file (top-level C(nodes:) list), as written by M(jexida.cluster.node_registry).
      - A relative path is taken from the folder of this inventory file.
      - A missing file counts as an empty registry (with a warning).
    type: str
  probe:
    description:
      - Probe active nodes for live facts. V(false) lists the registry only and opens no connection;
        C(jexida_facts) then holds V(null) values and no load, C(available) or C(unreachable) membership.
    type: bool
    default: true
    env:
      - name: JEXIDA_INVENTORY_PROBE
  connect_timeout:
    description: Seconds SSH waits for each connection (SSH's C(ConnectTimeout)).
    type: int
    default: 2
  deadline:
    description:
      - Seconds the whole probe may take, all nodes together. Nodes still unanswered then are unreachable.
    type: float
    default: 10
    env:
      - name: JEXIDA_INVENTORY_DEADLINE
  retries:
    description: How many more times a connection that got no answer is tried, per address, within O(deadline).
    type: int
    default: 1
  forks:
    description: How many nodes are probed at the same time.
    type: int
    default: 64
  execution_nodes:
    description:
      - "An execution node for a group of nodes, by tag, e.g. V({site2: exec1}): every node tagged
        C(site2) gets C(execution_node: exec1), unless it names its own (or a C(via)). Checked like the field."
    type: dict
    default: {}
  thresholds:
    description:
      - Edges of the load groups (see the description). Keys left out keep their default.
      - C(idle_load_per_cpu) <= C(busy_load_per_cpu) <= C(overloaded_load_per_cpu) is required.
    type: dict
    default:
      overloaded_mem_pct: 80
      overloaded_load_per_cpu: 1.0
      overloaded_cpu_busy_pct: 40
      busy_load_per_cpu: 0.7
      idle_load_per_cpu: 0.2
    suboptions:
      overloaded_mem_pct:
        description: Memory use, in percent, from which a node is C(load_overloaded).
        type: float
      overloaded_load_per_cpu:
        description:
          - Load per CPU from which a node is C(load_overloaded), when its CPU is at least
            O(thresholds.overloaded_cpu_busy_pct) busy.
        type: float
      overloaded_cpu_busy_pct:
        description: How busy, in percent, the CPU must be for O(thresholds.overloaded_load_per_cpu) to count.
        type: float
      busy_load_per_cpu:
        description: Load per CPU from which a node is C(load_busy).
        type: float
      idle_load_per_cpu:
        description: Load per CPU below which a node is C(load_idle).
        type: float
  job_dir:
    description:
      - The folder of jexida jobs on the nodes (one C(<id>/) folder per job), where C(running_jobs)
        are counted and C(disk_free_mb) is measured (C($HOME) when it does not exist).
      - A node's own host variable C(jexida_worker_job_dir) (the role's variable, which the bootstrap
        playbook records for each node) wins over this option.
      - Default is the role's C(jexida_worker_job_dir) default (C(/opt/jexida-jobs)).
    type: str
  light_commands:
    description:
      - Read by the jexida bridge (C(jexida serve)), not by the inventory itself.
      - Programs whose commands C(cluster_bash) without requirements runs on the node with
        C(ansible_connection=local) (the controller) instead of placing them by load, when the
        command is one of them or a pipeline of them with no other shell syntax.
      - Left out, the bridge's default list of programs that only read (C(ls), C(pwd), C(cat),
        C(head), C(tail), C(which), C(echo), C(wc), ...). V([]) turns light routing off.
    type: list
    elements: str
notes:
  - "C(jexida_facts) keys: C(reachable), C(address), C(probed_at) (ISO 8601 UTC), C(probe_ms), C(error),
    C(os) (V(linux), V(darwin)), C(arch), C(distribution), C(distribution_version), C(python_version),
    C(cpus), C(load_1), C(load_5), C(load_15), C(load_per_cpu), C(mem_total_mb), C(mem_available_mb),
    C(mem_used_pct), C(cpu_busy_pct), C(disk_free_mb), C(running_jobs), C(capabilities), C(load_group).
    Values that could not be measured are V(null)."
  - C(reachable) is V(null) for nodes that were not probed (inactive nodes, O(probe=false)).
  - The probe speaks SSH (C(ansible_connection) V(ssh), V(smart), V(paramiko)) or runs locally
    (V(local)). A node with any other connection plugin is listed as unreachable, with an C(error) saying so.
  - A node's C(vars) may not set C(ansible_host), C(ansible_port), C(ansible_user) or C(jexida_via); use its
    C(host), C(port), C(user) and C(via) fields.
"""

EXAMPLES = r"""
# inventory/cluster.jexida.yml
plugin: jexida.cluster.jexida
nodes_file: nodes.yml          # the registry, next to this file
nodes:                         # more nodes, written here
  - name: laptop1
    host: laptop1.local
    fallback_hosts: [192.168.1.40]
    tags: [mac, build]
connect_timeout: 2
deadline: 10
retries: 1
thresholds:
  overloaded_mem_pct: 90
job_dir: /opt/jexida-jobs
# keep the probed facts for 5 minutes; `ansible-inventory --flush-cache` probes again
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/jexida-inventory
cache_timeout: 300
compose:
  jexida_free_slots: "(jexida_facts.cpus | default(0, true)) - (jexida_facts.running_jobs | default(0, true))"
groups:
  big_memory: "(jexida_facts.mem_total_mb | default(0, true)) >= 65536"
keyed_groups:
  - key: jexida_facts.distribution
    prefix: distro
    default_value: unknown
"""

import os
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible_collections.jexida.cluster.plugins.module_utils.node_spec import (
    RegistryError,
    check_via,
    node_where,
    validate_document,
    validate_nodes,
)
from ansible_collections.jexida.cluster.plugins.plugin_utils.facts import (
    LOAD_GROUPS,
    classify_load,
    empty_facts,
    merge_thresholds,
    node_groups,
    reuse_cached,
)
from ansible_collections.jexida.cluster.plugins.plugin_utils.jump import (
    ViaError,
    apply_via,
    group_execution_nodes,
    probe_targets,
)
from ansible_collections.jexida.cluster.plugins.plugin_utils.probe import (
    ProbeSettings,
    ansible_ssh_defaults,
    probe_nodes,
)
from ansible_collections.jexida.cluster.plugins.plugin_utils.worker import default_job_dir

CACHE_VERSION = 3  # 2: per-node job folders; 3: the bastion in each target's signature


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Nodes from the jexida registry, with live facts and groups."""

    NAME = "jexida.cluster.jexida"

    def verify_file(self, path: str) -> bool:
        return bool(super().verify_file(path)) and path.endswith((".jexida.yml", ".jexida.yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache=cache)
        self._load_config(path)
        nodes = self._load_nodes(path)
        ssh_defaults = ansible_ssh_defaults()
        try:
            apply_via(nodes, self._render_vars, ssh_defaults, self._where)
        except ViaError as exc:
            raise AnsibleParserError(str(exc)) from exc
        try:
            thresholds = merge_thresholds(self.get_option("thresholds"))
        except ValueError as exc:
            raise AnsibleParserError(f"{path}: {exc}") from exc
        probing = bool(self.get_option("probe"))
        facts = self._facts(nodes, path, cache, ssh_defaults) if probing else {}
        self._populate(nodes, facts, thresholds, probing)

    # -- configuration

    def _load_config(self, path: str) -> dict[str, Any]:
        try:
            config = self._read_config_data(path)
        except AnsibleError as exc:
            message = str(exc)
            raise AnsibleParserError(message if path in message else f"{path}: {message}") from exc
        # set_options() ignores keys it does not know: a typo would silently do nothing.
        unknown = sorted(str(key) for key in config if key not in self.option_definitions)
        if unknown:
            raise AnsibleParserError(
                f"{path}: unknown option(s) {', '.join(repr(k) for k in unknown)} for plugin {self.NAME}; "
                f"valid options: {', '.join(sorted(self.option_definitions))}"
            )
        # The config manager turns any unknown word into false for a bool ("probe: maybe").
        for key, value in config.items():
            kind = (self.option_definitions.get(key) or {}).get("type")
            if kind in ("bool", "boolean") and not isinstance(value, bool):
                try:
                    boolean(value, strict=True)
                except TypeError:
                    raise AnsibleParserError(f"{path}: option '{key}' must be true or false, got {value!r}") from None
        for option, minimum in (("connect_timeout", 1), ("deadline", 0.1), ("retries", 0), ("forks", 1)):
            value = self.get_option(option)
            if value is None or value < minimum:
                raise AnsibleParserError(f"{path}: option '{option}' must be at least {minimum}, got {value!r}")
        return config

    def _load_nodes(self, path: str) -> list[dict[str, Any]]:
        inline_source = f"{path} (nodes:)"
        try:
            inline = validate_nodes(self.get_option("nodes") or [], inline_source)
        except RegistryError as exc:
            raise AnsibleParserError(str(exc)) from exc
        from_file: list[dict[str, Any]] = []
        nodes_file = self.get_option("nodes_file")
        self._where: dict[str, str] = {node["name"]: node_where(inline_source, i, node)
                                       for i, node in enumerate(inline, start=1)}
        if nodes_file:
            nodes_file = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(nodes_file))
            from_file = self._read_registry(nodes_file)
            inline_names = {node["name"] for node in inline}
            clash = sorted(node["name"] for node in from_file if node["name"] in inline_names)
            if clash:
                raise AnsibleParserError(
                    f"{path}: node(s) {', '.join(repr(n) for n in clash)} are in both 'nodes' and "
                    f"'nodes_file' ({nodes_file}); describe each node in one place only"
                )
            self._where.update({n["name"]: node_where(nodes_file, i, n) for i, n in enumerate(from_file, start=1)})
        try:
            group_execution_nodes([*inline, *from_file], self.get_option("execution_nodes") or {}, path)
            # Only here are all nodes known: a registry node may name an inline bastion, and back.
            check_via([(inline_source, inline), *([(str(nodes_file), from_file)] if nodes_file else [])])
        except (RegistryError, ViaError) as exc:
            raise AnsibleParserError(str(exc)) from exc
        return [*inline, *from_file]

    def _read_registry(self, nodes_file: str) -> list[dict[str, Any]]:
        if not os.path.exists(nodes_file):
            self.display.warning(f"jexida inventory: node registry {nodes_file} does not exist yet; no nodes from it")
            return []
        try:
            # Through the loader, trusted like any inventory file, so templated vars still work.
            # unsafe=True only skips the loader's deepcopy of what it returns: with cache="none" nothing
            # else holds the parsed document, and the copy was ~40% of a cached parse at 1,000 nodes.
            document = self.loader.load_from_file(nodes_file, cache="none", trusted_as_template=True, unsafe=True)
        except AnsibleError as exc:
            message = " ".join(str(exc).split())
            raise AnsibleParserError(f"{nodes_file}: malformed YAML: {message}") from exc
        try:
            return validate_document(document, nodes_file)
        except RegistryError as exc:
            raise AnsibleParserError(str(exc)) from exc

    def _settings(self, ssh_defaults: dict[str, Any]) -> ProbeSettings:
        return ProbeSettings(
            job_dir=str(self.get_option("job_dir") or default_job_dir()),
            connect_timeout=int(self.get_option("connect_timeout")),
            deadline=float(self.get_option("deadline")),
            retries=int(self.get_option("retries")),
            forks=int(self.get_option("forks")),
            ssh_defaults=ssh_defaults,
        )

    def _render_vars(self, node: Mapping[str, Any]) -> dict[str, Any]:
        # Connection vars may be templates (trusted registry strings); render what renders.
        rendered = dict(node)
        host_vars = dict(node.get("vars") or {})
        templar = self.templar.copy_with_new_env(available_variables=host_vars)
        for key, value in host_vars.items():
            if key.startswith("ansible_") and isinstance(value, str) and "{{" in value:
                try:
                    host_vars[key] = templar.template(value)
                except Exception:  # an undefined controller-only var: the raw value stays
                    host_vars[key] = value
        rendered["vars"] = host_vars
        return rendered

    # -- facts, with the cache

    def _facts(self, nodes: list[dict[str, Any]], path: str, cache: bool,
               ssh_defaults: dict[str, Any]) -> dict[str, dict[str, Any]]:
        settings = self._settings(ssh_defaults)
        targets = probe_targets(nodes, self._render_vars, ssh_defaults)
        cached: Any = {}
        cache_on, cache_key = bool(self.get_option("cache")), self.get_cache_key(path)
        if cache_on and cache:
            try:
                cached = self._cache[cache_key]
            except KeyError:
                cached = {}
        facts, to_probe = reuse_cached(targets, cached, CACHE_VERSION)
        if to_probe:
            facts.update(probe_nodes(to_probe, settings))
        if cache_on and (to_probe or not cache):
            self._cache[cache_key] = {
                "version": CACHE_VERSION,
                "nodes": {name: {"target": targets[name].signature(), "facts": facts[name]} for name in targets},
            }
        return facts

    # -- hosts and groups

    def _populate(self, nodes: list[dict[str, Any]], facts: Mapping[str, dict[str, Any]],
                  thresholds: Mapping[str, float], probing: bool) -> None:
        strict = bool(self.get_option("strict"))
        # Always there, so `tag_gpu:&available` is a valid pattern even when nothing matches.
        fixed = ["inactive", *(["available", "unreachable", *(f"load_{g}" for g in LOAD_GROUPS)] if probing else [])]
        for group in fixed:
            self.inventory.add_group(group)
        renamed: dict[str, str] = {}
        for node in nodes:
            name = node["name"]
            node_facts = {**empty_facts(), **facts.get(name, {})}
            if node_facts.get("reachable"):
                node_facts["load_group"] = classify_load(node_facts, thresholds)
            self.inventory.add_host(name)
            for key, value in node["vars"].items():
                self.inventory.set_variable(name, key, value)
            self.inventory.set_variable(name, "ansible_host", node_facts.get("address") or node["host"])
            self.inventory.set_variable(name, "ansible_port", node["port"])
            self.inventory.set_variable(name, "ansible_user", node["user"])
            self.inventory.set_variable(name, "jexida_tags", list(node["tags"]))
            self.inventory.set_variable(name, "jexida_active", node["active"])
            for field in ("via", "execution_node"):
                if node.get(field):
                    self.inventory.set_variable(name, f"jexida_{field}", node[field])
            self.inventory.set_variable(name, "jexida_facts", node_facts)
            for raw in node_groups(node, node_facts, probed=probing and node["active"]):
                group = self._sanitize_group_name(raw)
                if raw.startswith("tag_") and group != raw:
                    renamed[raw[4:]] = group
                self.inventory.add_group(group)
                self.inventory.add_host(name, group=group)

            host_vars = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option("compose"), host_vars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), host_vars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), host_vars, name, strict=strict)
        if renamed:
            listing = ", ".join(f"{tag!r} -> {group}" for tag, group in sorted(renamed.items()))
            self.display.warning(f"jexida inventory: tags that are not valid group names were renamed: {listing}")
