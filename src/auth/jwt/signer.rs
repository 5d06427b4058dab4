//! [`EphemeralSigner`]: a fresh ES256 key for dev mode and tests.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;

use super::{JwtConfigError, config_error};

/// An ES256 signing key made fresh in memory, with the JWKS that verifies it: for dev mode
/// and tests. The private key never leaves the process.
pub struct EphemeralSigner {
    kid: String,
    key: jsonwebtoken::EncodingKey,
    jwks: JwkSet,
}

impl std::fmt::Debug for EphemeralSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl EphemeralSigner {
    /// A new P-256 key from the operating system's random source.
    ///
    /// # Errors
    /// When the OS has no random source.
    pub fn generate() -> Result<Self, JwtConfigError> {
        // PKCS#8 wrapping of a SEC1 P-256 private key without the optional public key:
        // the fixed prefix, then the 32-byte scalar.
        const PREFIX: [u8; 35] = [
            0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
            0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27,
            0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20,
        ];
        for _ in 0..16 {
            let mut der = PREFIX.to_vec();
            let mut scalar = [0u8; 32];
            getrandom::fill(&mut scalar)
                .map_err(|e| config_error(format!("no randomness: {e}")))?;
            der.extend_from_slice(&scalar);
            let key = jsonwebtoken::EncodingKey::from_ec_der(&der);
            // A scalar of zero or above the group order is refused here; draw again.
            let Ok(mut jwk) = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256)
            else {
                continue;
            };
            let mut kid_bytes = [0u8; 8];
            getrandom::fill(&mut kid_bytes)
                .map_err(|e| config_error(format!("no randomness: {e}")))?;
            let kid: String = kid_bytes.iter().map(|b| format!("{b:02x}")).collect();
            jwk.common.key_id = Some(kid.clone());
            return Ok(Self {
                kid,
                key,
                jwks: JwkSet { keys: vec![jwk] },
            });
        }
        Err(config_error("could not draw a valid P-256 key"))
    }

    /// The JWKS that verifies this signer's tokens.
    #[must_use]
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Signs `claims` (a JSON object) as an ES256 JWT with this key's `kid`.
    ///
    /// # Errors
    /// When signing fails.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, JwtConfigError> {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| config_error(format!("signing failed: {e}")))
    }
}
