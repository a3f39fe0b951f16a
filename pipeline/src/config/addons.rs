//! `addons:`. Of Travis's addons, `apt` is the one most files use: its
//! packages are installed with `apt-get` before `before_install`, in the job's
//! own container. `postgresql` and `mariadb` pick the version of that service
//! and start it. `hosts` names resolve to 127.0.0.1 in the job's container.
//! `artifacts` uploads files to S3 at the end of the job (see `artifacts.rs`).
//! `ssh_known_hosts` adds the hosts' keys to `~/.ssh/known_hosts` before
//! `before_install`, with the image's `ssh-keyscan`. `chrome` installs
//! Debian's Chromium as Travis's `google-chrome` (see `chrome_command`).
//! The others (firefox, …) are reported, each at its line, with what to do
//! instead.

use crate::decode::Decoder;
use crate::diagnostic::Span;
use crate::yaml::{Node, NodeKind};

/// What a job's `addons:` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addons {
    /// Debian packages, in order, each once.
    pub apt_packages: Vec<String>,
    /// Services started at a version (`postgresql: "11"`): name, version, where.
    pub services: Vec<(String, String, Span)>,
    /// Host names that resolve to 127.0.0.1 in the job (`addons.hosts`), each once.
    pub hosts: Vec<String>,
    /// `addons.artifacts`, when on.
    pub artifacts: Option<super::artifacts::Artifacts>,
    /// `addons.ssh_known_hosts`: `host` or `host:port`, each once.
    pub ssh_known_hosts: Vec<String>,
    /// `addons.chrome`: Travis's channel (`stable` or `beta`).
    pub chrome: Option<String>,
}

/// Addons that name a service's version, as Travis starts them.
const SERVICE_ADDONS: &[&str] = &["postgresql", "mariadb"];

pub fn addons(d: &mut Decoder, node: &Node) -> Addons {
    let mut addons = Addons::default();
    let packages = &mut addons.apt_packages;
    for (key, value, span) in d.entries(node, "addons") {
        match key {
            "apt" => apt(d, value, packages),
            // Travis's older spelling.
            "apt_packages" => names(d, value, "addons.apt_packages", packages),
            "hosts" => hosts(d, value, &mut addons.hosts),
            "ssh_known_hosts" => known_hosts(d, value, &mut addons.ssh_known_hosts),
            "artifacts" => addons.artifacts = super::artifacts::decode(d, value),
            "chrome" => addons.chrome = chrome(d, value),
            k if SERVICE_ADDONS.contains(&k) => {
                if let Some(version) = d.string(value, &format!("addons.{k}")) {
                    if is_version(&version.value) {
                        addons.services.push((k.to_string(), version.value, span));
                    } else {
                        d.diags
                            .error(
                                version.span,
                                format!("`{}` is not a {k} version", version.value),
                            )
                            .hint(format!("a version such as `addons: {{{k}: \"11\"}}`"));
                    }
                }
            }
            other => unsupported(d, other, span),
        }
    }
    for list in [
        &mut addons.apt_packages,
        &mut addons.hosts,
        &mut addons.ssh_known_hosts,
    ] {
        let mut seen = std::collections::HashSet::new();
        list.retain(|entry| seen.insert(entry.clone()));
    }
    addons
}

/// A string or a list of strings at `what`, each kept when `valid`, else an
/// error at its line: "`entry` is not {kind}", with `hint`.
fn checked(
    d: &mut Decoder,
    node: &Node,
    what: &str,
    valid: fn(&str) -> bool,
    (kind, hint): (&str, &str),
    out: &mut Vec<String>,
) {
    for entry in d.strings(node, what).unwrap_or_default() {
        if valid(&entry.value) {
            out.push(entry.value);
        } else {
            d.diags
                .error(entry.span, format!("`{}` is not {kind}", entry.value))
                .hint(hint);
        }
    }
}

