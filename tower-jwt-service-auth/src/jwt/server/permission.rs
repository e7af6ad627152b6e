use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::jwt::verify::{Rejection, ServiceIdentity};

/// Lets through only callers holding one permission; for axum's
/// `route_layer`, below a [`VerifyLayer`](super::VerifyLayer).
///
/// A request without a verified identity (the layer was put above the
/// verifier, or the verifier is missing) is answered `401`; a caller
/// without the permission `403 insufficient_scope`. gRPC calls get
/// `UNAUTHENTICATED` and `PERMISSION_DENIED` instead (see the
/// [module docs](super)).
#[derive(Debug, Clone)]
pub struct RequirePermissionLayer {
    permission: Arc<str>,
}

impl RequirePermissionLayer {
    /// Requires `permission`, e.g. `"read:users"`.
    pub fn new(permission: impl Into<Arc<str>>) -> Self {
        RequirePermissionLayer {
            permission: permission.into(),
        }
    }
}

impl<S> Layer<S> for RequirePermissionLayer {
    type Service = RequirePermission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePermission {
            inner,
            permission: self.permission.clone(),
        }
    }
}

/// Checks one permission. Built by [`RequirePermissionLayer`].
#[derive(Debug, Clone)]
pub struct RequirePermission<S> {
    inner: S,
    permission: Arc<str>,
}

impl<S> RequirePermission<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RequirePermission<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: From<String>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let verdict = match req.extensions().get::<ServiceIdentity>() {
            None => Err(Rejection::Missing),
            Some(caller) => caller.require(&self.permission).inspect_err(|_| {
                tracing::warn!(
                    target: "tower_jwt_service_auth::jwt::server",
                    caller = %crate::escape::Escaped(&caller.service),
                    permission = &*self.permission,
                    "permission denied"
                );
            }),
        };
        match verdict {
            Ok(()) => ResponseFuture::called(self.inner.call(req)),
            Err(rejection) => ResponseFuture::answered(rejection.respond_to(req.headers())),
        }
    }
}
