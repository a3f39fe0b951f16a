//! The pages, as HTML strings from plain models the server fills in. Every
//! value goes through [`esc`]; pages work without JavaScript (the log page's
//! live tail and the header's live state are the script's additions).

use crate::ansi::escape;
use crate::log::Rendered;

/// Escapes a value for HTML.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape(text, &mut out);
    out
}

/// Percent-encodes a URL component (query values, path parts).
pub fn url_part(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A repository on the front page.
pub struct RepoRow {
    pub full_name: String,
    pub default_branch: String,
    pub last: Option<BuildRow>,
}

/// A build in a list or at the top of its page.
#[derive(Clone)]
pub struct BuildRow {
    pub id: i64,
    pub number: i64,
    pub state: String,
    pub event: String,
    pub branch: String,
    pub tag: Option<String>,
    pub pull_request: Option<i64>,
    pub commit: String,
    pub message: String,
    pub author: String,
    pub duration: Option<String>,
    pub time: Option<String>,
    pub reason: Option<String>,
}

/// A webhook told of a build, as its page lists it.
pub struct NotificationRow {
    /// `started` or `finished`.
    pub event: String,
    /// The URL as written: secrets by name, never by value.
    pub url: String,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    /// What the receiver answered, or why it was not sent.
    pub detail: String,
}

pub struct JobRow {
    pub id: i64,
    pub number: String,
    pub name: String,
    pub stage: String,
    pub state: String,
    pub image: String,
    pub allow_failure: bool,
    pub duration: Option<String>,
    pub reason: Option<String>,
    /// How its deploy phases ended: `deployed`, `deploy failed`, or nothing.
    pub deploy: Option<String>,
}

/// Who is looking: shown in the header; their CSRF token goes in every form.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    pub user: Option<String>,
    pub csrf: Option<String>,
}

impl Nav {
    fn html(&self) -> String {
        match (&self.user, &self.csrf) {
            (Some(user), Some(csrf)) => format!(
                "<span class=\"who\">{} <form method=\"post\" action=\"/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form></span>",
                esc(user),
                esc(csrf)
            ),
            _ => "<span class=\"who\"><a href=\"/login\">Sign in</a></span>".to_string(),
        }
    }

    /// The hidden field a form must carry.
    fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            esc(self.csrf.as_deref().unwrap_or(""))
        )
    }
}

fn layout(nav: &Nav, title: &str, crumbs: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · Gantry</title><link rel=\"stylesheet\" href=\"/assets/style.css\"><link rel=\"icon\" href=\"data:,\"></head><body><header class=\"top\"><a class=\"brand\" href=\"/\">Gantry</a>{crumbs}{}</header><main>{body}</main><script src=\"/assets/viewer.js\" defer></script></body></html>",
        esc(title),
        nav.html()
    )
}

fn state_badge(state: &str) -> String {
    format!(
        "<span class=\"state state-{s}\" data-state=\"{s}\">{s}</span>",
        s = esc(state)
    )
}

fn build_ref(b: &BuildRow) -> String {
    if let Some(pr) = b.pull_request {
        format!("PR #{pr} → {}", esc(&b.branch))
    } else if let Some(tag) = &b.tag {
        format!("tag {}", esc(tag))
    } else {
        esc(&b.branch)
    }
}

fn commit_link(repo: &str, commit: &str) -> String {
    let short: String = commit.chars().take(7).collect();
    format!(
        "<a class=\"sha\" href=\"https://github.com/{}/commit/{}\">{}</a>",
        esc(repo),
        esc(commit),
        esc(&short)
    )
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or("")
}

/// `/`: every repository with its default branch's last build.
pub fn repos_page(nav: &Nav, repos: &[RepoRow]) -> String {
    let mut rows = String::new();
    for r in repos {
        let (state, link) = match &r.last {
            Some(b) => (
                state_badge(&b.state),
                format!(
                    "<a href=\"/{}/builds/{}\">#{}</a> {}",
                    esc(&r.full_name),
                    b.id,
                    b.number,
                    esc(first_line(&b.message))
                ),
            ),
            None => (state_badge("none"), "no build yet".to_string()),
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"/{n}\">{n}</a></td><td>{}</td><td>{state}</td><td>{link}</td></tr>",
            esc(&r.default_branch),
            n = esc(&r.full_name)
        ));
    }
    let body = if repos.is_empty() {
        "<p class=\"empty\">No repository yet: add a webhook on GitHub pointing at <code>/hooks/github</code>.</p>".to_string()
    } else {
        format!("<h1>Repositories</h1><table class=\"list\"><thead><tr><th>repository</th><th>default branch</th><th>state</th><th>last build</th></tr></thead><tbody>{rows}</tbody></table>")
    };
    layout(nav, "Repositories", "", &body)
}

