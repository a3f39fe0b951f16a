//! ANSI escape codes → HTML. Every byte of the log is escaped: a log line can
//! never become markup or script. SGR codes (colours, bold, italic,
//! underline) become `<span class="…">`; every other escape sequence and the
//! carriage returns of progress bars are dropped.

/// The text style in force at some point of a line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub fg: Option<u8>,
    pub bg: Option<u8>,
    pub bold: bool,
    pub italic: bool,
    pub underline: bool,
}

impl Style {
    fn classes(&self) -> String {
        let mut out = Vec::new();
        if let Some(c) = self.fg {
            out.push(format!("f{c}"));
        }
        if let Some(c) = self.bg {
            out.push(format!("b{c}"));
        }
        if self.bold {
            out.push("bold".into());
        }
        if self.italic {
            out.push("italic".into());
        }
        if self.underline {
            out.push("underline".into());
        }
        out.join(" ")
    }

    /// Applies one SGR sequence's parameters (`1;31`).
    fn apply(&mut self, params: &str) {
        let codes: Vec<u16> = if params.is_empty() {
            vec![0]
        } else {
            params.split(';').map(|p| p.parse().unwrap_or(0)).collect()
        };
        let mut i = 0;
        while i < codes.len() {
            match codes[i] {
                0 => *self = Style::default(),
                1 => self.bold = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => self.bold = false,
                23 => self.italic = false,
                24 => self.underline = false,
                c @ 30..=37 => self.fg = Some((c - 30) as u8),
                39 => self.fg = None,
                c @ 40..=47 => self.bg = Some((c - 40) as u8),
                49 => self.bg = None,
                c @ 90..=97 => self.fg = Some((c - 90 + 8) as u8),
                c @ 100..=107 => self.bg = Some((c - 100 + 8) as u8),
                // 256 colours: 38;5;n / 48;5;n — the 16 basic ones map to classes.
                38 | 48 if codes.get(i + 1) == Some(&5) => {
                    let n = codes.get(i + 2).copied().unwrap_or(0);
                    let colour = (n < 16).then_some(n as u8);
                    if codes[i] == 38 {
                        self.fg = colour;
                    } else {
                        self.bg = colour;
                    }
                    i += 2;
                }
                // Truecolour 38;2;r;g;b: no class for it; skip its parameters.
                38 | 48 if codes.get(i + 1) == Some(&2) => i += 4,
                _ => {}
            }
            i += 1;
        }
    }
}

/// Escapes text for HTML (element content and quoted attributes).
pub fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
}

/// One line of log text (no newline) as HTML, starting in `style`; returns
/// the style in force at its end (colours run on across lines, as in a terminal).
pub fn line_to_html(line: &str, mut style: Style, out: &mut String) -> Style {
    // A progress bar redraws with \r: only what was drawn last is shown.
    let line = match line.trim_end_matches('\r').rsplit_once('\r') {
        Some((_, last)) => last,
        None => line.trim_end_matches('\r'),
    };
    let mut open = false;
    let start_span = |style: &Style, out: &mut String, open: &mut bool| {
        if *open {
            out.push_str("</span>");
            *open = false;
        }
        let classes = style.classes();
        if !classes.is_empty() {
            out.push_str("<span class=\"");
            out.push_str(&classes);
            out.push_str("\">");
            *open = true;
        }
    };
    start_span(&style, out, &mut open);
    let mut rest = line;
    while let Some(pos) = rest.find('\x1b') {
        escape(&rest[..pos], out);
        let after = &rest[pos + 1..];
        if let Some(csi) = after.strip_prefix('[') {
            // CSI: parameters, then one final byte in @..~.
            let end = csi
                .find(|c: char| ('@'..='~').contains(&c))
                .unwrap_or(csi.len());
            let params = &csi[..end];
            let final_byte = csi[end..].chars().next();
            if final_byte == Some('m') {
                style.apply(params);
                start_span(&style, out, &mut open);
            }
            rest = csi
                .get(end + final_byte.map_or(0, char::len_utf8)..)
                .unwrap_or("");
        } else {
            // Another escape (ESC c, OSC …): drop ESC and the next character.
            let mut chars = after.chars();
            chars.next();
            rest = chars.as_str();
        }
    }
    escape(rest, out);
    if open {
        out.push_str("</span>");
    }
    style
}

/// Removes escape sequences: the plain text of a line (for search and markers).
pub fn strip(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(pos) = rest.find('\x1b') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(csi) = after.strip_prefix('[') {
            let end = csi
                .find(|c: char| ('@'..='~').contains(&c))
                .map_or(csi.len(), |e| e + 1);
            rest = &csi[end.min(csi.len())..];
        } else {
            let mut chars = after.chars();
            chars.next();
            rest = chars.as_str();
        }
    }
    out.push_str(rest);
    out.replace('\r', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(line: &str) -> String {
        let mut out = String::new();
        line_to_html(line, Style::default(), &mut out);
        out
    }

    #[test]
    fn colours_and_styles_become_classes() {
        assert_eq!(
            html("\x1b[32;1mThe command exited with 0.\x1b[0m done"),
            "<span class=\"f2 bold\">The command exited with 0.</span> done"
        );
        assert_eq!(html("\x1b[91mred\x1b[39m"), "<span class=\"f9\">red</span>");
        assert_eq!(html("\x1b[38;5;4mblue"), "<span class=\"f4\">blue</span>");
        assert_eq!(html("\x1b[38;2;1;2;3mtrue"), "true");
    }

    #[test]
    fn markup_in_a_log_stays_text() {
        let out = html("<script>alert(1)</script><img src=x onerror=\"alert(2)\">");
        assert!(!out.contains('<'), "{out}");
        assert_eq!(
            out,
            "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;"
        );
        // An escape sequence cannot smuggle markup either.
        let sneaky = html("\x1b[<script>alert(1)</script>m");
        assert!(!sneaky.contains('<'), "{sneaky}");
    }

    #[test]
    fn other_escapes_and_progress_redraws_are_dropped() {
        assert_eq!(
            html("travis_fold:start:install\r\x1b[0Kinstalling"),
            "installing"
        );
        assert_eq!(html("10%\r50%\r100%"), "100%");
        assert_eq!(strip("\x1b[33;1m$ npm ci\x1b[0m"), "$ npm ci");
    }

    #[test]
    fn a_colour_runs_on_to_the_next_line() {
        let mut out = String::new();
        let style = line_to_html("\x1b[31mred starts", Style::default(), &mut out);
        out.clear();
        line_to_html("still red\x1b[0m plain", style, &mut out);
        assert_eq!(out, "<span class=\"f1\">still red</span> plain");
    }
}
