//! An emulator of the CodeDeploy operations Gantry's deploy calls —
//! CreateDeployment and GetDeployment — on CodeDeploy's JSON 1.1 protocol,
//! with what moto lacks: a deployment moves Created → InProgress → Succeeded
//! as it is polled, or ends Failed with CodeDeploy's error information in a
//! group marked with [`CodeDeploy::fail_group`].

use super::{json11_error, json11_ok};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A deployment as CreateDeployment made it.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub application: String,
    pub group: String,
    /// The `revision` as the request sent it.
    pub revision: Value,
    pub description: Option<String>,
    /// How many times GetDeployment read it.
    polls: u32,
    fails: bool,
    created: f64,
}

#[derive(Default)]
struct Inner {
    groups: HashSet<(String, String)>,
    failing: HashSet<String>,
    deployments: Vec<Deployment>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct CodeDeploy {
    shared: Shared,
    url: String,
    _server: tokio::task::JoinHandle<()>,
}

impl CodeDeploy {
    pub async fn start() -> CodeDeploy {
        let shared: Shared = Arc::default();
        let app = Router::new()
            .route("/", axum::routing::post(handle))
            .with_state(shared.clone());
        let (url, server) = crate::serve(app).await;
        CodeDeploy {
            shared,
            url,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Makes `application` with its deployment `group`.
    pub fn add_group(&self, application: &str, group: &str) {
        self.shared
            .lock()
            .expect("lock")
            .groups
            .insert((application.to_string(), group.to_string()));
    }

    /// Deployments to `group` fail on their instances.
    pub fn fail_group(&self, group: &str) {
        self.shared
            .lock()
            .expect("lock")
            .failing
            .insert(group.to_string());
    }

    pub fn deployments(&self) -> Vec<Deployment> {
        self.shared.lock().expect("lock").deployments.clone()
    }
}

async fn handle(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let action = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("CodeDeploy_20141006."))
        .unwrap_or("")
        .to_string();
    let Ok(input) = serde_json::from_str::<Value>(&body) else {
        return json11_error("SerializationException", "the request body is not JSON");
    };
    let mut inner = shared.lock().expect("lock");
    match action.as_str() {
        "CreateDeployment" => {
            let application = input["applicationName"].as_str().unwrap_or("").to_string();
            let Some(group) = input["deploymentGroupName"].as_str().map(str::to_string) else {
                return json11_error(
                    "DeploymentGroupNameRequiredException",
                    "Deployment group name is required.",
                );
            };
            if !inner.groups.iter().any(|(a, _)| *a == application) {
                return json11_error(
                    "ApplicationDoesNotExistException",
                    &format!("The application {application} does not exist with the user or AWS account."),
                );
            }
            if !inner.groups.contains(&(application.clone(), group.clone())) {
                return json11_error(
                    "DeploymentGroupDoesNotExistException",
                    "The deployment group does not exist with the user or AWS account.",
                );
            }
            let id = format!("d-{:09X}", inner.deployments.len() + 1);
            let fails = inner.failing.contains(&group);
            inner.deployments.push(Deployment {
                id: id.clone(),
                application,
                group,
                revision: input["revision"].clone(),
                description: input["description"].as_str().map(str::to_string),
                polls: 0,
                fails,
                created: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            });
            json11_ok(json!({ "deploymentId": id }))
        }
        "GetDeployment" => {
            let id = input["deploymentId"].as_str().unwrap_or("");
            let Some(d) = inner.deployments.iter_mut().find(|d| d.id == id) else {
                return json11_error(
                    "DeploymentDoesNotExistException",
                    &format!("The deployment {id} could not be found."),
                );
            };
            d.polls += 1;
            let status = match (d.polls, d.fails) {
                (1, _) => "Created",
                (2, _) => "InProgress",
                (_, false) => "Succeeded",
                (_, true) => "Failed",
            };
            let mut info = json!({
                "deploymentId": d.id,
                "applicationName": d.application,
                "deploymentGroupName": d.group,
                "status": status,
                "revision": d.revision,
                "createTime": d.created,
            });
            if status == "Failed" {
                info["errorInformation"] = json!({
                    "code": "HEALTH_CONSTRAINTS",
                    "message": "The overall deployment failed because too many individual instances failed deployment, too few healthy instances are available for deployment, or some instances in your deployment group are experiencing problems.",
                });
            }
            json11_ok(json!({ "deploymentInfo": info }))
        }
        other => json11_error(
            "UnknownOperationException",
            &format!("the emulator does not answer {other}"),
        ),
    }
}
