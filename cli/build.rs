//! Two link-time layouts for the `gantry` and `gantry-runner` binaries:
//!
//! - Packed relative relocations (DT_RELR) where the toolchain and C library
//!   support them (GNU ld ≥ 2.38, glibc ≥ 2.36). The binary is
//!   position-independent, and its ~90,000 relative relocations take 2 MB as
//!   a classic `.rela.dyn` table, which the loader reads at every start and
//!   which then stays resident. Packed, they take a few KB.
//! - In release builds linked by LLD (Rust's default linker on x86-64 Linux
//!   since 1.90), the functions a server or runner runs while starting,
//!   idling and running jobs come first, in the order of `link-order/<bin>.txt`
//!   (made by `scripts/link-order.sh`). The kernel maps a binary's code in
//!   64 KiB to 1 MiB windows around each page it runs; packed together, the
//!   few MB of code a server runs fill few windows instead of touching most
//!   of the 36 MB (an idle server's code pages: 13 MiB → under 4 MiB). A
//!   symbol the list names but the binary lacks is skipped, so a list older
//!   than the code only packs less. The names hold for the build the lists
//!   were made from, `cargo build --release -p gantry`: built beside other
//!   packages, dependencies get other features and other symbol names
//!   (`scripts/link-order.sh --check` tells). Gantry's crates are one
//!   codegen unit each in release, so their functions keep their names when
//!   other code in the crate changes.
//!
//! Elsewhere the binaries are linked as before.

use std::path::{Path, PathBuf};
use std::process::Command;

const RELR: &str = "-Wl,-z,pack-relative-relocs";
const BINARIES: [&str; 2] = ["gantry", "gantry-runner"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    let Ok(out) = std::env::var("OUT_DIR") else {
        return;
    };
    let out = Path::new(&out);
    if !(linux_gnu && native) {
        return;
    }
    if links_and_runs(out) {
        println!("cargo:rustc-link-arg-bins={RELR}");
    }
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        order_functions(out);
    }
}

/// Whether a C program linked with packed relocations builds without
/// warnings and starts.
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
        .args(["-pie", "-fPIE", RELR, "-Wl,--fatal-warnings"])
        .output()
        .is_ok_and(|o| o.status.success());
    linked && Command::new(&program).status().is_ok_and(|s| s.success())
}

/// Passes each binary's function order to the linker, when rustc's linker
/// takes one (LLD does; GNU ld does not know the flag).
fn order_functions(out: &Path) {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("link-order");
    println!("cargo:rerun-if-changed={}", dir.display());
    let lists: Vec<(&str, PathBuf)> = BINARIES
        .iter()
        .map(|bin| (*bin, dir.join(format!("{bin}.txt"))))
        .filter(|(_, list)| list.is_file())
        .collect();
    for (_, list) in &lists {
        println!("cargo:rerun-if-changed={}", list.display());
    }
    let Some((_, probe_list)) = lists.first() else {
        return;
    };
    if !rustc_links_with_order(out, probe_list) {
        println!("cargo:warning=the linker does not take a function order (--symbol-ordering-file): the binaries are linked without one");
        return;
    }
    for (bin, list) in &lists {
        println!(
            "cargo:rustc-link-arg-bin={bin}=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bin={bin}=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether rustc, as this build calls it, links a program with the order.
fn rustc_links_with_order(out: &Path, list: &Path) -> bool {
    let source = out.join("order_probe.rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut command = Command::new(rustc);
    // The flags cargo passes to every crate (a `linker` among them).
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        command.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        command.arg(format!("-Clinker={linker}"));
    }
    command
        .arg(&source)
        .arg("-o")
        .arg(out.join("order_probe"))
        .arg(format!(
            "-Clink-arg=-Wl,--symbol-ordering-file={}",
            list.display()
        ))
        .arg("-Clink-arg=-Wl,--no-warn-symbol-ordering")
        .output()
        .is_ok_and(|o| o.status.success())
}
