//! Any text as an `if:` condition: parsing and evaluating must never panic.
#![no_main]

use gantry_pipeline::condition::{parse, Facts};
use gantry_pipeline::BuildContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    if let Ok(condition) = parse(source) {
        let build = BuildContext::tag("v1");
        let env = vec![("A".to_string(), "B".to_string())];
        let _ = condition.eval(&Facts::build(&build, &env));
    }
});
