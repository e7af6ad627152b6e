use std::task::Poll;

use tower::buffer::Buffer;
use tower::{Layer, Service, ServiceExt};
use tower_circuit::breaker::CircuitOpen;
use tower_test::mock;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn poll_ready_forwards_the_inner_readiness() {
    let b = breaker(count_config(10));
    let (mock, mut handle) = mock::pair::<u32, u32>();
    let mut svc = tower_test::mock::Spawn::new(b.layer().layer(mock));
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
}

#[tokio::test(start_paused = true)]
async fn open_circuit_does_not_fail_poll_ready() {
    let b = breaker(count_config(10));
    let (mock, mut handle) = mock::pair::<u32, u32>();
    handle.allow(10);
    let mut svc = tower_test::mock::Spawn::new(b.layer().layer(mock));
    b.force_open();
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    let err = svc.call(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn under_buffer_rejections_fail_calls_not_the_service() {
    let b = breaker(count_config(10));
    let (inner, _) = service(&b);
    let mut svc = Buffer::new(inner, 8);
    b.force_open();
    for _ in 0..20 {
        let err = svc.ready().await.unwrap().call(Call::Ok).await.unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err}");
    }
    b.reset();
    assert_eq!(
        svc.ready().await.unwrap().call(Call::Ok).await.unwrap(),
        "ok"
    );
}
