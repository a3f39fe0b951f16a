//! Any bytes as a pipeline file: parsing and planning must never panic.
#![no_main]

use gantry_pipeline::{parse, BuildContext, Catalog, Event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let parsed = parse(source);
    for d in &parsed.diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "diagnostic without a position: {d:?}");
    }
    if let Some(pipeline) = parsed.pipeline {
        let catalog = Catalog::default();
        let push = BuildContext::push("master");
        let tag = BuildContext::tag("v1.0.0");
        let pr = BuildContext { event: Event::PullRequest, fork: true, ..BuildContext::push("master") };
        for build in [push, tag, pr] {
            let plan = pipeline.plan(&build, &catalog);
            for job in &plan.jobs {
                for deploy in &job.deploy {
                    let _ = deploy.on.check(&build, &job.versions);
                }
            }
        }
    }
});
