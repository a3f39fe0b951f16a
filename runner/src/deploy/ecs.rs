//! `provider: ecs` — the ecs-deploy flow: the service's task definition (the
//! rollback target) → a new revision with one container's image replaced,
//! every registrable field kept → UpdateService → wait until the service is
//! stable on it (one deployment, running = desired) → roll back on failure
//! or timeout when asked.

use super::aws::{describe, Aws};
use super::values::expand;
use super::Target;
use crate::logs::LogPipeline;
use aws_sdk_ecs::types::{DeploymentRolloutState, TaskDefinition, TaskDefinitionField};
use aws_sdk_ecs::Client;
use gantry_pipeline::Ecs;
use std::collections::HashSet;
use std::time::{Duration, Instant};

pub async fn deploy(
    ecs: &Ecs,
    aws: &Aws,
    t: &Target<'_>,
    p: &mut LogPipeline,
) -> Result<(), String> {
    let cluster = expand(&ecs.cluster, t.env);
    let service = expand(&ecs.service, t.env);
    let image = match ecs
        .image
        .as_deref()
        .map(|i| expand(i, t.env))
        .filter(|i| !i.is_empty())
    {
        Some(image) => image,
        None => t.images.first().map(|i| i.reference()).ok_or(
            "the ecs provider needs `image:`, or an image pushed by `images:` in this job",
        )?,
    };
    let client = aws.ecs();

    let described = client
        .describe_services()
        .cluster(&cluster)
        .services(&service)
        .send()
        .await
        .map_err(|e| format!("DescribeServices failed: {}", describe(&e)))?;
    let Some(current) = described.services().first() else {
        let reason = described
            .failures()
            .first()
            .and_then(|f| f.reason())
            .unwrap_or("not found");
        return Err(format!(
            "ECS service {service} in cluster {cluster}: {reason}"
        ));
    };
    let previous = current
        .task_definition()
        .ok_or_else(|| format!("ECS service {service} has no task definition"))?
        .to_string();
    let old = client
        .describe_task_definition()
        .task_definition(&previous)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(|e| format!("DescribeTaskDefinition {previous} failed: {}", describe(&e)))?;
    let definition = old
        .task_definition()
        .ok_or_else(|| format!("ECS returned no task definition for {previous}"))?;
    let names: Vec<&str> = definition
        .container_definitions()
        .iter()
        .filter_map(|c| c.name())
        .collect();
    let container = match (&ecs.container, names.as_slice()) {
        (Some(name), _) => {
            let name = expand(name, t.env);
            if !names.contains(&name.as_str()) {
                return Err(format!(
                    "task definition {previous} has no container {name} (it has {})",
                    names.join(", ")
                ));
            }
            name
        }
        (None, [only]) => only.to_string(),
        (None, _) => {
            return Err(format!(
            "task definition {previous} has several containers ({}); say which with `container:`",
            names.join(", ")
        ))
        }
    };

    let registered = register(&client, definition, old.tags(), &container, &image)
        .await
        .map_err(|e| format!("RegisterTaskDefinition failed: {e}"))?;
    p.say(&format!(
        "Registered {registered}: container {container} runs {image} (was {previous})"
    ))
    .await;
    client
        .update_service()
        .cluster(&cluster)
        .service(&service)
        .task_definition(&registered)
        .force_new_deployment(ecs.force_new_deployment)
        .send()
        .await
        .map_err(|e| format!("UpdateService failed: {}", describe(&e)))?;
    p.say(&format!(
        "Updated service {service} in {cluster} to {registered}"
    ))
    .await;

    let waiter = Waiter {
        client: &client,
        cluster: &cluster,
        service: &service,
        timeout: Duration::from_secs(ecs.timeout),
    };
    let mut seen = HashSet::new();
    let failure = match waiter.wait(&registered, &mut seen, t, p).await {
        Ok(()) => {
            p.say(&format!(
                "\x1b[32;1m{service} is stable on {registered}\x1b[0m"
            ))
            .await;
            return Ok(());
        }
        Err(e) => e,
    };
    p.say(&format!("\x1b[31;1m{failure}\x1b[0m")).await;
    if !ecs.rollback {
        return Err(failure);
    }
    p.say(&format!("Rolling back {service} to {previous}"))
        .await;
    client
        .update_service()
        .cluster(&cluster)
        .service(&service)
        .task_definition(&previous)
        .send()
        .await
        .map_err(|e| {
            format!(
                "{failure}; rolling back failed: UpdateService: {}",
                describe(&e)
            )
        })?;
    let waited = waiter.wait(&previous, &mut seen, t, p).await;
    let back = format!("{service} is stable on {previous}");
    super::after_rollback(waited, &failure, &previous, &back, p).await
}

