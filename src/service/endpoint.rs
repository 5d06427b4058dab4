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
    /// with the same `Config`, so they can never disagree. With the decision comes the
    /// principal it was made for, which a write records as its actor.
    pub(crate) fn authorize<B>(
        &self,
        request: &Request<B>,
    ) -> Result<(Access, ObjectKey, Principal), GraphError> {
        self.authorize_as(request, request.extensions().get::<Principal>().cloned())
    }

    /// [`authorize`](Self::authorize) for a request made by `principal`, which the caller
    /// holds as a value rather than in the request's extensions (the stack's own services).
    pub(crate) fn authorize_as<B>(
        &self,
        request: &Request<B>,
        principal: Option<Principal>,
    ) -> Result<(Access, ObjectKey, Principal), GraphError> {
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
        let principal = principal.ok_or_else(missing_principal)?;
        let key = self
            .policy
            .authorize(&principal, access, &target)
            .inspect_err(|error| {
                // Refused attempts at a user object by id are audited; `/me` is always the caller.
                if let Target::User(user) = &target
                    && error.status() == StatusCode::FORBIDDEN
                {
                    self.audit.record(&AuditRecord::new(
                        &principal,
                        principal.tenant_id(),
                        &user.to_ascii_lowercase(),
                        AuditOutcome::Denied {
                            status: error.status().as_u16(),
                            reason: error.message().to_owned(),
                        },
                    ));
                }
            })?;
        Ok((access, key, principal))
    }
}

/// Longest path a decision keeps: `/beta/users/{id}/security` with a GUID and a prefix fits.
const KEPT_PATH: usize = 96;

/// The preflight's decision, carried to the service in the request's extensions so that it
/// is not made twice. Only this crate can make one (the type is private), and the service
/// takes it only for the request it was made for: the same configuration (its process-unique
/// id), the very same principal value (held here), the same method and the same path. A layer
/// between the two that rewrote the path or swapped the principal gets a fresh decision;
/// without one, or with one that does not hold, the service decides itself: fail closed.
/// What the policy decides from (principal, method, path) is all compared, so the policy is
/// asked once per request, before its body is read.
#[derive(Clone)]
pub(crate) struct Decided {
    config: u64,
    principal: Principal,
    method: Method,
    /// The path decided on, kept in place (no allocation, no shared handle to copy).
    path: ([u8; KEPT_PATH], u8),
    pub(crate) access: Access,
    pub(crate) key: ObjectKey,
}

impl Decided {
    /// `authorize`'s decision for `request`, to travel with it.
    pub(crate) fn new<B>(
        config: &Config,
        request: &Request<B>,
        (access, key, principal): (Access, ObjectKey, Principal),
    ) -> Option<Self> {
        // A longer path (none of ours is) is decided again by the service.
        let path = request.uri().path().as_bytes();
        let len = u8::try_from(path.len())
            .ok()
            .filter(|&len| usize::from(len) <= KEPT_PATH)?;
        let mut kept = [0; KEPT_PATH];
        kept[..path.len()].copy_from_slice(path);
        Some(Self {
            config: config.id,
            principal,
            method: request.method().clone(),
            path: (kept, len),
            access,
            key,
        })
    }

    /// The decision, with its principal, if it was made for this request as it is now.
    pub(crate) fn for_request<B>(
        self,
        config: &Config,
        request: &Request<B>,
    ) -> Option<(Access, ObjectKey, Principal)> {
        let holds = self.config == config.id
            && self.method == request.method()
            && self.path.0[..usize::from(self.path.1)] == *request.uri().path().as_bytes()
            && request
                .extensions()
                .get::<Principal>()
                .is_some_and(|now| now.same_as(&self.principal));
        holds.then_some((self.access, self.key, self.principal))
    }
}

#[cold]
fn missing_principal() -> GraphError {
    GraphError::new(ErrorKind::MissingToken, "Access token is empty.")
}

/// 404, naming the routes as the caller must write them (with the mount prefix, such as
/// `/beta`, that a caller who left it out needs to hear about).
#[cold]
fn no_route(prefix: &str) -> GraphError {
    GraphError::new(
        ErrorKind::NotFound,
        format!(
            "Resource not found for the segment; the routes are {prefix}/me/security and \
             {prefix}/users/{{id}}/security."
        ),
    )
}
