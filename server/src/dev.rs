//! Dev mode: an ephemeral signing key and one ready token, so a newcomer can try the server
//! with one command. The token goes through the real JWT validator.

use std::time::{SystemTime, UNIX_EPOCH};

use security_update::auth::{EphemeralSigner, JwtValidator};

/// The demo tenant and user the printed token stands for.
pub(crate) const TENANT: &str = "00000000-0000-4000-8000-00000000d3e0";
pub(crate) const USER: &str = "00000000-0000-4000-8000-0000000000a1";
const ISSUER: &str = "https://login.microsoftonline.com/00000000-0000-4000-8000-00000000d3e0/v2.0";
const AUDIENCE: &str = "https://graph.microsoft.com";

pub(crate) struct DevMode {
    pub(crate) validator: JwtValidator,
    pub(crate) token: String,
}

pub(crate) fn start(leeway: std::time::Duration) -> Result<DevMode, String> {
    let signer = EphemeralSigner::generate().map_err(|e| e.to_string())?;
    let validator = JwtValidator::new(signer.jwks(), [ISSUER], [AUDIENCE])
        .map_err(|e| e.to_string())?
        .with_leeway(leeway);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = signer
        .sign(&serde_json::json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": TENANT,
            "oid": USER,
            "upn": "demo@security-update.invalid",
            "scp": "SecurityEvents.ReadWrite.All",
        }))
        .map_err(|e| e.to_string())?;
    Ok(DevMode { validator, token })
}