/// Registers a copy of `old` with `container` running `image`; returns the new ARN.
/// Read-only fields (ARN, revision, status, requiresAttributes, compatibilities,
/// registeredAt/By) are left out, as RegisterTaskDefinition refuses them.
async fn register(
    client: &Client,
    old: &TaskDefinition,
    tags: &[aws_sdk_ecs::types::Tag],
    container: &str,
    image: &str,
) -> Result<String, String> {
    let containers = old
        .container_definitions()
        .iter()
        .map(|c| {
            if c.name() == Some(container) {
                let mut c = c.clone();
                c.image = Some(image.to_string());
                c
            } else {
                c.clone()
            }
        })
        .collect();
    let out = client
        .register_task_definition()
        .set_family(old.family().map(str::to_string))
        .set_task_role_arn(old.task_role_arn().map(str::to_string))
        .set_execution_role_arn(old.execution_role_arn().map(str::to_string))
        .set_network_mode(old.network_mode().cloned())
        .set_container_definitions(Some(containers))
        .set_volumes(Some(old.volumes().to_vec()).filter(|v| !v.is_empty()))
        .set_placement_constraints(
            Some(old.placement_constraints().to_vec()).filter(|v| !v.is_empty()),
        )
        .set_requires_compatibilities(
            Some(old.requires_compatibilities().to_vec()).filter(|v| !v.is_empty()),
        )
        .set_cpu(old.cpu().map(str::to_string))
        .set_memory(old.memory().map(str::to_string))
        .set_tags(Some(tags.to_vec()).filter(|v| !v.is_empty()))
        .set_pid_mode(old.pid_mode().cloned())
        .set_ipc_mode(old.ipc_mode().cloned())
        .set_proxy_configuration(old.proxy_configuration().cloned())
        .set_ephemeral_storage(old.ephemeral_storage().cloned())
        .set_runtime_platform(old.runtime_platform().cloned())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    out.task_definition()
        .and_then(|d| d.task_definition_arn())
        .map(str::to_string)
        .ok_or_else(|| "ECS returned no task definition ARN".to_string())
}

struct Waiter<'a> {
    client: &'a Client,
    cluster: &'a str,
    service: &'a str,
    timeout: Duration,
}

impl Waiter<'_> {
    /// Polls until the service runs `target` alone with running = desired
    /// (what `aws ecs wait services-stable` checks), failing when ECS marks
    /// the rollout FAILED or the time is up.
    async fn wait(
        &self,
        target: &str,
        seen: &mut HashSet<String>,
        t: &Target<'_>,
        p: &mut LogPipeline,
    ) -> Result<(), String> {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            let out = self
                .client
                .describe_services()
                .cluster(self.cluster)
                .services(self.service)
                .send()
                .await
                .map_err(|e| format!("DescribeServices failed: {}", describe(&e)))?;
            let Some(service) = out.services().first() else {
                return Err(format!("ECS service {} disappeared", self.service));
            };
            let mut events: Vec<_> = service.events().iter().collect();
            events.reverse();
            for event in events {
                let id = event.id().unwrap_or_default().to_string();
                if seen.insert(id) {
                    p.say(&format!("[ECS] {}", event.message().unwrap_or_default()))
                        .await;
                }
            }
            let deployments = service.deployments();
            let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
            let state = match primary {
                Some(d) => format!(
                    "{}: {} running {}/{} (pending {}, failed tasks {}){}{}",
                    self.service,
                    short(d.task_definition().unwrap_or("?")),
                    d.running_count(),
                    d.desired_count(),
                    d.pending_count(),
                    d.failed_tasks(),
                    d.rollout_state()
                        .map(|s| format!(", {}", s.as_str()))
                        .unwrap_or_default(),
                    if deployments.len() > 1 {
                        format!("; {} older deployment(s) draining", deployments.len() - 1)
                    } else {
                        String::new()
                    }
                ),
                None => format!("{}: no primary deployment yet", self.service),
            };
            if state != last {
                p.say(&state).await;
                last = state;
            }
            if let Some(d) = primary {
                if d.rollout_state() == Some(&DeploymentRolloutState::Failed) {
                    return Err(format!(
                        "the ECS deployment failed: {}",
                        d.rollout_state_reason().unwrap_or("no reason given")
                    ));
                }
                let stable = service.task_definition() == Some(target)
                    && deployments.len() == 1
                    && d.running_count() == d.desired_count()
                    && d.rollout_state() != Some(&DeploymentRolloutState::InProgress);
                if stable {
                    return Ok(());
                }
            }
            if start.elapsed() >= self.timeout {
                return Err(format!(
                    "{} did not become stable on {} within {} seconds (timeout)",
                    self.service,
                    short(target),
                    self.timeout.as_secs()
                ));
            }
            super::pause(start, t.cancel).await?;
        }
    }
}

/// `arn:aws:ecs:…:task-definition/orders:7` → `orders:7`.
fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}
