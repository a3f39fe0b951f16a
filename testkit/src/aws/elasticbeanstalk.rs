//! An emulator of the Elastic Beanstalk operations Gantry calls —
//! CreateApplicationVersion, UpdateEnvironment, DescribeEnvironments,
//! DescribeEvents — on the AWS Query protocol (form-encoded requests, XML
//! responses in EB's namespace), so `aws-sdk-elasticbeanstalk` talks to it
//! unchanged. moto implements none of these.
//!
//! Like EB, an environment goes Updating → Ready after an update and records
//! events on the way. The bundle is really read back from S3 (moto): a zip
//! with a `Dockerfile` or a valid `Dockerrun.aws.json` deploys (health
//! Green); anything else fails with EB's own ERROR event and health Red, as
//! does the next deployment after [`ElasticBeanstalk::fail_next_deployment`].

use super::{iso8601, request_id, s3_get, xml_escape};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Form, Router};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const NS: &str = "http://elasticbeanstalk.amazonaws.com/docs/2010-12-01/";

#[derive(Debug, Clone)]
pub struct Version {
    pub label: String,
    pub bucket: String,
    pub key: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub app: String,
    pub name: String,
    pub id: String,
    pub version_label: String,
    pub status: String,
    pub health: String,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub date: SystemTime,
    pub app: String,
    pub env: String,
    pub version: String,
    pub severity: String,
    pub message: String,
}

#[derive(Default)]
struct Inner {
    apps: HashMap<String, Vec<Version>>,
    envs: HashMap<String, Environment>,
    events: Vec<Event>,
    fail_next: bool,
    /// How long each step of a deployment takes.
    step: Duration,
    /// Every action called, in order.
    calls: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    s3: String,
}

pub struct ElasticBeanstalk {
    shared: Shared,
    url: String,
    _server: tokio::task::JoinHandle<()>,
}

impl ElasticBeanstalk {
    /// Serves on a random 127.0.0.1 port; bundles are read from the S3 endpoint `s3`.
    pub async fn start(s3: &str) -> ElasticBeanstalk {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                step: Duration::from_millis(400),
                ..Default::default()
            })),
            s3: s3.to_string(),
        };
        let app = Router::new()
            .route("/", axum::routing::post(handle))
            .with_state(shared.clone());
        let (url, server) = crate::serve(app).await;
        ElasticBeanstalk {
            shared,
            url,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// An application with an environment already Ready and Green on `version`.
    pub fn create_environment(&self, app: &str, env: &str, version: &str) {
        let mut inner = self.shared.inner.lock().expect("lock");
        inner
            .apps
            .entry(app.to_string())
            .or_default()
            .push(Version {
                label: version.to_string(),
                bucket: String::new(),
                key: String::new(),
                description: "the version serving before the tests".into(),
            });
        inner.envs.insert(
            env.to_string(),
            Environment {
                app: app.to_string(),
                name: env.to_string(),
                id: format!("e-{}", &request_id()[..10]),
                version_label: version.to_string(),
                status: "Ready".into(),
                health: "Green".into(),
            },
        );
    }

    /// Makes each of a deployment's two steps take `step` (default 400 ms).
    pub fn set_deployment_step(&self, step: Duration) {
        self.shared.inner.lock().expect("lock").step = step;
    }

    /// The next deployment fails on the instances, whatever its bundle.
    pub fn fail_next_deployment(&self) {
        self.shared.inner.lock().expect("lock").fail_next = true;
    }

    pub fn environment(&self, name: &str) -> Option<Environment> {
        self.shared
            .inner
            .lock()
            .expect("lock")
            .envs
            .get(name)
            .cloned()
    }

    pub fn versions(&self, app: &str) -> Vec<Version> {
        let inner = self.shared.inner.lock().expect("lock");
        inner.apps.get(app).cloned().unwrap_or_default()
    }

    pub fn events(&self, env: &str) -> Vec<Event> {
        let inner = self.shared.inner.lock().expect("lock");
        inner
            .events
            .iter()
            .filter(|e| e.env == env)
            .cloned()
            .collect()
    }

    /// The actions called so far, in order (`UpdateEnvironment`, …).
    pub fn calls(&self) -> Vec<String> {
        self.shared.inner.lock().expect("lock").calls.clone()
    }
}

fn error(code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(message),
        request_id()
    );
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "text/xml")],
        body,
    )
        .into_response()
}

