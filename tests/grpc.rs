//! The user service's gRPC API against the real service on
//! `127.0.0.1:0`: each RPC and each status of the contract, tokens and
//! permissions, health and reflection without a token, and a stream cut
//! by its deadline. The client is the code generated from `user.proto`,
//! over hyper-util's HTTP/2 cleartext client.

use integration_tests::Data;
use std::time::Duration;

use demo_services::auth::{self, API_GATEWAY, Keys, NOTIFICATION_SERVICE, USER_SERVICE};
use demo_services::fault::Faults;
use demo_services::harness;
use demo_services::proto::user::user_service_client::UserServiceClient;
use demo_services::proto::user::{GetUserRequest, ListUsersRequest, UpdateUserRequest, User};
use demo_services::user;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use integration_tests::Running;
use tokio_stream::StreamExt;
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// HTTP/2 with prior knowledge: what gRPC clients speak to the service.
type H2 = Client<HttpConnector, tonic::body::Body>;

/// A user service on loopback, with a client and tokens for it.
struct Fixture {
    keys: Keys,
    _data: Data,
    running: Running,
    state: user::State,
    h2: H2,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_with(|_| ()).await
    }

    async fn start_with(configure: impl FnOnce(&mut user::State)) -> Fixture {
        let keys = Keys::ephemeral();
        let data = Data::new().await;
        let mut state = user::State::open(&data.database(), &keys, Faults::default())
            .await
            .expect("open the user service");
        configure(&mut state);
        let running = harness::start(state.clone(), None)
            .await
            .expect("start the user service");
        Fixture {
            keys,
            _data: data,
            running,
            state,
            h2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    fn origin(&self) -> http::Uri {
        self.running.url().parse().expect("the service's URL")
    }

    fn users(&self) -> UserServiceClient<H2> {
        UserServiceClient::with_origin(self.h2.clone(), self.origin())
    }

    fn health(&self) -> HealthClient<H2> {
        HealthClient::with_origin(self.h2.clone(), self.origin())
    }

    /// A token of `caller` (with its usual permissions) for the user
    /// service.
    fn token(&self, caller: &str) -> String {
        self.keys
            .token(caller, USER_SERVICE, None, Duration::from_secs(300))
            .expect("sign a token")
    }

    /// The gateway may read and write users.
    fn writer(&self) -> String {
        self.token(API_GATEWAY)
    }

    /// The notification service may only read them.
    fn reader(&self) -> String {
        self.token(NOTIFICATION_SERVICE)
    }

    async fn get(&self, id: i32) -> Result<User, Status> {
        let req = with_token(GetUserRequest { id }, &self.writer());
        self.users().get_user(req).await.map(|r| r.into_inner())
    }

    async fn update(&self, id: i32, name: &str, email: &str) -> Result<User, Status> {
        let msg = UpdateUserRequest {
            id,
            name: name.into(),
            email: email.into(),
        };
        let req = with_token(msg, &self.writer());
        self.users().update_user(req).await.map(|r| r.into_inner())
    }

    /// The ids of the page, or the status that ended the call or stream.
    async fn list(&self, page: i32, page_size: i32) -> Result<Vec<i32>, Status> {
        let req = with_token(ListUsersRequest { page, page_size }, &self.writer());
        let mut stream = self.users().list_users(req).await?.into_inner();
        let mut ids = Vec::new();
        while let Some(user) = stream.next().await {
            ids.push(user?.id);
        }
        Ok(ids)
    }
}

fn with_token<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a header value"),
    );
    req
}

fn code<T: std::fmt::Debug>(result: Result<T, Status>) -> Code {
    result.expect_err("a status").code()
}

// === GetUser ===

#[tokio::test]
async fn get_user_returns_the_user_with_an_rfc3339_creation_time() {
    let f = Fixture::start().await;
    let ada = f.get(1).await.expect("user 1");
    assert_eq!(
        ada,
        User {
            id: 1,
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
        }
    );
}

