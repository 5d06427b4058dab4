//! Who may read or write whose security object.
//!
//! The Graph page leaves its permissions as TODO; [`DefaultPolicy`] follows Graph's nearest
//! documented security permissions:
//!
//! - writing needs `SecurityEvents.ReadWrite.All`; reading needs `SecurityEvents.Read.All` or
//!   the write permission (a delegated scope or an application role);
//! - a delegated caller reaches its own object (by `/me`, its object id or its own UPN);
//!   another user's object also needs the Security Administrator or Global Administrator
//!   directory role (`wids`);
//! - an application reaches any user of its own tenant; `/me` with an app-only token is 400;
//! - objects are keyed by (tenant, user object id), GUIDs compared case-insensitively; ids that
//!   are neither a GUID nor the caller's own UPN cannot be resolved here and are 404.

use std::fmt::Debug;

use http::HeaderValue;

use super::{Principal, PrincipalKind};
use crate::error::{ErrorKind, GraphError};
use crate::route::{Target, is_guid};
use crate::store::ObjectKey;

/// Directory role template id of Security Administrator.
pub const SECURITY_ADMINISTRATOR: &str = "194ae4cb-b126-40b2-bd5b-6091b380977d";
/// Directory role template id of Global Administrator.
pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";

/// What the request wants to do with the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `GET`.
    Read,
    /// `PATCH`.
    Write,
}

/// Decides whether a principal may reach a target, and which stored object it is.
///
/// Asked once per request, before its body is read: by the preflight when the stack mounts
/// one (the service then takes that decision), else by the service. A decision is a function
/// of what it is given; a policy that consults changing state answers for the moment the
/// request's headers arrived.
pub trait Policy: Debug + Send + Sync + 'static {
    /// The key of the object `principal` may access, or the error to answer.
    ///
    /// # Errors
    /// 403 when the principal lacks the permission or may not reach that user, 400 for a
    /// request that cannot mean anything for this principal (`/me` without a user), 404 for a
    /// user that cannot be resolved.
    fn authorize(
        &self,
        principal: &Principal,
        access: Access,
        target: &Target<'_>,
    ) -> Result<ObjectKey, GraphError>;
}

/// The policy of the [module docs](self), with configurable permissions and admin roles.
///
/// ```
/// use security_update::{Access, DefaultPolicy, Policy, Principal, Target};
///
/// let policy = DefaultPolicy::new();
/// let reader = Principal::delegated("7c5e6a8b-0000-4000-8000-000000000001", "0a1b2c3d-0000-4000-8000-000000000002")
///     .with_scopes(["SecurityEvents.Read.All"]);
/// assert!(policy.authorize(&reader, Access::Read, &Target::Me).is_ok());
/// assert_eq!(policy.authorize(&reader, Access::Write, &Target::Me).unwrap_err().status(), 403);
/// ```
#[derive(Debug, Clone)]
pub struct DefaultPolicy {
    read_permissions: Vec<String>,
    write_permissions: Vec<String>,
    admin_role_template_ids: Vec<String>,
}

impl Default for DefaultPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl DefaultPolicy {
    /// The defaults described in the [module docs](self).
    #[must_use]
    pub fn new() -> Self {
        Self {
            read_permissions: vec!["SecurityEvents.Read.All".to_owned()],
            write_permissions: vec!["SecurityEvents.ReadWrite.All".to_owned()],
            admin_role_template_ids: vec![
                SECURITY_ADMINISTRATOR.to_owned(),
                GLOBAL_ADMINISTRATOR.to_owned(),
            ],
        }
    }

