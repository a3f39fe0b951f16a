//! Travis's `import:`: which files are read, in which order, and how they
//! merge (travis-ci docs, "Importing Shared Build Configuration").

use gantry_pipeline::import::{Source, MAX_IMPORTS};
use gantry_pipeline::{Assembly, BuildContext, Catalog, Parsed, Phase, Plan, Severity};
use std::collections::HashMap;

/// Reads `main` with its imports served from `files` (keyed as the
/// assembly names them), and what it asked for, in order.
fn assemble(main: &str, files: &[(&str, &str)], build: &BuildContext) -> (Parsed, Vec<String>) {
    let files: HashMap<&str, &str> = files.iter().copied().collect();
    let mut assembly = Assembly::new(".travis.yml", main, Some(build));
    let mut asked = Vec::new();
    while let Some(source) = assembly.next() {
        let name = source.to_string();
        let text = files.get(name.as_str()).map(|t| t.to_string());
        asked.push(name);
        assembly.supply(Ok(text));
    }
    (assembly.finish(), asked)
}

fn plan(main: &str, files: &[(&str, &str)]) -> Plan {
    let build = BuildContext::push("master");
    let (parsed, _) = assemble(main, files, &build);
    assert!(!parsed.has_errors(), "{:#?}", parsed.diagnostics);
    parsed
        .pipeline
        .expect("a pipeline")
        .plan(&build, &Catalog::default())
}

fn script(plan: &Plan) -> Vec<String> {
    plan.jobs[0].phases[&Phase::Script].clone()
}

#[test]
fn an_imported_file_adds_its_keys_and_appends_its_lists() {
    let p = plan(
        "import: ci/shared.yml\nlanguage: python\nscript: [make test]\n",
        &[(
            "ci/shared.yml",
            "language: ruby\npython: ['3.11', '3.12']\nscript: [make lint]\nbefore_install: echo shared\n",
        )],
    );
    // Lists from both; the importing file's value wins where both set one.
    assert_eq!(p.jobs.len(), 2, "the imported matrix applies");
    assert_eq!(p.jobs[0].language, "python");
    assert_eq!(script(&p), ["make test", "make lint"]);
    assert_eq!(p.jobs[0].phases[&Phase::BeforeInstall], ["echo shared"]);
}

#[test]
fn each_merge_mode_joins_as_travis_documents() {
    let shared = "script: [shared]\naddons:\n  hosts: [shared.local]\n  apt:\n    packages: [jq]\n";
    let main = |mode: &str| {
        format!("import:\n  - source: shared.yml\n    mode: {mode}\nscript: [mine]\naddons:\n  hosts: [mine.local]\n")
    };
    let hosts = |p: &Plan| p.jobs[0].hosts.clone();

    let p = plan(&main("deep_merge_append"), &[("shared.yml", shared)]);
    assert_eq!(script(&p), ["mine", "shared"]);
    assert_eq!(hosts(&p), ["mine.local", "shared.local"]);

    let p = plan(&main("deep_merge_prepend"), &[("shared.yml", shared)]);
    assert_eq!(script(&p), ["shared", "mine"]);
    assert_eq!(hosts(&p), ["shared.local", "mine.local"]);

    // Maps merge, lists of the importing file win.
    let p = plan(&main("deep_merge"), &[("shared.yml", shared)]);
    assert_eq!(script(&p), ["mine"]);
    assert_eq!(hosts(&p), ["mine.local"]);
    let (parsed, _) = assemble(
        &main("deep_merge"),
        &[("shared.yml", shared)],
        &BuildContext::push("master"),
    );
    let apt = &parsed.pipeline.expect("a pipeline");
    assert!(
        format!("{:?}", apt.config()).contains("jq"),
        "apt packages merged in"
    );

    // Shallow: a top-level key of the importing file wins whole.
    let (parsed, _) = assemble(
        &main("merge"),
        &[("shared.yml", shared)],
        &BuildContext::push("master"),
    );
    assert!(!format!("{:?}", parsed.pipeline.expect("a pipeline").config()).contains("jq"));
}

#[test]
fn imports_are_read_depth_first_each_once_and_relative_to_their_repository() {
    let build = BuildContext::push("master");
    let (parsed, asked) = assemble(
        "import:\n  - acme/shared:ci/base.yml@v2\n  - local.yml\nscript: [mine]\n",
        &[
            (
                "acme/shared:ci/base.yml@v2",
                "import: [steps.yml, .travis.yml]\nscript: [base]\n",
            ),
            // Relative to acme/shared, at the importer's ref.
            (
                "acme/shared:steps.yml@v2",
                "import: acme/shared:ci/base.yml@v2\nscript: [steps]\n",
            ),
            ("acme/shared:.travis.yml@v2", "script: [theirs]\n"),
            ("local.yml", "import: .travis.yml@master\nscript: [local]\n"),
            (".travis.yml@master", "script: [main on master]\n"),
        ],
        &build,
    );
    assert_eq!(
        asked,
        [
            "acme/shared:ci/base.yml@v2",
            "acme/shared:steps.yml@v2",
            "acme/shared:.travis.yml@v2",
            "local.yml",
            ".travis.yml@master",
        ],
        "the cycle back to base.yml is not read again"
    );
    let p = parsed
        .pipeline
        .expect("a pipeline")
        .plan(&build, &Catalog::default());
    assert_eq!(
        script(&p),
        ["mine", "base", "steps", "theirs", "local", "main on master"]
    );
}