/// `addons.ssh_known_hosts`: one entry or a list of `host`, `host:port`,
/// an IP address or `[IPv6]:port`, checked here so that a typo fails at its
/// line. Each entry goes to the shell as one word, so nothing in it may be
/// read by the shell.
fn known_hosts(d: &mut Decoder, node: &Node, hosts: &mut Vec<String>) {
    checked(
        d,
        node,
        "addons.ssh_known_hosts",
        is_ssh_host,
        (
            "a host for ssh_known_hosts",
            "a host name or IP address, with `:port` when it is not 22: `git.example.com:2222`",
        ),
        hosts,
    );
}

fn is_ssh_host(entry: &str) -> bool {
    let port_ok = |p: &str| p.parse::<u16>().is_ok_and(|p| p > 0);
    if let Some(rest) = entry.strip_prefix('[') {
        // `[2001:db8::1]:2222`
        return match rest.split_once("]:") {
            Some((ip, port)) => ip.parse::<std::net::Ipv6Addr>().is_ok() && port_ok(port),
            None => false,
        };
    }
    if entry.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    let (host, port) = match entry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (entry, None),
    };
    is_host_name(host) && port.is_none_or(port_ok)
}

/// The command that adds the keys of `hosts`: run in `before_install`,
/// after `addons.apt` (which may install `openssh-client`). The runner
/// defines `gantry_ssh_known_hosts` in every step.
pub fn ssh_known_hosts_command(hosts: &[String]) -> String {
    format!("gantry_ssh_known_hosts {}", hosts.join(" "))
}

/// The Debian package `addons.chrome` installs with the `apt` packages.
pub const CHROME_PACKAGE: &str = "chromium";

/// What makes the installed Chromium Travis's Chrome: `google-chrome` and
/// `google-chrome-stable` on the `PATH` (without the sandbox when the job
/// runs as root, where Chromium cannot use it) and `CHROME_BIN` (read by
/// Karma's launcher); a runner shell helper.
pub const CHROME_COMMAND: &str = "gantry_chrome";

/// The Debian package `services: xvfb` installs with the `apt` packages.
pub const XVFB_PACKAGE: &str = "xvfb";

/// Starts Xvfb on display :99 and exports `DISPLAY=:99.0`, as Travis's
/// `services: xvfb` does; a runner shell helper.
pub const XVFB_COMMAND: &str = "gantry_xvfb";

/// `chrome: stable` (or `beta`): Debian has one Chromium for both.
fn chrome(d: &mut Decoder, node: &Node) -> Option<String> {
    let channel = d.string(node, "addons.chrome")?;
    match channel.value.as_str() {
        "stable" => Some(channel.value),
        "beta" => {
            d.diags
                .warning(
                    channel.span,
                    "`chrome: beta` installs Debian's Chromium, as `stable` does",
                )
                .hint("use an `image:` with Chrome's beta to test against it");
            Some(channel.value)
        }
        other => {
            d.diags
                .error(channel.span, format!("`{other}` is not a Chrome channel"))
                .hint("addons: {chrome: stable}");
            None
        }
    }
}

/// `addons.hosts`: one name or a list, each checked as a host name so that
/// a typo fails at its line, not as a lookup failing halfway through a job.
fn hosts(d: &mut Decoder, node: &Node, hosts: &mut Vec<String>) {
    checked(
        d,
        node,
        "addons.hosts",
        is_host_name,
        (
            "a host name",
            "one name per entry, such as `travis.dev`: letters, digits, `-` and `.`",
        ),
        hosts,
    );
}

