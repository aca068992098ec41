//! Steps of the wall clock while the daemon runs (issue 20, scenario 7 in
//! process): the harness's clock is stepped (`TokioClock::step`, as
//! `date -s` or NTP would) while tokio's time, the daemon's steady clock,
//! runs on. The portal's clock is that steady time: its `Date` is
//! `T0 + elapsed`, whatever the host's clock says. So the licence neither
//! lapses early nor late, `clock_skew_seconds` stays the last answer's, the
//! `clock_skew` warning says the estimate, and the schedule (pacing, the
//! next validate) follows elapsed time: a step makes no request.

use std::sync::Arc;
use std::time::Duration;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::warnings::WarningCode;
use wispanel_core::{Endpoint, ErrorKind, LicenseState};
use wispanel_license::api::StatusDocument;
use wispanel_license::testing::*;

const DAY: i64 = 86_400;

/// The portal: its clock is steady time (T0 + tokio's elapsed time); it is
/// down while `down` says so; a valid answer carries its `Date` and, with
/// `valid_for`, a `valid_until` that far ahead in its clock.
fn portal(
    start: tokio::time::Instant,
    valid_for: Option<u64>,
    down: Arc<std::sync::atomic::AtomicBool>,
) -> impl Fn(Endpoint, Timestamp) -> Reply + Send + Sync + 'static {
    move |endpoint, _local| {
        if down.load(std::sync::atomic::Ordering::SeqCst) {
            return Reply::Failed(ErrorKind::Connect);
        }
        let portal_now = T0.add(start.elapsed());
        let date = vec![("Date", portal_now.to_http_date())];
        if endpoint == Endpoint::CheckUpdate {
            return Reply::Status(
                200,
                date,
                r#"{"update_available": false, "current_version": "1.4.2", "latest_version": "1.4.2"}"#,
            );
        }
        let license = match valid_for {
            Some(s) => format!(
                r#"{{"tier": "pro", "valid_until": "{}"}}"#,
                portal_now.add(secs(s))
            ),
            None => r#"{"tier": "pro"}"#.into(),
        };
        Reply::Body(
            200,
            date,
            format!(r#"{{"valid": true, "license": {license}}}"#),
        )
    }
}

fn codes(doc: &StatusDocument) -> Vec<WarningCode> {
    doc.warnings.iter().map(|w| w.code).collect()
}

fn skew_message(doc: &StatusDocument) -> String {
    doc.warnings
        .iter()
        .find(|w| w.code == WarningCode::ClockSkew)
        .map(|w| w.message.clone())
        .unwrap_or_default()
}

struct Host {
    h: Harness,
    down: Arc<std::sync::atomic::AtomicBool>,
}

fn host(valid_for: Option<u64>) -> Host {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = tokio::time::Instant::now();
    let h = Harness::new(DEFAULTS, portal(start, valid_for, down.clone()));
    Host { h, down }
}

