//! An emulator of the ECS operations Gantry's deploy calls —
//! DescribeServices, DescribeTaskDefinition, RegisterTaskDefinition,
//! UpdateService — on ECS's JSON 1.1 protocol, with what moto lacks: an
//! UpdateService starts a new PRIMARY deployment beside the ACTIVE one,
//! tasks start one by one, the old deployment drains, and the rollout ends
//! COMPLETED — or FAILED, with failed tasks, after
//! [`Ecs::fail_next_deployment`] (what ECS's deployment circuit breaker does).

use super::{json11_error, json11_ok, request_id};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ACCOUNT: &str = "123456789012";

#[derive(Debug, Clone)]
struct Deployment {
    id: String,
    task_definition: String,
    running: i64,
    failed: i64,
    primary: bool,
    rollout: &'static str,
    reason: String,
    fails: bool,
    created: f64,
}

#[derive(Debug, Clone)]
struct Service {
    cluster: String,
    name: String,
    desired: i64,
    task_definition: String,
    deployments: Vec<Deployment>,
    events: Vec<Value>,
}

#[derive(Default)]
struct Inner {
    region: String,
    /// family → revisions (each a full task definition document).
    families: HashMap<String, Vec<Value>>,
    services: Vec<Service>,
    fail_next: bool,
    calls: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Ecs {
    shared: Shared,
    url: String,
    _server: tokio::task::JoinHandle<()>,
    _ticker: tokio::task::JoinHandle<()>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Ecs {
    pub async fn start(region: &str) -> Ecs {
        let shared: Shared = Arc::new(Mutex::new(Inner {
            region: region.to_string(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/", axum::routing::post(handle))
            .with_state(shared.clone());
        let (url, server) = crate::serve(app).await;
        let ticking = shared.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                tick(&mut ticking.lock().expect("lock"));
            }
        });
        Ecs {
            shared,
            url,
            _server: server,
            _ticker: ticker,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Registers `definition` (a task definition document as in the fixtures) and
    /// starts `service` on it, stable with `desired` tasks. Returns the revision's ARN.
    pub fn create_service(
        &self,
        cluster: &str,
        service: &str,
        definition: &Value,
        desired: i64,
    ) -> String {
        let mut inner = self.shared.lock().expect("lock");
        let arn = register(&mut inner, definition.clone());
        inner.services.push(Service {
            cluster: cluster.to_string(),
            name: service.to_string(),
            desired,
            task_definition: arn.clone(),
            deployments: vec![Deployment {
                id: format!("ecs-svc/{}", &request_id().replace('-', "")[..19]),
                task_definition: arn.clone(),
                running: desired,
                failed: 0,
                primary: true,
                rollout: "COMPLETED",
                reason: "ECS deployment completed.".into(),
                fails: false,
                created: now(),
            }],
            events: Vec::new(),
        });
        arn
    }

    /// The next deployment's tasks fail to start; the rollout ends FAILED.
    pub fn fail_next_deployment(&self) {
        self.shared.lock().expect("lock").fail_next = true;
    }

    /// The task definition ARN the service runs now.
    pub fn service_task_definition(&self, service: &str) -> Option<String> {
        let inner = self.shared.lock().expect("lock");
        inner
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.task_definition.clone())
    }

    /// A registered revision's document.
    pub fn task_definition(&self, arn: &str) -> Option<Value> {
        let inner = self.shared.lock().expect("lock");
        find(&inner, arn).cloned()
    }

    pub fn calls(&self) -> Vec<String> {
        self.shared.lock().expect("lock").calls.clone()
    }
}

fn register(inner: &mut Inner, mut definition: Value) -> String {
    let family = definition["family"].as_str().unwrap_or("task").to_string();
    let revisions = inner.families.entry(family.clone()).or_default();
    let revision = revisions.len() + 1;
    let arn = format!(
        "arn:aws:ecs:{}:{ACCOUNT}:task-definition/{family}:{revision}",
        inner.region
    );
    if let Value::Object(map) = &mut definition {
        map.insert("taskDefinitionArn".into(), json!(arn));
        map.insert("revision".into(), json!(revision));
        map.insert("status".into(), json!("ACTIVE"));
        map.insert("registeredAt".into(), json!(now()));
    }
    revisions.push(definition);
    arn
}

fn find<'a>(inner: &'a Inner, name: &str) -> Option<&'a Value> {
    let (family, revision) = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .split_once(':')
        .map_or((name.rsplit('/').next().unwrap_or(name), None), |(f, r)| {
            (f, r.parse::<usize>().ok())
        });
    let revisions = inner.families.get(family)?;
    match revision {
        Some(r) => revisions.get(r.checked_sub(1)?),
        None => revisions.last(),
    }
}

fn tick(inner: &mut Inner) {
    for service in &mut inner.services {
        let desired = service.desired;
        let Some(primary) = service.deployments.iter_mut().find(|d| d.primary) else {
            continue;
        };
        if primary.rollout != "IN_PROGRESS" {
            continue;
        }
        let name = service.name.clone();
        if primary.fails {
            primary.failed += 1;
            if primary.failed >= 3 {
                primary.rollout = "FAILED";
                primary.reason = format!(
                    "ECS deployment circuit breaker: tasks failed to start. ({} failed tasks)",
                    primary.failed
                );
                let message = format!(
                    "(service {name}) deployment {} deployment failed: tasks failed to start.",
                    primary.id
                );
                service.events.insert(
                    0,
                    json!({"id": request_id(), "createdAt": now(), "message": message}),
                );
            }
            continue;
        }
        if primary.running < desired {
            primary.running += 1;
            let message = format!(
                "(service {name}) has started 1 tasks: (task {}).",
                &request_id()[..8]
            );
            service.events.insert(
                0,
                json!({"id": request_id(), "createdAt": now(), "message": message}),
            );
            continue;
        }
        primary.rollout = "COMPLETED";
        primary.reason = format!("ECS deployment {} completed.", primary.id);
        service.deployments.retain(|d| d.primary);
        service.events.insert(0, json!({"id": request_id(), "createdAt": now(), "message": format!("(service {name}) has reached a steady state.")}));
    }
}

fn service_json(inner: &Inner, s: &Service) -> Value {
    let region = &inner.region;
    let deployments: Vec<Value> = s
        .deployments
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "status": if d.primary { "PRIMARY" } else { "ACTIVE" },
                "taskDefinition": d.task_definition,
                "desiredCount": if d.primary { s.desired } else { 0 },
                "pendingCount": if d.primary { (s.desired - d.running).max(0) } else { 0 },
                "runningCount": d.running,
                "failedTasks": d.failed,
                "createdAt": d.created,
                "updatedAt": now(),
                "launchType": "FARGATE",
                "rolloutState": d.rollout,
                "rolloutStateReason": d.reason,
            })
        })
        .collect();
    json!({
        "serviceArn": format!("arn:aws:ecs:{region}:{ACCOUNT}:service/{}/{}", s.cluster, s.name),
        "serviceName": s.name,
        "clusterArn": format!("arn:aws:ecs:{region}:{ACCOUNT}:cluster/{}", s.cluster),
        "status": "ACTIVE",
        "desiredCount": s.desired,
        "runningCount": s.deployments.iter().map(|d| d.running).sum::<i64>(),
        "pendingCount": 0,
        "launchType": "FARGATE",
        "taskDefinition": s.task_definition,
        "deployments": deployments,
        "events": s.events,
        "deploymentController": {"type": "ECS"},
    })
}