/// Filters and paging of the builds list.
pub struct BuildsQuery {
    pub branch: Option<String>,
    pub state: Option<String>,
    /// The id the next page starts before.
    pub next_before: Option<i64>,
}

/// The repository's settings its page tells of.
#[derive(Debug, Clone, Copy)]
pub struct RepoSettings {
    /// `max_concurrent_jobs`, if it has one.
    pub job_limit: Option<i64>,
    pub build_pushes: bool,
    pub build_pull_requests: bool,
}

impl Default for RepoSettings {
    fn default() -> Self {
        RepoSettings {
            job_limit: None,
            build_pushes: true,
            build_pull_requests: true,
        }
    }
}

/// `/{owner}/{name}`: the repository's builds, and the settings that
/// change what builds and when (a limit on jobs at once, pushes or pull
/// requests not built).
pub fn builds_page(
    nav: &Nav,
    repo: &str,
    builds: &[BuildRow],
    q: &BuildsQuery,
    states: &[&str],
    settings: RepoSettings,
) -> String {
    let mut rows = String::new();
    for b in builds {
        rows.push_str(&format!(
            "<tr><td><a href=\"/{r}/builds/{id}\">#{n}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"msg\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            state_badge(&b.state),
            esc(&b.event),
            build_ref(b),
            commit_link(repo, &b.commit),
            esc(first_line(&b.message)),
            esc(&b.author),
            esc(b.duration.as_deref().unwrap_or("—")),
            esc(b.time.as_deref().unwrap_or("")),
            r = esc(repo),
            id = b.id,
            n = b.number,
        ));
    }
    let options: String = std::iter::once("")
        .chain(states.iter().copied())
        .map(|s| {
            let selected = if q.state.as_deref() == Some(s) || (s.is_empty() && q.state.is_none()) {
                " selected"
            } else {
                ""
            };
            format!(
                "<option value=\"{v}\"{selected}>{label}</option>",
                v = esc(s),
                label = if s.is_empty() { "any state" } else { s }
            )
        })
        .collect();
    let filter = format!(
        "<form class=\"filter\" method=\"get\"><input name=\"branch\" placeholder=\"branch\" value=\"{}\"><select name=\"state\">{options}</select><button>Filter</button></form>",
        esc(q.branch.as_deref().unwrap_or(""))
    );
    let more = match q.next_before {
        Some(before) => {
            let mut link = format!("?before={before}");
            if let Some(b) = &q.branch {
                link.push_str(&format!("&amp;branch={}", url_part(b)));
            }
            if let Some(s) = &q.state {
                link.push_str(&format!("&amp;state={}", url_part(s)));
            }
            format!("<p class=\"more\"><a href=\"{link}\">Older builds →</a></p>")
        }
        None => String::new(),
    };
    let table = if builds.is_empty() {
        "<p class=\"empty\">No builds match.</p>".to_string()
    } else {
        format!("<table class=\"list\"><thead><tr><th>#</th><th>state</th><th>event</th><th>ref</th><th>commit</th><th>message</th><th>author</th><th>duration</th><th>time</th></tr></thead><tbody>{rows}</tbody></table>")
    };
    let crumbs = format!(" / <a href=\"/{r}\">{r}</a>", r = esc(repo));
    let secrets_link = if nav.user.is_some() {
        format!(
            " <a class=\"secrets-link\" href=\"/{r}/trigger\">Trigger a build</a> <a class=\"secrets-link\" href=\"/{r}/secrets\">Secrets</a> <a class=\"secrets-link\" href=\"/{r}/crons\">Crons</a> <a class=\"secrets-link\" href=\"/{r}/caches\">Caches</a>",
            r = esc(repo)
        )
    } else {
        String::new()
    };
    let mut limit = match settings.job_limit {
        Some(1) => "<p class=\"limit\">Runs one job at a time; the others wait in the queue.</p>"
            .to_string(),
        Some(n) => format!(
            "<p class=\"limit\">Runs at most {n} jobs at once; the others wait in the queue.</p>"
        ),
        None => String::new(),
    };
    for (on, what, setting) in [
        (settings.build_pushes, "pushes", "build_pushes"),
        (
            settings.build_pull_requests,
            "pull requests",
            "build_pull_requests",
        ),
    ] {
        if !on {
            limit.push_str(&format!(
                "<p class=\"limit\">Does not build {what}: its setting <code>{setting}</code> is off.</p>"
            ));
        }
    }
    let body = format!(
        "<h1>{r} <img class=\"badge\" src=\"/{r}/badge.svg\" alt=\"build state\">{secrets_link}</h1>{limit}{filter}{table}{more}",
        r = esc(repo)
    );
    layout(nav, repo, &crumbs, &body)
}

