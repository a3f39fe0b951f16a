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
  window.addEventListener("hashchange", () => { if (!document.querySelector(".vlog")) selectFromHash(); });

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

    let append = function (lines) {
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
    };

    // A log too big to draw whole: draw only what is on screen, fetching
    // lines by number as the page scrolls (the DOM never holds the whole log).
    const virtual = Number(job.dataset.first) > 1 ? virtualLog(job, log) : null;
    if (virtual) {
      append = (lines) => virtual.grow(lines.length, follow.checked);
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
      if (virtual) { e.preventDefault(); follow.checked = false; virtual.search(search.value, e.shiftKey); return; }
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
    if (live()) {
      // The server sends the states when one changes, and ends the stream
      // with the build's final state.
      const events = new EventSource("/api/builds/" + build.dataset.build + "/events");
      events.addEventListener("state", (e) => {
        const b = JSON.parse(e.data);
        setState(build.querySelector(".head .state"), b.state);
        for (const j of b.jobs || []) setState(build.querySelector('tr[data-job="' + j.id + '"] .state'), j.state);
        if (!live()) events.close();
      });
    }
  }
  if (!document.querySelector(".vlog")) selectFromHash();

  function virtualLog(job, log) {
    const id = job.dataset.job;
    // Fixed row height (see .vlog .line in style.css); browsers cap an
    // element's height (~33M px), so a longer log is scrolled through a
    // scaled spacer and the drawn block is anchored where the page is.
    const lineHeight = 19;
    const maxHeight = 15e6;
    let total = Number(job.dataset.lines);
    const skipped = job.querySelector(".skipped");
    if (skipped) skipped.remove();
    log.innerHTML = "";
    const viewport = document.createElement("div");
    viewport.className = "vlog";
    const block = document.createElement("div");
    block.className = "vblock";
    viewport.appendChild(block);
    log.appendChild(viewport);
    let drawn = { from: 0, to: -1 }, selected = 0, current = 0, request = 0;
    const px = () => Math.min(lineHeight, maxHeight / Math.max(total, 1));
    const size = () => { viewport.style.height = total * px() + "px"; };
    const exact = () => px() === lineHeight;
    const rows = () => Math.floor(window.innerHeight / lineHeight);
    // How far the page scrolls through the log.
    const span = () => Math.max(1, viewport.offsetHeight - window.innerHeight);
    const scrolled = () => Math.max(0, -viewport.getBoundingClientRect().top);
    // The line at the top of the window, and where the page is when `first` is there.
    const lineAt = (top) => exact()
      ? Math.floor(top / lineHeight) + 1
      : 1 + Math.round(Math.min(1, top / span()) * Math.max(0, total - rows()));
    const topFor = (first) => exact()
      ? (first - 1) * lineHeight
      : ((first - 1) / Math.max(1, total - rows())) * span();
    size();
    const row = (n, html) => html === null
      ? '<div class="line marker-v" id="L' + n + '"><a class="ln" href="#L' + n + '">' + n + "</a></div>"
      : '<div class="line" id="L' + n + '"><a class="ln" href="#L' + n + '">' + n + '</a><span class="text">' + html + "</span></div>";
    function mark() {
      block.querySelectorAll(".selected, .current").forEach((l) => l.classList.remove("selected", "current", "match"));
      const s = document.getElementById("L" + selected);
      if (s) s.classList.add("selected");
      const c = document.getElementById("L" + current);
      if (c) c.classList.add("match", "current");
    }
    function draw(force) {
      const first = Math.min(total, lineAt(scrolled()));
      const visible = Math.ceil(window.innerHeight / lineHeight) + 1;
      if (!force && first >= drawn.from && Math.min(total, first + visible) <= drawn.to) return Promise.resolve();
      const from = Math.max(1, first - 150);
      const count = visible + 300;
      const mine = ++request;
      return fetch("/api/jobs/" + id + "/lines?from=" + from + "&count=" + count)
        .then((r) => r.json())
        .then((d) => {
          if (mine !== request) return;
          if (d.total !== total) { total = d.total; size(); }
          const at = scrolled();
          const anchor = Math.min(d.total, lineAt(at));
          let top = exact() ? (d.from - 1) * lineHeight : at - (anchor - d.from) * lineHeight;
          // The log's last line ends where the spacer ends, never past it.
          if (d.from + d.lines.length - 1 >= d.total) top = Math.min(top, viewport.offsetHeight - d.lines.length * lineHeight);
          block.style.top = Math.max(0, top) + "px";
          block.innerHTML = d.lines.map((h, i) => row(d.from + i, h)).join("");
          drawn = { from: d.from, to: d.from + d.lines.length - 1 };
          mark();
        });
    }
    let queued = false;
    window.addEventListener("scroll", () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => { queued = false; draw(false); });
    });
    function jump(n) {
      const centre = Math.floor(rows() / 2);
      const y = viewport.getBoundingClientRect().top + window.scrollY + topFor(Math.max(1, n - centre));
      window.scrollTo(0, Math.max(0, y));
      return draw(true);
    }
    function fromHash() {
      const m = /^#L(\d+)$/.exec(location.hash);
      if (!m) return false;
      selected = Number(m[1]);
      jump(selected);
      return true;
    }
    window.addEventListener("hashchange", fromHash);
    if (!fromHash()) { window.scrollTo(0, document.body.scrollHeight); draw(true); }
    return {
      grow(lines, follow) {
        total += lines; size();
        if (follow) { window.scrollTo(0, document.body.scrollHeight); draw(true); }
      },
      search(q, backwards) {
        if (!q) return;
        const start = backwards ? Math.max(1, current - 1) : current + 1;
        fetch("/api/jobs/" + id + "/search?q=" + encodeURIComponent(q) + "&from=" + start)
          .then((r) => r.json())
          .then((d) => { if (d.line) { current = d.line; jump(current); } });
      },
    };
  }
})();
