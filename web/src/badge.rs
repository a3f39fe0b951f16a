//! `badge.svg`: a build's state in the shields.io "flat" style, so a README
//! badge looks like its neighbours.

/// The colour shields uses for a state.
fn colour(state: &str) -> &'static str {
    match state {
        "passed" => "#4c1",
        "failed" => "#e05d44",
        "errored" => "#9f9f9f",
        "canceled" => "#9f9f9f",
        "running" | "queued" => "#dfb317",
        _ => "#9f9f9f",
    }
}

/// Verdana 11px widths are what shields measures; ~6.5 px a character is close.
fn width(text: &str) -> u32 {
    10 + (text.chars().count() as u32 * 65).div_ceil(10)
}

/// An SVG badge: `label | state`.
pub fn svg(label: &str, state: &str) -> String {
    let mut l = String::new();
    crate::ansi::escape(label, &mut l);
    let mut r = String::new();
    crate::ansi::escape(state, &mut r);
    let (lw, rw) = (width(label), width(state));
    let total = lw + rw;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{l}: {r}"><title>{l}: {r}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{rw}" height="20" fill="{c}"/><rect width="{total}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="15" fill="#010101" fill-opacity=".3">{l}</text><text x="{lx}" y="14">{l}</text><text x="{rx}" y="15" fill="#010101" fill-opacity=".3">{r}</text><text x="{rx}" y="14">{r}</text></g></svg>"##,
        c = colour(state),
        lx = lw / 2,
        rx = lw + rw / 2,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_badge_names_the_state_in_its_colour() {
        let passed = svg("build", "passed");
        assert!(passed.starts_with("<svg") && passed.ends_with("</svg>"));
        assert!(passed.contains("aria-label=\"build: passed\""));
        assert!(passed.contains("fill=\"#4c1\""));
        assert!(svg("build", "failed").contains("#e05d44"));
        assert!(!svg("<b>", "x").contains("<b>"), "labels are escaped");
    }
}
