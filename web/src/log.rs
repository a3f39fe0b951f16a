//! A job's log as the viewer shows it: numbered lines (numbers are the raw
//! lines', so `#L1234` names the same line however it is drawn), ANSI turned
//! into escaped HTML, and Travis's fold and time markers turned into phases
//! that fold, with their durations and exit codes.

use crate::ansi::{self, Style};

/// A phase (fold) of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    pub name: String,
    /// 1-based numbers of its first and last line.
    pub first: usize,
    pub last: usize,
    pub duration_ms: Option<u64>,
    /// From `gantry_phase:end:NAME:rc=N`.
    pub exit_code: Option<i32>,
}

impl Fold {
    /// A phase that failed is shown open.
    pub fn failed(&self) -> bool {
        self.exit_code.is_some_and(|c| c != 0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// One HTML fragment per raw line; `None` for lines that carry only markers.
    pub lines: Vec<Option<String>>,
    pub folds: Vec<Fold>,
}

/// Cuts the markers out of a line: returns the rest, and what they said.
fn markers(line: &str) -> (String, Vec<Marker>) {
    let mut found = Vec::new();
    let mut out = String::with_capacity(line.len());
    for piece in line.split_inclusive("\x1b[0K") {
        let body = piece.trim_end_matches("\x1b[0K").trim_end_matches('\r');
        let plain = body.trim_start_matches('\n');
        if let Some(name) = plain.strip_prefix("travis_fold:start:") {
            found.push(Marker::Start(name.to_string()));
        } else if let Some(name) = plain.strip_prefix("travis_fold:end:") {
            found.push(Marker::End(name.to_string()));
        } else if let Some(rest) = plain.strip_prefix("travis_time:end:") {
            let duration = rest
                .split(',')
                .find_map(|kv| kv.split_once("duration="))
                .and_then(|(_, v)| v.parse::<u64>().ok());
            found.push(Marker::Duration(duration.map(|ns| ns / 1_000_000)));
        } else if plain.starts_with("travis_time:start:") {
        } else if let Some(rest) = plain.strip_prefix("gantry_phase:end:") {
            if let Some((name, rc)) = rest.split_once(":rc=") {
                found.push(Marker::Exit(name.to_string(), rc.parse().unwrap_or(-1)));
            }
        } else {
            out.push_str(piece);
        }
    }
    (out, found)
}

enum Marker {
    Start(String),
    End(String),
    Duration(Option<u64>),
    Exit(String, i32),
}

/// Renders a whole log.
pub fn render(text: &str) -> Rendered {
    let mut rendered = Rendered::default();
    let mut style = Style::default();
    let mut open: Vec<Fold> = Vec::new();
    let mut duration = None;
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return rendered;
    }
    for (i, raw) in body.split('\n').enumerate() {
        let number = i + 1;
        let (rest, found) = markers(raw);
        for marker in found {
            match marker {
                Marker::Start(name) => open.push(Fold {
                    name,
                    first: number,
                    last: number,
                    duration_ms: None,
                    exit_code: None,
                }),
                Marker::Duration(d) => duration = d,
                Marker::End(name) => {
                    if let Some(pos) = open.iter().rposition(|f| f.name == name) {
                        let mut fold = open.remove(pos);
                        fold.last = number;
                        fold.duration_ms = duration.take();
                        rendered.folds.push(fold);
                    }
                }
                Marker::Exit(name, code) => {
                    if let Some(fold) = rendered.folds.iter_mut().rev().find(|f| f.name == name) {
                        fold.exit_code = Some(code);
                    }
                }
            }
        }
        if rest.trim_matches(['\r', ' ']).is_empty() && rest.len() != raw.len() {
            rendered.lines.push(None);
        } else {
            let mut html = String::new();
            style = ansi::line_to_html(&rest, style, &mut html);
            rendered.lines.push(Some(html));
        }
    }
    // A fold still open (the job is running, or it was killed) runs to the end.
    let last = rendered.lines.len();
    for mut fold in open {
        fold.last = last;
        rendered.folds.push(fold);
    }
    // Outer folds first when two start on one line, so they nest in the page.
    rendered
        .folds
        .sort_by_key(|f| (f.first, std::cmp::Reverse(f.last)));
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "Gantry job 1.1\n\
travis_fold:start:install\r\x1b[0Ktravis_time:start:00000001\r\x1b[0K\x1b[33;1m$ npm ci\x1b[0m\n\
added 12 packages\n\
travis_time:end:00000001:start=1,finish=2,duration=1500000000,event=install\r\x1b[0Ktravis_fold:end:install\r\x1b[0K\n\
gantry_phase:end:install:rc=0\r\x1b[0K\n\
travis_fold:start:script\r\x1b[0Ktravis_time:start:00000002\r\x1b[0K$ npm test\n\
<script>alert(1)</script>\n\
travis_time:end:00000002:start=1,finish=2,duration=250000000,event=script\r\x1b[0Ktravis_fold:end:script\r\x1b[0K\n\
gantry_phase:end:script:rc=1\r\x1b[0K\n\
The job failed\n";

    #[test]
    fn phases_fold_with_durations_and_exit_codes() {
        let r = render(LOG);
        assert_eq!(r.lines.len(), 10);
        assert_eq!(
            r.folds,
            vec![
                Fold {
                    name: "install".into(),
                    first: 2,
                    last: 4,
                    duration_ms: Some(1500),
                    exit_code: Some(0)
                },
                Fold {
                    name: "script".into(),
                    first: 6,
                    last: 8,
                    duration_ms: Some(250),
                    exit_code: Some(1)
                },
            ]
        );
        assert!(r.folds[1].failed() && !r.folds[0].failed());
        assert_eq!(
            r.lines[1].as_deref(),
            Some("<span class=\"f3 bold\">$ npm ci</span>")
        );
        assert_eq!(r.lines[3], None, "a line of markers only is not shown");
        assert_eq!(
            r.lines[6].as_deref(),
            Some("&lt;script&gt;alert(1)&lt;/script&gt;")
        );
        assert_eq!(r.lines[9].as_deref(), Some("The job failed"));
    }

    /// `travis_fold start deps` inside `script`, even on the phase's first
    /// line: the phase comes first, so the page opens it first.
    #[test]
    fn a_jobs_own_fold_nests_inside_its_phase() {
        let r = render(
            "travis_fold:start:script\r\x1b[0Ktravis_fold:start:deps\r\x1b[0Kfetching\n\
travis_time:end:00010001:start=1,finish=2,duration=3000000,event=\r\x1b[0Ktravis_fold:end:deps\r\x1b[0K$ make\n\
built\n\
travis_fold:end:script\r\x1b[0K\n",
        );
        let spans: Vec<_> = r
            .folds
            .iter()
            .map(|f| (f.name.as_str(), f.first, f.last, f.duration_ms))
            .collect();
        assert_eq!(
            spans,
            [("script", 1, 4, None), ("deps", 1, 2, Some(3))],
            "{:?}",
            r.folds
        );
        assert_eq!(r.lines[1].as_deref(), Some("$ make"));
    }

    #[test]
    fn an_unfinished_phase_runs_to_the_end() {
        let r = render("travis_fold:start:script\r\x1b[0K$ sleep 100\nstill going\n");
        assert_eq!(r.folds[0].last, 2);
        assert_eq!(r.folds[0].duration_ms, None);
        assert_eq!(render("").lines.len(), 0);
    }
}
