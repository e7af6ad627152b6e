//! Behaviour of the retry layer, one behaviour per test, on tokio's paused
//! clock: every delay below is exact because time only moves when the
//! layer sleeps.

#[path = "../support/logs.rs"]
mod logs;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode, header};
use tokio::time::Instant;
use tower::{BoxError, Layer, ServiceExt, service_fn};

use tower_circuit::breaker::{Breaker, Config};
use tower_circuit::retry::{Backoff, Jitter, RetryBudget, RetryLayer, RetryReason};
use tower_circuit::timeout::{Deadline, DeadlineLayer, Fixed, RequestTimeoutLayer};

/// What the server does on each attempt, in order; the last repeats.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    StatusRetryAfter(u16, &'static str),
    TransportError,
    Timeout,
}

/// Attempt times (since the test's start) seen by the fake server.
type Log = Arc<Mutex<Vec<Duration>>>;

fn server(
    answers: Vec<Answer>,
    log: Log,
) -> impl tower::Service<Request<String>, Response = Response<()>, Error = BoxError, Future: Send> + Clone
{
    let start = Instant::now();
    service_fn(move |_req: Request<String>| {
        let n = {
            let mut log = log.lock().unwrap();
            log.push(start.elapsed());
            log.len() - 1
        };
        let answer = answers[n.min(answers.len() - 1)];
        async move {
            let status = |code: u16| StatusCode::from_u16(code).unwrap();
            match answer {
                Answer::Status(code) => {
                    Ok(Response::builder().status(status(code)).body(()).unwrap())
                }
                Answer::StatusRetryAfter(code, after) => Ok(Response::builder()
                    .status(status(code))
                    .header(header::RETRY_AFTER, after)
                    .body(())
                    .unwrap()),
                Answer::TransportError => Err("connection refused".into()),
                Answer::Timeout => {
                    // Hangs: the per-attempt timeout in `run` ends it.
                    std::future::pending::<()>().await;
                    unreachable!()
                }
            }
        }
    })
}

/// No jitter, no budget: delays are 1 s, 2 s, 4 s.
fn plain() -> tower_circuit::retry::RetryBuilder {
    RetryLayer::builder("users")
        .backoff(Backoff::default().jitter(Jitter::None))
        .no_budget()
}

fn get() -> Request<String> {
    Request::get("/users/7").body(String::new()).unwrap()
}

fn post(idempotency_key: Option<&str>) -> Request<String> {
    let mut req = Request::builder().method(Method::POST).uri("/orders");
    if let Some(key) = idempotency_key {
        req = req.header("idempotency-key", key);
    }
    req.body("{\"item\":1}".to_string()).unwrap()
}

async fn run(
    layer: &RetryLayer,
    answers: Vec<Answer>,
    req: Request<String>,
) -> (Result<Response<()>, BoxError>, Vec<Duration>) {
    run_with(layer, answers, req).await
}

/// [`run`] with any idempotency rule.
async fn run_with<I: tower_circuit::retry::Idempotency + Clone>(
    layer: &RetryLayer<tower_circuit::retry::DefaultRetryClassifier, I>,
    answers: Vec<Answer>,
    req: Request<String>,
) -> (Result<Response<()>, BoxError>, Vec<Duration>) {
    let log = Log::default();
    let svc = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .layer(RequestTimeoutLayer::new(Fixed(Duration::from_secs(10))))
        .service(server(answers, log.clone()));
    let result = svc.oneshot(req).await;
    let attempts = log.lock().unwrap().clone();
    (result, attempts)
}

fn secs(list: &[f64]) -> Vec<Duration> {
    list.iter().map(|s| Duration::from_secs_f64(*s)).collect()
}

#[tokio::test(start_paused = true)]
async fn retries_5xx_with_exponential_delays_up_to_max_retries() {
    let layer = plain().build().unwrap();
    let (result, attempts) = run(&layer, vec![Answer::Status(503)], get()).await;
    assert_eq!(
        result.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the last answer"
    );
    assert_eq!(
        attempts,
        secs(&[0.0, 1.0, 3.0, 7.0]),
        "4 attempts, 1 s, 2 s, 4 s apart"
    );
    assert_eq!(layer.stats().retries, 3);
}

