//! Cron builds, as Travis has them: a branch built daily, weekly or monthly
//! (at the time of day, weekday or day of the month its schedule was set),
//! with `type = cron` for `if:` conditions and no `[skip ci]`. The first
//! run is when the schedule is set. A run can be skipped when the branch
//! had another build in the last 24 hours. Every server runs this loop;
//! each due run is taken with a compare-and-set, so only one builds it.

use crate::planner::{self, BranchError, Planned};
use crate::store::builds::{self, BuildFilter};
use crate::store::{crons, now_ms, repos};
use crate::App;
use gantry_pipeline::Event;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;
/// How soon a run that could not read the branch (GitHub down) is tried again.
const RETRY_MS: i64 = 5 * 60_000;
/// How often the loop looks without being woken.
const LOOK_EVERY: Duration = Duration::from_secs(30);

/// How often a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Daily,
    Weekly,
    Monthly,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Daily => "daily",
            Interval::Weekly => "weekly",
            Interval::Monthly => "monthly",
        }
    }

    /// The first run after `after` of a schedule counting from `anchor`
    /// (Unix ms): `anchor` plus a whole number (at least one) of intervals.
    /// A month keeps the anchor's day, or the month's last day if shorter.
    pub fn next_after(self, anchor: i64, after: i64) -> i64 {
        let step = match self {
            Interval::Daily => DAY_MS,
            Interval::Weekly => 7 * DAY_MS,
            Interval::Monthly => {
                // Months are 28–31 days: start at an undercount, then step on.
                let mut k = ((after - anchor) / (31 * DAY_MS)).max(1);
                loop {
                    let at = add_months(anchor, k);
                    if at > after {
                        return at;
                    }
                    k += 1;
                }
            }
        };
        let k = ((after - anchor).div_euclid(step) + 1).max(1);
        anchor + k * step
    }
}

impl std::str::FromStr for Interval {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "daily" => Ok(Interval::Daily),
            "weekly" => Ok(Interval::Weekly),
            "monthly" => Ok(Interval::Monthly),
            other => Err(format!(
                "`{other}` is not an interval: daily, weekly or monthly"
            )),
        }
    }
}

/// `ms` plus `months` calendar months (UTC), the day kept or clamped.
fn add_months(ms: i64, months: i64) -> i64 {
    let (days, time) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (y, m, d) = civil_from_days(days);
    let index = y * 12 + (m - 1) + months;
    let (y, m) = (index.div_euclid(12), index.rem_euclid(12) + 1);
    days_from_civil(y, m, d.min(days_in_month(y, m))) * DAY_MS + time
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01: the inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Sets `branch`'s schedule in `repo` (checked on GitHub first) and wakes
/// the loop for its first run; returns it and whether it is new.
pub async fn schedule(
    app: &App,
    repo: &repos::Repo,
    branch: &str,
    interval: &str,
    skip_if_recent: bool,
) -> Result<(crons::Cron, bool), BranchError> {
    let interval: Interval = interval.trim().parse().map_err(BranchError::Invalid)?;
    let branch = branch.trim();
    if branch.is_empty() {
        return Err(BranchError::Invalid("the branch is empty".into()));
    }
    planner::branch_head(app, repo, branch).await?;
    let mut conn = app.db.pool.acquire().await?;
    let set = crons::put(&mut conn, repo.id, branch, interval, skip_if_recent).await?;
    app.cron_wake.notify_one();
    Ok(set)
}

/// Runs due schedules until the server stops; woken when one is set.
pub async fn run(app: App) {
    loop {
        if let Err(e) = run_due(&app).await {
            tracing::error!(error = %e, "cannot run cron schedules");
        }
        let _ = tokio::time::timeout(LOOK_EVERY, app.cron_wake.notified()).await;
    }
}

/// Runs every schedule due now; returns how many this server took.
pub async fn run_due(app: &App) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let due = {
        let mut conn = app.db.pool.acquire().await?;
        crons::due(&mut conn, now).await?
    };
    let mut taken = 0;
    for cron in due {
        let next = cron.interval.next_after(cron.anchor_at, now);
        {
            let mut conn = app.db.pool.acquire().await?;
            if !crons::take(&mut conn, &cron, next, now).await? {
                continue;
            }
        }
        taken += 1;
        let (result, build, retry_at) = run_one(app, &cron, now).await?;
        tracing::info!(repo = %cron.repo, branch = %cron.branch, %result, "cron");
        let mut conn = app.db.pool.acquire().await?;
        crons::record(&mut conn, cron.id, &result, build, retry_at).await?;
    }
    Ok(taken)
}

