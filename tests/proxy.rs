//! Proxy presets under the router simulator (paused time): `start` with each
//! preset survives a ten-minute job; without heartbeats each proxy fails the
//! request as it would in production; behind a GCP load balancer only a
//! deadline with parking gets an answer through.

use std::time::Duration;

use delayed_response::limit::ClientKey;
use delayed_response::park::Store;
use delayed_response::proxy::Profile;
use delayed_response::testing::{RouterSim, Verdict};
use delayed_response::{DelayedResponse, Heartbeat};

const TEN_MINUTES: Duration = Duration::from_secs(600);

async fn job() -> &'static str {
    tokio::time::sleep(TEN_MINUTES).await;
    "done"
}

#[tokio::test(start_paused = true)]
async fn every_heartbeat_preset_survives_a_ten_minute_job() {
    for profile in Profile::ALL {
        if profile.heartbeat().is_none() {
            continue;
        }
        let response = profile.apply(DelayedResponse::new()).start(job());
        match RouterSim::new(profile.clone()).run(response).await {
            Verdict::Delivered {
                status,
                body,
                max_gap,
                elapsed,
                ..
            } => {
                assert_eq!(status, 202, "{}", profile.name);
                assert!(body.ends_with(b"done"), "{}", profile.name);
                assert_eq!(elapsed, TEN_MINUTES, "{}", profile.name);
                assert!(
                    max_gap < profile.idle.unwrap(),
                    "{}: {max_gap:?}",
                    profile.name
                );
            }
            other => panic!("{}: {other:?}", profile.name),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn without_heartbeats_heroku_fails_with_h12_at_30s() {
    let response = DelayedResponse::new()
        .heartbeat(Heartbeat::every(Duration::from_secs(3600)))
        .start(job());
    let verdict = RouterSim::new(Profile::HEROKU).run(response).await;
    assert_eq!(
        verdict,
        Verdict::Failed {
            error: "H12 request timeout",
            after: Duration::from_secs(30),
            head_sent: false
        }
    );
}

#[tokio::test(start_paused = true)]
async fn heroku_fails_with_h15_when_heartbeats_are_too_far_apart() {
    // First byte in time, then silences longer than 55 s.
    let response = DelayedResponse::new()
        .heartbeat(Heartbeat::every(Duration::from_secs(70)).after(Duration::from_secs(10)))
        .start(job());
    let verdict = RouterSim::new(Profile::HEROKU).run(response).await;
    assert_eq!(
        verdict,
        Verdict::Failed {
            error: "H15 idle connection",
            after: Duration::from_secs(65),
            head_sent: true
        }
    );
}

#[tokio::test(start_paused = true)]
async fn without_heartbeats_every_idle_proxy_fails_at_its_limit() {
    for (profile, expected) in [
        (Profile::AWS_ALB, "504 gateway timeout"),
        (Profile::NGINX, "504 gateway time-out"),
        (Profile::CLOUDFLARE, "524 a timeout occurred"),
    ] {
        let response = DelayedResponse::new()
            .heartbeat(Heartbeat::every(Duration::from_secs(3600)))
            .start(job());
        match RouterSim::new(profile.clone()).run(response).await {
            Verdict::Failed { error, after, .. } => {
                assert_eq!(error, expected);
                assert_eq!(Some(after), profile.first_byte);
            }
            other => panic!("{}: {other:?}", profile.name),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn nginx_preset_turns_buffering_off() {
    let response = Profile::NGINX
        .apply(DelayedResponse::new())
        .start(async { "x" });
    match RouterSim::new(Profile::NGINX).run(response).await {
        Verdict::Delivered { headers, .. } => assert_eq!(headers["x-accel-buffering"], "no"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn gcp_fails_a_long_poll_even_with_heartbeats() {
    let response = Profile::HEROKU.apply(DelayedResponse::new()).start(job());
    let verdict = RouterSim::new(Profile::GCP_LB).run(response).await;
    assert!(
        matches!(verdict, Verdict::Failed { error: "504 backend timeout", after, .. } if after == Duration::from_secs(30)),
        "{verdict:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn gcp_preset_parks_and_answers_202_with_a_location_in_time() {
    let store = Store::new();
    let response = Profile::GCP_LB
        .apply(DelayedResponse::new())
        .park(store.clone(), ClientKey::new("gcp"))
        .wait(job());
    match RouterSim::new(Profile::GCP_LB).run(response).await {
        Verdict::Delivered {
            status,
            headers,
            elapsed,
            ..
        } => {
            assert_eq!(status, 202);
            assert!(headers["location"].to_str().unwrap().starts_with("/jobs/"));
            assert_eq!(elapsed, Duration::from_secs(20));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.running(), 1);
}