#[tokio::test(start_paused = true)]
async fn stops_retrying_at_the_first_success() {
    let layer = plain().build().unwrap();
    let (result, attempts) = run(
        &layer,
        vec![Answer::Status(502), Answer::Status(200)],
        get(),
    )
    .await;
    assert_eq!(result.unwrap().status(), StatusCode::OK);
    assert_eq!(attempts.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn retries_500_502_503_504_transport_errors_and_timeouts() {
    for answer in [
        Answer::Status(500),
        Answer::Status(502),
        Answer::Status(503),
        Answer::Status(504),
        Answer::TransportError,
        Answer::Timeout,
    ] {
        let layer = plain().max_retries(1).build().unwrap();
        let (_, attempts) = run(&layer, vec![answer], get()).await;
        assert_eq!(attempts.len(), 2, "{answer:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn never_retries_other_4xx_or_success() {
    for code in [200, 201, 400, 401, 403, 404, 409, 422] {
        let layer = plain().build().unwrap();
        let (_, attempts) = run(&layer, vec![Answer::Status(code)], get()).await;
        assert_eq!(attempts.len(), 1, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn never_retries_an_open_circuit() {
    let breaker = Breaker::new("users", Config::default()).unwrap();
    breaker.force_open();
    let layer = plain().build().unwrap();
    let log = Log::default();
    let svc = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .layer(breaker.layer())
        .service(server(vec![Answer::Status(200)], log.clone()));
    let err = svc.oneshot(get()).await.unwrap_err();
    assert!(err.is::<tower_circuit::breaker::CircuitOpen>());
    assert_eq!(
        breaker.stats().rejected,
        1,
        "one attempt, rejected; no retry"
    );
    assert_eq!(layer.stats().retries, 0);
}

#[tokio::test(start_paused = true)]
async fn post_without_idempotency_key_is_not_retried() {
    let layer = plain().build().unwrap();
    let (_, attempts) = run(&layer, vec![Answer::Status(503)], post(None)).await;
    assert_eq!(attempts.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn post_with_idempotency_key_is_retried() {
    let layer = plain().build().unwrap();
    let (_, attempts) = run(
        &layer,
        vec![Answer::Status(503), Answer::Status(201)],
        post(Some("order-42")),
    )
    .await;
    assert_eq!(attempts.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_idempotency_rule_of_the_callers_replaces_the_default() {
    // Searches are POSTs without side effects; GETs of /admin are not safe.
    let layer = plain()
        .idempotency(|method: &Method, uri: &http::Uri, _: &http::HeaderMap| {
            (method == Method::POST && uri.path() == "/search")
                || (method == Method::GET && !uri.path().starts_with("/admin"))
        })
        .build()
        .unwrap();
    let search = Request::post("/search").body(String::new()).unwrap();
    let (_, attempts) = run_with(&layer, vec![Answer::Status(503)], search).await;
    assert_eq!(attempts.len(), 4, "retried by the rule");
    let (_, attempts) = run_with(&layer, vec![Answer::Status(503)], post(None)).await;
    assert_eq!(attempts.len(), 1, "a POST the rule does not name");
    let admin = Request::get("/admin/reset").body(String::new()).unwrap();
    let (_, attempts) = run_with(&layer, vec![Answer::Status(503)], admin).await;
    assert_eq!(attempts.len(), 1, "a GET the rule refuses");
}

#[tokio::test(start_paused = true)]
async fn idempotent_methods_are_retried() {
    for method in [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ] {
        let layer = plain().max_retries(1).build().unwrap();
        let req = Request::builder()
            .method(method.clone())
            .uri("/x")
            .body(String::new())
            .unwrap();
        let (_, attempts) = run(&layer, vec![Answer::Status(503)], req).await;
        assert_eq!(attempts.len(), 2, "{method}");
    }
    let layer = plain().max_retries(1).build().unwrap();
    let patch = Request::builder()
        .method(Method::PATCH)
        .uri("/x")
        .body(String::new())
        .unwrap();
    assert_eq!(
        run(&layer, vec![Answer::Status(503)], patch).await.1.len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn the_retried_request_is_the_same_request() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let inner = service_fn(move |req: Request<String>| {
        log.lock().unwrap().push((
            req.method().clone(),
            req.uri().to_string(),
            req.headers().clone(),
            req.body().clone(),
        ));
        async { Ok::<_, BoxError>(Response::builder().status(503).body(()).unwrap()) }
    });
    let svc = plain().max_retries(1).build().unwrap().layer(inner);
    svc.oneshot(post(Some("k1"))).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1]);
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after_in_seconds_and_never_sooner() {
    let layer = plain()
        .max_retries(1)
        .backoff(Backoff::default().random(|| 0.0))
        .build()
        .unwrap();
    let (_, attempts) = run(&layer, vec![Answer::StatusRetryAfter(429, "5")], get()).await;
    assert_eq!(attempts, secs(&[0.0, 5.0]));
}

#[tokio::test(start_paused = true)]
async fn jitter_only_adds_to_retry_after() {
    let layer = plain()
        .max_retries(1)
        .backoff(Backoff::default().random(|| 0.5))
        .build()
        .unwrap();
    let (_, attempts) = run(&layer, vec![Answer::StatusRetryAfter(503, "5")], get()).await;
    assert_eq!(
        attempts,
        secs(&[0.0, 5.5]),
        "5 s asked, plus half the 1 s base"
    );
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after_as_an_http_date() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(8));
    let at: &'static str = Box::leak(at.into_boxed_str());
    let layer = plain()
        .max_retries(1)
        .backoff(Backoff::default().random(|| 0.0))
        .build()
        .unwrap();
    let (_, attempts) = run(&layer, vec![Answer::StatusRetryAfter(503, at)], get()).await;
    // HTTP dates have whole seconds: between 7 and 8 s from now.
    assert!(
        attempts[1] > Duration::from_secs(6) && attempts[1] <= Duration::from_secs(8),
        "{attempts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_is_not_retried() {
    let layer = plain()
        .max_retry_after(Duration::from_secs(30))
        .build()
        .unwrap();
    let (result, attempts) = run(&layer, vec![Answer::StatusRetryAfter(503, "120")], get()).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(result.unwrap().headers()[header::RETRY_AFTER], "120");
}

#[test]
fn retry_after_parses_both_forms() {
    use tower_circuit::retry::retry_after;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut headers = http::HeaderMap::new();
    headers.insert(header::RETRY_AFTER, "120".parse().unwrap());
    assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
    let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
    headers.insert(header::RETRY_AFTER, date.parse().unwrap());
    assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(90)));
    let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
    headers.insert(header::RETRY_AFTER, past.parse().unwrap());
    assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
    headers.insert(header::RETRY_AFTER, "soon".parse().unwrap());
    assert_eq!(retry_after(&headers, now), None);
}

#[test]
fn jitter_kinds_follow_their_formulas() {
    let b = |jitter| {
        Backoff::default()
            .base(Duration::from_secs(1))
            .cap(Duration::from_secs(30))
            .jitter(jitter)
            .random(|| 0.5)
    };
    // exp for retry 2 (from 0) is 4 s.
    assert_eq!(b(Jitter::Full).delay(2, None), Duration::from_secs(2));
    assert_eq!(b(Jitter::Equal).delay(2, None), Duration::from_secs(3));
    assert_eq!(b(Jitter::None).delay(2, None), Duration::from_secs(4));
    assert_eq!(
        b(Jitter::Additive(Duration::from_secs(1))).delay(2, None),
        Duration::from_millis(4_500)
    );
    // Decorrelated: U(base, 3 · previous) = 1 + 0.5 · (6 - 1).
    assert_eq!(
        b(Jitter::Decorrelated).delay(2, Some(Duration::from_secs(2))),
        Duration::from_millis(3_500)
    );
    assert_eq!(
        b(Jitter::Decorrelated).delay(2, Some(Duration::from_secs(20))),
        Duration::from_secs(30),
        "capped"
    );
    assert_eq!(
        b(Jitter::None).delay(10, None),
        Duration::from_secs(30),
        "capped"
    );
}

#[tokio::test(start_paused = true)]
async fn each_retry_session_draws_its_own_jitter() {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let log = delays.clone();
    let layer = RetryLayer::builder("users")
        .no_budget()
        .on_retry(move |e| log.lock().unwrap().push(e.delay))
        .build()
        .unwrap();
    let _ = run(&layer, vec![Answer::Status(503)], get()).await;
    let _ = run(&layer, vec![Answer::Status(503)], get()).await;
    let delays = delays.lock().unwrap();
    assert_eq!(delays.len(), 6);
    assert_ne!(
        delays[..3],
        delays[3..],
        "two sessions from one layer drew the same delays"
    );
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_stops_retries_and_is_counted() {
    let layer = RetryLayer::builder("users")
        .backoff(Backoff::default().jitter(Jitter::None))
        .budget(RetryBudget {
            window: Duration::from_secs(10),
            floor_per_sec: 0,
            share: 0.5,
        })
        .build()
        .unwrap();
    // No floor, and a retry costs two requests' deposits: the calls alternate
    // between no retry (one deposit in hand) and one (two in hand).
    let mut attempts = Vec::new();
    for _ in 0..4 {
        attempts.push(run(&layer, vec![Answer::Status(503)], get()).await.1.len());
    }
    assert_eq!(attempts, [1, 2, 1, 2]);
    assert_eq!(layer.stats().retries, 2);
    assert_eq!(
        layer.stats().budget_exhausted,
        4,
        "every call ended on a refused retry"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_the_backoff_short() {
    let layer = plain().build().unwrap();
    let log = Log::default();
    let svc = tower::ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_millis(2_500)))
        .layer(layer.clone())
        .service(server(vec![Answer::Status(503)], log.clone()));
    let start = Instant::now();
    let res = svc.oneshot(get()).await.unwrap();
    // Attempts at 0 s and 1 s; the next would start at 3 s, after the
    // deadline, so the layer returns the last answer at 1 s.
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(*log.lock().unwrap(), secs(&[0.0, 1.0]));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_on_the_request_is_respected_too() {
    let layer = plain().build().unwrap();
    let mut req = get();
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(1_500)));
    let (_, attempts) = run(&layer, vec![Answer::Status(503)], req).await;
    assert_eq!(attempts, secs(&[0.0, 1.0]));
}

#[tokio::test(start_paused = true)]
async fn every_retry_is_reported_and_logged() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let layer = plain()
        .max_retries(2)
        .on_retry(move |e| {
            log.lock()
                .unwrap()
                .push((e.name.to_string(), e.attempt, e.delay, e.reason))
        })
        .build()
        .unwrap();

    let logs = logs::capture();
    let _ = run(
        &layer,
        vec![Answer::TransportError, Answer::Status(504)],
        get(),
    )
    .await;

    assert_eq!(
        *events.lock().unwrap(),
        vec![
            (
                "users".to_string(),
                2,
                Duration::from_secs(1),
                RetryReason::Transport
            ),
            (
                "users".to_string(),
                3,
                Duration::from_secs(2),
                RetryReason::Status(StatusCode::GATEWAY_TIMEOUT)
            ),
        ]
    );
    let text = logs.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" retrying")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("WARN") && lines[0].contains("retry=\"users\""));
    assert!(lines[0].contains("attempt=2") && lines[0].contains("delay_ms=1000"));
    assert!(lines[0].contains("reason=transport error"), "{}", lines[0]);
    assert!(lines[1].contains("reason=status 504"), "{}", lines[1]);
}

#[test]
fn invalid_settings_are_rejected_when_built() {
    use tower_circuit::retry::RetryConfigError as E;
    let err = |b: tower_circuit::retry::RetryBuilder| b.build().unwrap_err();
    assert_eq!(
        err(plain().backoff(Backoff::default().base(Duration::ZERO))),
        E::ZeroBase
    );
    assert_eq!(
        err(plain().backoff(Backoff::default().multiplier(0.5))),
        E::Multiplier(0.5)
    );
    assert_eq!(
        err(plain().backoff(Backoff::default().cap(Duration::from_millis(10)))),
        E::CapBelowBase
    );
    let budget = RetryBudget {
        window: Duration::from_secs(120),
        ..RetryBudget::default()
    };
    assert_eq!(
        err(plain().budget(budget)),
        E::BudgetWindow(Duration::from_secs(120))
    );
    let budget = RetryBudget {
        share: -1.0,
        ..RetryBudget::default()
    };
    assert_eq!(err(plain().budget(budget)), E::BudgetShare(-1.0));
}

#[tokio::test(start_paused = true)]
async fn the_classifier_is_pluggable() {
    use tower_circuit::retry::Decision;
    // Retry 409 Conflict too, say for an optimistic-locking API.
    let conflicts = |result: Result<&Response<()>, &BoxError>| match result {
        Ok(res) if res.status() == StatusCode::CONFLICT => Decision::Retry {
            reason: RetryReason::Status(StatusCode::CONFLICT),
            not_before: None,
        },
        _ => Decision::Done,
    };
    let layer = plain()
        .max_retries(2)
        .build()
        .unwrap()
        .classifier(conflicts);
    let log = Log::default();
    let svc = layer.layer(server(vec![Answer::Status(409)], log.clone()));
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(log.lock().unwrap().len(), 3);
}

// === Retry-After edge cases, 429 and the budget's share (issue 11) ===

#[test]
fn retry_after_accepts_only_digits_and_clamps_huge_values() {
    use tower_circuit::retry::{MAX_RETRY_AFTER_SECS, retry_after};
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let parse = |value: &str| {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::RETRY_AFTER, value.parse().unwrap());
        retry_after(&headers, now)
    };
    let clamped = Some(Duration::from_secs(MAX_RETRY_AFTER_SECS));
    assert_eq!(MAX_RETRY_AFTER_SECS, 2_147_483_648, "RFC 9111 §1.2.2");
    assert_eq!(parse("99999999999999999999"), clamped);
    assert_eq!(parse("2147483649"), clamped);
    assert_eq!(parse("2147483648"), clamped);
    assert_eq!(parse("007"), Some(Duration::from_secs(7)));
    for bad in ["+5", "-5", "5.0", "5 ", " 5", "5\t", "0x10", "1 2", "1_000"] {
        assert_eq!(parse(bad), None, "{bad:?} is not delay-seconds");
    }
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_is_not_retried_early() {
    // Before: the value did not fit a u64, was read as absent, and the
    // call was retried after the normal 1 s backoff.
    let layer = plain().build().unwrap();
    let (result, attempts) = run(
        &layer,
        vec![Answer::StatusRetryAfter(503, "99999999999999999999")],
        get(),
    )
    .await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(result.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_waits_as_asked_under_a_huge_cap() {
    let layer = plain()
        .max_retries(1)
        .max_retry_after(Duration::MAX)
        .backoff(Backoff::default().random(|| 0.0))
        .build()
        .unwrap();
    let (_, attempts) = run(
        &layer,
        vec![Answer::StatusRetryAfter(503, "900000000")],
        get(),
    )
    .await;
    assert_eq!(
        attempts,
        secs(&[0.0, 900_000_000.0]),
        "never sooner than asked"
    );
    // Beyond what a timer can wait (~30 years): returned, not cut short.
    let (_, attempts) = run(
        &layer,
        vec![Answer::StatusRetryAfter(503, "99999999999999999999")],
        get(),
    )
    .await;
    assert_eq!(attempts.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn duration_max_everywhere_never_panics() {
    for jitter in [
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
        Jitter::Additive(Duration::MAX),
        Jitter::None,
    ] {
        for u in [0.0, 0.5, 0.999_999_9] {
            let backoff = Backoff::default()
                .base(Duration::MAX)
                .cap(Duration::MAX)
                .multiplier(1e300)
                .jitter(jitter)
                .random(move || u);
            for n in [0, 1, 50, u32::MAX] {
                let _ = backoff.delay(n, Some(Duration::MAX));
                let _ = backoff.delay(n, None);
            }
        }
    }
    for after in ["5", "99999999999999999999", "900000000"] {
        let layer = RetryLayer::builder("users")
            .max_retries(2)
            .max_retry_after(Duration::MAX)
            .backoff(
                Backoff::default()
                    .base(Duration::MAX)
                    .cap(Duration::MAX)
                    .jitter(Jitter::Decorrelated)
                    .random(|| 0.999),
            )
            .build()
            .unwrap();
        let log = Log::default();
        let svc = tower::ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::MAX))
            .layer(layer)
            .layer(RequestTimeoutLayer::new(Fixed(Duration::MAX)))
            .service(server(
                vec![Answer::StatusRetryAfter(503, after)],
                log.clone(),
            ));
        let res = svc.oneshot(get()).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let _ = Deadline::after(Duration::MAX);
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_is_not_retried() {
    let layer = plain()
        .backoff(Backoff::default().random(|| 0.0))
        .build()
        .unwrap();
    let (result, attempts) = run(&layer, vec![Answer::Status(429)], get()).await;
    assert_eq!(attempts.len(), 1, "a 4xx with no safe time to come back");
    assert_eq!(result.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    // With one, it waits as asked (see honours_retry_after_in_seconds_and_never_sooner).
    let (_, attempts) = run(&layer, vec![Answer::StatusRetryAfter(429, "2")], get()).await;
    assert_eq!(attempts, secs(&[0.0, 2.0, 4.0, 6.0]));
}

#[tokio::test(start_paused = true)]
async fn the_budget_allows_exactly_its_share() {
    for (share, expected) in [(0.1, 10), (0.3, 30), (0.5, 50), (0.7, 70), (1.0, 100)] {
        let layer = RetryLayer::builder("users")
            .max_retries(1)
            .backoff(
                Backoff::default()
                    .base(Duration::from_millis(1))
                    .jitter(Jitter::None),
            )
            .budget(RetryBudget {
                window: Duration::from_secs(10),
                floor_per_sec: 0,
                share,
            })
            .build()
            .unwrap();
        for _ in 0..100 {
            let _ = run(&layer, vec![Answer::Status(503)], get()).await;
        }
        assert_eq!(
            layer.stats().retries,
            expected,
            "share {share}: 100 calls, each wanting one retry"
        );
        assert_eq!(layer.stats().budget_exhausted, 100 - expected);
    }
}

// === The caller's deadline does not poison the breaker (issue 11) ===

/// A healthy dependency that takes 10 ms per call.
fn healthy()
-> impl tower::Service<Request<String>, Response = Response<()>, Error = BoxError, Future: Send> + Clone
{
    service_fn(|_req: Request<String>| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, BoxError>(Response::new(()))
    })
}

#[tokio::test(start_paused = true)]
async fn calls_cut_short_by_the_callers_deadline_do_not_open_the_breaker() {
    let breaker = Breaker::new("users", Config::default().minimum_calls(5)).unwrap();
    // Ten calls with 1 ms of budget, as `x-request-budget-ms: 1` gives a
    // handler's outbound calls: every one ends in a deadline Elapsed.
    for _ in 0..10 {
        let svc = tower::ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::from_millis(1)))
            .layer(plain().build().unwrap())
            .layer(breaker.layer())
            .layer(RequestTimeoutLayer::by_method())
            .service(healthy());
        let err = svc.oneshot(get()).await.unwrap_err();
        let elapsed = err
            .downcast_ref::<tower_circuit::timeout::Elapsed>()
            .unwrap();
        assert!(elapsed.is_deadline(), "{err}");
    }
    // An already passed deadline (the attempt is not even made) likewise.
    let mut req = get();
    req.extensions_mut().insert(Deadline::after(Duration::ZERO));
    let svc = tower::ServiceBuilder::new()
        .layer(breaker.layer())
        .layer(RequestTimeoutLayer::by_method())
        .service(healthy());
    assert!(svc.oneshot(req).await.is_err());
    let m = breaker.stats();
    assert_eq!(m.state, tower_circuit::breaker::CircuitState::Closed);
    assert_eq!(
        (m.calls, m.failures),
        (0, 0),
        "ignored: neither success nor failure"
    );
}

#[tokio::test(start_paused = true)]
async fn a_per_attempt_timeout_still_counts_as_a_failure() {
    let breaker = Breaker::new(
        "users",
        Config::default()
            .window(tower_circuit::breaker::Window::Count { size: 4 })
            .minimum_calls(4),
    )
    .unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(10)))
        .layer(plain().build().unwrap())
        .layer(breaker.layer())
        .layer(RequestTimeoutLayer::new(Fixed(Duration::from_millis(5))))
        .service(healthy());
    let err = svc.oneshot(get()).await.unwrap_err();
    assert!(
        !err.downcast_ref::<tower_circuit::timeout::Elapsed>()
            .unwrap()
            .is_deadline()
    );
    let m = breaker.stats();
    assert_eq!(
        m.failures, 4,
        "four attempts, each timed out on its own limit"
    );
    assert_eq!(m.state, tower_circuit::breaker::CircuitState::Open);
}
