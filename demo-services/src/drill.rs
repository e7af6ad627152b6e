//! `demo-services drill`: a scripted outage on loopback, told step by step.
//!
//! Starts the three services on ports of their own with short resilience
//! settings, then: creates an order; stops the user service and keeps
//! ordering (retries, the breaker opening, orders served from the kept copy
//! of the user, a 503 with `Retry-After` for a user never seen); starts it
//! again (the breaker probing and closing); stops the notification service
//! (orders still created, notifications piling up in the outbox); starts it
//! again (the backlog draining to zero). Each step prints what the caller
//! saw and what `/health` says.

use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::auth::{API_GATEWAY, Keys, NOTIFICATION_SERVICE, ORDER_SERVICE, USER_SERVICE};
use crate::db::{Database, Durability};
use crate::fault::Faults;
use crate::harness::{self, Error, Http, Running};
use crate::order::{self, Resilience, Settings};
use crate::{notification, user};

/// The drill's resilience settings: the defaults' shape, in seconds rather
/// than tens of seconds, so the story fits in a few seconds.
pub fn settings() -> Resilience {
    Resilience {
        breaker_minimum_calls: 3,
        breaker_open_duration: Duration::from_secs(2),
        retry_max: 2,
        retry_base_delay: Duration::from_millis(50),
        timeout_get: Duration::from_millis(500),
        timeout_write: Duration::from_millis(500),
        call_deadline: Duration::from_secs(3),
        outbox_backoff_cap: Duration::from_millis(500),
        ..Resilience::default()
    }
}

/// What happened, for tests and for the closing summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Orders created with the user fetched live.
    pub live: u32,
    /// Orders created from the kept copy of the user.
    pub cached: u32,
    /// 503 answers (user never seen, user service unavailable).
    pub unavailable: u32,
    /// Of those, how many said when to come back (`Retry-After`).
    pub with_retry_after: u32,
    /// Times the user-service breaker opened.
    pub opened: u64,
    /// Whether the user-service breaker was closed again at the end.
    pub closed_again: bool,
    /// The most notifications waiting at once.
    pub pending_peak: u64,
    /// Whether every notification was delivered at the end.
    pub drained: bool,
}

struct Drill<'a> {
    http: Http,
    token: String,
    orders: String,
    state: order::State,
    report: Report,
    say: &'a mut dyn FnMut(String),
}

impl Drill<'_> {
    fn say(&mut self, line: impl Into<String>) {
        (self.say)(line.into());
    }

    async fn order(&mut self, user: i64) -> Result<(), Error> {
        let body = json!({
            "userId": user,
            "items": [{ "productId": "p-1", "quantity": 1, "unitPrice": 5.0 }]
        });
        let start = Instant::now();
        let res = self
            .http
            .try_send(
                http::Method::POST,
                &self.orders,
                Some(&self.token),
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await?;
        let took = start.elapsed();
        let breaker = self.state.upstream.users.breaker().state();
        let line = match res.status {
            StatusCode::CREATED => {
                let source = res.json["user"]["source"].as_str().unwrap_or("?");
                match source {
                    "live" => self.report.live += 1,
                    _ => self.report.cached += 1,
                }
                format!(
                    "order #{} for user {user}: 201, user from {source}, notification {}",
                    res.json["id"],
                    res.json["notification"].as_str().unwrap_or("?")
                )
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                self.report.unavailable += 1;
                let retry_after = res.headers.get("retry-after").and_then(|v| v.to_str().ok());
                if retry_after.is_some() {
                    self.report.with_retry_after += 1;
                }
                format!(
                    "order for user {user}: 503 {}{}",
                    res.json["error"].as_str().unwrap_or("?"),
                    retry_after
                        .map(|s| format!(", Retry-After: {s} s"))
                        .unwrap_or_default()
                )
            }
            other => format!("order for user {user}: {other} {}", res.json),
        };
        self.say(format!(
            "  {line}  ({} ms; user-service breaker {breaker})",
            took.as_millis()
        ));
        Ok(())
    }

    fn health(&mut self) {
        let h = self.state.health();
        let dep = |name: &str| -> String {
            let d: &Value = &h["dependencies"][name];
            let mut s = format!(
                "{name}: {} (window: {}, {} failed; rejected {}; opened {}",
                d["circuit"].as_str().unwrap_or("?"),
                counted(d["calls"].as_u64().unwrap_or(0), "call", "calls"),
                d["failures"],
                d["rejected"],
                counted(d["timesOpened"].as_u64().unwrap_or(0), "time", "times"),
            );
            if let Some(left) = d["retryAfter"].as_f64() {
                s.push_str(&format!("; half-open in {left:.1} s"));
            }
            s.push(')');
            s
        };
        let users = dep(USER_SERVICE);
        let notes = dep(NOTIFICATION_SERVICE);
        self.say(format!("  /health → {users}"));
        self.say(format!("            {notes}"));
        let pending = h["outbox"]["pending"].as_u64().unwrap_or(0);
        self.say(format!(
            "            outbox: {} pending",
            counted(pending, "notification", "notifications")
        ));
    }

    /// Gives the outbox a moment (at most 2 s) to deliver what it holds
    /// while the notification service is up, so `/health` shows the
    /// steady state rather than a notification in flight.
    async fn settle(&mut self) {
        let mut pending = self.state.outbox.watch_pending();
        let _ = tokio::time::timeout(Duration::from_secs(2), pending.wait_for(|n| *n == 0)).await;
    }

    fn retries(&mut self) {
        let users = self.state.upstream.users.retry_stats().retries;
        let notes = self.state.upstream.notifications.retry_stats().retries;
        self.say(format!(
            "  retries so far: {users} to user-service, {notes} to notification-service"
        ));
    }
}