/// `/{owner}/{name}/builds/{id}`.
pub struct BuildPage<'a> {
    pub nav: &'a Nav,
    pub repo: &'a str,
    pub build: BuildRow,
    pub jobs: Vec<JobRow>,
    pub diagnostics: Vec<String>,
    /// The config the build was triggered with and its merge mode, if any.
    pub request_config: Option<(String, String)>,
    pub notifications: Vec<NotificationRow>,
    /// Whether restart/cancel buttons are shown (an authorised user).
    pub can_act: bool,
}

fn build_header(repo: &str, b: &BuildRow) -> String {
    format!(
        "<div class=\"head\"><h1>Build #{n} {}</h1><p>{} · {} · {} by {}</p><p class=\"msg\">{}</p>{}</div>",
        state_badge(&b.state),
        esc(&b.event),
        build_ref(b),
        commit_link(repo, &b.commit),
        esc(&b.author),
        esc(&b.message),
        b.reason
            .as_deref()
            .map(|r| format!("<p class=\"reason\">{}</p>", esc(r)))
            .unwrap_or_default(),
        n = b.number,
    )
}

pub fn build_page(p: &BuildPage<'_>) -> String {
    let mut stages: Vec<(&str, Vec<&JobRow>)> = Vec::new();
    for job in &p.jobs {
        match stages.iter_mut().find(|(s, _)| *s == job.stage) {
            Some((_, jobs)) => jobs.push(job),
            None => stages.push((&job.stage, vec![job])),
        }
    }
    let mut body = build_header(p.repo, &p.build);
    if let Some((text, mode)) = &p.request_config {
        // Everyone who sees the build sees what it was asked to run.
        let lines: Vec<String> = text.lines().map(esc).collect();
        body.push_str(&format!(
            "<details class=\"request-config\" open><summary>Triggered with a config of its own ({})</summary><pre>{}</pre></details>",
            esc(mode),
            lines.join("\n")
        ));
    }
    if !p.diagnostics.is_empty() {
        body.push_str("<h2>Pipeline problems</h2><ul class=\"diagnostics\">");
        for d in &p.diagnostics {
            body.push_str(&format!("<li>{}</li>", esc(d)));
        }
        body.push_str("</ul>");
    }
    for (stage, jobs) in stages {
        body.push_str(&format!(
            "<h2>{}</h2><table class=\"list jobs\"><tbody>",
            esc(stage)
        ));
        for j in jobs {
            body.push_str(&format!(
                "<tr data-job=\"{id}\"><td><a href=\"/{r}/jobs/{id}\">{n}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"deploy\">{}</td></tr>",
                state_badge(&j.state),
                esc(&j.name),
                esc(&j.image),
                match (&j.duration, &j.reason) {
                    (Some(d), _) => esc(d),
                    // A queued job's reason says why it waits.
                    (None, Some(why)) if j.state == "queued" => {
                        format!("<span class=\"waiting\">{}</span>", esc(why))
                    }
                    (None, _) => "—".to_string(),
                },
                if j.allow_failure { "allowed to fail" } else { "" },
                esc(j.deploy.as_deref().unwrap_or("")),
                r = esc(p.repo),
                id = j.id,
                n = esc(&j.number),
            ));
        }
        body.push_str("</tbody></table>");
    }
    if !p.notifications.is_empty() {
        body.push_str("<h2>Notifications</h2><table class=\"list notifications\"><tbody>");
        for n in &p.notifications {
            body.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&n.event),
                esc(&n.url),
                esc(&n.state),
                esc(&n.detail),
            ));
        }
        body.push_str("</tbody></table>");
    }
    if p.can_act {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/{r}/builds/{id}/restart\" class=\"act\">{csrf}<button>Restart build</button></form><form method=\"post\" action=\"/{r}/builds/{id}/cancel\" class=\"act\">{csrf}<button>Cancel build</button></form>",
            r = esc(p.repo),
            id = p.build.id,
            csrf = p.nav.csrf_field()
        ));
    }
    let crumbs = format!(
        " / <a href=\"/{r}\">{r}</a> / <a href=\"/{r}/builds/{id}\">#{n}</a>",
        r = esc(p.repo),
        id = p.build.id,
        n = p.build.number
    );
    layout(
        p.nav,
        &format!("{} #{}", p.repo, p.build.number),
        &crumbs,
        &format!(
            "<div class=\"build\" data-build=\"{}\">{body}</div>",
            p.build.id
        ),
    )
}

