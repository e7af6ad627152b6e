//! The user service's gRPC API called by an implementation of gRPC this
//! project did not write: Python's grpcio, with stubs generated from the
//! shipped `user.proto` by grpcio-tools (tests/interop/grpc_client.py).
//!
//! Ignored by a plain `cargo test`, since it needs grpcio from PyPI, which
//! a fresh machine may not reach. `.ci/run` makes the environment with
//! `tests/interop/python-env.sh` and runs it:
//!
//! ```text
//! GRPC_INTEROP_PYTHON=$(tests/interop/python-env.sh) \
//!     cargo test -p integration-tests --test grpc_interop -- --ignored
//! ```

use integration_tests::Data;
use std::path::Path;
use std::process::Command;

use demo_services::auth::{self, Keys};
use integration_tests::start_user;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Python's grpcio: GRPC_INTEROP_PYTHON=$(tests/interop/python-env.sh), then --ignored"]
async fn python_grpcio_calls_every_rpc_health_and_reflection() {
    let python = std::env::var("GRPC_INTEROP_PYTHON")
        .expect("GRPC_INTEROP_PYTHON: the python of tests/interop/python-env.sh");
    let keys = Keys::ephemeral();
    let data = Data::new().await;
    let (user, _) = start_user(&data, &keys, None).await;
    let token = |caller: &str| {
        keys.token(
            caller,
            auth::USER_SERVICE,
            None,
            std::time::Duration::from_secs(300),
        )
        .expect("sign a token")
    };
    // The gateway may read and write users; the notification service only
    // read them.
    let (writer, reader) = (token(auth::API_GATEWAY), token(auth::NOTIFICATION_SERVICE));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = user.url().trim_start_matches("http://").to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(root.join("interop/grpc_client.py"))
            .args(["--target", &target])
            .arg("--proto")
            .arg(root.join("../demo-services/proto/user.proto"))
            .args(["--token", &writer, "--read-only-token", &reader])
            .output()
            .expect("run the Python client")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    user.stop().await.unwrap();
}
