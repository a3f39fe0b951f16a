//! From a container's raw output to log chunks: whole lines only (a line is
//! never split between chunks, so a secret is never split either), secrets
//! replaced by `[secure]`, phase markers timed. Chunks go out through a
//! bounded channel, so a job printing faster than the server stores waits
//! instead of filling memory.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use bytes::Bytes;
use gantry_protocol::PhaseTiming;
use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// A line longer than this is cut and sent anyway (a binary blob, a progress bar).
const MAX_LINE: usize = 1024 * 1024;
/// Send as soon as this much is waiting: one upload's worth, so heavy
/// output goes out chunk by chunk without being joined again first.
const CHUNK: usize = 1024 * 1024;
/// A read at least this big is heavy output.
const BULK: usize = 16 * 1024;
/// What a secret's value becomes in the log.
const SECURE: &[u8] = b"[secure]";
/// Lines holding one of these are read one by one: phase folds and timers.
const MARKERS: [&str; 3] = ["travis_time:", "travis_fold:", "gantry_phase:end:"];
/// Where every marker has its first `_` (`travis_…`, `gantry_…`).
const MARKER_UNDERSCORE: usize = 6;

/// Where the first phase marker in `text` begins. A SIMD scan for `_`, with
/// a comparison at each: most output has few underscores, and a general
/// multi-pattern search took a quarter of the runner's time on a big log.
fn find_marker(text: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'_', text)
        .filter_map(|i| i.checked_sub(MARKER_UNDERSCORE))
        .find(|&start| {
            MARKERS
                .iter()
                .any(|m| text[start..].starts_with(m.as_bytes()))
        })
}
/// Values this short are not masked (they would hide ordinary words), as on Travis.
const MIN_SECRET: usize = 4;

/// Replaces secret values, and their usual encodings, with `[secure]`: one
/// pass over the text, the leftmost and then longest value first.
#[derive(Clone, Default)]
pub struct Masker {
    finder: Finder,
}

#[derive(Clone, Default)]
enum Finder {
    /// No secrets.
    #[default]
    Nothing,
    Values(AhoCorasick),
    /// The values could not be compiled (too large for memory): every line
    /// is replaced, so nothing can leak.
    Everything,
}

