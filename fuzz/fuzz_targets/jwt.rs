//! JWT header and claims decoding: no input is accepted by a validator whose key nobody here
//! can sign with, and none panics. Half the inputs are spliced onto a real token's parts, so
//! the fuzzer reaches claims decoding and signature checks, not only base64 errors.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use security_update::auth::{EphemeralSigner, JwtValidator};
use security_update::TokenValidator;

struct Fixture {
    validator: JwtValidator,
    header: String,
    claims: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let signer = EphemeralSigner::generate().unwrap();
        let validator = JwtValidator::new(signer.jwks(), ["iss"], ["aud"]).unwrap();
        // A real token from another key: same shape, signature that cannot verify.
        let other = EphemeralSigner::generate().unwrap();
        let token = other
            .sign(&serde_json::json!({"iss": "iss", "aud": "aud", "exp": 4102444800u64, "tid": "t", "oid": "o", "scp": "x"}))
            .unwrap();
        let mut parts = token.split('.');
        Fixture {
            validator,
            header: parts.next().unwrap().to_owned(),
            claims: parts.next().unwrap().to_owned(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fixture = fixture();
    let candidates = [
        text.to_owned(),
        format!("{}.{text}", fixture.header),
        format!("{text}.{}.sig", fixture.claims),
    ];
    for token in candidates {
        if let Some(verdict) = fixture.validator.validate(&token).now() {
            assert!(verdict.is_err(), "accepted a token nobody could sign: {token}");
        }
    }
});