fn is_host_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// An image tag: letters, digits, `.`, `_`, `-`.
fn is_version(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The command that installs `packages`: the first command of
/// `before_install`. `gantry_apt_install` is one of the shell helpers the
/// runner defines in every step: it updates the package lists first
/// (container images ship without them; Travis's `update: true`), goes
/// through `sudo` when the image does not run as root, and says what to do
/// when the image has no `apt-get`.
pub fn apt_install_command(packages: &[String]) -> String {
    format!("gantry_apt_install {}", packages.join(" "))
}

fn apt(d: &mut Decoder, node: &Node, packages: &mut Vec<String>) {
    if !matches!(node.kind, NodeKind::Map(_)) {
        // `apt: [curl]` is not Travis's form, but its meaning is plain.
        names(d, node, "addons.apt", packages);
        return;
    }
    for (key, value, span) in d.entries(node, "addons.apt") {
        match key {
            "packages" => names(d, value, "addons.apt.packages", packages),
            // Gantry always updates the lists (see `apt_install_command`).
            "update" => {
                d.bool(value, "addons.apt.update");
            }
            "sources" => {
                d.diags
                    .warning(span, "`addons.apt.sources` are not added; only the image's own package sources are used")
                    .hint("add the source in before_install (a file in /etc/apt/sources.list.d/ and its key), or use an `image:` that has the packages");
            }
            "config" | "dist" => {}
            other => d.unknown_key(
                other,
                span,
                &["packages", "update", "sources"],
                "`addons.apt`",
            ),
        }
    }
}

/// Package names, checked against what Debian allows (a name, then an
/// optional `:arch` or `=version`), so a typo fails at its line and not
/// halfway through a job.
fn names(d: &mut Decoder, node: &Node, what: &str, packages: &mut Vec<String>) {
    checked(
        d,
        node,
        what,
        is_package,
        (
            "a Debian package name",
            "one package per entry: lowercase letters, digits and + - . (then :arch or =version)",
        ),
        packages,
    );
}

fn is_package(name: &str) -> bool {
    let (base, rest) = match name.find([':', '=']) {
        Some(at) => name.split_at(at),
        None => (name, ""),
    };
    let base_ok = base.len() >= 2
        && base.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && base
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let rest_ok = rest
        .chars()
        .skip(1)
        .all(|c| c.is_ascii_alphanumeric() || "+-.~:_".contains(c))
        && rest.len() != 1;
    base_ok && rest_ok
}

fn unsupported(d: &mut Decoder, key: &str, span: Span) {
    let hint = match key {
        "mysql" | "mongodb" | "redis" => {
            "use `services:`; each service runs as a container from the service catalog (its version is set there, or with `image:` on the service)"
        }
        "firefox" => "use an `image:` that has the browser, or install it in before_install",
        _ => "install what it provides in before_install, or use an `image:` that has it",
    };
    d.diags
        .warning(
            span,
            format!("`addons.{key}` is not supported; it is ignored"),
        )
        .hint(hint);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_known_hosts_are_host_names_or_addresses_with_ports() {
        for ok in [
            "github.com",
            "git.example.com:2222",
            "10.0.0.1",
            "10.0.0.1:22",
            "2001:db8::1",
            "[2001:db8::1]:2222",
        ] {
            assert!(is_ssh_host(ok), "{ok}");
        }
        // Nothing the shell or ssh-keyscan would read as more than a host.
        for bad in [
            "",
            "a b",
            "host:0",
            "host:70000",
            "$(reboot)",
            "[::1]",
            "host:22:33x",
            "-oProxyCommand=x",
        ] {
            assert!(!is_ssh_host(bad), "{bad}");
        }
    }

    #[test]
    fn debian_package_names() {
        for ok in [
            "libxslt1-dev",
            "gcc-4.8-arm-linux-gnueabihf",
            "libc6:armhf",
            "g++",
            "python3=3.11.2-1",
            "postgresql-11-postgis-2.5",
        ] {
            assert!(is_package(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "curl wget",
            "Curl",
            "-rf",
            "x; rm -rf /",
            "pkg=",
            "$(id)",
        ] {
            assert!(!is_package(bad), "{bad}");
        }
    }

    #[test]
    fn host_names() {
        for ok in ["travis.dev", "localhost", "db-1.example.com", "a"] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "-x.dev",
            "x-.dev",
            "x dev",
            "127.0.0.1:80",
            "a_b",
            ".dev",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
