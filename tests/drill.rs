//! The `drill` tells the story of an outage; its report says what happened.

use demo_services::drill;
use integration_tests::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_opens_and_closes_the_breaker_and_drains_the_outbox() {
    let data = TempDir::new();
    let mut lines = Vec::new();
    let report = drill::run(data.path(), &mut |line| lines.push(line))
        .await
        .expect("the drill runs");
    let text = lines.join("\n");

    // One live order, three from the kept copy while the user service is
    // down, one 503 with Retry-After for the unseen user, then live again.
    assert_eq!(report.cached, 3, "{text}");
    assert_eq!(report.unavailable, 1, "{text}");
    assert_eq!(report.with_retry_after, 1, "{text}");
    assert_eq!(report.live, 6, "{text}");
    assert_eq!(report.opened, 1, "{text}");
    assert!(report.closed_again, "{text}");
    assert!(
        report.pending_peak >= 3,
        "orders queued notifications: {text}"
    );
    assert!(report.drained, "{text}");

    for step in ["\n1. ", "\n2. ", "\n3. ", "\n4. ", "\n5. ", "\nSummary: "] {
        assert!(text.contains(step), "missing {step:?} in:\n{text}");
    }
    assert!(text.contains("user from cache"));
    assert!(text.contains("Retry-After"));
    assert!(text.contains(": 0 notifications pending"));
}
