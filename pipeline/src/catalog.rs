//! Which container image a Travis `language:` (and version) or `services:` name runs in.
//!
//! Travis ran jobs on VMs with every runtime installed; Gantry runs each job in
//! a container, so a language and its version pick an image. The defaults are
//! official Docker Hub images; operators can override any entry (for a mirror,
//! or an image with more tools) with a template where `{version}` is replaced.

use std::collections::BTreeMap;

/// What Gantry knows about one Travis language.
#[derive(Debug, Clone, Copy)]
pub struct Language {
    /// The canonical name (`node_js`, `python`, …).
    pub name: &'static str,
    /// The keys that select a runtime version and expand the matrix (`rvm`, `gemfile`, `jdk` for ruby).
    pub version_keys: &'static [&'static str],
    pub default_version: &'static str,
    pub default_install: &'static [&'static str],
    pub default_script: &'static [&'static str],
}

/// Travis's Python jobs have no default script: without one, the job fails
/// (travis-build's `python.rb`: "Please override the script: key"), rather
/// than passing with no test run.
pub const PYTHON_SCRIPT: &str = "echo 'Python jobs have no default script: set `script:` in the pipeline file (for example `script: pytest`), or `script: skip`' >&2; false";
const NODE_INSTALL: &str = "if [ -f yarn.lock ]; then yarn install --frozen-lockfile; elif [ -f package-lock.json ] || [ -f npm-shrinkwrap.json ]; then npm ci; else npm install; fi";
const NODE_SCRIPT: &str = "if [ -f yarn.lock ]; then yarn test; else npm test; fi";
const JVM_INSTALL: &str = "if [ -f gradlew ]; then ./gradlew assemble; elif [ -f build.gradle ]; then gradle assemble; elif [ -f mvnw ]; then ./mvnw install -DskipTests=true -Dmaven.javadoc.skip=true -B -V; elif [ -f pom.xml ]; then mvn install -DskipTests=true -Dmaven.javadoc.skip=true -B -V; fi";
const JVM_SCRIPT: &str = "if [ -f gradlew ]; then ./gradlew check; elif [ -f build.gradle ]; then gradle check; elif [ -f mvnw ]; then ./mvnw test -B; elif [ -f pom.xml ]; then mvn test -B; else ant test; fi";

