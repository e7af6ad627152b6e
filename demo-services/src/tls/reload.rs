//! Rotation: a service's certificate reloaded from disk while it runs
//! ([`run`], which [`server::serve`](crate::server::serve()) starts for a
//! service with `--tls-dir`).
//!
//! The task reloads the service's [`Identity`] when
//!
//! - its certificate or key file changes: both are read (bounded, as at
//!   start) every [`ReloadSettings::poll_interval`] and compared by
//!   digest, so a change is noticed within about a second, whatever the
//!   file system reports about times, and with no watcher dependency;
//! - the current certificate reaches its refresh time
//!   ([`Loaded::refresh_at`], 70 % of its lifetime). If the files still
//!   hold the same certificate then, renewal is overdue: a warning says
//!   so and it is checked again after a backoff that doubles from
//!   [`ReloadSettings::overdue_retry_min`] up to
//!   [`ReloadSettings::overdue_retry_max`].
//!
//! A reload that fails (a certificate beside the key of another, a file
//! that is not PEM, the certificate of another service) changes nothing:
//! new connections keep the previous certificate, the error is logged,
//! and the next change of the files is tried again. Since the identity is
//! what rustls asks on every handshake, a successful reload reaches every
//! new connection, served and (for the order service) made, and no
//! established one is touched. Each reload is counted by result
//! (`tls_certificate_reloads_total`, [`ReloadResult`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::time::{Instant, sleep_until};

use super::files::read_pem;
use super::identity::{Identity, Loaded};
use crate::telemetry::{Escaped, Metrics};

/// How often the certificate and key files are read for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The first wait before checking again for a renewal that is overdue.
pub const OVERDUE_RETRY_MIN: Duration = Duration::from_secs(10);

/// The longest wait between checks for an overdue renewal.
pub const OVERDUE_RETRY_MAX: Duration = Duration::from_secs(300);

/// How the reload task watches and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadSettings {
    /// How often the files are read for changes.
    pub poll_interval: Duration,
    /// The first wait before checking again for an overdue renewal.
    pub overdue_retry_min: Duration,
    /// The longest such wait (the backoff doubles up to it).
    pub overdue_retry_max: Duration,
}

impl Default for ReloadSettings {
    fn default() -> ReloadSettings {
        ReloadSettings {
            poll_interval: POLL_INTERVAL,
            overdue_retry_min: OVERDUE_RETRY_MIN,
            overdue_retry_max: OVERDUE_RETRY_MAX,
        }
    }
}

/// What one reload came to: the `result` label of
/// `tls_certificate_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new certificate: new connections present it.
    Renewed,
    /// The files hold the certificate already presented.
    Unchanged,
    /// The files could not be loaded; the previous certificate stays.
    Failed,
}

impl ReloadResult {
    /// Every result, in the order `/metrics` lists them.
    pub const ALL: [ReloadResult; 3] = [
        ReloadResult::Renewed,
        ReloadResult::Unchanged,
        ReloadResult::Failed,
    ];

    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Renewed => "renewed",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Failed => "failed",
        }
    }
}

/// What set off a reload, for the log.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    FilesChanged,
    RefreshTime,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::FilesChanged => "the certificate or key file changed",
            Trigger::RefreshTime => "the certificate reached its refresh time",
        }
    }
}

