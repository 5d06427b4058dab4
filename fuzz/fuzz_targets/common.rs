//! The in-process stack the HTTP targets send requests through.

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use security_update::{
    MemoryStore, Principal, ResourceSchema, Stack, StackBuilder, StaticTokens,
};
use tower::ServiceExt;

pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub app: Stack<MemoryStore, StaticTokens>,
    pub store: MemoryStore,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let store = MemoryStore::new();
        let tokens = StaticTokens::new().with_token(
            "alice",
            Principal::delegated("72f988bf-86f1-41af-91ab-2d7cd011db47", "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa")
                .with_upn("alice@contoso.com")
                .with_scopes(["SecurityEvents.ReadWrite.All"]),
        );
        // A schema with a free-form member, so merges reach real depth.
        let schema = ResourceSchema::from_json_schema(&serde_json::json!({
            "type": "object",
            "properties": {"settings": {"type": "object"}, "level": {"type": "integer"}},
            "additionalProperties": false
        }))
        .unwrap();
        let app = StackBuilder::new(store.clone())
            .with_schema(schema)
            .with_path_prefix("/beta")
            .build(tokens);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Fixture { runtime, app, store }
    })
}

/// Sends `request`; asserts no 5xx and that a refusal changed nothing. Returns the status.
pub fn send(request: http::Request<Full<Bytes>>) -> u16 {
    let fixture = fixture();
    let before = fixture.store.entries();
    let (status, body) = fixture.runtime.block_on(async {
        let response = fixture.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    assert!(status < 500, "{status}: {body:?}");
    if !(200..300).contains(&status) {
        assert_eq!(fixture.store.entries(), before, "a refusal changed the store");
    }
    status
}

/// Splits fuzz input into `n` fields at 0xFF bytes (missing fields are empty).
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = data.splitn(n, |b| *b == 0xff).collect();
    parts.resize(n, &[]);
    parts
}