/// Every language Gantry maps, with Travis's documented defaults.
pub const LANGUAGES: &[Language] = &[
    Language { name: "node_js", version_keys: &["node_js"], default_version: "lts", default_install: &[NODE_INSTALL], default_script: &[NODE_SCRIPT] },
    Language { name: "python", version_keys: &["python"], default_version: "3", default_install: &["if [ -f requirements.txt ]; then pip install -r requirements.txt; fi"], default_script: &[PYTHON_SCRIPT] },
    Language { name: "ruby", version_keys: &["rvm", "gemfile", "jdk"], default_version: "3", default_install: &["if [ -f Gemfile ]; then bundle install --jobs=3 --retry=3; fi"], default_script: &["if [ -f Gemfile ]; then bundle exec rake; else rake; fi"] },
    Language { name: "go", version_keys: &["go"], default_version: "latest", default_install: &["if [ -f go.mod ]; then go mod download; else go get -t -v ./...; fi"], default_script: &["if [ -f Makefile ]; then make; else go test -v ./...; fi"] },
    Language { name: "rust", version_keys: &["rust"], default_version: "stable", default_install: &["cargo build --verbose"], default_script: &["cargo build --verbose", "cargo test --verbose"] },
    Language { name: "java", version_keys: &["jdk"], default_version: "17", default_install: &[JVM_INSTALL], default_script: &[JVM_SCRIPT] },
    Language { name: "groovy", version_keys: &["jdk"], default_version: "17", default_install: &[JVM_INSTALL], default_script: &[JVM_SCRIPT] },
    Language { name: "scala", version_keys: &["scala", "jdk"], default_version: "17", default_install: &[], default_script: &["sbt ++$TRAVIS_SCALA_VERSION test"] },
    Language { name: "clojure", version_keys: &["lein", "jdk"], default_version: "latest", default_install: &["lein deps"], default_script: &["lein test"] },
    Language { name: "php", version_keys: &["php"], default_version: "cli", default_install: &["if [ -f composer.json ]; then composer install --no-interaction; fi"], default_script: &["phpunit"] },
    Language { name: "c", version_keys: &["compiler"], default_version: "latest", default_install: &[], default_script: &["./configure && make && make test"] },
    Language { name: "cpp", version_keys: &["compiler"], default_version: "latest", default_install: &[], default_script: &["./configure && make && make test"] },
    Language { name: "elixir", version_keys: &["elixir", "otp_release"], default_version: "latest", default_install: &["mix local.rebar --force", "mix local.hex --force", "mix deps.get"], default_script: &["mix test"] },
    Language { name: "erlang", version_keys: &["otp_release"], default_version: "latest", default_install: &["rebar3 get-deps"], default_script: &["rebar3 eunit"] },
    Language { name: "haskell", version_keys: &["ghc"], default_version: "latest", default_install: &["cabal update", "cabal install --only-dependencies --enable-tests"], default_script: &["cabal configure --enable-tests && cabal build && cabal test"] },
    Language { name: "julia", version_keys: &["julia"], default_version: "latest", default_install: &[], default_script: &["julia -e 'using Pkg; Pkg.build(); Pkg.test()'"] },
    Language { name: "r", version_keys: &["r"], default_version: "latest", default_install: &["Rscript -e 'if (file.exists(\"DESCRIPTION\")) { install.packages(\"remotes\"); remotes::install_deps(dependencies = TRUE) }'"], default_script: &["R CMD build . && R CMD check *tar.gz"] },
    Language { name: "crystal", version_keys: &["crystal"], default_version: "latest", default_install: &["shards install"], default_script: &["crystal spec"] },
    Language { name: "dart", version_keys: &["dart"], default_version: "stable", default_install: &["dart pub get"], default_script: &["dart test"] },
    Language { name: "perl", version_keys: &["perl"], default_version: "latest", default_install: &["cpanm --quiet --installdeps --notest ."], default_script: &["prove -lr t"] },
    Language { name: "csharp", version_keys: &["dotnet", "mono"], default_version: "latest", default_install: &["dotnet restore"], default_script: &["dotnet test"] },
    Language { name: "shell", version_keys: &[], default_version: "jammy", default_install: &[], default_script: &[] },
];

/// Names Travis accepts for a language, mapped to the canonical one.
fn canonical_language(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "node_js" | "node" | "nodejs" | "javascript" | "js" => "node_js",
        "python" => "python",
        "ruby" => "ruby",
        "go" | "golang" => "go",
        "rust" => "rust",
        "java" => "java",
        "groovy" => "groovy",
        "scala" => "scala",
        "clojure" => "clojure",
        "php" => "php",
        "c" => "c",
        "cpp" | "c++" => "cpp",
        "elixir" => "elixir",
        "erlang" => "erlang",
        "haskell" => "haskell",
        "julia" => "julia",
        "r" => "r",
        "crystal" => "crystal",
        "dart" => "dart",
        "perl" | "perl6" => "perl",
        "csharp" => "csharp",
        "shell" | "bash" | "sh" | "minimal" | "generic" => "shell",
        _ => return None,
    })
}

/// Looks up a language by any name Travis accepts.
pub fn language(name: &str) -> Option<&'static Language> {
    let canonical = canonical_language(name)?;
    LANGUAGES.iter().find(|l| l.name == canonical)
}

/// Travis languages that need macOS or a VM and cannot run in a Linux container.
pub fn unsupported_language(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "objective-c" | "swift" | "android"
    )
}

/// Every key that expands the build matrix in some language (Travis's "matrix keys").
pub fn all_version_keys() -> impl Iterator<Item = &'static str> {
    let mut keys: Vec<&'static str> = LANGUAGES
        .iter()
        .flat_map(|l| l.version_keys.iter().copied())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
}

/// A sidecar service a job can reach by name.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDefault {
    pub name: &'static str,
    pub image: &'static str,
    /// Names the job reaches it by.
    pub hostnames: &'static [&'static str],
    /// Env that gives Travis's relaxed local access (empty root password, trust auth).
    pub env: &'static [(&'static str, &'static str)],
}

