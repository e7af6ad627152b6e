//! The code generated from `proto/user.proto` at build time (protox and
//! tonic-prost-build, no system `protoc`): the messages, the server
//! ([`user::user_service_server`]) the user service mounts, and the
//! client ([`user::user_service_client`]) other services and the tests
//! call it with.

/// Package `user`: `UserService` and its messages.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod user {
    tonic::include_proto!("user");

    /// The encoded `FileDescriptorSet` of `user.proto`, with its comments:
    /// what server reflection describes the service from.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/user_descriptor.bin"));
}