#[tokio::test]
async fn get_user_of_an_unknown_id_is_not_found() {
    let f = Fixture::start().await;
    let status = f.get(4242).await.expect_err("no user 4242");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no user 4242");
}

#[tokio::test]
async fn get_user_of_a_zero_or_negative_id_is_an_invalid_argument() {
    let f = Fixture::start().await;
    for id in [0, -1, i32::MIN] {
        let status = f.get(id).await.expect_err("a bad id");
        assert_eq!(status.code(), Code::InvalidArgument, "id {id}");
        assert_eq!(status.message(), "id must be 1 or more");
    }
}

// === ListUsers ===

#[tokio::test]
async fn list_users_streams_the_page_asked_for() {
    let f = Fixture::start().await;
    assert_eq!(f.list(1, 2).await.unwrap(), [1, 2]);
    assert_eq!(f.list(2, 2).await.unwrap(), [3]);
    assert_eq!(f.list(2, 1).await.unwrap(), [2]);
}

#[tokio::test]
async fn list_users_past_the_end_is_an_empty_stream() {
    let f = Fixture::start().await;
    assert_eq!(f.list(3, 2).await.unwrap(), Vec::<i32>::new());
    assert_eq!(f.list(i32::MAX, 100).await.unwrap(), Vec::<i32>::new());
}

#[tokio::test]
async fn list_users_zero_means_the_first_page_of_the_default_size() {
    let f = Fixture::start().await;
    for n in 4..=60 {
        f.state
            .store
            .create("Someone", &format!("someone{n}@example.com"))
            .await
            .expect("create a user");
    }
    let first_fifty: Vec<i32> = (1..=50).collect();
    assert_eq!(f.list(0, 0).await.unwrap(), first_fifty);
    assert_eq!(f.list(1, 0).await.unwrap(), first_fifty);
    assert_eq!(f.list(2, 0).await.unwrap(), (51..=60).collect::<Vec<_>>());
    assert_eq!(f.list(0, 100).await.unwrap(), (1..=60).collect::<Vec<_>>());
}

#[tokio::test]
async fn list_users_refuses_negative_numbers_and_pages_over_100() {
    let f = Fixture::start().await;
    for (page, size) in [(-1, 0), (0, -1), (1, 101), (1, i32::MAX)] {
        let status = f.list(page, size).await.expect_err("a bad page");
        assert_eq!(status.code(), Code::InvalidArgument, "{page}, {size}");
        assert!(
            status.message().starts_with("page"),
            "{page}, {size}: {}",
            status.message()
        );
    }
}

// === UpdateUser ===

#[tokio::test]
async fn update_user_sets_both_fields_and_keeps_them() {
    let f = Fixture::start().await;
    let updated = f
        .update(2, "  Grace B. Hopper ", "grace@navy.example")
        .await
        .expect("update user 2");
    assert_eq!(updated.name, "Grace B. Hopper", "trimmed as REST does");
    assert_eq!(updated.email, "grace@navy.example");
    assert_eq!(updated.created_at, "2026-01-01T00:00:00.000Z");
    assert_eq!(f.get(2).await.unwrap(), updated);
}

#[tokio::test]
async fn update_user_keeps_a_field_sent_empty() {
    let f = Fixture::start().await;
    let renamed = f.update(3, "A. M. Turing", "").await.unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.email.as_str()),
        ("A. M. Turing", "alan@example.com")
    );
    let moved = f.update(3, "", "turing@example.org").await.unwrap();
    assert_eq!(
        (moved.name.as_str(), moved.email.as_str()),
        ("A. M. Turing", "turing@example.org")
    );
    let same = f.update(3, "", "").await.unwrap();
    assert_eq!(same, moved);
}

