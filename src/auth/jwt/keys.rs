//! Verification keys by `kid`, each with the one algorithm it verifies. The algorithm comes
//! from the key (its type, or its `alg` when it has one), never from a token: symmetric keys,
//! other curves and algorithms are never trusted.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{JwtConfigError, config_error};

/// Verification keys by `kid`, each with the one algorithm it verifies.
#[derive(Default)]
pub(super) struct KeySet {
    pub(super) keys: HashMap<String, (Algorithm, DecodingKey)>,
}

impl KeySet {
    pub(super) fn from_jwks(jwks: &JwkSet) -> Result<Self, JwtConfigError> {
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let by_type = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Some(Algorithm::ES256)
                }
                _ => None,
            };
            let algorithm = match (jwk.common.key_algorithm, by_type) {
                (None, Some(alg)) => alg,
                (Some(KeyAlgorithm::RS256), Some(Algorithm::RS256)) => Algorithm::RS256,
                (Some(KeyAlgorithm::ES256), Some(Algorithm::ES256)) => Algorithm::ES256,
                // Symmetric keys, other curves and algorithms are never trusted.
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| config_error(format!("JWKS key {kid:?} is unusable: {e}")))?;
            keys.insert(kid, (algorithm, key));
        }
        if keys.is_empty() {
            return Err(config_error(
                "the JWKS has no RS256 or ES256 signing key with a kid",
            ));
        }
        Ok(Self { keys })
    }

    pub(super) fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<_> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}
