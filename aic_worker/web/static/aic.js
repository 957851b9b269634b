// The dashboard's behaviour: the token (typed by the user, kept in sessionStorage, sent only
// with writes), the API's writes behind buttons and forms, the queue's live figures, and the
// before/after slider with drag-to-pan. No framework, nothing fetched from elsewhere.
"use strict";

const TOKEN_KEY = "aic-api-token";

function say(text, ok) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = ok ? "ok" : "error";
  box.hidden = false;
}

async function call(method, url, body, write) {
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (write && token) headers.Authorization = "Bearer " + token;
  const answer = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const document_ = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    const detail = typeof document_.detail === "string" ? document_.detail : JSON.stringify(document_.detail);
    throw new Error(answer.status + ": " + detail);
  }
  return document_;
}

function describe(result) {
  if (result.retried !== undefined) {
    return result.retried_count + " job(s) pending again; " + result.published + " sent to the workers";
  }
  if (result.job_id !== undefined) return "restore job #" + result.job_id + " queued: " + result.output;
  return JSON.stringify(result);
}

function setUpToken() {
  const input = document.getElementById("token");
  if (!input) return;
  input.value = sessionStorage.getItem(TOKEN_KEY) || "";
  input.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, input.value));
  document.getElementById("token-form").addEventListener("submit", (event) => event.preventDefault());
}

function setUpWrites() {
  for (const button of document.querySelectorAll("button[data-post]")) {
    button.addEventListener("click", async () => {
      try {
        const body = button.dataset.body ? JSON.parse(button.dataset.body) : {};
        say(describe(await call("POST", button.dataset.post, body, true)), true);
      } catch (error) {
        say("refused: " + error.message, false);
      }
    });
  }
  for (const form of document.querySelectorAll("form[data-restore]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const body = { output: form.elements.output.value };
        say(describe(await call("POST", form.dataset.restore, body, true)), true);
      } catch (error) {
        say("refused: " + error.message, false);
      }
    });
  }
}

async function fillQueue() {
  const cells = document.querySelectorAll("[data-queue]");
  if (!cells.length) return;
  try {
    const queue = await call("GET", "/api/v1/queue");
    for (const cell of cells) {
      const value = queue[cell.dataset.queue];
      cell.textContent = Array.isArray(value) ? value.length : value === null ? "?" : value;
      if (queue.broker !== "ok") cell.title = queue.broker;
    }
  } catch (error) {
    for (const cell of cells) cell.textContent = "?";
  }
}

function recompressRequest(form, dryRun) {
  const number = (name) => (form.elements[name].value === "" ? null : Number(form.elements[name].value));
  const ids = form.elements.ids.value.split(/[\s,]+/).filter(Boolean).map(Number);
  return {
    ratio: number("ratio"),
    ids: ids.length ? ids : null,
    folder: form.elements.folder.value || null,
    older_than: form.elements.older_than.value || null,
    below_ratio: number("below_ratio"),
    all: form.elements.all.checked,
    method: form.elements.method.value,
    dry_run: dryRun,
  };
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (Math.abs(n) >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return unit ? n.toFixed(1) + " " + units[unit] : n + " B";
}

function showPlan(report) {
  const rows = document.getElementById("plan-items");
  rows.replaceChildren();
  for (const item of report.items) {
    const row = rows.insertRow();
    const cells = [[item.id, true], [item.source_path, false], [item.from_ratio.toFixed(1), true],
                   [item.action, false], [bytes(item.bytes_before), true],
                   [bytes(item.bytes_after_at_most), true], [item.why, false]];
    for (const [value, numeric] of cells) {
      const cell = row.insertCell();
      cell.textContent = value === null ? "–" : value;
      if (numeric) cell.className = "n";
    }
  }
  document.getElementById("plan-summary").textContent =
    report.selected + " selected: " + report.to_encode + " from originals, " + report.to_reencode +
    " from stored versions, " + report.to_truncate +
    " by truncation, " + report.skipped + " skipped, " + report.refused + " refused; at least " +
    bytes(report.bytes_saved_at_least) + " freed" +
    (report.items_left_out ? "; the first " + report.items.length + " listed" : "");
  document.getElementById("plan-report").hidden = false;
}

function setUpRecompress() {
  const form = document.getElementById("recompress");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      showPlan(await call("POST", "/api/v1/recompress", recompressRequest(form, true), true));
    } catch (error) {
      say("refused: " + error.message, false);
    }
  });
  document.getElementById("confirm").addEventListener("click", async () => {
    try {
      const report = await call("POST", "/api/v1/recompress", recompressRequest(form, false), true);
      say(report.queued_count + " recompress job(s) queued; " + report.published + " sent to the workers", true);
    } catch (error) {
      say("refused: " + error.message, false);
    }
  });
}

function setUpCompare() {
  const slider = document.getElementById("slider");
  const after = document.getElementById("after");
  const view = document.getElementById("compare");
  if (!slider || !after || !view) return;
  const divider = document.getElementById("divider");
  const place = () => {
    after.style.clipPath = "inset(0 0 0 " + slider.value + "%)";
    divider.style.left = slider.value + "%";
  };
  slider.addEventListener("input", place);
  place();
  let from = null;
  view.addEventListener("pointerdown", (event) => {
    from = { x: event.clientX, y: event.clientY, left: view.scrollLeft, top: view.scrollTop };
    view.setPointerCapture(event.pointerId);
  });
  view.addEventListener("pointermove", (event) => {
    if (!from) return;
    view.scrollLeft = from.left - (event.clientX - from.x);
    view.scrollTop = from.top - (event.clientY - from.y);
  });
  view.addEventListener("pointerup", () => {
    from = null;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpToken();
  setUpWrites();
  setUpRecompress();
  setUpCompare();
  fillQueue();
});