fn cluster_name(arn_or_name: &str) -> &str {
    arn_or_name.rsplit('/').next().unwrap_or(arn_or_name)
}

async fn handle(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let action = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_string();
    let Ok(input) = serde_json::from_str::<Value>(&body) else {
        return json11_error("SerializationException", "the request body is not JSON");
    };
    let mut inner = shared.lock().expect("lock");
    inner.calls.push(action.clone());
    let cluster = cluster_name(input["cluster"].as_str().unwrap_or("default")).to_string();
    match action.as_str() {
        "DescribeServices" => {
            let wanted: Vec<&str> = input["services"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(cluster_name)
                        .collect()
                })
                .unwrap_or_default();
            let mut services = Vec::new();
            let mut failures = Vec::new();
            for name in wanted {
                match inner.services.iter().find(|s| s.cluster == cluster && s.name == name) {
                    Some(s) => services.push(service_json(&inner, s)),
                    None => failures.push(json!({
                        "arn": format!("arn:aws:ecs:{}:{ACCOUNT}:service/{cluster}/{name}", inner.region),
                        "reason": "MISSING",
                    })),
                }
            }
            json11_ok(json!({"services": services, "failures": failures}))
        }
        "DescribeTaskDefinition" => {
            let name = input["taskDefinition"].as_str().unwrap_or("");
            match find(&inner, name) {
                Some(definition) => json11_ok(json!({"taskDefinition": definition, "tags": []})),
                None => json11_error("ClientException", "Unable to describe task definition."),
            }
        }
        "RegisterTaskDefinition" => {
            const READ_ONLY: &[&str] = &[
                "taskDefinitionArn",
                "revision",
                "status",
                "requiresAttributes",
                "compatibilities",
                "registeredAt",
                "registeredBy",
                "deregisteredAt",
            ];
            if let Some(field) = READ_ONLY.iter().find(|f| input.get(**f).is_some()) {
                return json11_error(
                    "ClientException",
                    &format!("Unknown parameter in input: \"{field}\""),
                );
            }
            if input["family"].as_str().is_none() || !input["containerDefinitions"].is_array() {
                return json11_error(
                    "ClientException",
                    "family and containerDefinitions are required",
                );
            }
            let mut definition = input.clone();
            if let Value::Object(map) = &mut definition {
                map.remove("tags");
            }
            let arn = register(&mut inner, definition);
            let definition = find(&inner, &arn).cloned().unwrap_or_default();
            json11_ok(json!({"taskDefinition": definition, "tags": input["tags"]}))
        }
        "UpdateService" => {
            let name = cluster_name(input["service"].as_str().unwrap_or("")).to_string();
            let target = input["taskDefinition"].as_str().map(str::to_string);
            let resolved = match &target {
                Some(t) => match find(&inner, t) {
                    Some(d) => Some(
                        d["taskDefinitionArn"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    None => return json11_error("ClientException", "TaskDefinition not found."),
                },
                None => None,
            };
            let force = input["forceNewDeployment"].as_bool().unwrap_or(false);
            let fail = std::mem::take(&mut inner.fail_next);
            let Some(service) = inner
                .services
                .iter_mut()
                .find(|s| s.cluster == cluster && s.name == name)
            else {
                return json11_error("ServiceNotFoundException", "Service not found.");
            };
            let changes = resolved
                .as_ref()
                .is_some_and(|r| *r != service.task_definition);
            if changes || force {
                let definition = resolved.unwrap_or_else(|| service.task_definition.clone());
                for d in &mut service.deployments {
                    d.primary = false;
                }
                service.task_definition = definition.clone();
                service.deployments.insert(
                    0,
                    Deployment {
                        id: format!("ecs-svc/{}", &request_id().replace('-', "")[..19]),
                        task_definition: definition,
                        running: 0,
                        failed: 0,
                        primary: true,
                        rollout: "IN_PROGRESS",
                        reason: "ECS deployment in progress.".into(),
                        fails: fail,
                        created: now(),
                    },
                );
            }
            let service = service.clone();
            json11_ok(json!({"service": service_json(&inner, &service)}))
        }
        other => json11_error("InvalidAction", &format!("{other} is not emulated")),
    }
}