fn ok(action: &str, result: &str) -> Response {
    let body = format!(
        "<{action}Response xmlns=\"{NS}\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        request_id()
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}

fn env_xml(e: &Environment) -> String {
    format!(
        "<EnvironmentName>{}</EnvironmentName><EnvironmentId>{}</EnvironmentId><ApplicationName>{}</ApplicationName><VersionLabel>{}</VersionLabel><SolutionStackName>64bit Amazon Linux 2023 v4.3.0 running Docker</SolutionStackName><Status>{}</Status><Health>{}</Health><Tier><Name>WebServer</Name><Type>Standard</Type><Version>1.0</Version></Tier><DateUpdated>{}</DateUpdated>",
        xml_escape(&e.name),
        e.id,
        xml_escape(&e.app),
        xml_escape(&e.version_label),
        e.status,
        e.health,
        iso8601(SystemTime::now())
    )
}

fn record(inner: &mut Inner, env: &Environment, version: &str, severity: &str, message: &str) {
    inner.events.push(Event {
        date: SystemTime::now(),
        app: env.app.clone(),
        env: env.name.clone(),
        version: version.to_string(),
        severity: severity.to_string(),
        message: message.to_string(),
    });
}

async fn handle(
    State(shared): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let action = form.get("Action").cloned().unwrap_or_default();
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    shared
        .inner
        .lock()
        .expect("lock")
        .calls
        .push(action.clone());
    match action.as_str() {
        "CreateApplicationVersion" => {
            let (app, label) = (get("ApplicationName"), get("VersionLabel"));
            let (bucket, key) = (get("SourceBundle.S3Bucket"), get("SourceBundle.S3Key"));
            if s3_get(&shared.s3, &bucket, &key).await.is_none() {
                return error(
                    "InvalidParameterCombination",
                    &format!("Unable to download from S3 location (Bucket: {bucket}  Key: {key}). Reason: Not Found"),
                );
            }
            let mut inner = shared.inner.lock().expect("lock");
            let Some(versions) = inner.apps.get_mut(&app) else {
                return error(
                    "InvalidParameterValue",
                    &format!("No Application named '{app}' found."),
                );
            };
            if versions.iter().any(|v| v.label == label) {
                return error(
                    "InvalidParameterValue",
                    &format!("Application Version {label} already exists."),
                );
            }
            let description = get("Description");
            versions.push(Version {
                label: label.clone(),
                bucket: bucket.clone(),
                key: key.clone(),
                description: description.clone(),
            });
            ok(
                "CreateApplicationVersion",
                &format!(
                    "<ApplicationVersion><ApplicationName>{}</ApplicationName><VersionLabel>{}</VersionLabel><Description>{}</Description><SourceBundle><S3Bucket>{}</S3Bucket><S3Key>{}</S3Key></SourceBundle><DateCreated>{now}</DateCreated><DateUpdated>{now}</DateUpdated><Status>UNPROCESSED</Status></ApplicationVersion>",
                    xml_escape(&app), xml_escape(&label), xml_escape(&description), xml_escape(&bucket), xml_escape(&key),
                    now = iso8601(SystemTime::now())
                ),
            )
        }
        "DescribeEnvironments" => {
            let app = form.get("ApplicationName");
            let names: Vec<&String> = form
                .iter()
                .filter(|(k, _)| k.starts_with("EnvironmentNames.member."))
                .map(|(_, v)| v)
                .collect();
            let inner = shared.inner.lock().expect("lock");
            let members: String = inner
                .envs
                .values()
                .filter(|e| app.is_none_or(|a| &e.app == a))
                .filter(|e| names.is_empty() || names.contains(&&e.name))
                .map(|e| format!("<member>{}</member>", env_xml(e)))
                .collect();
            ok(
                "DescribeEnvironments",
                &format!("<Environments>{members}</Environments>"),
            )
        }
        "DescribeEvents" => {
            let since = form
                .get("StartTime")
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok());
            let env = form.get("EnvironmentName");
            let inner = shared.inner.lock().expect("lock");
            // EB lists the newest first.
            let members: String = inner
                .events
                .iter()
                .rev()
                .filter(|e| env.is_none_or(|n| &e.env == n))
                .filter(|e| since.is_none_or(|s| e.date >= s))
                .map(|e| {
                    format!(
                        "<member><EventDate>{}</EventDate><Message>{}</Message><ApplicationName>{}</ApplicationName><EnvironmentName>{}</EnvironmentName><VersionLabel>{}</VersionLabel><Severity>{}</Severity><RequestId>{}</RequestId></member>",
                        iso8601(e.date), xml_escape(&e.message), xml_escape(&e.app), xml_escape(&e.env), xml_escape(&e.version), e.severity, request_id()
                    )
                })
                .collect();
            ok("DescribeEvents", &format!("<Events>{members}</Events>"))
        }
        "UpdateEnvironment" => {
            let (name, label) = (get("EnvironmentName"), get("VersionLabel"));
            let mut inner = shared.inner.lock().expect("lock");
            let Some(env) = inner.envs.get(&name).cloned() else {
                return error(
                    "InvalidParameterValue",
                    &format!("No Environment found for EnvironmentName = '{name}'."),
                );
            };
            if env.status != "Ready" {
                return error("InvalidParameterValue", &format!("Environment named {name} is in an invalid state for this operation. Must be Ready."));
            }
            let Some(version) = inner
                .apps
                .get(&env.app)
                .and_then(|v| v.iter().find(|v| v.label == label))
                .cloned()
            else {
                return error(
                    "InvalidParameterValue",
                    &format!("No Application Version named '{label}' found."),
                );
            };
            let fail = std::mem::take(&mut inner.fail_next);
            let updating = Environment {
                status: "Updating".into(),
                health: "Grey".into(),
                ..env.clone()
            };
            inner.envs.insert(name.clone(), updating.clone());
            record(
                &mut inner,
                &updating,
                &label,
                "INFO",
                "Environment update is starting.",
            );
            drop(inner);
            tokio::spawn(deployment(shared.clone(), updating.clone(), version, fail));
            ok("UpdateEnvironment", &env_xml(&updating))
        }
        other => error(
            "InvalidAction",
            &format!("The action {other} is not valid for this web service."),
        ),
    }
}

