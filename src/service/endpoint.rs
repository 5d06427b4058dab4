//! The endpoint decision shared by [`Preflight`](super::Preflight) and the service: which
//! route, which access, and whether the policy lets this principal have it. It decides
//! 404 / 405 / 401 / 403 / 400 before any body is read, and audits refused attempts at
//! another user's object.

use http::{Method, Request, StatusCode};

use super::Config;
use crate::audit::{AuditOutcome, AuditRecord};
use crate::auth::{Access, Principal};
use crate::error::{ErrorKind, GraphError};
use crate::route::{Target, parse_path};
use crate::store::ObjectKey;

impl Config {
    /// Routing, method, principal and policy. Both the preflight and the service call this
    /// with the same `Config`, so they can never disagree.
    pub(crate) fn authorize<B>(
        &self,
        request: &Request<B>,
    ) -> Result<(Access, ObjectKey), GraphError> {
        let path = request.uri().path();
        let prefix = self.path_prefix.as_deref().unwrap_or("");
        let no_route = || no_route(prefix);
        let path = path.strip_prefix(prefix).ok_or_else(no_route)?;
        let target = parse_path(path).ok_or_else(no_route)?;
        let access = match *request.method() {
            Method::GET | Method::HEAD => Access::Read,
            Method::PATCH => Access::Write,
            _ => {
                return Err(GraphError::new(
                    ErrorKind::MethodNotAllowed,
                    format!(
                        "The method {} is not allowed on this resource.",
                        request.method()
                    ),
                ));
            }
        };
        let principal = request
            .extensions()
            .get::<Principal>()
            .ok_or_else(missing_principal)?;
        let key = self
            .policy
            .authorize(principal, access, &target)
            .inspect_err(|error| {
                // Refused attempts at a user object by id are audited; `/me` is always the caller.
                if let Target::User(user) = &target
                    && error.status() == StatusCode::FORBIDDEN
                {
                    self.audit.record(&AuditRecord::new(
                        principal,
                        principal.tenant_id(),
                        &user.to_ascii_lowercase(),
                        AuditOutcome::Denied {
                            status: error.status().as_u16(),
                            reason: error.message().to_owned(),
                        },
                    ));
                }
            })?;
        Ok((access, key))
    }
}

pub(crate) fn missing_principal() -> GraphError {
    GraphError::new(ErrorKind::MissingToken, "Access token is empty.")
}

/// 404, naming the routes as the caller must write them (with the mount prefix, such as
/// `/beta`, that a caller who left it out needs to hear about).
fn no_route(prefix: &str) -> GraphError {
    GraphError::new(
        ErrorKind::NotFound,
        format!(
            "Resource not found for the segment; the routes are {prefix}/me/security and \
             {prefix}/users/{{id}}/security."
        ),
    )
}