/// `/{owner}/{name}/jobs/{id}`.
pub struct JobPage<'a> {
    pub nav: &'a Nav,
    pub repo: &'a str,
    pub build: BuildRow,
    pub job: JobRow,
    pub log: Rendered,
    /// The first line number shown (a long log is drawn from its tail without JS).
    pub first_line: usize,
    pub total_lines: usize,
    pub log_bytes: u64,
    pub running: bool,
    /// The viewer may remove the log (push access, the job finished).
    pub can_remove_log: bool,
}

pub fn job_page(p: &JobPage<'_>) -> String {
    let mut lines = String::with_capacity(p.log.lines.len() * 64);
    let mut folds = p.log.folds.iter().peekable();
    let mut open_folds: Vec<usize> = Vec::new();
    for (i, line) in p.log.lines.iter().enumerate() {
        let number = p.first_line + i;
        while let Some(f) = folds.peek() {
            if f.first != number {
                break;
            }
            let f = folds.next().expect("peeked");
            let duration = f
                .duration_ms
                .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                .unwrap_or_default();
            lines.push_str(&format!(
                "<details class=\"fold{}\" data-fold=\"{n}\"{}><summary><span class=\"fold-name\">{n}</span><span class=\"fold-time\">{duration}</span></summary>",
                if f.failed() { " failed" } else { "" },
                if f.failed() || f.last >= p.first_line + p.log.lines.len() - 1 && p.running { " open" } else { "" },
                n = esc(&f.name),
            ));
            open_folds.push(f.last);
        }
        match line {
            Some(html) => lines.push_str(&format!(
                "<div class=\"line\" id=\"L{number}\"><a class=\"ln\" href=\"#L{number}\">{number}</a><span class=\"text\">{html}</span></div>"
            )),
            None => lines.push_str(&format!("<div class=\"line marker\" id=\"L{number}\"></div>")),
        }
        while open_folds.last() == Some(&number) {
            open_folds.pop();
            lines.push_str("</details>");
        }
    }
    for _ in open_folds {
        lines.push_str("</details>");
    }
    let skipped = if p.first_line > 1 {
        format!(
            "<p class=\"skipped\">Lines 1–{} are not drawn here; <a href=\"/api/jobs/{}/log\">download the raw log</a> or turn on JavaScript to scroll through all {} lines.</p>",
            p.first_line - 1,
            p.job.id,
            p.total_lines
        )
    } else {
        String::new()
    };
    let head = format!(
        "<div class=\"head\"><h1>Job {n} {}</h1><p>{} · <code>{}</code> · {}</p>{}<p class=\"tools\"><a href=\"/api/jobs/{id}/log\" download>Raw log</a> <label class=\"follow\"><input type=\"checkbox\" id=\"follow\" checked> follow</label> <input id=\"search\" type=\"search\" placeholder=\"search the log\"></p>{remove}</div>",
        state_badge(&p.job.state),
        esc(&p.job.name),
        esc(&p.job.image),
        esc(p.job.duration.as_deref().unwrap_or("")),
        p.job
            .reason
            .as_deref()
            .map(|r| format!("<p class=\"reason\">{}</p>", esc(r)))
            .unwrap_or_default(),
        n = esc(&p.job.number),
        id = p.job.id,
        remove = if p.can_remove_log {
            format!(
                "<form method=\"post\" action=\"/{}/jobs/{}/log/remove\" class=\"act\" onsubmit=\"return confirm('Remove this log for good? It is replaced by a line saying who removed it.')\">{}<button>Remove log</button></form>",
                esc(p.repo),
                p.job.id,
                p.nav.csrf_field()
            )
        } else {
            String::new()
        },
    );
    let body = format!(
        "<div class=\"job\" data-job=\"{id}\" data-running=\"{running}\" data-lines=\"{total}\" data-bytes=\"{bytes}\" data-first=\"{first}\">{head}{skipped}<div class=\"log\" id=\"log\">{lines}</div></div>",
        id = p.job.id,
        running = p.running,
        total = p.total_lines,
        bytes = p.log_bytes,
        first = p.first_line,
    );
    let crumbs = format!(
        " / <a href=\"/{r}\">{r}</a> / <a href=\"/{r}/builds/{bid}\">#{bn}</a> / {jn}",
        r = esc(p.repo),
        bid = p.build.id,
        bn = p.build.number,
        jn = esc(&p.job.number)
    );
    layout(
        p.nav,
        &format!("{} job {}", p.repo, p.job.number),
        &crumbs,
        &body,
    )
}

