// Gantry's viewer script. The pages work without it; it adds the live tail
// (server-sent events), the live state in headers, following the tail, line
// selection and search. Log text arrives as HTML the server escaped.
"use strict";
(function () {
  const job = document.querySelector(".job[data-job]");
  const build = document.querySelector(".build[data-build]");

  function setState(el, state) {
    if (!el) return;
    el.textContent = state;
    el.dataset.state = state;
    el.className = "state state-" + state;
  }

  // Line anchors: #L12 selects and scrolls (the browser scrolls; this marks it).
  function selectFromHash() {
    document.querySelectorAll(".line.selected").forEach((l) => l.classList.remove("selected"));
    const m = /^#L(\d+)$/.exec(location.hash);
    if (!m) return;
    const line = document.getElementById("L" + m[1]);
    if (!line) return;
    const fold = line.closest("details");
    if (fold) fold.open = true;
    line.classList.add("selected");
    line.scrollIntoView({ block: "center" });
  }
  window.addEventListener("hashchange", selectFromHash);

  if (job) {
    const log = document.getElementById("log");
    const follow = document.getElementById("follow");
    const header = job.querySelector(".head .state");
    let lastLine = Number(job.dataset.first) + log.querySelectorAll(".line").length - 1;
    const atBottom = () => window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    window.addEventListener("scroll", () => {
      if (!atBottom() && follow.checked && !job.dataset.autoscroll) follow.checked = false;
      job.dataset.autoscroll = "";
    });
    follow.addEventListener("change", () => { if (follow.checked) window.scrollTo(0, document.body.scrollHeight); });

    function append(lines) {
      const frag = document.createDocumentFragment();
      for (const html of lines) {
        lastLine += 1;
        const div = document.createElement("div");
        div.id = "L" + lastLine;
        if (html === null) { div.className = "line marker"; frag.appendChild(div); continue; }
        div.className = "line";
        const a = document.createElement("a");
        a.className = "ln"; a.href = "#L" + lastLine; a.textContent = String(lastLine);
        const span = document.createElement("span");
        span.className = "text";
        span.innerHTML = html; // escaped by the server
        div.appendChild(a); div.appendChild(span);
        frag.appendChild(div);
      }
      log.appendChild(frag);
      if (follow.checked) { job.dataset.autoscroll = "1"; window.scrollTo(0, document.body.scrollHeight); }
    }

    if (job.dataset.running === "true" && window.EventSource) {
      const events = new EventSource("/api/jobs/" + job.dataset.job + "/events?offset=" + job.dataset.bytes + "&line=" + (lastLine + 1));
      events.addEventListener("log", (e) => append(JSON.parse(e.data).lines));
      events.addEventListener("state", (e) => {
        const state = JSON.parse(e.data).state;
        setState(header, state);
        if (!["queued", "running", "created"].includes(state)) {
          events.close();
          // The finished log folds its phases: draw it again from the server.
          setTimeout(() => location.reload(), 300);
        }
      });
    }
    if (job.dataset.running === "true") window.scrollTo(0, document.body.scrollHeight);

    // Search: Enter jumps to the next match, Shift+Enter to the previous.
    const search = document.getElementById("search");
    let matches = [], current = -1;
    search.addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      const q = search.value.toLowerCase();
      if (!q) return;
      if (!matches.length || search.dataset.q !== q) {
        log.querySelectorAll(".line.match").forEach((l) => l.classList.remove("match", "current"));
        matches = [...log.querySelectorAll(".line")].filter((l) => l.textContent.toLowerCase().includes(q));
        matches.forEach((l) => l.classList.add("match"));
        search.dataset.q = q; current = -1;
      }
      if (!matches.length) return;
      if (current >= 0) matches[current].classList.remove("current");
      current = (current + (e.shiftKey ? matches.length - 1 : 1)) % matches.length;
      const line = matches[current];
      const fold = line.closest("details"); if (fold) fold.open = true;
      line.classList.add("current");
      follow.checked = false;
      line.scrollIntoView({ block: "center" });
    });
  }

  if (build) {
    // A build page follows its jobs' states.
    const live = () => [...build.querySelectorAll(".state")].some((s) => ["queued", "running", "created"].includes(s.dataset.state));
    const tick = () => {
      if (!live()) return;
      fetch("/api/builds/" + build.dataset.build).then((r) => r.json()).then((b) => {
        setState(build.querySelector(".head .state"), b.state);
        for (const j of b.jobs || []) setState(build.querySelector('tr[data-job="' + j.id + '"] .state'), j.state);
      }).catch(() => {}).finally(() => setTimeout(tick, 1000));
    };
    setTimeout(tick, 1000);
  }
  selectFromHash();
})();
