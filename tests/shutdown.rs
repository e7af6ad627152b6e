//! Graceful shutdown: a request in flight when shutdown begins is answered,
//! then the server stops and refuses new connections.

use integration_tests::Data;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demo_services::auth::{Keys, USER_SERVICE};
use demo_services::fault::Faults;
use demo_services::{server, user};
use http::StatusCode;
use integration_tests::Http;
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_is_answered_before_the_server_stops() {
    let keys = Keys::ephemeral();
    let data = Data::new().await;
    // Every authenticated request takes 300 ms, so it is surely in flight
    // when shutdown begins.
    let state = user::State::open(
        &data.database(),
        &keys,
        Faults::new(0.0, Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let ops = state.server.clone();

    // Tell the test when the request has reached the server.
    let (arrived_tx, arrived_rx) = oneshot::channel::<()>();
    let arrived = Arc::new(Mutex::new(Some(arrived_tx)));
    let app = user::app(state).layer(tower::util::MapRequestLayer::new(
        move |req: axum::extract::Request| {
            if let Some(tx) = arrived.lock().unwrap().take() {
                let _ = tx.send(());
            }
            req
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        server::serve(listener, app, &ops, async {
            let _ = stop_rx.await;
        })
        .await
    });

    let token = keys
        .token("api-gateway", USER_SERVICE, None, Duration::from_secs(60))
        .unwrap();
    let http = Http::default();
    let url = format!("http://{addr}/users/1");
    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = url.clone();
        async move { http.get(&url, &token).await }
    });

    arrived_rx.await.unwrap();
    stop_tx.send(()).unwrap();

    let res = in_flight.await.unwrap();
    assert_eq!(
        res.status,
        StatusCode::OK,
        "the request in flight is answered"
    );
    assert_eq!(res.json["name"], "Ada Lovelace");
    // Well inside the 10 s grace period: it stops when the request is done,
    // not when the grace period runs out.
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops once the request is answered")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}
