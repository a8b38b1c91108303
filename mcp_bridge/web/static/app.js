// jexida dashboard: a little progressive enhancement. Every page works without it.
"use strict";

// Check buttons: post the same form, ask for JSON, and show the result in the card.
function showCheck(box, check) {
  const rows = [
    ["Check", null],
    ["Error", check.error],
    ["Latency", check.latency_ms == null ? "-" : check.latency_ms + " ms"],
    ["Python", check.python_version || "-"],
    ["Disk free", mb(check.disk_free_mb)],
    ["Memory", mb(check.mem_available_mb) + " free of " + mb(check.mem_total_mb)],
    ["Job dirs writable", check.job_dirs_writable == null ? "-" : (check.job_dirs_writable ? "yes" : "no")
      + (check.detail ? " (" + check.detail + ")" : "")],
  ];
  const dl = document.createElement("dl");
  dl.className = "facts";
  for (const [label, value] of rows) {
    if (label === "Error" && !value) continue;
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    if (label === "Check") {
      const badge = document.createElement("span");
      badge.className = "badge health-" + (check.reachable ? "available" : "unreachable");
      badge.textContent = check.reachable ? "reachable" : "unreachable";
      const when = document.createElement("small");
      when.textContent = " " + (check.checked_at || "");
      dd.append(badge, when);
    } else {
      dd.textContent = value;
      if (label === "Python") dd.className = "python-version";
    }
    dl.append(dt, dd);
  }
  box.replaceChildren(dl);
}

function mb(value) {
  if (value == null) return "-";
  return value >= 1024 ? (value / 1024).toFixed(1) + " GB" : value + " MB";
}

function problem(box, text) {
  const p = document.createElement("p");
  p.className = "problem";
  p.textContent = text;
  box.replaceChildren(p);
}

for (const form of document.querySelectorAll("form.check-form")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const node = form.dataset.node;
    const box = document.querySelector('.check-result[data-node="' + CSS.escape(node) + '"]');
    const button = form.querySelector("button");
    button.disabled = true;
    button.textContent = "Checking…";
    try {
      const response = await fetch(form.action, {
        method: "POST", body: new FormData(form), headers: {Accept: "application/json"}, credentials: "same-origin",
      });
      const body = await response.json();
      if (response.ok) showCheck(box, body); else problem(box, body.error || ("HTTP " + response.status));
    } catch (err) {
      problem(box, "The check did not answer: " + err);
    } finally {
      button.disabled = false;
      button.textContent = "Check";
    }
  });
}

// A running job's output: follow it with server-sent events until the job ends.
const output = document.getElementById("output");
if (output && output.dataset.events) {
  const state = document.getElementById("follow-state");
  const source = new EventSource(output.dataset.events);
  source.addEventListener("output", (event) => {
    const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
    output.append(document.createTextNode(JSON.parse(event.data).data));
    if (atBottom) output.scrollTop = output.scrollHeight;
  });
  source.addEventListener("status", (event) => {
    const job = JSON.parse(event.data);
    const badge = document.getElementById("job-status");
    badge.textContent = job.status;
    badge.className = "badge status-" + job.status;
    document.getElementById("job-rc").textContent = job.rc == null ? "-" : job.rc;
    document.getElementById("job-started").textContent = job.started_at || "-";
    document.getElementById("job-ended").textContent = job.ended_at || "-";
  });
  source.addEventListener("problem", (event) => {
    state.textContent = JSON.parse(event.data).error;
  });
  source.addEventListener("end", () => {
    source.close();
    state.textContent = "The job has ended.";
    const cancel = document.getElementById("cancel-form");
    if (cancel) cancel.remove();
  });
}
