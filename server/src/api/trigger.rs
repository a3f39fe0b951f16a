//! `/{owner}/{name}/trigger`: a build of a branch's head from the web
//! viewer, with a config of its own if given (Travis's "Trigger build"),
//! for those who may push. The API's `POST /api/repos/{owner}/{name}/builds`
//! does the same for scripts.

use super::pages::{html, nav, refusal, settings_repo, ActionForm};
use super::permission::Permission;
use super::session::MaybeSession;
use crate::error::{ApiError, ApiResult};
use crate::intake::github::RequestConfig;
use crate::planner::{self, Planned};
use crate::store::repos::Repo;
use crate::App;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use gantry_pipeline::Event;
use gantry_web::pages::{self, TriggerForm, MERGE_MODES};
use serde::Deserialize;

async fn trigger_repo(
    app: &App,
    session: &MaybeSession,
    owner: &str,
    name: &str,
) -> ApiResult<Result<Repo, Response>> {
    settings_repo(
        app,
        session,
        owner,
        name,
        Permission::Push,
        "trigger its builds",
    )
    .await
}

/// `GET /{owner}/{name}/trigger`: the form, for the default branch.
pub async fn page(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let repo = match trigger_repo(&app, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    let form = TriggerForm {
        branch: repo.default_branch.clone(),
        merge_mode: MERGE_MODES[0].into(),
        ..TriggerForm::default()
    };
    Ok(html(pages::trigger_page(
        &nav(&session),
        &repo.full_name,
        &form,
        None,
    )))
}

#[derive(Deserialize)]
pub struct TriggerRequest {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    config: String,
    #[serde(default)]
    merge_mode: String,
}

/// `POST /{owner}/{name}/trigger`: plans the build and goes to its page;
/// a wrong form comes back with what was wrong, as it was filled in.
pub async fn trigger(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name)): Path<(String, String)>,
    axum::Form(form): axum::Form<TriggerRequest>,
) -> ApiResult<Response> {
    let csrf = ActionForm {
        csrf: form.csrf.clone(),
    };
    if let Some(page) = refusal(&session, &csrf) {
        return Ok(page);
    }
    let repo = match trigger_repo(&app, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    let again = |notice: &str, status: StatusCode| {
        let shown = TriggerForm {
            branch: form.branch.clone(),
            message: form.message.clone(),
            config: form.config.clone(),
            merge_mode: form.merge_mode.clone(),
        };
        let page = pages::trigger_page(&nav(&session), &repo.full_name, &shown, Some(notice));
        (status, Html(page)).into_response()
    };
    let branch = form.branch.trim();
    if branch.is_empty() {
        return Ok(again("name the branch to build", StatusCode::BAD_REQUEST));
    }
    let config = match form.config.trim() {
        "" => None,
        text => {
            let mode = match RequestConfig::mode_named(&form.merge_mode) {
                Ok(mode) => mode,
                Err(why) => return Ok(again(&why, StatusCode::BAD_REQUEST)),
            };
            Some(RequestConfig {
                text: text.to_string(),
                mode,
            })
        }
    };
    let message = match form.message.trim() {
        "" => "manual build".to_string(),
        message => message.to_string(),
    };
    let by = session.0.as_ref().map_or("admin", |s| s.user.as_str());
    let asked = planner::BranchBuild {
        branch: branch.to_string(),
        commit: None,
        event: Event::Api,
        message,
        config,
        by: by.to_string(),
    };
    let planned = planner::build_of_branch(&app, &repo, asked).await;
    match planned.map_err(ApiError::from) {
        Ok(Planned::Build(id)) => Ok((
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/{owner}/{name}/builds/{id}"))],
        )
            .into_response()),
        Ok(Planned::Retry(reason)) => Ok(again(&reason, StatusCode::SERVICE_UNAVAILABLE)),
        Err(e @ ApiError::Internal(_)) => Err(e),
        Err(e) => Ok(again(&e.to_string(), e.status())),
    }
}
