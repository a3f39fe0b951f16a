//! Deliberately broken files: every problem is reported at once, at its line and column.

use gantry_pipeline::{parse, Severity};

/// (line, column, severity, a part of the message) for each expected diagnostic, in order.
type Expected<'a> = &'a [(usize, usize, Severity, &'a str)];

fn check(file: &str, expected: Expected) {
    let path = format!("{}/tests/broken/{file}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let parsed = parse(&source);
    let got: Vec<(usize, usize, Severity, String)> = parsed
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column, d.severity, d.message.clone()))
        .collect();
    assert_eq!(got.len(), expected.len(), "{file}: got {got:#?}");
    for (got, want) in got.iter().zip(expected) {
        assert_eq!(
            (got.0, got.1, got.2),
            (want.0, want.1, want.2),
            "{file}: {got:?} vs {want:?}"
        );
        assert!(
            got.3.contains(want.3),
            "{file}: `{}` should mention `{}`",
            got.3,
            want.3
        );
    }
    let errors = expected.iter().any(|e| e.2 == Severity::Error);
    assert_eq!(
        parsed.pipeline.is_none(),
        errors,
        "{file}: a file with errors yields no pipeline"
    );
}

use Severity::{Error, Warning};

#[test]
fn addons_are_checked_and_the_unsupported_ones_reported() {
    check(
        "addons.travis.yml",
        &[
            (7, 9, Error, "`curl wget` is not a Debian package name"),
            (8, 5, Warning, "`addons.apt.sources` are not added"),
            (11, 15, Error, "`11 beta` is not a postgresql version"),
            (12, 11, Error, "`canary` is not a Chrome channel"),
            (15, 7, Error, "`not a host` is not a host name"),
        ],
    );
}

#[test]
fn wrong_types_and_values() {
    check(
        "wrong-types.travis.yml",
        &[
            (
                4,
                3,
                Error,
                "`script` must be a string or a list of strings, found a map",
            ),
            (5, 10, Error, "`timeout` must be minutes or a duration"),
            (
                7,
                10,
                Error,
                "`git.depth` must be a whole number, found a string",
            ),
            (9, 5, Error, "expected NAME=value, found `oops`"),
            (
                10,
                9,
                Error,
                "`stages` must be a list of stage names, found a string",
            ),
            (14, 8, Error, "`acl` must be one of private, public_read"),
            (
                15,
                16,
                Error,
                "`max_threads` must be between 1 and 15, found 99",
            ),
        ],
    );
}

#[test]
fn conditions_point_inside_the_expression() {
    check(
        "conditions.travis.yml",
        &[
            (3, 14, Error, "unquoted `$` variable"),
            (6, 19, Error, "invalid regular expression"),
            (
                10,
                18,
                Error,
                "expected present, blank, true or false after IS",
            ),
        ],
    );
}

#[test]
fn unknown_keys_warn_with_a_suggestion() {
    let path = format!(
        "{}/tests/broken/unknown-keys.travis.yml",
        env!("CARGO_MANIFEST_DIR")
    );
    let parsed = parse(&std::fs::read_to_string(path).unwrap());
    let hints: Vec<(usize, Option<&str>)> = parsed
        .diagnostics
        .iter()
        .map(|d| (d.line, d.hint.as_deref()))
        .collect();
    assert_eq!(
        hints,
        [
            (3, Some("did you mean `script`?")),
            (4, Some("did you mean `before_install`?")),
            (8, Some("did you mean `stage`?")),
            (13, None),
        ]
    );
    assert!(parsed.diagnostics.iter().all(|d| d.severity == Warning));
    assert!(
        parsed.pipeline.is_some(),
        "warnings alone keep the pipeline"
    );
}

#[test]
fn missing_required_options() {
    check(
        "missing-required.travis.yml",
        &[
            (
                4,
                5,
                Error,
                "deploy provider `elasticbeanstalk` needs `bucket`",
            ),
            (6, 5, Error, "deploy provider `ecs` needs `service`"),
            (8, 5, Error, "a deploy entry needs a `provider`"),
            (10, 5, Error, "an image in `images` needs a `name`"),
            (11, 11, Error, "give the image name without a tag"),
        ],
    );
}

#[test]
fn yaml_syntax_errors_point_at_the_line() {
    check(
        "syntax.travis.yml",
        &[(4, 2, Error, "YAML syntax error: did not find expected key")],
    );
}

#[test]
fn nothing_panics_on_odd_input() {
    let odd = [
        "",
        "~",
        "- a\n- b\n",
        "42",
        "script: [[[]]]",
        "env: {global: {jobs: 1}}",
        "jobs: {include: 3}",
        "deploy: [1, 2]",
        "stages: [{if: 'x ='}]",
        "if: '((('",
        "language: [a]",
        "<<: *nope",
        "a: &x [*x]",
        "services: [{}]",
        "image: {}",
        "images: oops",
        "timeout: 99999999999999999999",
        "git: {depth: -1}",
        "\u{feff}language: go",
        "language: go\u{0}",
        "matrix: [{env: {secure: x}}]",
    ];
    for source in odd {
        let parsed = parse(source);
        if let Some(p) = parsed.pipeline {
            let _ = p.plan(
                &gantry_pipeline::BuildContext::default(),
                &gantry_pipeline::Catalog::default(),
            );
        }
        assert!(
            parsed
                .diagnostics
                .iter()
                .all(|d| d.line >= 1 && d.column >= 1),
            "{source:?}"
        );
    }
}