/// Says how many values there are, never what they are.
impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Masker");
        match &self.finder {
            Finder::Nothing => out.field("patterns", &0),
            Finder::Values(a) => out.field("patterns", &a.patterns_len()),
            Finder::Everything => out.field("patterns", &"every line"),
        };
        out.finish()
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Masker {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut patterns: Vec<String> = Vec::new();
        for value in secrets {
            // A multi-line value (a key file) prints line by line: each line
            // is masked. No pattern holds a newline, so masking many lines at
            // once is the same as masking each line.
            let mut forms: Vec<String> = value.lines().map(str::to_string).collect();
            forms.push(base64::engine::general_purpose::STANDARD.encode(value));
            forms.push(base64::engine::general_purpose::STANDARD_NO_PAD.encode(value));
            forms.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value));
            forms.push(url_encode(value));
            forms.push(url_encode(value).to_lowercase());
            for form in forms {
                let trimmed = form.trim().to_string();
                if trimmed.len() >= MIN_SECRET && !patterns.contains(&trimmed) {
                    patterns.push(trimmed);
                }
            }
        }
        if patterns.is_empty() {
            return Masker::default();
        }
        let finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns);
        Masker {
            finder: finder.map_or(Finder::Everything, Finder::Values),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self.finder, Finder::Nothing)
    }

    /// Masks one line (or any bytes).
    pub fn mask(&self, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        self.mask_into(text, &mut out);
        out
    }

    /// Appends `text`, masked, to `out`.
    pub fn mask_into(&self, text: &[u8], out: &mut Vec<u8>) {
        match &self.finder {
            Finder::Nothing => out.extend_from_slice(text),
            Finder::Values(finder) => finder.replace_all_with_bytes(text, out, |_, _, dst| {
                dst.extend_from_slice(SECURE);
                true
            }),
            Finder::Everything => {
                for line in text.split_inclusive(|b| *b == b'\n') {
                    out.extend_from_slice(SECURE);
                    if line.ends_with(b"\n") {
                        out.push(b'\n');
                    }
                }
            }
        }
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Turns raw output into masked, timed, whole-line chunks.
pub struct LogPipeline {
    masker: Masker,
    partial: Vec<u8>,
    pending: Vec<u8>,
    out: mpsc::Sender<Bytes>,
    /// `travis_time` id → start time (ns since the epoch).
    timers: HashMap<String, u128>,
    phase_started: Option<(u128, Instant)>,
    pub phases: Vec<PhaseTiming>,
    /// The phase whose fold is open (the one running now).
    pub current_phase: Option<String>,
    /// The folds open now, outermost (the phase) first.
    folds: Vec<String>,
    /// When output last arrived, for the no-output timeout.
    pub last_output: Instant,
    /// When the job started.
    pub started: Instant,
    /// The job's output FIFO, once its first step has made it.
    pub output: Option<crate::output::OutputFifo>,
}

impl LogPipeline {
    pub fn new(masker: Masker, out: mpsc::Sender<Bytes>) -> Self {
        LogPipeline {
            masker,
            partial: Vec::new(),
            pending: Vec::new(),
            out,
            timers: HashMap::new(),
            phase_started: None,
            phases: Vec::new(),
            current_phase: None,
            folds: Vec::new(),
            last_output: Instant::now(),
            started: Instant::now(),
            output: None,
        }
    }

    /// Feeds raw output; sends a chunk when enough is waiting.
    pub async fn push(&mut self, bytes: &[u8]) {
        self.last_output = Instant::now();
        if self.pending.is_empty() && bytes.len() >= BULK {
            // Heavy output: room for a whole chunk at once, not grown by doubling (a copy each time).
            self.pending.reserve(CHUNK + bytes.len());
        }
        if let Some(last) = memchr::memrchr(b'\n', bytes) {
            let (whole, rest) = bytes.split_at(last + 1);
            let mut whole = whole;
            if !self.partial.is_empty() {
                // The line begun in an earlier frame ends in this one.
                let end = memchr::memchr(b'\n', whole).map_or(whole.len(), |i| i + 1);
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&whole[..end]);
                self.lines(&line);
                line.clear();
                self.partial = line;
                whole = &whole[end..];
            }
            self.lines(whole);
            self.partial.extend_from_slice(rest);
        } else {
            self.partial.extend_from_slice(bytes);
        }
        if self.partial.len() > MAX_LINE {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        if self.pending.len() >= CHUNK {
            self.flush().await;
        }
    }

    /// Whole lines: copied (and masked) in bulk, except the few that carry a
    /// phase marker, which are read one by one.
    fn lines(&mut self, mut text: &[u8]) {
        while let Some(found) = find_marker(text) {
            let start = memchr::memrchr(b'\n', &text[..found]).map_or(0, |i| i + 1);
            let end = memchr::memchr(b'\n', &text[found..]).map_or(text.len(), |i| found + i + 1);
            self.masker.mask_into(&text[..start], &mut self.pending);
            self.line(&text[start..end]);
            text = &text[end..];
        }
        self.masker.mask_into(text, &mut self.pending);
    }

    /// Adds a whole line written by the runner itself (not masked: the runner knows what it says).
    pub async fn runner_line(&mut self, text: &str) {
        self.complete_partial();
        self.pending.extend_from_slice(text.as_bytes());
        if !text.ends_with('\n') {
            self.pending.push(b'\n');
        }
        self.flush().await;
    }

    /// Text that leaves the runner outside the log (a job's reason, shown by
    /// the API and pages), masked like the log.
    pub fn mask_text(&self, text: &str) -> String {
        if self.masker.is_empty() {
            return text.to_string();
        }
        String::from_utf8_lossy(&self.masker.mask(text.as_bytes())).into_owned()
    }

    /// A line the runner writes about something outside its control (an AWS
    /// error, a registry's message): masked like the job's own output.
    pub async fn say(&mut self, text: &str) {
        self.say_lines([text]).await;
    }

    /// Several such lines, sent as one chunk: output that arrives in
    /// pieces of many lines (a Heroku build's) is not sent line by line.
    pub async fn say_lines<S: AsRef<str>>(&mut self, lines: impl IntoIterator<Item = S>) {
        self.complete_partial();
        for text in lines {
            let text = text.as_ref();
            let mut line = text.as_bytes().to_vec();
            if !text.ends_with('\n') {
                line.push(b'\n');
            }
            self.masker.mask_into(&line, &mut self.pending);
        }
        self.flush().await;
    }

    fn complete_partial(&mut self) {
        if !self.partial.is_empty() {
            let mut line = std::mem::take(&mut self.partial);
            line.push(b'\n');
            self.line(&line);
        }
    }

    /// Sends what is waiting (the 100 ms tick, or the end).
    pub async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let chunk = Bytes::from(std::mem::take(&mut self.pending));
        // A closed receiver means nobody stores the log any more (the job was taken back).
        let _ = self.out.send(chunk).await;
    }

    /// Ends the stream: an unfinished last line is completed and everything sent.
    pub async fn finish(&mut self) {
        self.complete_partial();
        self.flush().await;
    }

    fn line(&mut self, raw: &[u8]) {
        // Markers are read before masking, so a secret that happens to be a
        // word of a marker (`gantry`, a phase name) cannot hide a phase.
        let line = self.time_markers(raw.to_vec());
        self.masker.mask_into(&line, &mut self.pending);
    }

    /// Records phase starts and ends, and writes real times into
    /// `travis_time:end`. A job's own folds and timers (`travis_fold`,
    /// `travis_time_start` in a script) nest inside the phase's: the phase
    /// is the outermost fold, and its time starts with the marker printed
    /// on the line that opened it.
    fn time_markers(&mut self, line: Vec<u8>) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(&line) else {
            return line;
        };
        if !MARKERS.iter().any(|m| text.contains(m)) {
            return line;
        }
        let mut out = String::with_capacity(text.len() + 64);
        let mut opened_phase = false;
        for piece in text.split_inclusive("\x1b[0K") {
            if let Some(name) = after(piece, "travis_fold:start:") {
                let name = ident(name, '_');
                self.folds.push(name.clone());
                if self.folds.len() == 1 {
                    self.current_phase = Some(name);
                    opened_phase = true;
                }
            } else if let Some(name) = after(piece, "travis_fold:end:") {
                let name = ident(name, '_');
                if let Some(at) = self.folds.iter().rposition(|f| *f == name) {
                    self.folds.truncate(at);
                }
            }
            if let Some(id) = after(piece, "travis_time:start:") {
                self.timers.insert(ident(id, '\0'), now_ns());
                if opened_phase {
                    self.phase_started = Some((now_ns(), Instant::now()));
                }
            }
            if let Some(id) = after(piece, "travis_time:end:") {
                let id = ident(id, '\0');
                let placeholder = format!("travis_time:end:{id}:start=0,finish=0,duration=0");
                if piece.contains(&placeholder) {
                    let finish = now_ns();
                    let start = self.timers.remove(&id).unwrap_or(finish);
                    let real = format!(
                        "travis_time:end:{id}:start={start},finish={finish},duration={}",
                        finish - start
                    );
                    out.push_str(&piece.replace(&placeholder, &real));
                    continue;
                }
            }
            if let Some(rest) = after(piece, "gantry_phase:end:") {
                if let Some((phase, tail)) = rest.split_once(":rc=") {
                    let rc: String = tail
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '-')
                        .collect();
                    self.current_phase = None;
                    // A fold the job opened and never closed ends with its phase.
                    self.folds.clear();
                    let (started_ns, started) = self
                        .phase_started
                        .take()
                        .unwrap_or((now_ns(), Instant::now()));
                    self.phases.push(PhaseTiming {
                        phase: phase.to_string(),
                        started_at_ms: (started_ns / 1_000_000) as i64,
                        duration_ms: started.elapsed().as_millis() as u64,
                        exit_code: rc.parse().unwrap_or(-1),
                    });
                }
            }
            out.push_str(piece);
        }
        out.into_bytes()
    }
}

