//! The whole in-process pipeline: method, path, content type and body from the input, through
//! request ids, auth, rate limit, preflight, content type, merge patch and the service.
#![no_main]

mod common;

use bytes::Bytes;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 5] = ["PATCH", "GET", "POST", "DELETE", "PUT"];

fuzz_target!(|data: &[u8]| {
    let parts = common::fields(data, 4);
    let method = METHODS[usize::from(parts[0].first().copied().unwrap_or(0)) % METHODS.len()];
    let path = match std::str::from_utf8(parts[1]) {
        Ok(path) if !path.is_empty() => format!("/beta/{path}"),
        _ => "/beta/me/security".to_owned(),
    };
    let Ok(uri) = path.parse::<http::Uri>() else {
        return;
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", "Bearer alice");
    if let Ok(value) = http::HeaderValue::from_bytes(parts[2]) {
        request = request.header("content-type", value);
    } else {
        request = request.header("content-type", "application/json");
    }
    let Ok(request) = request.body(Full::new(Bytes::copy_from_slice(parts[3]))) else {
        return;
    };
    common::send(request);
});