/// A repository secret as listed: never its value.
pub struct SecretRow {
    pub name: String,
    pub branches: Vec<String>,
    pub updated: Option<String>,
}

/// `/{owner}/{name}/secrets`: names, branches and dates; set and delete with forms.
pub fn secrets_page(nav: &Nav, repo: &str, rows: &[SecretRow], notice: Option<&str>) -> String {
    let mut list = String::new();
    for row in rows {
        list.push_str(&format!(
            "<tr><td><code>{n}</code></td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/{r}/secrets/{n}/delete\" class=\"inline\">{}<button>Delete</button></form></td></tr>",
            if row.branches.is_empty() { "all branches".to_string() } else { esc(&row.branches.join(", ")) },
            esc(row.updated.as_deref().unwrap_or("")),
            nav.csrf_field(),
            n = esc(&row.name),
            r = esc(repo),
        ));
    }
    let table = if rows.is_empty() {
        "<p class=\"empty\">No secrets yet.</p>".to_string()
    } else {
        format!("<table class=\"list\"><thead><tr><th>name</th><th>branches</th><th>updated</th><th></th></tr></thead><tbody>{list}</tbody></table>")
    };
    let notice = notice
        .map(|n| format!("<p class=\"notice\">{}</p>", esc(n)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Secrets of {r}</h1>{notice}<p>Values are encrypted at rest and never shown again; jobs get them as environment variables (not builds of forks), and logs show <code>[secure]</code> instead.</p>{table}<h2>Set a secret</h2><form method=\"post\" action=\"/{r}/secrets\" class=\"filter\">{}<input name=\"name\" placeholder=\"NAME\" required pattern=\"[A-Za-z_][A-Za-z0-9_]*\"><input name=\"value\" type=\"password\" placeholder=\"value\" required autocomplete=\"off\"><input name=\"branches\" placeholder=\"branches (comma-separated; empty: all)\"><button>Save</button></form>",
        nav.csrf_field(),
        r = esc(repo),
    );
    let crumbs = format!(" / <a href=\"/{r}\">{r}</a> / secrets", r = esc(repo));
    layout(nav, &format!("{repo} secrets"), &crumbs, &body)
}

pub struct CronRow {
    pub id: i64,
    pub branch: String,
    pub interval: String,
    pub skip_if_recent: bool,
    pub next_run: Option<String>,
    pub last_run: Option<String>,
    pub last_result: Option<String>,
}

/// `/{owner}/{name}/caches`: when the build caches were last cleared, and
/// a form to clear them.
pub fn caches_page(
    nav: &Nav,
    repo: &str,
    cleared_at: Option<&str>,
    notice: Option<&str>,
) -> String {
    let notice = notice
        .map(|n| format!("<p class=\"notice\">{}</p>", esc(n)))
        .unwrap_or_default();
    let last = match cleared_at {
        Some(at) => format!("Last cleared {}.", esc(at)),
        None => "Never cleared.".to_string(),
    };
    let body = format!(
        "<h1>Build caches of {r}</h1>{notice}<p>The directories jobs name under <code>cache:</code>, kept on each runner per branch and kind of job. {last}</p><p>Clearing them drops every branch's: each runner deletes the repository's caches before its next job of it, and a job running now keeps nothing it built.</p><form method=\"post\" action=\"/{r}/caches/clear\" class=\"filter\">{}<button>Clear all caches</button></form>",
        nav.csrf_field(),
        r = esc(repo),
    );
    let crumbs = format!(" / <a href=\"/{r}\">{r}</a> / caches", r = esc(repo));
    layout(nav, &format!("{repo} caches"), &crumbs, &body)
}

/// `/{owner}/{name}/crons`: each branch's schedule, its next and last run
/// and what that did; set and delete with forms.
pub fn crons_page(nav: &Nav, repo: &str, rows: &[CronRow], notice: Option<&str>) -> String {
    let mut list = String::new();
    for row in rows {
        list.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/{r}/crons/{id}/delete\" class=\"inline\">{}<button>Delete</button></form></td></tr>",
            esc(&row.branch),
            esc(&row.interval),
            if row.skip_if_recent { " (not after a build in the last 24 h)" } else { "" },
            esc(row.next_run.as_deref().unwrap_or("")),
            esc(row.last_run.as_deref().unwrap_or("never")),
            esc(row.last_result.as_deref().unwrap_or("")),
            nav.csrf_field(),
            id = row.id,
            r = esc(repo),
        ));
    }
    let table = if rows.is_empty() {
        "<p class=\"empty\">No cron builds yet.</p>".to_string()
    } else {
        format!("<table class=\"list\"><thead><tr><th>branch</th><th>interval</th><th>next run</th><th>last run</th><th>result</th><th></th></tr></thead><tbody>{list}</tbody></table>")
    };
    let notice = notice
        .map(|n| format!("<p class=\"notice\">{}</p>", esc(n)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Cron builds of {r}</h1>{notice}<p>A branch built on a schedule, from its head, with <code>type = cron</code> for <code>if:</code> conditions. The first build runs when the schedule is set.</p>{table}<h2>Schedule a branch</h2><form method=\"post\" action=\"/{r}/crons\" class=\"filter\">{}<input name=\"branch\" placeholder=\"branch\" required><select name=\"interval\"><option>daily</option><option>weekly</option><option>monthly</option></select><label><input type=\"checkbox\" name=\"skip_if_recent\" value=\"true\"> not if the branch built in the last 24 hours</label><button>Save</button></form>",
        nav.csrf_field(),
        r = esc(repo),
    );
    let crumbs = format!(" / <a href=\"/{r}\">{r}</a> / crons", r = esc(repo));
    layout(nav, &format!("{repo} crons"), &crumbs, &body)
}

