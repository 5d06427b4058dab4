//! Who is calling: the identity a validated token stands for.

use std::sync::Arc;

/// How the caller authenticated, which decides whether `/me` has a meaning.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A user signed in through an application (`scp` claim): `/me` is that user.
    Delegated,
    /// An application acting as itself (`roles` claim, no user): `/me` is meaningless.
    Application,
}

/// The caller, as the auth layer puts it into request extensions.
///
/// Cheap to clone (one reference count), so validators can cache principals per token.
///
/// ```
/// use security_update::{Principal, PrincipalKind};
///
/// let alice = Principal::delegated("tenant-guid", "alice-object-guid")
///     .with_upn("alice@contoso.com")
///     .with_scopes(["SecurityEvents.ReadWrite.All"]);
/// assert_eq!(alice.kind(), PrincipalKind::Delegated);
/// assert!(alice.has_permission("securityevents.readwrite.all"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    data: Arc<PrincipalData>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PrincipalData {
    kind: PrincipalKind,
    tenant_id: Box<str>,
    object_id: Box<str>,
    app_id: Option<Box<str>>,
    upn: Option<Box<str>>,
    scopes: Box<[Box<str>]>,
    roles: Box<[Box<str>]>,
    role_template_ids: Box<[Box<str>]>,
}

impl Principal {
    /// The very same principal (one shared value), not merely an equal one.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    fn new(kind: PrincipalKind, tenant_id: &str, object_id: &str) -> Self {
        Self {
            data: Arc::new(PrincipalData {
                kind,
                tenant_id: tenant_id.into(),
                object_id: object_id.into(),
                app_id: None,
                upn: None,
                scopes: Box::default(),
                roles: Box::default(),
                role_template_ids: Box::default(),
            }),
        }
    }

    /// A signed-in user (`tid`, `oid` of a delegated token).
    #[must_use]
    pub fn delegated(tenant_id: &str, object_id: &str) -> Self {
        Self::new(PrincipalKind::Delegated, tenant_id, object_id)
    }

    /// An application acting as itself (`tid`, and the `oid` of its service principal).
    #[must_use]
    pub fn application(tenant_id: &str, object_id: &str) -> Self {
        Self::new(PrincipalKind::Application, tenant_id, object_id)
    }

    fn data_mut(&mut self) -> &mut PrincipalData {
        Arc::make_mut(&mut self.data)
    }

    /// Sets the user principal name (`upn` or `preferred_username`).
    #[must_use]
    pub fn with_upn(mut self, upn: &str) -> Self {
        self.data_mut().upn = Some(upn.into());
        self
    }

    /// Sets the application id (`appid` / `azp`).
    #[must_use]
    pub fn with_app_id(mut self, app_id: &str) -> Self {
        self.data_mut().app_id = Some(app_id.into());
        self
    }

    /// Sets the delegated scopes (`scp`, space-separated in the token).
    #[must_use]
    pub fn with_scopes<I: IntoIterator<Item = T>, T: AsRef<str>>(mut self, scopes: I) -> Self {
        self.data_mut().scopes = boxed(scopes);
        self
    }

    /// Sets the application roles (`roles`).
    #[must_use]
    pub fn with_roles<I: IntoIterator<Item = T>, T: AsRef<str>>(mut self, roles: I) -> Self {
        self.data_mut().roles = boxed(roles);
        self
    }

    /// Sets the directory role template ids (`wids`).
    #[must_use]
    pub fn with_role_template_ids<I: IntoIterator<Item = T>, T: AsRef<str>>(
        mut self,
        ids: I,
    ) -> Self {
        self.data_mut().role_template_ids = boxed(ids);
        self
    }

    /// Delegated or application.
    #[must_use]
    pub fn kind(&self) -> PrincipalKind {
        self.data.kind
    }

    /// The tenant (`tid`).
    #[must_use]
    pub fn tenant_id(&self) -> &str {
        &self.data.tenant_id
    }

    /// The user's or service principal's object id (`oid`).
    #[must_use]
    pub fn object_id(&self) -> &str {
        &self.data.object_id
    }

    /// The application id, if the token named one.
    #[must_use]
    pub fn app_id(&self) -> Option<&str> {
        self.data.app_id.as_deref()
    }

    /// The user principal name, if any.
    #[must_use]
    pub fn upn(&self) -> Option<&str> {
        self.data.upn.as_deref()
    }

    /// Delegated scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.data.scopes.iter().map(|s| &**s)
    }

    /// Application roles.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.data.roles.iter().map(|s| &**s)
    }

    /// Directory role template ids.
    pub fn role_template_ids(&self) -> impl Iterator<Item = &str> {
        self.data.role_template_ids.iter().map(|s| &**s)
    }

    /// Whether the caller holds `permission`: as a scope when delegated, as a role when an
    /// application. Permission names compare ASCII case-insensitively, as Entra treats them.
    #[must_use]
    pub fn has_permission(&self, permission: &str) -> bool {
        let granted = match self.data.kind {
            PrincipalKind::Delegated => &self.data.scopes,
            PrincipalKind::Application => &self.data.roles,
        };
        // Spelled as configured (the usual case) is a plain comparison; only a difference
        // in case pays for the case-folding one.
        granted
            .iter()
            .any(|g| **g == *permission || g.eq_ignore_ascii_case(permission))
    }

    /// Whether the caller holds the directory role with this template id.
    #[must_use]
    pub fn has_role_template(&self, template_id: &str) -> bool {
        self.data
            .role_template_ids
            .iter()
            .any(|id| **id == *template_id || id.eq_ignore_ascii_case(template_id))
    }
}

fn boxed<I: IntoIterator<Item = T>, T: AsRef<str>>(items: I) -> Box<[Box<str>]> {
    items.into_iter().map(|s| Box::from(s.as_ref())).collect()
}