#[test]
fn a_condition_decides_whether_a_file_is_imported() {
    let main = "import:\n  - source: deploy.yml\n    if: branch = master\n  - source: other.yml\n    if: branch != master\nscript: [test]\n";
    let files = [
        ("deploy.yml", "script: [deploy]\n"),
        ("other.yml", "script: [other]\n"),
    ];
    let (_, asked) = assemble(main, &files, &BuildContext::push("master"));
    assert_eq!(asked, ["deploy.yml"]);
    let (_, asked) = assemble(main, &files, &BuildContext::push("feature"));
    assert_eq!(asked, ["other.yml"]);
}

#[test]
fn problems_in_an_imported_file_name_the_file_and_its_line() {
    let (parsed, _) = assemble(
        "import: ci/shared.yml\nscript: [test]\n",
        &[(
            "ci/shared.yml",
            "script: [lint]\n\nstages:\n  - name: deploy\n    iff: branch = master\n",
        )],
        &BuildContext::push("master"),
    );
    assert!(parsed.has_errors() || !parsed.diagnostics.is_empty());
    let d = parsed
        .diagnostics
        .iter()
        .find(|d| d.message.contains("iff"))
        .unwrap_or_else(|| panic!("{:#?}", parsed.diagnostics));
    assert_eq!(d.file.as_deref(), Some("ci/shared.yml"));
    assert_eq!((d.line, d.column), (5, 5));
    assert!(d.to_string().starts_with("ci/shared.yml:5:5: "), "{d}");

    let (parsed, _) = assemble(
        "import: ci/shared.yml\nscript: [test]\n",
        &[("ci/shared.yml", "script: [unclosed\n")],
        &BuildContext::push("master"),
    );
    let d = &parsed.diagnostics[0];
    assert_eq!(d.file.as_deref(), Some("ci/shared.yml"));
    assert!(d.message.contains("YAML syntax error"), "{d}");
    assert!(parsed.pipeline.is_none());
}

#[test]
fn a_missing_or_unreadable_import_is_an_error_at_its_entry() {
    let build = BuildContext::push("master");
    let (parsed, _) = assemble("script: [test]\nimport:\n  - gone.yml\n", &[], &build);
    let d = &parsed.diagnostics[0];
    assert_eq!(d.severity, Severity::Error);
    assert_eq!((d.file.as_deref(), d.line, d.column), (None, 3, 5));
    assert!(
        d.message.contains("cannot import `gone.yml`: no such file"),
        "{d}"
    );

    let mut assembly = Assembly::new(
        ".travis.yml",
        "import: acme/private:x.yml\nscript: [t]\n",
        Some(&build),
    );
    assembly.supply(Err(
        "acme/private is private and this repository is public".into()
    ));
    let parsed = assembly.finish();
    assert!(
        parsed.diagnostics[0].message.contains("is private"),
        "{:?}",
        parsed.diagnostics
    );
    assert!(parsed.pipeline.is_none());
}

#[test]
fn bad_import_entries_are_refused_with_what_to_write() {
    let build = BuildContext::push("master");
    for (entry, expected) in [
        ("../outside.yml", "leaves the repository"),
        ("'ci/x.yml?ref=main'", "cannot have"),
        ("ci/%2e%2e/x.yml", "cannot have"),
        ("acme:x.yml", "is not a repository"),
        ("../acme:x.yml", "is not a repository"),
        ("x.yml@", "names no ref"),
        (
            "{source: x.yml, mode: overwrite}",
            "unknown merge mode `overwrite`",
        ),
        ("{mode: merge}", "needs a `source`"),
        ("{source: x.yml, iff: branch = x}", "iff"),
    ] {
        let (parsed, asked) = assemble(&format!("import: [{entry}]\nscript: [t]\n"), &[], &build);
        assert!(asked.is_empty(), "{entry}: {asked:?}");
        assert!(
            parsed
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error && d.message.contains(expected)),
            "{entry}: {:#?}",
            parsed.diagnostics
        );
    }
}

#[test]
fn at_most_25_files_are_imported() {
    let list: Vec<String> = (0..=MAX_IMPORTS).map(|i| format!("f{i}.yml")).collect();
    let files: Vec<(String, String)> = list
        .iter()
        .map(|f| (f.clone(), "env: [A=1]\n".to_string()))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (parsed, asked) = assemble(
        &format!("import: [{}]\nscript: [t]\n", list.join(", ")),
        &files,
        &BuildContext::push("master"),
    );
    assert_eq!(asked.len(), MAX_IMPORTS);
    assert!(parsed
        .diagnostics
        .iter()
        .any(|d| d.message.contains("more than 25 imports: `f25.yml`")));
}

