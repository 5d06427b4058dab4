//! Tests of the error envelope and the one error-code catalogue.

use super::*;

mod catalogue {
    use super::*;

    #[test]
    fn every_kind_has_one_code_per_status_and_the_catalogue_says_so() {
        let mut by_status = std::collections::HashMap::new();
        for kind in ErrorKind::ALL {
            let status = kind.status().as_u16();
            let code = kind.code();
            if let Some(other) = by_status.insert(status, code) {
                assert_eq!(other, code, "status {status} has two codes");
            }
            assert!(
                ERROR_CATALOGUE.contains(&(
                    status,
                    code,
                    ERROR_CATALOGUE
                        .iter()
                        .find(|row| row.0 == status)
                        .map_or("", |row| row.2)
                )),
                "{kind:?} ({status} {code}) is not in the catalogue"
            );
        }
        assert_eq!(
            by_status.len(),
            ERROR_CATALOGUE.len(),
            "a catalogue row no kind produces"
        );
    }

    /// Fails to compile when a kind is added: add it to `ErrorKind::ALL` and the catalogue.
    #[allow(dead_code)]
    fn all_is_exhaustive(kind: ErrorKind) {
        use ErrorKind::*;
        match kind {
            MissingToken
            | InvalidToken
            | InvalidAuthorizationRequest
            | InsufficientScope
            | AccessDenied
            | BadRequest
            | NotFound
            | MethodNotAllowed
            | PreconditionFailed
            | RequestTimeout
            | PayloadTooLarge
            | UnsupportedMediaType
            | TooManyRequests
            | ServiceUnavailable
            | Internal
            | NotImplemented
            | QuotaExceeded
            | FailedDependency => {}
        }
    }

    #[test]
    fn readme_shows_the_catalogue() {
        let readme = include_str!("../README.md");
        for (status, code, _) in ERROR_CATALOGUE {
            let row = format!("| {status} | `{code}` |");
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }
}

mod unit {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamp_is_utc_without_zone_suffix() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_914_123); // 2026-11-29T01:02:03Z
        assert_eq!(utc_timestamp(t), "2026-11-29T01:02:03");
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00");
        // The same second again (from the cache), then the next one.
        assert_eq!(
            utc_timestamp(leap + Duration::from_millis(999)),
            "2000-02-29T00:00:00"
        );
        assert_eq!(
            utc_timestamp(leap + Duration::from_secs(1)),
            "2000-02-29T00:00:01"
        );
    }

    #[test]
    fn error_response_has_graph_envelope_and_headers() {
        let ids = RequestIds::generate(Some(HeaderValue::from_static("client-1")));
        let response = GraphError::new(ErrorKind::MethodNotAllowed, "no").into_response(&ids);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "GET, HEAD, PATCH");
        assert_eq!(response.headers()["client-request-id"], "client-1");
        assert_eq!(
            response.headers()["request-id"].to_str().unwrap(),
            ids.request_id_str()
        );
        assert!(response.extensions().get::<GraphError>().is_some());
    }
}