    /// Permissions (scopes or roles) that allow reading; write permissions always do too.
    #[must_use]
    pub fn with_read_permissions<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        p: I,
    ) -> Self {
        self.read_permissions = p.into_iter().map(Into::into).collect();
        self
    }

    /// Permissions (scopes or roles) that allow writing.
    #[must_use]
    pub fn with_write_permissions<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        p: I,
    ) -> Self {
        self.write_permissions = p.into_iter().map(Into::into).collect();
        self
    }

    /// Directory role template ids that let a delegated caller reach other users' objects.
    #[must_use]
    pub fn with_admin_role_template_ids<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        ids: I,
    ) -> Self {
        self.admin_role_template_ids = ids.into_iter().map(Into::into).collect();
        self
    }

    fn check_permission(&self, principal: &Principal, access: Access) -> Result<(), GraphError> {
        let held = |list: &[String]| list.iter().any(|p| principal.has_permission(p));
        let allowed = match access {
            Access::Write => held(&self.write_permissions),
            Access::Read => held(&self.read_permissions) || held(&self.write_permissions),
        };
        if allowed {
            return Ok(());
        }
        let needed = match access {
            Access::Write => self.write_permissions.join(" "),
            Access::Read => {
                let mut all = self.read_permissions.clone();
                all.extend(self.write_permissions.iter().cloned());
                all.join(" ")
            }
        };
        let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{needed}\"");
        let error = GraphError::new(
            ErrorKind::InsufficientScope,
            format!(
                "Insufficient privileges to complete the operation. Requires one of: {needed}."
            ),
        );
        Err(match HeaderValue::try_from(challenge) {
            Ok(challenge) => error.with_challenge(challenge),
            Err(_) => error,
        })
    }
}

impl Policy for DefaultPolicy {
    fn authorize(
        &self,
        principal: &Principal,
        access: Access,
        target: &Target<'_>,
    ) -> Result<ObjectKey, GraphError> {
        self.check_permission(principal, access)?;
        let tenant = principal.tenant_id();
        match (principal.kind(), target) {
            (PrincipalKind::Application, Target::Me) => Err(GraphError::new(
                ErrorKind::BadRequest,
                "/me request is only valid with delegated authentication flow.",
            )),
            (PrincipalKind::Delegated, Target::Me) => {
                Ok(ObjectKey::new(tenant, principal.object_id()))
            }
            (PrincipalKind::Delegated, Target::User(id)) if is_self(principal, id) => {
                Ok(ObjectKey::new(tenant, principal.object_id()))
            }
            (PrincipalKind::Delegated, Target::User(id)) => {
                let admin = self
                    .admin_role_template_ids
                    .iter()
                    .any(|role| principal.has_role_template(role));
                if !admin {
                    return Err(GraphError::new(
                        ErrorKind::AccessDenied,
                        "Access denied: another user's security object needs an administrator role.",
                    ));
                }
                resolve_other(tenant, id)
            }
            (PrincipalKind::Application, Target::User(id)) => resolve_other(tenant, id),
        }
    }
}

fn is_self(principal: &Principal, id: &str) -> bool {
    id.eq_ignore_ascii_case(principal.object_id())
        || principal
            .upn()
            .is_some_and(|upn| id.eq_ignore_ascii_case(upn))
}