#[test]
fn a_file_read_alone_says_its_imports_were_not_read() {
    let parsed = gantry_pipeline::parse("import: shared.yml\nscript: [t]\n");
    assert!(!parsed.has_errors());
    assert!(
        parsed.diagnostics[0]
            .message
            .contains("`shared.yml` was not read"),
        "{:?}",
        parsed.diagnostics
    );
}

#[test]
fn sources_read_as_travis_writes_them() {
    let s = Source::parse("travis-ci/build-configs:rubies.yml@main").expect("valid");
    assert_eq!(s.repo.as_deref(), Some("travis-ci/build-configs"));
    assert_eq!(
        (s.path.as_str(), s.git_ref.as_deref()),
        ("rubies.yml", Some("main"))
    );
    let s = Source::parse("./path/to/other.yml").expect("valid");
    assert_eq!(
        (s.repo, s.path.as_str(), s.git_ref),
        (None, "path/to/other.yml", None)
    );
}

/// A build asked for with a config of its own: the request's keys win,
/// then its imports, then the pipeline file, then the file's imports.
#[test]
fn a_requests_config_goes_over_the_pipeline_file_as_its_mode_says() {
    use gantry_pipeline::import::Mode;
    let build = BuildContext::push("master");
    let file = "import: ci/base.yml\nlanguage: python\nscript: [pytest]\nenv: [FROM=file]\n";
    let request =
        r#"{"import": ["ci/extra.yml"], "script": ["make deploy"], "env": ["FROM=request"]}"#;
    let run = |mode: Option<Mode>| {
        let mut assembly =
            Assembly::with_request(request, mode, Some((".travis.yml", file)), Some(&build));
        let mut asked = Vec::new();
        while let Some(source) = assembly.next() {
            asked.push(source.to_string());
            let text = match source.path.as_str() {
                "ci/base.yml" => "script: [base]\nbefore_script: [echo base]\n",
                _ => "script: [extra]\n",
            };
            assembly.supply(Ok(Some(text.into())));
        }
        let parsed = assembly.finish();
        assert!(!parsed.has_errors(), "{:#?}", parsed.diagnostics);
        let plan = parsed
            .pipeline
            .expect("a pipeline")
            .plan(&build, &Catalog::default());
        (asked, plan)
    };

    let (asked, p) = run(Some(Mode::DeepMergeAppend));
    assert_eq!(asked, ["ci/extra.yml", "ci/base.yml"]);
    assert_eq!(script(&p), ["make deploy", "extra", "pytest", "base"]);
    assert_eq!(p.jobs[0].language, "python", "the file's keys stay");
    assert_eq!(p.jobs[0].phases[&Phase::BeforeScript], ["echo base"]);

    let (_, p) = run(Some(Mode::Merge));
    // The file's `script` gives way whole; the imports join as their own modes say.
    assert_eq!(script(&p), ["make deploy", "extra", "base"]);
    assert_eq!(p.jobs[0].language, "python");

    // Replace: the pipeline file is not read at all.
    let (asked, p) = run(None);
    assert_eq!(asked, ["ci/extra.yml"]);
    assert_eq!(script(&p), ["make deploy", "extra"]);
    assert_eq!(p.jobs[0].language, "ruby", "Travis's default language");

    // A request's mistake names the request.
    let parsed = Assembly::with_request("[1, 2]", None, None, Some(&build)).finish();
    assert!(
        parsed.diagnostics[0]
            .message
            .contains("must be a map of keys"),
        "{:?}",
        parsed.diagnostics
    );
    let parsed =
        Assembly::with_request("{\"script\": {\"run\": 1}}", None, None, Some(&build)).finish();
    assert_eq!(
        parsed.diagnostics[0].file.as_deref(),
        Some("the request's config")
    );
}

/// Asserts that one of `parsed`'s diagnostics says `words`.
fn says(parsed: &Parsed, words: &str) {
    let messages: Vec<&str> = parsed
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(messages.iter().any(|m| m.contains(words)), "{messages:?}");
}

#[test]
fn imports_together_are_bounded_in_bytes_and_in_nodes() {
    use gantry_pipeline::import::MAX_IMPORTED_BYTES;
    let build = BuildContext::push("master");
    // Each file is fine alone; together they are too much.
    let big = format!(
        "env: [{}]\n",
        vec!["A=1"; MAX_IMPORTED_BYTES / 8].join(", ")
    );
    let (parsed, asked) = assemble(
        "import: [a.yml, b.yml]\nscript: [t]\n",
        &[("a.yml", &big), ("b.yml", &big)],
        &build,
    );
    assert_eq!(asked.len(), 2);
    says(
        &parsed,
        "cannot import `b.yml`: the imported files hold more than 1024 KiB together",
    );

    // An alias bomb under the per-file limit, imported many times over.
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
    let names: Vec<String> = (0..MAX_IMPORTS).map(|i| format!("f{i}.yml")).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), bomb)).collect();
    let (parsed, _) = assemble(
        &format!("import: [{}]\nscript: [t]\n", names.join(", ")),
        &files,
        &build,
    );
    says(&parsed, "expand to more than 200000 nodes together");
}