/// Reloads `identity` as its files change and at its refresh time, until
/// dropped (the caller aborts it at shutdown), counting each reload into
/// `metrics`.
pub async fn run(identity: Arc<Identity>, settings: ReloadSettings, metrics: Metrics) {
    let mut seen = fingerprint(&identity);
    let mut current = identity.current();
    let mut refresh = refresh_deadline(&current);
    let mut overdue_retry = settings.overdue_retry_min;
    let mut poll = tokio::time::interval(settings.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    loop {
        let trigger = tokio::select! {
            _ = poll.tick() => {
                // Read before reloading: a change made after this read is
                // seen by the next poll even if the reload already took it.
                let now = fingerprint(&identity);
                if now == seen {
                    continue;
                }
                seen = now;
                Trigger::FilesChanged
            }
            () = sleep_until(refresh) => Trigger::RefreshTime,
        };
        let (result, loaded) = reload(&identity, &current, trigger);
        metrics.tls_reload(result);
        match (result, trigger) {
            (ReloadResult::Renewed, _) => {
                current = loaded;
                refresh = refresh_deadline(&current);
                overdue_retry = settings.overdue_retry_min;
            }
            (_, Trigger::RefreshTime) => {
                let expires_in = signed_secs_until(current.not_after);
                tracing::warn!(
                    spiffe_id = %current.spiffe_id,
                    serial = %current.serial,
                    not_after = %super::rfc3339(current.not_after),
                    expires_in_secs = expires_in,
                    retry_in = ?overdue_retry,
                    "certificate renewal is overdue: the files still hold the certificate \
                     past its refresh time (renew it, e.g. `demo-services certs --renew`)"
                );
                refresh = Instant::now() + overdue_retry;
                overdue_retry = (overdue_retry * 2).min(settings.overdue_retry_max);
            }
            (_, Trigger::FilesChanged) => {}
        }
    }
}

/// Reloads `identity` and logs what came of it. Returns the certificate
/// now presented.
///
/// The files are read on the task's own thread: two local files of at
/// most 64 KiB each, once a poll, cost less than a hop to a blocking
/// thread, and keep the task's timing exact under paused test time.
fn reload(
    identity: &Identity,
    previous: &Arc<Loaded>,
    trigger: Trigger,
) -> (ReloadResult, Arc<Loaded>) {
    match identity.reload() {
        Ok(loaded) if loaded.serial == previous.serial => {
            tracing::debug!(
                serial = %loaded.serial,
                trigger = trigger.as_str(),
                "reloaded the certificate: unchanged"
            );
            (ReloadResult::Unchanged, loaded)
        }
        Ok(loaded) => {
            tracing::info!(
                spiffe_id = %loaded.spiffe_id,
                serial = %loaded.serial,
                previous_serial = %previous.serial,
                not_after = %super::rfc3339(loaded.not_after),
                trigger = trigger.as_str(),
                "reloaded the certificate: new connections present the new one"
            );
            (ReloadResult::Renewed, loaded)
        }
        Err(error) => {
            let error = error.to_string();
            // The error quotes file contents' faults (and may name a
            // certificate's URI): escaped.
            tracing::warn!(
                error = %Escaped(&error),
                serial = %previous.serial,
                trigger = trigger.as_str(),
                "certificate reload failed: still presenting the previous certificate; \
                 trying again when the files change"
            );
            (ReloadResult::Failed, previous.clone())
        }
    }
}

/// A digest of the certificate and key files as they are now; `None`
/// where one cannot be read (it is being replaced, or gone), which is a
/// state of its own, so its end is a change too.
type Fingerprint = [Option<[u8; 32]>; 2];

fn fingerprint(identity: &Identity) -> Fingerprint {
    [identity.cert_path(), identity.key_path()].map(|path| {
        read_pem(path)
            .ok()
            .map(|bytes| Sha256::digest(bytes).into())
    })
}

/// When (on tokio's clock, so tests can advance it) `loaded` reaches its
/// refresh time; now if it has.
fn refresh_deadline(loaded: &Loaded) -> Instant {
    let left = loaded
        .refresh_at()
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

/// Whole seconds from now until `t`, negative once it has passed.
pub(crate) fn signed_secs_until(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::now()) {
        Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        Err(past) => i64::try_from(past.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use time::OffsetDateTime;

    use super::super::certs;
    use super::super::identity::TlsDir;
    use super::*;

    const SERVICE: &str = "user-service";
    const HOUR: Duration = Duration::from_secs(3600);

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Leaves valid for `ttl` from `issued`.
    fn dir(name: &str, ttl: Duration, issued: OffsetDateTime) -> Dir {
        let dir = std::env::temp_dir().join(format!("tls-reload-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        certs::create(&dir, "demo.local", ttl, issued).unwrap();
        Dir(dir)
    }

    /// Hour-long leaves whose refresh time is `secs` from now: `certs`
    /// backdates `notBefore` by a minute, and the refresh time is 70 % of
    /// the whole validity after it.
    fn refreshing_in(name: &str, secs: u64) -> Dir {
        let lifetime = HOUR + Duration::from_secs(60);
        let to_refresh = lifetime.mul_f64(0.7) - Duration::from_secs(60);
        let issued = OffsetDateTime::now_utc() - (to_refresh - Duration::from_secs(secs));
        dir(name, HOUR, issued)
    }

    fn count(metrics: &Metrics, result: ReloadResult) -> u64 {
        let line = format!(
            "tls_certificate_reloads_total{{result=\"{}\"}} ",
            result.as_str()
        );
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |n| n.parse().unwrap())
    }

    fn start(tls: &TlsDir, settings: ReloadSettings) -> (Metrics, tokio::task::JoinHandle<()>) {
        let metrics = Metrics::new();
        let task = tokio::spawn(run(tls.identity().clone(), settings, metrics.clone()));
        (metrics, task)
    }

    /// Lets the task (on this test's one thread) act on whatever time has
    /// come.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    async fn wait_until(poll: Duration, done: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !done() {
                tokio::time::sleep(poll).await;
            }
        })
        .await
        .expect("within 5 s");
    }

    fn renew(dir: &Path) {
        certs::renew(dir, None, HOUR, OffsetDateTime::now_utc()).unwrap();
    }

    #[tokio::test]
    async fn changed_files_are_reloaded_and_a_broken_certificate_is_not_taken() {
        let dir = dir("watch", HOUR, OffsetDateTime::now_utc());
        let tls = TlsDir::open(&dir.0, SERVICE).unwrap();
        let first = tls.identity().current().serial.clone();
        let settings = ReloadSettings {
            poll_interval: Duration::from_millis(20),
            ..ReloadSettings::default()
        };
        let (metrics, task) = start(&tls, settings);
        // Files change while the task sleeps (this test has one thread),
        // so each change is seen whole.
        let poll = settings.poll_interval;
        settle().await;

        let cert = tls.identity().cert_path().to_owned();
        let good = std::fs::read(&cert).unwrap();
        std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nnot one\n").unwrap();
        wait_until(poll, || count(&metrics, ReloadResult::Failed) == 1).await;
        assert_eq!(tls.identity().current().serial, first);

        // The same certificate back: read again, nothing new.
        std::fs::write(&cert, &good).unwrap();
        wait_until(poll, || count(&metrics, ReloadResult::Unchanged) == 1).await;
        assert_eq!(tls.identity().current().serial, first);

        renew(&dir.0);
        wait_until(poll, || count(&metrics, ReloadResult::Renewed) == 1).await;
        assert_ne!(tls.identity().current().serial, first);
        assert_eq!(count(&metrics, ReloadResult::Failed), 1);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_refresh_time_unrenewed_files_are_checked_again_with_backoff() {
        let dir = refreshing_in("overdue", 100);
        let tls = TlsDir::open(&dir.0, SERVICE).unwrap();
        let settings = ReloadSettings {
            poll_interval: 100 * HOUR,
            overdue_retry_min: Duration::from_secs(10),
            overdue_retry_max: Duration::from_secs(25),
        };
        let (metrics, task) = start(&tls, settings);
        let checks = || count(&metrics, ReloadResult::Unchanged);
        settle().await;

        tokio::time::advance(Duration::from_secs(95)).await;
        settle().await;
        assert_eq!(checks(), 0, "not before the refresh time");
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert_eq!(checks(), 1, "at the refresh time");

        // Then 10 s later, 20 s, and 25 s (the cap) from then on.
        for (wait, total) in [(10, 2), (20, 3), (25, 4), (25, 5)] {
            tokio::time::advance(Duration::from_secs(wait - 1)).await;
            settle().await;
            assert_eq!(checks(), total - 1, "not before {wait} s");
            tokio::time::advance(Duration::from_secs(1)).await;
            settle().await;
            assert_eq!(checks(), total, "after {wait} s");
        }
        assert_eq!(count(&metrics, ReloadResult::Renewed), 0);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_found_at_the_refresh_time_is_taken_and_its_own_refresh_time_follows() {
        let dir = refreshing_in("refresh", 100);
        let tls = TlsDir::open(&dir.0, SERVICE).unwrap();
        let first = tls.identity().current().serial.clone();
        // The files are never polled in this test's time: only the
        // refresh time finds the renewal.
        let settings = ReloadSettings {
            poll_interval: 100 * HOUR,
            ..ReloadSettings::default()
        };
        let (metrics, task) = start(&tls, settings);
        settle().await;
        renew(&dir.0);

        tokio::time::advance(Duration::from_secs(101)).await;
        settle().await;
        assert_eq!(count(&metrics, ReloadResult::Renewed), 1);
        assert_ne!(tls.identity().current().serial, first);

        // The new hour-long leaf reaches its refresh time some 41 minutes
        // on (70 % of 61 minutes, less the minute of backdating).
        tokio::time::advance(Duration::from_secs(40 * 60)).await;
        settle().await;
        assert_eq!(count(&metrics, ReloadResult::Unchanged), 0);
        tokio::time::advance(Duration::from_secs(2 * 60)).await;
        settle().await;
        assert_eq!(count(&metrics, ReloadResult::Unchanged), 1);
        task.abort();
    }
}