fn resolve_other(tenant: &str, id: &str) -> Result<ObjectKey, GraphError> {
    if is_guid(id) {
        Ok(ObjectKey::new(tenant, id))
    } else {
        Err(GraphError::new(
            ErrorKind::NotFound,
            "Resource does not exist or one of its queried reference-property objects are not present.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    const TENANT: &str = "11111111-1111-4111-8111-111111111111";
    const ALICE: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
    const BOB: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
    const WRITE: &str = "SecurityEvents.ReadWrite.All";

    fn user(id: &str) -> Target<'_> {
        Target::User(Cow::Borrowed(id))
    }

    fn alice() -> Principal {
        Principal::delegated(TENANT, ALICE)
            .with_upn("Alice@Contoso.com")
            .with_scopes([WRITE])
    }

    fn status(result: Result<ObjectKey, GraphError>) -> u16 {
        result.map_or_else(|e| e.status().as_u16(), |_| 200)
    }

    #[test]
    fn custom_read_permissions_and_admin_roles_replace_the_defaults() {
        let custom_role = "0f971eea-41eb-4569-a71e-57bb8a3eff1e";
        let policy = DefaultPolicy::new()
            .with_read_permissions(["Custom.Read"])
            .with_admin_role_template_ids([custom_role]);
        let own = Target::Me;
        // The custom read permission reads; the default one no longer does.
        let reader = Principal::delegated(TENANT, ALICE).with_scopes(["Custom.Read"]);
        assert_eq!(status(policy.authorize(&reader, Access::Read, &own)), 200);
        let default_reader =
            Principal::delegated(TENANT, ALICE).with_scopes(["SecurityEvents.Read.All"]);
        assert_eq!(
            status(policy.authorize(&default_reader, Access::Read, &own)),
            403
        );
        // The custom role reaches other users; Global Administrator no longer does.
        let custom_admin = alice().with_role_template_ids([custom_role]);
        assert_eq!(
            status(policy.authorize(&custom_admin, Access::Write, &user(BOB))),
            200
        );
        let global_admin = alice().with_role_template_ids([GLOBAL_ADMINISTRATOR]);
        assert_eq!(
            status(policy.authorize(&global_admin, Access::Write, &user(BOB))),
            403
        );
    }

    #[test]
    fn delegated_caller_reaches_itself_by_me_id_or_upn() {
        let policy = DefaultPolicy::new();
        let own = ObjectKey::new(TENANT, ALICE);
        for target in [
            Target::Me,
            user(ALICE),
            user(&ALICE.to_uppercase()),
            user("alice@contoso.com"),
        ] {
            assert_eq!(
                policy.authorize(&alice(), Access::Write, &target).unwrap(),
                own
            );
        }
    }

    #[test]
    fn delegated_caller_needs_admin_role_for_others() {
        let policy = DefaultPolicy::new();
        assert_eq!(
            status(policy.authorize(&alice(), Access::Write, &user(BOB))),
            403
        );
        for role in [SECURITY_ADMINISTRATOR, GLOBAL_ADMINISTRATOR] {
            let admin = alice().with_role_template_ids([role]);
            let key = policy.authorize(&admin, Access::Write, &user(BOB)).unwrap();
            assert_eq!(key, ObjectKey::new(TENANT, BOB));
        }
        let admin = alice().with_role_template_ids([SECURITY_ADMINISTRATOR]);
        assert_eq!(
            status(policy.authorize(&admin, Access::Write, &user("bob@contoso.com"))),
            404
        );
    }

    #[test]
    fn permissions_decide_read_and_write() {
        let policy = DefaultPolicy::new();
        let reader = Principal::delegated(TENANT, ALICE).with_scopes(["SecurityEvents.Read.All"]);
        assert_eq!(
            status(policy.authorize(&reader, Access::Read, &Target::Me)),
            200
        );
        assert_eq!(
            status(policy.authorize(&reader, Access::Write, &Target::Me)),
            403
        );
        assert_eq!(
            status(policy.authorize(&alice(), Access::Read, &Target::Me)),
            200
        );
        let nobody = Principal::delegated(TENANT, ALICE).with_scopes(["User.Read"]);
        let error = policy
            .authorize(&nobody, Access::Read, &Target::Me)
            .unwrap_err();
        assert_eq!(error.status(), 403);
        assert!(
            error
                .challenge()
                .unwrap()
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );
        // A scope is not a role: an application needs the permission as a role.
        let app = Principal::application(TENANT, BOB).with_scopes([WRITE]);
        assert_eq!(
            status(policy.authorize(&app, Access::Write, &user(ALICE))),
            403
        );
    }

    #[test]
    fn applications_reach_users_of_their_tenant_but_not_me() {
        let policy = DefaultPolicy::new();
        let app = Principal::application(TENANT, BOB).with_roles([WRITE]);
        assert_eq!(
            status(policy.authorize(&app, Access::Write, &Target::Me)),
            400
        );
        let key = policy
            .authorize(&app, Access::Write, &user(&ALICE.to_uppercase()))
            .unwrap();
        assert_eq!(key, ObjectKey::new(TENANT, ALICE));
    }

    #[test]
    fn permissions_are_configurable() {
        let policy = DefaultPolicy::new().with_write_permissions(["Custom.Write"]);
        let custom = Principal::delegated(TENANT, ALICE).with_scopes(["Custom.Write"]);
        assert_eq!(
            status(policy.authorize(&custom, Access::Write, &Target::Me)),
            200
        );
        assert_eq!(
            status(policy.authorize(&alice(), Access::Write, &Target::Me)),
            403
        );
    }
}