/// Runs the drill with data under `data_dir`, telling the story through
/// `say`, one line at a time.
pub async fn run(data_dir: &Path, say: &mut dyn FnMut(String)) -> Result<Report, Error> {
    let keys = Keys::ephemeral();
    let db = Database::sqlite(data_dir, Durability::Full);
    let users = user::State::open(&db, &keys, Faults::default()).await?;
    let notifications = notification::State::open(&db, &keys, Faults::default()).await?;
    let user = harness::start(users.clone(), None).await?;
    let notification = harness::start(notifications.clone(), None).await?;
    let resilience = settings();
    let settings = Settings {
        user_url: user.url(),
        notification_url: notification.url(),
        user_transport: Default::default(),
        resilience: resilience.clone(),
        tls: None,
        nats: None,
    };
    let state = order::State::open(&db, &keys, &settings, Faults::default()).await?;
    let order = harness::start(state.clone(), None).await?;
    let token = keys.token(API_GATEWAY, ORDER_SERVICE, None, Duration::from_secs(600))?;
    let mut drill = Drill {
        http: Http::default(),
        token,
        orders: format!("{}/orders", order.url()),
        state,
        report: Report::default(),
        say,
    };
    drill.say(format!(
        "Three services on loopback: user {}, order {}, notification {}.",
        user.url(),
        order.url(),
        notification.url()
    ));
    drill.say(format!(
        "Breakers open at {:.0} % failures over at least {} calls and stay open {:?}; \
         {} retries from {:?}; {:?} per GET attempt.",
        resilience.breaker_failure_rate * 100.0,
        resilience.breaker_minimum_calls,
        resilience.breaker_open_duration,
        resilience.retry_max,
        resilience.retry_base_delay,
        resilience.timeout_get
    ));

    drill.say("\n1. All up: an order for user 1 (the order service keeps a copy of the user).");
    drill.order(1).await?;

    drill.say("\n2. The user service stops. Orders keep coming.");
    let user_addr = user.addr;
    user.stop().await?;
    for _ in 0..3 {
        drill.order(1).await?;
    }
    drill.retries();
    drill.say("  User 2 was never seen, so there is no copy to fall back on:");
    drill.order(2).await?;
    drill.settle().await;
    drill.health();

    drill.say("\n3. The user service comes back.");
    let user = harness::start(users, Some(user_addr)).await?;
    let breaker = drill.state.upstream.users.breaker().clone();
    if let Some(left) = breaker.retry_after() {
        drill.say(format!(
            "  The breaker stays open {:.1} s more; then the next call is a probe.",
            left.as_secs_f64()
        ));
        tokio::time::sleep(left).await;
    }
    drill.order(2).await?;
    drill.order(1).await?;
    drill.settle().await;
    drill.health();

    drill.say("\n4. The notification service stops. Orders do not wait for it.");
    let note_addr = notification.addr;
    notification.stop().await?;
    for user in [1, 2, 3] {
        drill.order(user).await?;
    }
    let mut pending = drill.state.outbox.watch_pending();
    drill.report.pending_peak = *pending.borrow();
    drill.health();

    drill.say("\n5. The notification service comes back; the outbox drains.");
    let notification = harness::start(notifications, Some(note_addr)).await?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(15);
    loop {
        let n = *pending.borrow_and_update();
        drill.report.pending_peak = drill.report.pending_peak.max(n);
        drill.say(format!(
            "  +{:>5} ms: {} pending",
            start.elapsed().as_millis(),
            counted(n, "notification", "notifications")
        ));
        if n == 0 {
            break;
        }
        match tokio::time::timeout_at(deadline, pending.changed()).await {
            Ok(Ok(())) => {}
            _ => {
                drill.say("  the backlog did not drain within 15 s");
                break;
            }
        }
    }
    drill.retries();
    drill.health();

    let m = drill.state.upstream.users.breaker().stats();
    drill.report.opened = m.times_opened;
    drill.report.closed_again = m.state == tower_circuit::breaker::CircuitState::Closed;
    drill.report.drained = drill.state.outbox.pending() == 0;
    let r = drill.report.clone();
    drill.say(format!(
        "\nSummary: {} with a live user, {} from the kept copy, {} answered 503 \
         ({} with Retry-After); the user-service breaker opened {} and is {}; \
         at most {} waited, and {}.",
        counted(u64::from(r.live), "order", "orders"),
        r.cached,
        r.unavailable,
        r.with_retry_after,
        counted(r.opened, "time", "times"),
        if r.closed_again {
            "closed again"
        } else {
            "not closed"
        },
        counted(r.pending_peak, "notification", "notifications"),
        if r.drained {
            "all were delivered"
        } else {
            "some are still pending"
        }
    ));
    drill.say(
        "Run `cargo run -p demo-services` and read /health and /metrics to watch the same on your own.",
    );

    let order_running: Running = order;
    order_running.stop().await?;
    user.stop().await?;
    notification.stop().await?;
    Ok(r)
}

/// `n` and the noun that goes with it: "1 time", "2 times".
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::counted;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(counted(1, "time", "times"), "1 time");
        assert_eq!(
            counted(0, "notification", "notifications"),
            "0 notifications"
        );
        assert_eq!(counted(4, "call", "calls"), "4 calls");
    }
}