pub const SERVICES: &[ServiceDefault] = &[
    ServiceDefault {
        name: "mysql",
        image: "mysql:8.0",
        hostnames: &["mysql"],
        env: &[
            ("MYSQL_ALLOW_EMPTY_PASSWORD", "yes"),
            ("MYSQL_DATABASE", "test"),
        ],
    },
    ServiceDefault {
        name: "mariadb",
        image: "mariadb:11",
        hostnames: &["mariadb", "mysql"],
        env: &[
            ("MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", "1"),
            ("MARIADB_DATABASE", "test"),
        ],
    },
    ServiceDefault {
        name: "postgresql",
        image: "postgres:16",
        hostnames: &["postgresql", "postgres"],
        env: &[("POSTGRES_HOST_AUTH_METHOD", "trust")],
    },
    ServiceDefault {
        name: "redis",
        image: "redis:7",
        hostnames: &["redis", "redis-server"],
        env: &[],
    },
    ServiceDefault {
        name: "mongodb",
        image: "mongo:7",
        hostnames: &["mongodb", "mongo"],
        env: &[],
    },
    ServiceDefault {
        name: "rabbitmq",
        image: "rabbitmq:3",
        hostnames: &["rabbitmq"],
        env: &[],
    },
    ServiceDefault {
        name: "memcached",
        image: "memcached:1",
        hostnames: &["memcached"],
        env: &[],
    },
    ServiceDefault {
        name: "elasticsearch",
        image: "elasticsearch:8.15.0",
        hostnames: &["elasticsearch"],
        env: &[
            ("discovery.type", "single-node"),
            ("xpack.security.enabled", "false"),
        ],
    },
    ServiceDefault {
        name: "couchdb",
        image: "couchdb:3",
        hostnames: &["couchdb"],
        env: &[("COUCHDB_USER", "admin"), ("COUCHDB_PASSWORD", "admin")],
    },
    ServiceDefault {
        name: "cassandra",
        image: "cassandra:4",
        hostnames: &["cassandra"],
        env: &[],
    },
    ServiceDefault {
        name: "neo4j",
        image: "neo4j:5",
        hostnames: &["neo4j"],
        env: &[("NEO4J_AUTH", "none")],
    },
    ServiceDefault {
        name: "rethinkdb",
        image: "rethinkdb:2",
        hostnames: &["rethinkdb"],
        env: &[],
    },
];

/// Looks up a service by any name Travis accepts (`redis-server`, `postgres`, …).
pub fn service(name: &str) -> Option<&'static ServiceDefault> {
    let canonical = match name {
        "redis-server" => "redis",
        "postgres" => "postgresql",
        "mongo" => "mongodb",
        other => other,
    };
    SERVICES.iter().find(|s| s.name == canonical)
}

/// The image table, with the operator's overrides.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// language → image template, e.g. `python` → `mirror.local/python:{version}`.
    pub language_images: BTreeMap<String, String>,
    /// service → image, e.g. `mysql` → `mysql:5.7`.
    pub service_images: BTreeMap<String, String>,
}

impl Catalog {
    /// The image for `language` at `version` (the language's default version when `None`).
    pub fn language_image(
        &self,
        language: &Language,
        version: Option<&str>,
        dist: Option<&str>,
    ) -> String {
        let version = match language.name {
            "shell" => dist.unwrap_or(language.default_version).to_string(),
            _ => version.unwrap_or(language.default_version).to_string(),
        };
        if let Some(template) = self.language_images.get(language.name) {
            return template.replace("{version}", &version);
        }
        default_image(language.name, &version)
    }

    pub fn service_image(&self, service: &ServiceDefault) -> String {
        self.service_images
            .get(service.name)
            .cloned()
            .unwrap_or_else(|| service.image.to_string())
    }
}

