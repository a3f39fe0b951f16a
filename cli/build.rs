//! Links `gantry` with packed relative relocations (DT_RELR) where the
//! toolchain and C library support them (GNU ld ≥ 2.38, glibc ≥ 2.36).
//!
//! The binary is position-independent, and its ~90,000 relative relocations
//! take 2 MB as a classic `.rela.dyn` table, which the loader reads at every
//! start and which then stays resident. Packed, they take a few KB. Elsewhere
//! the binary is linked as before.

use std::path::Path;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    let Ok(out) = std::env::var("OUT_DIR") else {
        return;
    };
    if linux_gnu && native && links_and_runs(Path::new(&out)) {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
}

/// Whether a program linked with the flag builds without warnings and starts.
fn links_and_runs(out: &Path) -> bool {
    let source = out.join("relr_probe.c");
    let program = out.join("relr_probe");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(cc)
        .arg(&source)
        .arg("-o")
        .arg(&program)
        .args(["-pie", "-fPIE", FLAG, "-Wl,--fatal-warnings"])
        .output()
        .is_ok_and(|o| o.status.success());
    linked && Command::new(&program).status().is_ok_and(|s| s.success())
}
