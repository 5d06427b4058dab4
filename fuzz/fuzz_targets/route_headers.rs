//! Path routing with `If-Match` and `Prefer`: any path and header values either route or are
//! refused with a 4xx; none is a 5xx, and a refusal changes nothing.
#![no_main]

mod common;

use bytes::Bytes;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts = common::fields(data, 4);
    let Ok(path) = std::str::from_utf8(parts[0]) else {
        return;
    };
    let Ok(uri) = format!("/beta/{path}").parse::<http::Uri>() else {
        return;
    };
    let method = if parts[3].first().is_some_and(|b| b % 2 == 0) {
        http::Method::PATCH
    } else {
        http::Method::GET
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", "Bearer alice")
        .header("content-type", "application/json");
    if let Ok(value) = http::HeaderValue::from_bytes(parts[1]) {
        request = request.header("if-match", value);
    }
    if let Ok(value) = http::HeaderValue::from_bytes(parts[2]) {
        request = request.header("prefer", value);
    }
    let Ok(request) = request.body(Full::new(Bytes::from_static(b"{}"))) else {
        return;
    };
    common::send(request);
});
