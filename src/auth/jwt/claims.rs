//! The claims we read from an access token, and how they become a [`Principal`]; and how a
//! validation failure is described to the caller (never echoing the token).

use serde::Deserialize;

use crate::auth::{Principal, TokenRejection};

/// The claims we read from an access token.
#[derive(Deserialize)]
pub(super) struct Claims {
    /// Checked by jsonwebtoken against the allow-list; declared here so that anything but one
    /// string (RFC 7519 §4.1.1: a `StringOrURI`), such as `["https://evil/", ISS]`, fails to
    /// decode and the token is refused.
    #[allow(dead_code)]
    iss: Option<String>,
    pub(super) exp: u64,
    pub(super) nbf: Option<u64>,
    tid: Option<String>,
    oid: Option<String>,
    scp: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    wids: Vec<String>,
    upn: Option<String>,
    preferred_username: Option<String>,
    appid: Option<String>,
    azp: Option<String>,
}

impl Claims {
    pub(super) fn into_principal(self) -> Result<Principal, TokenRejection> {
        let (Some(tid), Some(oid)) = (self.tid, self.oid) else {
            return Err(TokenRejection::new(
                "the token names no tenant (tid) or object (oid)",
            ));
        };
        let mut principal = match self.scp {
            Some(scp) => Principal::delegated(&tid, &oid)
                .with_scopes(scp.split(' ').filter(|s| !s.is_empty()))
                .with_role_template_ids(&self.wids),
            None => Principal::application(&tid, &oid).with_roles(&self.roles),
        };
        if let Some(upn) = self.upn.or(self.preferred_username) {
            principal = principal.with_upn(&upn);
        }
        if let Some(app_id) = self.appid.or(self.azp) {
            principal = principal.with_app_id(&app_id);
        }
        Ok(principal)
    }
}

pub(super) fn describe(error: jsonwebtoken::errors::Error) -> TokenRejection {
    use jsonwebtoken::errors::ErrorKind as Kind;
    let (reason, description) = match error.kind() {
        Kind::ExpiredSignature => ("expired", "the token has expired"),
        Kind::ImmatureSignature => ("not_yet_valid", "the token is not valid yet"),
        Kind::InvalidAudience => ("audience", "the token is for another audience"),
        Kind::InvalidIssuer => ("issuer", "the token is from another issuer"),
        Kind::InvalidSignature => ("signature", "the token's signature is invalid"),
        Kind::MissingRequiredClaim(_) => {
            ("claims", "the token lacks a required claim (exp, iss, aud)")
        }
        Kind::InvalidAlgorithm => (
            "algorithm",
            "the token's algorithm does not match its signing key",
        ),
        Kind::Json(_) => (
            "claims",
            "the token's claims have the wrong types (iss, tid and oid must be strings)",
        ),
        _ => ("malformed", "the token is not a well-formed JWT"),
    };
    TokenRejection::new(description).with_reason(reason)
}
