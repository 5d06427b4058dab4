//! `openapi/openapi.json` is kept true: its paths are the routes, its error codes are the
//! error catalogue, and real answers of the stack have documented statuses and bodies that
//! validate against the documented schemas.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, Request};
use http_body_util::Full;
use security_update::{ERROR_CATALOGUE, MemoryStore, StackBuilder};
use serde_json::{Value, json};

fn document() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json");
    serde_json::from_str(&text).expect("the OpenAPI document is JSON")
}

/// A validator for `schema`, whose `$ref`s resolve against the document's components.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::validator_for(&root).expect("the documented schema compiles")
}

/// Follows a `$ref` to a component response.
fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/responses/");
            &doc["components"]["responses"][name]
        }
        None => response,
    }
}

#[test]
fn the_paths_are_the_routes_and_the_error_codes_are_the_catalogue() {
    let doc = document();
    let mut paths: Vec<(String, Vec<String>)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let mut methods: Vec<String> = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "patch", "post", "put", "delete", "head"].contains(&k.as_str()))
                .cloned()
                .collect();
            methods.sort();
            (path.clone(), methods)
        })
        .collect();
    paths.sort();
    let expected = [
        ("/$batch", vec!["post"]),
        ("/healthz", vec!["get", "head"]),
        ("/me/security", vec!["get", "patch"]),
        ("/readyz", vec!["get", "head"]),
        ("/users/{usersId}/security", vec!["get", "patch"]),
    ];
    let expected: Vec<(String, Vec<String>)> = expected
        .iter()
        .map(|(p, m)| ((*p).to_owned(), m.iter().map(|s| (*s).to_owned()).collect()))
        .collect();
    assert_eq!(paths, expected);

    let responses = doc["components"]["responses"].as_object().unwrap();
    for (status, code, _) in ERROR_CATALOGUE {
        let Some(response) = responses.get(&format!("error{status}")) else {
            // 424 exists only inside a batch response.
            assert_eq!(*status, 424, "no error{status} response in the document");
            continue;
        };
        let documented = &response["content"]["application/json"]["schema"]["allOf"][1]["properties"]
            ["error"]["properties"]["code"]["enum"];
        assert_eq!(documented, &json!([code]), "error{status}");
    }
}

/// (method, path, token, headers, body, expected status).
type Case<'a> = (
    Method,
    &'a str,
    Option<&'a str>,
    Vec<(&'static str, &'static str)>,
    String,
    u16,
);

/// Each case's answer from the stack, checked against the document.
#[tokio::test]
async fn real_answers_have_documented_statuses_and_bodies() {
    let doc = document();
    let store = MemoryStore::new();
    let app = StackBuilder::new(store)
        .with_path_prefix("/beta")
        .build(tokens());
    let seed = r##"{"@odata.type": "#microsoft.graph.security.security"}"##;
    let bob = format!("/beta/users/{BOB}/security");
    let batch =
        json!({"requests": [{"id": "1", "method": "GET", "url": "/me/security"}]}).to_string();
    let cases: Vec<Case<'_>> = vec![
        (
            Method::GET,
            "/beta/me/security",
            Some("alice"),
            vec![],
            String::new(),
            200,
        ),
        (
            Method::GET,
            "/beta/me/security?$select=id",
            Some("alice"),
            vec![],
            String::new(),
            200,
        ),
        (
            Method::GET,
            "/beta/me/security?$expand=informationProtection",
            Some("alice"),
            vec![],
            String::new(),
            200,
        ),
        (
            Method::GET,
            "/beta/me/security?$filter=x",
            Some("alice"),
            vec![],
            String::new(),
            400,
        ),
        (
            Method::PATCH,
            "/beta/me/security",
            Some("alice"),
            vec![("content-type", "application/json")],
            seed.to_owned(),
            200,
        ),
        (
            Method::PATCH,
            "/beta/me/security",
            Some("alice"),
            vec![
                ("content-type", "application/json"),
                ("prefer", "return=minimal"),
            ],
            seed.to_owned(),
            204,
        ),
        (
            Method::PATCH,
            "/beta/me/security",
            Some("alice"),
            vec![("content-type", "application/json")],
            r#"{"displayName": "x"}"#.to_owned(),
            400,
        ),
        (
            Method::PATCH,
            "/beta/me/security",
            Some("alice"),
            vec![("content-type", "application/json"), ("if-match", "\"9\"")],
            seed.to_owned(),
            412,
        ),
        (
            Method::PATCH,
            "/beta/me/security",
            Some("alice"),
            vec![("content-type", "text/plain")],
            seed.to_owned(),
            415,
        ),
        (
            Method::GET,
            "/beta/me/security",
            None,
            vec![],
            String::new(),
            401,
        ),
        (Method::GET, &bob, Some("alice"), vec![], String::new(), 403),
        (
            Method::GET,
            "/beta/me/security",
            Some("alice"),
            vec![("if-none-match", "\"0\"")],
            String::new(),
            304,
        ),
        (
            Method::GET,
            "/beta/me/security",
            Some("alice"),
            vec![("if-match", "\"5\"")],
            String::new(),
            412,
        ),
        (
            Method::GET,
            "/beta/users/not-a-user/security",
            Some("app"),
            vec![],
            String::new(),
            404,
        ),
        (
            Method::POST,
            "/beta/$batch",
            Some("alice"),
            vec![("content-type", "application/json")],
            batch,
            200,
        ),
        (
            Method::POST,
            "/beta/$batch",
            Some("alice"),
            vec![("content-type", "application/json")],
            "{}".to_owned(),
            400,
        ),
    ];
    for (method, path, token, headers, body, status) in cases {
        let mut request: Request<Full<Bytes>> = request(method.clone(), path, token)
            .body(Full::from(body))
            .unwrap();
        for (name, value) in &headers {
            request.headers_mut().insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            );
        }
        let reply = send(app.clone(), request).await;
        let case = format!("{method} {path} {headers:?}");
        assert_eq!(reply.status.as_u16(), status, "{case}: {:?}", reply.body);

        let template = path
            .trim_start_matches("/beta")
            .split('?')
            .next()
            .unwrap()
            .replace(BOB, "{usersId}")
            .replace("not-a-user", "{usersId}");
        let operation = &doc["paths"][template.as_str()][method.as_str().to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{case}: no such operation in the document"
        );
        let response = resolve(&doc, &operation["responses"][status.to_string()]);
        assert!(
            response.is_object(),
            "{case}: {status} is not documented for the operation"
        );
        if let Some(schema) = response["content"]["application/json"].get("schema") {
            let instance: Value = serde_json::from_slice(&reply.body).expect("a JSON body");
            let validator = validator(&doc, schema);
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{case}: {instance} does not match the document: {errors:?}"
            );
        } else {
            assert!(reply.body.is_empty(), "{case}: an undocumented body");
        }
    }
    // A method the routes do not take: the shared 405.
    let reply = send(
        app,
        request(Method::DELETE, "/beta/me/security", Some("alice"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 405);
    let schema =
        &doc["components"]["responses"]["error405"]["content"]["application/json"]["schema"];
    assert!(validator(&doc, schema).is_valid(&reply.json()));
}
