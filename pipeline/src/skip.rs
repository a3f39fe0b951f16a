//! `[skip ci]`-style markers in a commit message.

/// Keywords Travis accepts in `[skip KEYWORD]` and `[KEYWORD skip]`, plus `gantry`.
const KEYWORDS: &[&str] = &[
    "ci",
    "travis",
    "travis ci",
    "travis-ci",
    "travisci",
    "gantry",
];

/// Returns the marker found in the head commit's message, if any
/// (`[skip ci]`, `[ci skip]`, `[skip travis]`, … case-insensitive).
pub fn skip_marker(message: &str) -> Option<String> {
    let lower = message.to_lowercase();
    for keyword in KEYWORDS {
        for marker in [format!("[skip {keyword}]"), format!("[{keyword} skip]")] {
            if lower.contains(&marker) {
                return Some(marker);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::skip_marker;

    #[test]
    fn finds_travis_markers_in_any_case() {
        assert_eq!(
            skip_marker("docs: typo [skip ci]").as_deref(),
            Some("[skip ci]")
        );
        assert_eq!(skip_marker("WIP [CI SKIP]").as_deref(), Some("[ci skip]"));
        assert_eq!(
            skip_marker("x\n\n[skip travis-ci]").as_deref(),
            Some("[skip travis-ci]")
        );
        assert_eq!(skip_marker("fix the skip ci parser"), None);
        assert_eq!(skip_marker("[skip cd]"), None);
    }
}