/// One run: what it did, the build it made, and when to try again if it
/// could not. Holds no database connection while it waits on GitHub.
async fn run_one(
    app: &App,
    cron: &crons::Cron,
    now: i64,
) -> Result<(String, Option<gantry_protocol::BuildId>, Option<i64>), sqlx::Error> {
    let mut conn = app.db.pool.acquire().await?;
    if cron.skip_if_recent {
        let filter = BuildFilter {
            branch: Some(cron.branch.clone()),
            limit: 20,
            ..Default::default()
        };
        let recent = builds::list(&mut conn, cron.repo_id, &filter)
            .await?
            .into_iter()
            .find(|b| b.event != Event::Cron && b.created_at > now - DAY_MS);
        if let Some(b) = recent {
            return Ok((
                format!(
                    "skipped: build #{} of {} ran in the last 24 hours",
                    b.number, cron.branch
                ),
                None,
                None,
            ));
        }
    }
    let Some(repo) = repos::by_id(&mut conn, cron.repo_id).await? else {
        return Ok(("the repository is gone".into(), None, None));
    };
    drop(conn);
    let message = format!("cron build of {} ({})", cron.branch, cron.interval.as_str());
    let asked = planner::BranchBuild {
        branch: cron.branch.clone(),
        commit: None,
        event: Event::Cron,
        message,
        config: None,
        by: Event::Cron.as_str().into(),
    };
    match planner::build_of_branch(app, &repo, asked).await {
        Ok(Planned::Build(id)) => {
            let mut conn = app.db.pool.acquire().await?;
            let number = builds::get(&mut conn, id)
                .await?
                .map(|b| b.number)
                .unwrap_or(0);
            Ok((format!("build #{number}"), Some(id), None))
        }
        Ok(Planned::Retry(reason)) | Err(BranchError::Forge(reason)) => Ok((
            format!("{reason}; trying again in 5 minutes"),
            None,
            Some(now + RETRY_MS),
        )),
        Err(BranchError::NoBranch(why) | BranchError::Invalid(why)) => Ok((why, None, None)),
        Err(BranchError::Store(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-31 09:30 UTC, in Unix ms.
    fn jan_31() -> i64 {
        days_from_civil(2026, 1, 31) * DAY_MS + (9 * 60 + 30) * 60_000
    }

    #[test]
    fn dates_round_trip() {
        for days in [-1000, 0, 59, 60, 10_000, 20_454, 60_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn runs_keep_the_schedules_time_and_skip_what_was_missed() {
        let anchor = jan_31();
        // Due now: the next run is a day (a week) after the anchor.
        assert_eq!(Interval::Daily.next_after(anchor, anchor), anchor + DAY_MS);
        assert_eq!(
            Interval::Weekly.next_after(anchor, anchor),
            anchor + 7 * DAY_MS
        );
        // A server that was down three and a half days runs once, then keeps time.
        let late = anchor + 3 * DAY_MS + DAY_MS / 2;
        assert_eq!(
            Interval::Daily.next_after(anchor, late),
            anchor + 4 * DAY_MS
        );
        // A retry five minutes after a run does not move the schedule.
        assert_eq!(
            Interval::Daily.next_after(anchor, anchor + DAY_MS + RETRY_MS),
            anchor + 2 * DAY_MS
        );
    }

    #[test]
    fn months_keep_the_day_or_end_on_the_months_last() {
        let anchor = jan_31();
        let time = (9 * 60 + 30) * 60_000;
        let on = |y, m, d| days_from_civil(y, m, d) * DAY_MS + time;
        assert_eq!(
            Interval::Monthly.next_after(anchor, anchor),
            on(2026, 2, 28)
        );
        assert_eq!(
            Interval::Monthly.next_after(anchor, on(2026, 2, 28)),
            on(2026, 3, 31)
        );
        assert_eq!(
            Interval::Monthly.next_after(anchor, on(2027, 12, 31)),
            on(2028, 1, 31)
        );
        assert_eq!(add_months(on(2027, 1, 31), 1), on(2027, 2, 28));
        assert_eq!(add_months(on(2028, 1, 31), 1), on(2028, 2, 29));
    }
}