#[tokio::test]
async fn update_user_refuses_what_rest_refuses() {
    let f = Fixture::start().await;
    let long_name = "n".repeat(201);
    for (name, email, says) in [
        ("Ada", "not-an-email", "email"),
        ("Ada", "two@at@example.com", "email"),
        ("Ada", "@example.com", "email"),
        ("   ", "ada@example.com", "name"),
        (long_name.as_str(), "ada@example.com", "name"),
    ] {
        let status = f.update(1, name, email).await.expect_err("bad input");
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?} {email:?}");
        assert!(status.message().starts_with(says), "{}", status.message());
    }
    assert_eq!(f.get(1).await.unwrap().email, "ada@example.com");
}

#[tokio::test]
async fn update_user_to_another_users_email_already_exists() {
    let f = Fixture::start().await;
    let status = f
        .update(1, "", "grace@example.com")
        .await
        .expect_err("taken");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(f.get(1).await.unwrap().email, "ada@example.com");
}

#[tokio::test]
async fn update_user_of_an_unknown_or_bad_id() {
    let f = Fixture::start().await;
    assert_eq!(code(f.update(4242, "Nobody", "").await), Code::NotFound);
    assert_eq!(code(f.update(0, "Nobody", "").await), Code::InvalidArgument);
}

// === Tokens and permissions ===

#[tokio::test]
async fn every_method_needs_a_valid_token() {
    let f = Fixture::start().await;
    let mut users = f.users();
    let get = users.get_user(GetUserRequest { id: 1 }).await;
    assert_eq!(code(get), Code::Unauthenticated);
    let list = users.list_users(ListUsersRequest::default()).await;
    assert_eq!(code(list), Code::Unauthenticated);
    let update = users
        .update_user(UpdateUserRequest {
            id: 1,
            name: "Mallory".into(),
            email: String::new(),
        })
        .await;
    assert_eq!(code(update), Code::Unauthenticated);
    let forged = with_token(GetUserRequest { id: 1 }, "not.a.token");
    assert_eq!(code(users.get_user(forged).await), Code::Unauthenticated);
    // A token for another service is not one for this one.
    let elsewhere = f
        .keys
        .token(
            API_GATEWAY,
            auth::ORDER_SERVICE,
            None,
            Duration::from_secs(300),
        )
        .unwrap();
    let req = with_token(GetUserRequest { id: 1 }, &elsewhere);
    assert_eq!(code(users.get_user(req).await), Code::Unauthenticated);
}