/// Maps a Travis runtime version to an official image tag.
fn default_image(language: &str, version: &str) -> String {
    let v = version.trim();
    let lower = v.to_ascii_lowercase();
    match language {
        "node_js" => {
            let tag = match lower.as_str() {
                "lts/*" | "lts" => "lts".to_string(),
                "node" | "stable" | "latest" | "current" => "latest".to_string(),
                _ if lower.starts_with("lts/") => lower.trim_start_matches("lts/").to_string(),
                _ => lower
                    .trim_start_matches('v')
                    .trim_end_matches(".x")
                    .to_string(),
            };
            format!("node:{tag}")
        }
        "python" => {
            if lower.starts_with("pypy") {
                let major = if lower.starts_with("pypy3") { "3" } else { "2" };
                format!("pypy:{major}")
            } else if lower == "nightly" {
                "python:rc".to_string()
            } else if let Some(base) = lower.strip_suffix("-dev") {
                format!("python:{base}-rc")
            } else {
                format!("python:{lower}")
            }
        }
        "ruby" => match lower.as_str() {
            l if l.starts_with("jruby") => "jruby:latest".to_string(),
            "ruby-head" | "head" => "ruby:latest".to_string(),
            l => format!("ruby:{}", l.trim_start_matches("ruby-")),
        },
        "go" => {
            let tag = match lower.as_str() {
                "tip" | "master" | "stable" | "latest" => "latest".to_string(),
                l => l.trim_end_matches(".x").to_string(),
            };
            format!("golang:{tag}")
        }
        "rust" => match lower.as_str() {
            "stable" | "latest" => "rust:latest".to_string(),
            "beta" | "nightly" => "rustlang/rust:nightly".to_string(),
            l => format!("rust:{l}"),
        },
        "java" | "groovy" | "scala" => {
            let digits: String = lower.chars().filter(char::is_ascii_digit).collect();
            let major = if digits.is_empty() {
                "17".to_string()
            } else {
                digits
            };
            format!("eclipse-temurin:{major}")
        }
        "clojure" => "clojure:latest".to_string(),
        "php" => match lower.as_str() {
            "cli" | "nightly" | "latest" => "php:cli".to_string(),
            l => format!("php:{}-cli", l.trim_end_matches("snapshot")),
        },
        "c" | "cpp" => "gcc:latest".to_string(),
        "elixir" => format!("elixir:{lower}"),
        "erlang" => format!("erlang:{lower}"),
        "haskell" => format!("haskell:{lower}"),
        "julia" => format!(
            "julia:{}",
            if lower == "release" { "latest" } else { &lower }
        ),
        "r" => format!(
            "r-base:{}",
            if matches!(lower.as_str(), "release" | "devel" | "oldrel") {
                "latest"
            } else {
                &lower
            }
        ),
        "crystal" => format!("crystallang/crystal:{lower}"),
        "dart" => format!("dart:{lower}"),
        "perl" => format!("perl:{lower}"),
        "csharp" => format!(
            "mcr.microsoft.com/dotnet/sdk:{}",
            if lower == "latest" { "8.0" } else { &lower }
        ),
        _ => format!("ubuntu:{lower}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(lang: &str, version: Option<&str>) -> String {
        Catalog::default().language_image(language(lang).unwrap(), version, None)
    }

    #[test]
    fn travis_versions_map_to_official_images() {
        assert_eq!(image("node_js", Some("14")), "node:14");
        assert_eq!(image("node_js", Some("lts/*")), "node:lts");
        assert_eq!(image("node_js", Some("node")), "node:latest");
        assert_eq!(image("node_js", None), "node:lts");
        assert_eq!(image("python", Some("3.8")), "python:3.8");
        assert_eq!(image("python", Some("pypy3")), "pypy:3");
        assert_eq!(image("python", Some("3.10-dev")), "python:3.10-rc");
        assert_eq!(image("go", Some("1.12.x")), "golang:1.12");
        assert_eq!(image("go", Some("tip")), "golang:latest");
        assert_eq!(image("rust", Some("nightly")), "rustlang/rust:nightly");
        assert_eq!(image("rust", Some("1.70.0")), "rust:1.70.0");
        assert_eq!(image("java", Some("openjdk8")), "eclipse-temurin:8");
        assert_eq!(image("ruby", Some("2.7")), "ruby:2.7");
        assert_eq!(image("php", Some("7.4")), "php:7.4-cli");
        assert_eq!(image("javascript", Some("12")), "node:12");
        let shell = language("minimal").unwrap();
        assert_eq!(
            Catalog::default().language_image(shell, None, Some("xenial")),
            "ubuntu:xenial"
        );
    }

    #[test]
    fn operators_override_the_table() {
        let mut catalog = Catalog::default();
        catalog
            .language_images
            .insert("python".into(), "mirror.local/py:{version}-slim".into());
        catalog
            .service_images
            .insert("mysql".into(), "mysql:5.7".into());
        assert_eq!(
            catalog.language_image(language("python").unwrap(), Some("3.11"), None),
            "mirror.local/py:3.11-slim"
        );
        assert_eq!(
            catalog.service_image(service("mysql").unwrap()),
            "mysql:5.7"
        );
        assert_eq!(
            catalog.service_image(service("redis-server").unwrap()),
            "redis:7"
        );
    }
}
