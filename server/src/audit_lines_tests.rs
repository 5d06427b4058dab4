//! Tests of `audit_lines`: records made by the library's own stack, written directly and
//! through `TracingAudit`, give the same lines in both formats.

use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use security_update::{MemoryStore, Principal, ResourceSchema, StackBuilder, StaticTokens};
use tower::ServiceExt;

use super::*;
use crate::cli::LogFormat;
use crate::direct_lines::tests::{direct, through_tracing};

const ALICE: &str = "0a1b2c3d-0000-4000-8000-000000000001";

/// Keeps the records it is given.
#[derive(Debug, Default)]
struct Kept(Mutex<Vec<AuditRecord>>);

impl AuditSink for Kept {
    fn record(&self, record: &AuditRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

/// Records of every outcome, made by the stack as it serves: accepted writes whose patches
/// hold what a text line escapes (quotes, a newline, non-ASCII) and one cut for its size, and
/// a refused attempt at another user's object.
async fn records() -> Vec<AuditRecord> {
    let kept = Arc::new(Kept::default());
    serve(kept.clone()).await;
    kept.0.lock().unwrap().clone()
}

/// The requests of [`records`], served by a stack auditing to `sink`.
async fn serve(sink: Arc<dyn AuditSink>) {
    let tokens = StaticTokens::new()
        .with_token(
            "alice",
            Principal::delegated("tenant-1", ALICE).with_scopes(["SecurityEvents.ReadWrite.All"]),
        )
        // Ids from claims nobody checked: a newline and a field in them forge nothing.
        .with_token(
            "odd",
            Principal::delegated("tenant-2\nforged=1", "user \"x\"\nforged=2")
                .with_scopes(["SecurityEvents.ReadWrite.All"]),
        )
        .with_token(
            "app",
            Principal::application("tenant-1", "5e6f")
                .with_app_id("app-\"id\"")
                .with_roles(["SecurityEvents.ReadWrite.All"]),
        );
    let stack = StackBuilder::new(MemoryStore::new())
        .with_schema(ResourceSchema::open_type())
        .with_audit(sink)
        .build(tokens);
    let long = "x".repeat(20_000);
    let sends = [
        (
            "alice",
            "/me/security",
            r#"{"note":"say \"hi\"\nthen é \u2028 \\ bye"}"#.to_owned(),
        ),
        ("alice", "/me/security", format!(r#"{{"long":"{long}"}}"#)),
        ("odd", "/me/security", r#"{"x":1}"#.to_owned()),
        (
            "app",
            &format!("/users/{}/security", ALICE.to_uppercase()),
            r#"{"by":"app"}"#.to_owned(),
        ),
        (
            "alice",
            "/users/9c8d-other\"/security",
            r#"{"x":1}"#.to_owned(),
        ),
    ];
    for (token, path, body) in sends {
        let request = http::Request::patch(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let response = stack.clone().oneshot(request).await.unwrap();
        let _ = response.into_body().collect().await;
    }
}

/// For each accepted change the stack hands over by reference, its lines written three ways:
/// by `AuditLines` from the references, by `TracingAudit` from the references, and by
/// `TracingAudit` from the owned record.
#[derive(Debug)]
struct ThreeWays {
    format: LogFormat,
    lines: Mutex<Vec<[Vec<String>; 3]>>,
}

impl AuditSink for ThreeWays {
    fn record(&self, _: &AuditRecord) {}

    fn record_accepted(&self, change: &AcceptedChange<'_>) {
        let ours = direct(self.format, |lines| {
            AuditLines::new(lines.clone()).record_accepted(change);
        });
        let theirs = through_tracing(self.format, || TracingAudit.record_accepted(change));
        let owned = through_tracing(self.format, || TracingAudit.record(&change.to_record()));
        self.lines.lock().unwrap().push([ours, theirs, owned]);
    }
}

#[tokio::test]
async fn accepted_changes_by_reference_are_written_as_their_records() {
    for format in [LogFormat::Text, LogFormat::Json] {
        let sink = Arc::new(ThreeWays {
            format,
            lines: Mutex::default(),
        });
        serve(sink.clone()).await;
        let written = sink.lines.lock().unwrap();
        assert_eq!(written.len(), 4, "the four accepted writes");
        for [ours, theirs, owned] in written.iter() {
            assert_eq!(ours.len(), 1);
            assert_eq!(ours, theirs, "{format:?}");
            assert_eq!(ours, owned, "{format:?}");
            assert!(!ours[0].contains(" forged="), "{}", ours[0]);
        }
        assert!(
            written[1][0][0].contains("bytes in all"),
            "the long patch is cut"
        );
    }
}

#[tokio::test]
async fn audit_lines_are_tracing_audits_lines() {
    let records = records().await;
    let outcomes: Vec<bool> = records
        .iter()
        .map(|r| matches!(r.outcome, AuditOutcome::Accepted { .. }))
        .collect();
    assert_eq!(outcomes, [true, true, true, true, false], "{records:#?}");
    for format in [LogFormat::Text, LogFormat::Json] {
        for record in &records {
            let theirs = through_tracing(format, || TracingAudit.record(record));
            let ours = direct(format, |lines| {
                AuditLines::new(lines.clone()).record(record);
            });
            assert_eq!(ours, theirs, "{format:?}");
            assert_eq!(ours.len(), 1);
            assert!(!ours[0].contains(" forged="), "{}", ours[0]);
        }
    }
}

/// Whether lines are wanted is `tracing`'s to say, as for `TracingAudit`'s events: asked with
/// `enabled` (the accepted change's event), and by each record made without asking (the
/// library's refused-access record), under filters on the target and on the field names one
/// outcome's event has and the other's has not.
#[tokio::test]
async fn the_audit_trail_is_written_when_its_events_would_be() {
    use tracing_subscriber::layer::SubscriberExt;
    let records = records().await;
    let filtered = |filter: &str| {
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(filter))
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
    };
    for (filter, accepted, denied) in [
        ("info", true, true),
        ("off,security_update::audit=info", true, true),
        ("info,security_update::audit=off", false, false),
        ("warn", false, false),
        ("warn,security_update::audit[{patch}]=info", true, false),
        ("warn,security_update::audit[{reason}]=info", false, true),
        ("info,security_update::audit[{reason}]=off", true, false),
        ("info,security_update::audit[{outcome}]=off", false, false),
    ] {
        let written = direct(LogFormat::Text, |lines| {
            let audit = AuditLines::new(lines.clone());
            tracing::subscriber::with_default(filtered(filter), || {
                assert_eq!(audit.enabled(), accepted, "{filter}");
                assert_eq!(TracingAudit.enabled(), accepted, "{filter}: the library's");
                for record in &records {
                    audit.record(record);
                }
            });
        });
        // The same records through `TracingAudit`, under the same filter.
        let theirs = through_tracing_filtered(filter, || {
            for record in &records {
                TracingAudit.record(record);
            }
        });
        assert_eq!(written, theirs, "{filter}");
        let expected = 4 * usize::from(accepted) + usize::from(denied);
        assert_eq!(written.len(), expected, "{filter}: {written:?}");
    }
}

/// The lines `TracingAudit`'s events make under `filter`, in text, their timestamps cut out.
fn through_tracing_filtered(filter: &str, events: impl FnOnce()) -> Vec<String> {
    use tracing_subscriber::layer::SubscriberExt;
    let lines = crate::logs::CapturedLines::default();
    let sink = lines.clone();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(filter))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .event_format(crate::text_lines::TextLines)
                .with_writer(move || sink.clone()),
        );
    tracing::subscriber::with_default(subscriber, events);
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|line| line.split_once(' ').unwrap().1.to_owned())
        .collect()
}

/// The actor's fields copied from the last line for the same principal, and the target's
/// copied from the actor's, are what `TracingAudit` writes: for one principal twice, an equal
/// one, another with ids to escape, in both formats one after the other, and targets that
/// are and are not the actor.
#[test]
fn repeated_actors_and_targets_are_written_as_tracing_audit_writes_them() {
    use security_update::ObjectKey;
    let alice = Principal::delegated("tenant-1", ALICE);
    let same_ids = Principal::delegated("tenant-1", ALICE);
    let odd = Principal::delegated("tenant \"2\"", "a\nb").with_app_id("app-\\");
    let own = ObjectKey::new("tenant-1", ALICE);
    let other = ObjectKey::new("tenant-1", "someone-else");
    // As long as the actor's ids, one character off.
    let near = ObjectKey::new("tenant-9", "0a1b2c3d-0000-4000-8000-000000000002");
    let odd_own = ObjectKey::new("tenant \"2\"", "a\nb");
    let changes = [
        (&alice, &own),
        (&alice, &own),
        (&alice, &other),
        (&alice, &near),
        (&same_ids, &own),
        (&odd, &odd_own),
        (&odd, &own),
        (&alice, &odd_own),
    ];
    for _ in 0..2 {
        for format in [LogFormat::Text, LogFormat::Json] {
            for (actor, target) in changes {
                let change = AcceptedChange::new(
                    std::time::SystemTime::now(),
                    actor,
                    target,
                    ("\"1\"", "\"2\""),
                    r#"{"a":"\"q\""}"#,
                );
                let ours = direct(format, |lines| {
                    AuditLines::new(lines.clone()).record_accepted(&change);
                });
                let theirs = through_tracing(format, || TracingAudit.record_accepted(&change));
                assert_eq!(ours, theirs, "{format:?} {actor:?} {target:?}");
                assert_eq!(ours.len(), 1);
            }
        }
    }
}

/// The record's `at` is written as the library writes it, at the end of year 9999 and past it
/// (five digits, no `+`), before 1970 (as 1970), and now.
#[test]
fn record_times_are_written_as_the_library_writes_them() {
    use security_update::ObjectKey;
    use std::time::{Duration, UNIX_EPOCH};
    let alice = Principal::delegated("tenant-1", ALICE);
    let own = ObjectKey::new("tenant-1", ALICE);
    for at in [
        UNIX_EPOCH + Duration::from_secs(253_402_300_799),
        UNIX_EPOCH + Duration::from_secs(253_402_300_800),
        UNIX_EPOCH + Duration::from_secs(253_402_300_800 + 86_400 * 365 * 3000),
        UNIX_EPOCH - Duration::from_secs(10),
        std::time::SystemTime::now(),
    ] {
        let change = AcceptedChange::new(at, &alice, &own, ("\"1\"", "\"2\""), "{}");
        for format in [LogFormat::Text, LogFormat::Json] {
            let ours = direct(format, |lines| {
                AuditLines::new(lines.clone()).record_accepted(&change);
            });
            let theirs = through_tracing(format, || TracingAudit.record_accepted(&change));
            assert_eq!(ours, theirs, "{format:?} {at:?}");
        }
        let record = change.to_record();
        let ours = direct(LogFormat::Text, |lines| {
            AuditLines::new(lines.clone()).record(&record);
        });
        let theirs = through_tracing(LogFormat::Text, || TracingAudit.record(&record));
        assert_eq!(ours, theirs, "{at:?}");
    }
}

/// A change handed over as it is made is stamped with its own time; a record written later
/// than it was made is stamped when it is written, as `tracing` stamps its event.
#[test]
fn lines_are_stamped_when_their_events_would_be() {
    use security_update::ObjectKey;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let alice = Principal::delegated("tenant-1", ALICE);
    let own = ObjectKey::new("tenant-1", ALICE);
    // 2001-09-09T01:46:40.000123Z
    let then = UNIX_EPOCH + Duration::new(1_000_000_000, 123_000);
    let change = AcceptedChange::new(then, &alice, &own, ("\"1\"", "\"2\""), "{}");
    let stamp = |line: &[u8]| String::from_utf8(line[..27].to_vec()).unwrap();
    let handed_over = crate::direct_lines::tests::direct_bytes(LogFormat::Text, |lines| {
        AuditLines::new(lines.clone()).record_accepted(&change);
    });
    assert_eq!(stamp(&handed_over), "2001-09-09T01:46:40.000123Z");
    let record = change.to_record();
    let before = SystemTime::now();
    let written_later = crate::direct_lines::tests::direct_bytes(LogFormat::Text, |lines| {
        AuditLines::new(lines.clone()).record(&record);
    });
    let mut now = String::new();
    crate::line_time::write_time(before, &mut now).unwrap();
    // Stamped at or after `before` (to the second: the text compares as the time does).
    assert!(
        stamp(&written_later)[..19] >= now[..19],
        "{}",
        stamp(&written_later)
    );
    let written_later = String::from_utf8(written_later).unwrap();
    assert!(
        written_later.contains(" at=\"2001-09-09T01:46:40\" "),
        "{written_later}"
    );
}