#[tokio::test]
async fn a_read_only_caller_reads_but_cannot_update() {
    let f = Fixture::start().await;
    let reader = f.reader();
    let mut users = f.users();
    let read = users
        .get_user(with_token(GetUserRequest { id: 1 }, &reader))
        .await;
    assert_eq!(read.unwrap().into_inner().id, 1);
    let list = users
        .list_users(with_token(ListUsersRequest::default(), &reader))
        .await;
    assert!(list.is_ok(), "{list:?}");
    let update = UpdateUserRequest {
        id: 1,
        name: "Mallory".into(),
        email: String::new(),
    };
    let denied = users.update_user(with_token(update, &reader)).await;
    assert_eq!(code(denied), Code::PermissionDenied);
    assert_eq!(f.get(1).await.unwrap().name, "Ada Lovelace");
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented() {
    let f = Fixture::start().await;
    let mut grpc = tonic::client::Grpc::with_origin(f.h2.clone(), f.origin());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<GetUserRequest, User>::default();
    let path = http::uri::PathAndQuery::from_static("/user.UserService/DeleteUser");
    let req = with_token(GetUserRequest { id: 1 }, &f.writer());
    let status = grpc
        .unary(req, path, codec)
        .await
        .expect_err("no such method");
    assert_eq!(status.code(), Code::Unimplemented);
}

// === Health and reflection ===

#[tokio::test]
async fn health_reports_serving_without_a_token() {
    let f = Fixture::start().await;
    let mut health = f.health();
    for service in ["", "user.UserService"] {
        let req = HealthCheckRequest {
            service: service.into(),
        };
        let answer = health.check(req).await.expect("a health answer");
        assert_eq!(
            answer.into_inner().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = HealthCheckRequest {
        service: "order.OrderService".into(),
    };
    assert_eq!(code(health.check(unknown).await), Code::NotFound);
}

#[tokio::test]
async fn health_turns_not_serving_when_shutdown_starts() {
    let f = Fixture::start().await;
    let req = HealthCheckRequest {
        service: "user.UserService".into(),
    };
    let mut watch = f.health().watch(req).await.unwrap().into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    // Stopping waits for the watch to end; the watch sees the change first.
    let stopping = tokio::spawn(f.running.stop());
    let next = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a status change before the stop completes")
        .unwrap()
        .unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    stopping.await.unwrap().expect("stopped");
}

/// The services reflection (v1 and v1alpha) lists.
async fn reflected_services(
    f: &Fixture,
) -> (Result<Vec<String>, Status>, Result<Vec<String>, Status>) {
    use tonic_reflection::pb::{v1, v1alpha};
    let v1 = async {
        let mut client = v1::server_reflection_client::ServerReflectionClient::with_origin(
            f.h2.clone(),
            f.origin(),
        );
        let ask = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([ask]))
            .await?
            .into_inner();
        let answer = answers.next().await.expect("an answer")?;
        match answer.message_response {
            Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
                Ok(list.service.into_iter().map(|s| s.name).collect())
            }
            other => panic!("not a list of services: {other:?}"),
        }
    };
    let v1alpha = async {
        let mut client = v1alpha::server_reflection_client::ServerReflectionClient::with_origin(
            f.h2.clone(),
            f.origin(),
        );
        let ask = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([ask]))
            .await?
            .into_inner();
        let answer = answers.next().await.expect("an answer")?;
        match answer.message_response {
            Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(
                list,
            )) => Ok(list.service.into_iter().map(|s| s.name).collect()),
            other => panic!("not a list of services: {other:?}"),
        }
    };
    (v1.await, v1alpha.await)
}

#[tokio::test]
async fn reflection_lists_the_user_service_without_a_token() {
    let f = Fixture::start().await;
    let (v1, v1alpha) = reflected_services(&f).await;
    for names in [v1.expect("v1"), v1alpha.expect("v1alpha")] {
        assert!(names.iter().any(|n| n == "user.UserService"), "{names:?}");
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
    }
}

#[tokio::test]
async fn reflection_turned_off_is_unimplemented() {
    let f = Fixture::start_with(|state| state.grpc_reflection = false).await;
    let (v1, v1alpha) = reflected_services(&f).await;
    assert_eq!(code(v1), Code::Unimplemented);
    assert_eq!(code(v1alpha), Code::Unimplemented);
    // Health stays.
    let req = HealthCheckRequest::default();
    assert!(f.health().check(req).await.is_ok());
}

// === Deadlines ===

#[tokio::test]
async fn a_stream_past_its_grpc_timeout_ends_deadline_exceeded() {
    // Each message comes 200 ms after the last (the head too), so with
    // 500 ms the first user arrives at ~400 ms and the deadline falls
    // before the second, which would come at ~600 ms.
    let f = Fixture::start().await;
    f.state
        .server
        .faults
        .set_latency(Duration::from_millis(200));
    let mut req = with_token(ListUsersRequest::default(), &f.writer());
    req.set_timeout(Duration::from_millis(500));
    let mut stream = f.users().list_users(req).await.unwrap().into_inner();
    let mut ids = Vec::new();
    let end = loop {
        match stream.next().await {
            Some(Ok(user)) => ids.push(user.id),
            Some(Err(status)) => break status,
            None => panic!("the stream ended without a status after {ids:?}"),
        }
    };
    assert_eq!(end.code(), Code::DeadlineExceeded, "{end:?}");
    assert!(
        !ids.is_empty() && ids.len() < 3,
        "some users, then the deadline: {ids:?}"
    );
}
