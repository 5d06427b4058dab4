//! Tests of `store`: keys, their placement, entity tags.

use super::*;

/// Equal keys are placed alike, however they were spelled and whether or not either was
/// placed before; a clone keeps its key's placement; keys that differ are told apart by
/// the ids, not the placement.
#[test]
fn equal_keys_have_one_placement() {
    let key = ObjectKey::new("Tenant-A", "User-1");
    let same = ObjectKey::new("tenant-a", "USER-1");
    assert_eq!(key, same, "neither placed");
    let placed = key.placement();
    assert_eq!(key, same, "one placed");
    assert_eq!(same.placement(), placed);
    assert_eq!(key.clone().placement(), placed);
    assert_eq!(key.placement(), placed, "made once, the same after");
    assert_ne!(
        ObjectKey::new("ab", "c").placement(),
        ObjectKey::new("a", "bc").placement()
    );
    assert_ne!(ObjectKey::new("ab", "c"), ObjectKey::new("a", "bc"));
}

/// One allocation holds both ids; where one ends still tells keys apart and orders them.
#[test]
fn keys_tell_tenant_from_user() {
    let key = ObjectKey::new("Tenant-A", "User-1");
    assert_eq!((key.tenant_id(), key.user_id()), ("tenant-a", "user-1"));
    assert_eq!(key, ObjectKey::new("TENANT-a", "user-1"));
    assert_ne!(ObjectKey::new("ab", "c"), ObjectKey::new("a", "bc"));
    let mut keys = [
        ObjectKey::new("b", "a"),
        ObjectKey::new("ab", "c"),
        ObjectKey::new("a", "bc"),
        ObjectKey::new("a", "b"),
    ];
    keys.sort();
    let order: Vec<_> = keys.iter().map(|k| (k.tenant_id(), k.user_id())).collect();
    assert_eq!(order, [("a", "b"), ("a", "bc"), ("ab", "c"), ("b", "a")]);
    assert_eq!(
        format!("{key:?}"),
        r#"ObjectKey { tenant_id: "tenant-a", user_id: "user-1" }"#
    );
}

#[test]
fn etags_are_quoted_decimal_versions() {
    for version in [0, 1, 9, 10, 12345, u64::MAX] {
        assert_eq!(etag_of(version).to_str().unwrap(), format!("\"{version}\""));
        let mut buffer = [0; 22];
        assert_eq!(etag_str(version, &mut buffer), format!("\"{version}\""));
    }
}