/// What the trigger form had, to show it again with what was wrong.
#[derive(Default)]
pub struct TriggerForm {
    pub branch: String,
    pub message: String,
    pub config: String,
    pub merge_mode: String,
}

/// Travis's merge modes, the default first.
pub const MERGE_MODES: [&str; 5] = [
    "deep_merge_append",
    "deep_merge_prepend",
    "deep_merge",
    "merge",
    "replace",
];

/// `/{owner}/{name}/trigger`: a build of a branch's head, with a config of
/// its own over the pipeline file if given (Travis's "Trigger build"). A
/// notice here says what was wrong: a build made goes to its own page.
pub fn trigger_page(nav: &Nav, repo: &str, form: &TriggerForm, notice: Option<&str>) -> String {
    let modes: String = MERGE_MODES
        .iter()
        .map(|m| {
            let selected = if form.merge_mode == *m {
                " selected"
            } else {
                ""
            };
            format!("<option{selected}>{m}</option>")
        })
        .collect();
    let notice = notice
        .map(|n| format!("<p class=\"notice problem\">{}</p>", esc(n)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Trigger a build of {r}</h1>{notice}<p>Builds the head of a branch now, as <code>type = api</code> for <code>if:</code> conditions. A config given here goes over the pipeline file as the merge mode says (<code>replace</code>: the file is not read).</p>\
<form method=\"post\" action=\"/{r}/trigger\" class=\"trigger\">{csrf}\
<label>Branch <input name=\"branch\" value=\"{branch}\" required></label>\
<label>Message <input name=\"message\" value=\"{message}\" placeholder=\"manual build\"></label>\
<label>Config (YAML, optional) <textarea name=\"config\" rows=\"8\" placeholder=\"script: make deploy\">{config}</textarea></label>\
<label>Merge mode <select name=\"merge_mode\">{modes}</select></label>\
<button>Trigger build</button></form>",
        csrf = nav.csrf_field(),
        r = esc(repo),
        branch = esc(&form.branch),
        message = esc(&form.message),
        // `esc` drops line breaks (log lines have none); a config keeps them.
        config = form.config.lines().map(esc).collect::<Vec<_>>().join("\n"),
    );
    let crumbs = format!(" / <a href=\"/{r}\">{r}</a> / trigger", r = esc(repo));
    layout(nav, &format!("{repo} trigger"), &crumbs, &body)
}

/// A page for a missing or hidden thing.
pub fn not_found(nav: &Nav, what: &str) -> String {
    layout(
        nav,
        "Not found",
        "",
        &format!("<h1>Not found</h1><p>{}</p>", esc(what)),
    )
}

/// `/login`: the admin signs in with the admin token.
pub fn login_page(nav: &Nav, error: Option<&str>, github: bool) -> String {
    let mut error = error
        .map(|e| format!("<p class=\"reason\">{}</p>", esc(e)))
        .unwrap_or_default();
    if github {
        error.push_str("<p><a class=\"github-login\" href=\"/login/github\">Sign in with GitHub</a></p><p>Or, as the administrator:</p>");
    }
    layout(
        nav,
        "Sign in",
        "",
        &format!("<h1>Sign in</h1>{error}<form method=\"post\" action=\"/login\" class=\"filter\"><input type=\"password\" name=\"token\" placeholder=\"GANTRY_ADMIN_TOKEN\" autocomplete=\"current-password\"><button>Sign in</button></form>"),
    )
}

/// A refused action, as a page.
pub fn refused(nav: &Nav, why: &str) -> String {
    layout(
        nav,
        "Refused",
        "",
        &format!("<h1>Refused</h1><p class=\"reason\">{}</p>", esc(why)),
    )
}

pub const STYLE: &str = include_str!("../assets/style.css");
pub const SCRIPT: &str = include_str!("../assets/viewer.js");

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> BuildRow {
        BuildRow {
            id: 7,
            number: 3,
            state: "passed".into(),
            event: "push".into(),
            branch: "master".into(),
            tag: None,
            pull_request: None,
            commit: "0123456789abcdef".into(),
            message: "Fix <b>it</b>\n\nlong body".into(),
            author: "dev".into(),
            duration: Some("1m 2s".into()),
            time: Some("2026-11-22T05:00:00Z".into()),
            reason: None,
        }
    }

    #[test]
    fn builds_list_escapes_and_links() {
        let html = builds_page(
            &Nav::default(),
            "acme/widget",
            &[build()],
            &BuildsQuery {
                branch: Some("a&b".into()),
                state: None,
                next_before: Some(7),
            },
            &["passed", "failed"],
            RepoSettings::default(),
        );
        assert!(!html.contains("class=\"limit\""));
        assert!(html.contains("<a href=\"/acme/widget/builds/7\">#3</a>"));
        assert!(html.contains("Fix &lt;b&gt;it&lt;/b&gt;") && !html.contains("long body"));
        assert!(html.contains(
            "href=\"https://github.com/acme/widget/commit/0123456789abcdef\">0123456</a>"
        ));
        assert!(html.contains("?before=7&amp;branch=a%26b"));
        assert!(html.contains("value=\"a&amp;b\""));
    }

    #[test]
    fn a_job_page_folds_phases_and_numbers_lines() {
        let log = crate::log::render("start\ntravis_fold:start:script\r\x1b[0K$ make\n<img src=x onerror=alert(1)>\ntravis_fold:end:script\r\x1b[0K\ngantry_phase:end:script:rc=2\r\x1b[0K\ndone\n");
        let total = log.lines.len();
        let job = JobRow {
            id: 9,
            number: "3.1".into(),
            name: "test".into(),
            stage: "test".into(),
            state: "failed".into(),
            image: "busybox".into(),
            allow_failure: false,
            duration: None,
            reason: None,
            deploy: None,
        };
        let html = job_page(&JobPage {
            nav: &Nav::default(),
            repo: "acme/widget",
            build: build(),
            job,
            log,
            first_line: 1,
            total_lines: total,
            log_bytes: 10,
            running: false,
            can_remove_log: false,
        });
        assert!(
            html.contains("<details class=\"fold failed\" data-fold=\"script\" open>"),
            "{html}"
        );
        assert!(html.contains("id=\"L3\"><a class=\"ln\" href=\"#L3\">3</a><span class=\"text\">&lt;img src=x onerror=alert(1)&gt;</span>"));
        assert_eq!(
            html.matches("<details").count(),
            html.matches("</details>").count()
        );
        assert!(!html.contains("<img src=x"));
    }
}