impl Host {
    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn two_hours_forward_past_valid_until_with_the_portal_down_is_no_lapse() {
    // valid_until one hour after the activation, in the portal's clock.
    let Host { h, down } = host(Some(3600));
    let d = h.start(1);
    pass(secs(1)).await;
    let doc = h.status().await;
    assert_eq!(doc.license.state, LicenseState::Active);
    let grace_until = doc.license.grace_until;
    assert_eq!(grace_until, Some(T0.add(hours(1))));
    down.store(true, std::sync::atomic::Ordering::SeqCst);

    // Ten minutes on, the host's clock is set 2 h forward: past valid_until.
    pass(secs(599)).await;
    h.clock().step(2 * 3600);
    let doc = h.status().await;
    assert_eq!(doc.license.state, LicenseState::Active, "no early lapse");
    assert_eq!(doc.license.grace_until, grace_until, "shown as sent");
    assert_eq!(doc.portal.clock_skew_seconds, Some(0), "the last answer's");
    assert_eq!(codes(&doc), vec![WarningCode::ClockSkew]);
    assert_eq!(
        skew_message(&doc),
        "this host's clock is 2 h ahead of the portal's (estimated: it was set forward by 2 h since the portal's last answer)"
    );
    // The step made no request.
    assert_eq!(h.portal().licence_requests().len(), 1);

    // It lapses when the portal's hour is over, not a moment before.
    pass(secs(3600 - 600 - 1)).await;
    assert_eq!(h.status().await.license.state, LicenseState::Active);
    pass(secs(1)).await;
    let doc = h.status().await;
    assert_eq!(doc.license.state, LicenseState::Lapsed);
    assert_eq!(doc.license.grace_until, grace_until);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_day_forward_then_back_in_grace_keeps_the_pace_and_the_grace() {
    // No valid_until: grace is the verdict's time plus offline_grace (7 d).
    let host = host(None);
    let h = &host.h;
    let d = h.start(2);
    pass(secs(1)).await;
    assert_eq!(h.status().await.license.state, LicenseState::Active);
    host.set_down(true);
    // The first validate fails (6 h + splay), two quick retries, then the
    // normal interval (grace pacing).
    pass(hours(7)).await;
    let doc = h.status().await;
    assert_eq!(doc.license.state, LicenseState::Grace);
    let grace_until = doc.license.grace_until.expect("grace_until");
    assert_eq!(grace_until, T0.add(hours(7 * 24)));

    // Steady time since T0 of each licence request (the log has the
    // daemon's clock, which the test steps).
    let mut stepped: i64 = 0;
    let mut marks: Vec<(usize, i64)> = vec![];
    for step in [DAY, -DAY, -DAY] {
        stepped += step;
        h.clock().step(step);
        marks.push((h.portal().licence_requests().len(), stepped));
        let doc = h.status().await;
        assert_eq!(doc.license.state, LicenseState::Grace, "step {step}");
        assert_eq!(doc.license.grace_until, Some(grace_until), "step {step}");
        assert_eq!(doc.portal.clock_skew_seconds, Some(0), "step {step}");
        if stepped == 0 {
            assert_eq!(codes(&doc), Vec::<WarningCode>::new(), "set right again");
        } else {
            assert_eq!(codes(&doc), vec![WarningCode::ClockSkew], "step {step}");
            let side = if stepped > 0 { "ahead of" } else { "behind" };
            assert!(
                skew_message(&doc).contains(&format!("1 day {side}")),
                "{doc:?}"
            );
        }
        pass(hours(13)).await;
    }
    // Every request a paced interval (6 h to 6 h 15 min) after the one
    // before, in steady time, across the steps: no burst, no stall.
    let steady = |i: usize, at: Timestamp| {
        let s = marks
            .iter()
            .rev()
            .find(|(from, _)| i >= *from)
            .map_or(0, |(_, s)| *s);
        Timestamp(at.0 - s * 1000)
    };
    let reqs: Vec<Timestamp> = h
        .portal()
        .licence_requests()
        .iter()
        .enumerate()
        .map(|(i, (_, at))| steady(i, *at))
        .collect();
    assert!(reqs.len() >= 9, "{reqs:?}");
    for w in reqs[3..].windows(2) {
        assert_within(
            "paced",
            after(w[1], w[0]),
            hours(6),
            hours(6) + secs(15 * 60),
        );
    }

    // The grace ends at the portal's seventh day, with the clock a day behind.
    let elapsed = h.now().0 + DAY * 1000 - T0.0;
    pass(Duration::from_millis(
        (7 * DAY * 1000 - elapsed - 1000) as u64,
    ))
    .await;
    let doc = h.status().await;
    assert_eq!(doc.license.state, LicenseState::Grace);
    assert_eq!(
        codes(&doc),
        vec![WarningCode::GraceEnding, WarningCode::ClockSkew]
    );
    pass(secs(1)).await;
    assert_eq!(h.status().await.license.state, LicenseState::Lapsed);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_the_portal_up_a_step_waits_for_the_next_check_which_measures_it() {
    let Host { h, .. } = host(Some(7 * 86_400));
    let d = h.start(3);
    pass(secs(1)).await;
    let first = h.portal().licence_requests();
    assert_eq!(first.len(), 1);
    h.clock().step(DAY);
    let doc = h.status().await;
    assert_eq!(doc.license.state, LicenseState::Active);
    assert_eq!(doc.portal.clock_skew_seconds, Some(0));
    assert!(skew_message(&doc).contains("estimated"), "{doc:?}");
    // The next validate comes 6 h after the first in elapsed time, not at
    // once although the clock says a day has passed.
    let next = doc.portal.next_validate_at.expect("next_validate_at");
    assert_within(
        "next validate",
        after(next, first[0].1),
        hours(24 + 6),
        hours(24 + 6) + secs(15 * 60),
    );
    pass(hours(5)).await;
    assert_eq!(h.portal().licence_requests().len(), 1, "no request yet");
    pass(hours(1) + secs(15 * 60)).await;
    let reqs = h.portal().licence_requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let doc = h.status().await;
    // The answer measured the skew: a day, no longer an estimate.
    assert_eq!(doc.portal.clock_skew_seconds, Some(DAY));
    assert_eq!(
        skew_message(&doc),
        "this host's clock is 1 day ahead of the portal's"
    );
    assert_eq!(doc.license.state, LicenseState::Active);
    // valid_until as sent: the portal's now + 7 days.
    let vu = doc.license.grace_until.expect("grace_until");
    assert_eq!(
        vu,
        Timestamp(reqs[1].1.0 - DAY * 1000)
            .add(hours(7 * 24))
            .whole_seconds()
    );
    d.stop().await;
}