/// Why a bundle cannot run on EB's Docker platform, in EB's words.
fn check_bundle(bytes: &[u8]) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("Instance deployment failed: the source bundle is not a valid zip file ({e}). The deployment failed."))?;
    if zip.by_name("Dockerfile").is_ok() {
        return Ok(());
    }
    let mut text = String::new();
    match zip.by_name("Dockerrun.aws.json") {
        Ok(mut file) => {
            file.read_to_string(&mut text).map_err(|e| e.to_string())?;
        }
        Err(_) => {
            return Err("Instance deployment: Both 'Dockerfile' and 'Dockerrun.aws.json' are missing in your source bundle. Include at least one of them. The deployment failed.".into())
        }
    }
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "Instance deployment failed to parse 'Dockerrun.aws.json': {e}. The deployment failed."
        )
    })?;
    let version = doc["AWSEBDockerrunVersion"].to_string().replace('"', "");
    let valid = match version.as_str() {
        "1" => doc["Image"]["Name"].is_string(),
        "2" | "3" => doc["containerDefinitions"].as_array().is_some_and(|c| {
            !c.is_empty()
                && c.iter()
                    .all(|c| c["image"].is_string() && c["name"].is_string())
        }),
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!("Instance deployment: 'Dockerrun.aws.json' (version {version}) in your source bundle is invalid. The deployment failed."))
    }
}

/// The life of one deployment: Updating → Ready, Green or Red.
async fn deployment(shared: Shared, env: Environment, version: Version, fail: bool) {
    let step = shared.inner.lock().expect("lock").step;
    tokio::time::sleep(step).await;
    {
        let mut inner = shared.inner.lock().expect("lock");
        record(
            &mut inner,
            &env,
            &version.label,
            "INFO",
            "Deploying new version to instance(s).",
        );
    }
    // A version seeded by `create_environment` has no bundle: it is known to run.
    let seeded = version.bucket.is_empty();
    let bundle = if seeded {
        None
    } else {
        s3_get(&shared.s3, &version.bucket, &version.key).await
    };
    tokio::time::sleep(step).await;
    let verdict = match (fail, bundle) {
        (false, _) if seeded => Ok(()),
        (true, _) => Err("[Instance: i-0e1f2a3b4c5d6e7f8] Command failed on instance. Return code: 1 Output: Engine execution has encountered an error.".to_string()),
        (false, None) => Err(format!("Instance deployment failed to download the source bundle s3://{}/{}.", version.bucket, version.key)),
        (false, Some(bytes)) => check_bundle(&bytes),
    };
    let mut inner = shared.inner.lock().expect("lock");
    let mut done = Environment {
        status: "Ready".into(),
        version_label: version.label.clone(),
        ..env.clone()
    };
    match verdict {
        Ok(()) => {
            done.health = "Green".into();
            record(
                &mut inner,
                &done,
                &version.label,
                "INFO",
                "Instance deployment completed successfully.",
            );
            record(
                &mut inner,
                &done,
                &version.label,
                "INFO",
                "New application version was deployed to running EC2 instances.",
            );
            record(
                &mut inner,
                &done,
                &version.label,
                "INFO",
                "Environment update completed successfully.",
            );
        }
        Err(reason) => {
            done.health = "Red".into();
            record(&mut inner, &done, &version.label, "ERROR", &reason);
            record(
                &mut inner,
                &done,
                &version.label,
                "ERROR",
                "Failed to deploy application.",
            );
            record(
                &mut inner,
                &done,
                &version.label,
                "ERROR",
                "Environment update completed unsuccessfully.",
            );
        }
    }
    inner.envs.insert(done.name.clone(), done);
}