/// What follows `marker` in `piece`, if it is there.
fn after<'a>(piece: &'a str, marker: &str) -> Option<&'a str> {
    piece.find(marker).map(|at| &piece[at + marker.len()..])
}

/// The name or id at the start of `text`: ASCII letters and digits, and `extra`.
fn ident(text: &str, extra: char) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == extra)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(rx: &mut mpsc::Receiver<Bytes>) -> String {
        let mut out = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            out.extend_from_slice(&chunk);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn secrets_are_masked_in_every_usual_form() {
        let m = Masker::new(["s3cr3t-value", "ab", "line one\nline two"]);
        let show = |s: &str| String::from_utf8(m.mask(s.as_bytes())).unwrap();
        assert_eq!(show("token=s3cr3t-value!"), "token=[secure]!");
        assert_eq!(
            show(&format!(
                "b64 {}",
                base64::engine::general_purpose::STANDARD.encode("s3cr3t-value")
            )),
            "b64 [secure]"
        );
        assert_eq!(show("url s3cr3t-value"), "url [secure]");
        assert_eq!(
            show("url a%20b s3cr3t%2Dvalue"),
            "url a%20b s3cr3t%2Dvalue",
            "a different encoding than ours is not guessed"
        );
        assert_eq!(
            show("grab ab"),
            "grab ab",
            "values of 3 characters or fewer are left alone"
        );
        assert_eq!(
            show("> line two"),
            "> [secure]",
            "each line of a multi-line value"
        );
        assert!(
            !format!("{m:?}").contains("s3cr3t"),
            "Debug shows how many values, never what they are"
        );
        let m = Masker::new(["p@ss word/+"]);
        assert_eq!(
            String::from_utf8(m.mask(b"u=p%40ss%20word%2F%2B")).unwrap(),
            "u=[secure]"
        );
    }

    #[tokio::test]
    async fn a_secret_split_across_output_frames_is_still_masked() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut p = LogPipeline::new(Masker::new(["hunter22"]), tx);
        p.push(b"password is hun").await;
        p.push(b"ter22 ok\nnext").await;
        p.finish().await;
        assert_eq!(collect(&mut rx), "password is [secure] ok\nnext\n");
    }

    #[tokio::test]
    async fn lines_said_together_are_masked_and_sent_as_one_chunk() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut p = LogPipeline::new(Masker::new(["hunter22"]), tx);
        p.push(b"the job's unfinished line").await;
        p.say_lines(["-----> Building", "key hunter22\n", "done"])
            .await;
        let said = rx.try_recv().expect("the lines said");
        assert_eq!(
            String::from_utf8_lossy(&said),
            "the job's unfinished line\n-----> Building\nkey [secure]\ndone\n",
            "the job's line is completed first"
        );
        assert!(rx.try_recv().is_err(), "one chunk for the lines said");
    }

    #[test]
    fn markers_are_found_wherever_they_are_and_only_there() {
        for marker in MARKERS {
            assert_eq!(marker.find('_'), Some(MARKER_UNDERSCORE), "{marker}");
        }
        assert_eq!(find_marker(b"plain_text travis_fold:x"), Some(11));
        assert_eq!(find_marker(b"gantry_phase:end:install:rc=0"), Some(0));
        assert_eq!(
            find_marker(b"_travis_time travis_timer: gantry_phase:start"),
            None
        );
        assert_eq!(find_marker(b"\x1b[0Ktravis_time:end:1"), Some(4));
    }

    #[tokio::test]
    async fn markers_get_real_times_and_phases_are_recorded() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut p = LogPipeline::new(Masker::default(), tx);
        p.push(b"travis_fold:start:script\r\x1b[0Ktravis_time:start:00000002\r\x1b[0K$ make\n")
            .await;
        p.push(b"ok\ntravis_time:end:00000002:start=0,finish=0,duration=0,event=script\r\x1b[0Ktravis_fold:end:script\r\x1b[0K\n").await;
        p.push(b"gantry_phase:end:script:rc=1\r\x1b[0K\n").await;
        p.finish().await;
        let log = collect(&mut rx);
        assert!(!log.contains("start=0,finish=0"), "{log}");
        assert!(log.contains("travis_time:end:00000002:start="));
        assert_eq!(p.phases.len(), 1);
        assert_eq!(p.phases[0].phase, "script");
        assert_eq!(p.phases[0].exit_code, 1);
    }

    /// `travis_fold` and `travis_time_start` in a script open folds and
    /// timers inside the phase's: the phase keeps its name, start and time.
    #[tokio::test]
    async fn a_jobs_own_folds_and_timers_nest_inside_its_phase() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut p = LogPipeline::new(Masker::default(), tx);
        p.push(b"travis_fold:start:install\r\x1b[0Ktravis_time:start:00000001\r\x1b[0K$ ./setup\n")
            .await;
        p.push(b"travis_fold:start:deps\r\x1b[0Ktravis_time:start:00010001\r\x1b[0Kfetching\n")
            .await;
        assert_eq!(p.current_phase.as_deref(), Some("install"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        p.push(b"travis_time:end:00010001:start=0,finish=0,duration=0,event=\r\x1b[0Ktravis_fold:end:deps\r\x1b[0Ktravis_time:end:00000001:start=0,finish=0,duration=0,event=install\r\x1b[0Ktravis_fold:end:install\r\x1b[0K\n").await;
        p.push(b"gantry_phase:end:install:rc=0\r\x1b[0K\n").await;
        p.finish().await;
        let log = collect(&mut rx);
        assert!(
            !log.contains("start=0,finish=0"),
            "both timers got times: {log}"
        );
        assert_eq!(p.phases.len(), 1);
        assert_eq!(p.phases[0].phase, "install");
        assert!(p.phases[0].duration_ms >= 20, "{:?}", p.phases[0]);
        assert_eq!(p.current_phase, None);
    }

    /// Output read in bulk must come out as if read line by line, wherever
    /// Docker happens to cut its frames: masked, with phases found.
    #[tokio::test]
    async fn frames_cut_anywhere_give_the_same_log() {
        let mut text = String::new();
        for i in 0..2000 {
            match i % 500 {
                7 => text.push_str(
                    "travis_fold:start:script\r\x1b[0Ktravis_time:start:0000000a\r\x1b[0K$ make\n",
                ),
                9 => text.push_str(
                    "travis_time:end:0000000a:start=0,finish=0,duration=0,event=script\r\x1b[0K\n",
                ),
                11 => text.push_str("gantry_phase:end:script:rc=0\r\x1b[0K\n"),
                13 => text.push_str("the key is hunter22 and hunter22 again\n"),
                _ => text.push_str(&format!("line {i:06} some output\n")),
            }
        }
        text.push_str("no newline at the end");
        let run = |cuts: Vec<usize>| {
            let text = text.clone();
            async move {
                let (tx, mut rx) = mpsc::channel(4096);
                let mut p = LogPipeline::new(Masker::new(["hunter22"]), tx);
                let mut at = 0;
                for cut in cuts.into_iter().chain([text.len()]) {
                    let cut = cut.clamp(at, text.len());
                    p.push(&text.as_bytes()[at..cut]).await;
                    at = cut;
                }
                p.finish().await;
                let phases: Vec<(String, i32)> = p
                    .phases
                    .iter()
                    .map(|ph| (ph.phase.clone(), ph.exit_code))
                    .collect();
                (collect(&mut rx), phases)
            }
        };
        let (whole, phases) = run(vec![]).await;
        // Real times differ from run to run, in value and in length.
        let times = |log: &str| {
            let mut out = String::new();
            for c in log.chars() {
                if !c.is_ascii_digit() {
                    out.push(c);
                } else if !out.ends_with('#') {
                    out.push('#');
                }
            }
            out
        };
        assert_eq!(phases, vec![("script".to_string(), 0); 4]);
        assert_eq!(whole.matches("[secure]").count(), 8, "{whole}");
        assert!(!whole.contains("hunter22"));
        assert!(!whole.contains("start=0,finish=0"));
        assert_eq!(whole.lines().count(), 2001);
        assert!(whole.ends_with("no newline at the end\n"));
        let mut seed = 7u64;
        for _ in 0..20 {
            let mut cuts = Vec::new();
            let mut at = 0;
            while at < text.len() {
                // A small linear congruential step: frames of 1 to 300 bytes.
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                at += 1 + (seed >> 33) as usize % 300;
                cuts.push(at);
            }
            let (cut, cut_phases) = run(cuts).await;
            let (cut, whole) = (times(&cut), times(&whole));
            let differs = cut.lines().zip(whole.lines()).find(|(a, b)| a != b);
            assert_eq!(differs, None, "first line that differs");
            assert_eq!(cut.len(), whole.len());
            assert_eq!(cut_phases, phases);
        }
    }

    #[tokio::test]
    async fn chunks_end_on_line_boundaries() {
        let (tx, mut rx) = mpsc::channel(1024);
        let mut p = LogPipeline::new(Masker::default(), tx);
        let line = "x".repeat(999) + "\n";
        for _ in 0..1000 {
            p.push(line.as_bytes()).await;
        }
        p.finish().await;
        let mut total = 0;
        while let Ok(chunk) = rx.try_recv() {
            assert!(chunk.ends_with(b"\n"));
            assert_eq!(chunk.len() % 1000, 0);
            total += chunk.len();
        }
        assert_eq!(total, 1_000_000);
    }
}
