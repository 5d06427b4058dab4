//! Settling a batch whose commit panicked: by reading back whether its transaction landed
//! (see `group_commit`'s module docs).

use redb::Database;

use super::super::OBJECTS;
use super::super::answers::Handed;
use super::super::read_cache::ReadCache;
use super::super::storage;
use super::Pending;
use crate::store::{ObjectKey, StoreError, StoreErrorKind, SwapOutcome};

/// Answers each swap of a batch whose commit panicked, by whether its transaction landed:
/// what `commit` recorded of each swap before the panic (`outcomes`) if it did, an error to
/// every swap if it did not or if that cannot be told.
///
/// A transaction lands whole or not at all, so it landed exactly when one swap it applied is
/// found in the file: a swap applied over version `v` writes a later version, and nothing
/// else writes to the file once the committer has stopped. The last swap applied to a key is
/// the one to look for (a batch may write a key twice). A swap that lost its race is never
/// taken for one that landed, even when its object equals what is stored (a client retrying
/// the same change): its writer hears the conflict it had, or an error, and audits nothing.
pub(super) fn settle_after_panic(
    db: &Database,
    cache: &ReadCache,
    batch: &mut Vec<Pending>,
    outcomes: Vec<Result<SwapOutcome, StoreError>>,
    handed: &mut Handed,
) {
    let failed = || {
        StoreError::new(
            StoreErrorKind::Other,
            "redb: a commit panicked; the store takes no more writes until restarted",
        )
    };
    let applied = |index: usize| matches!(outcomes.get(index), Some(Ok(SwapOutcome::Swapped)));
    let last_applied = |index: usize| {
        applied(index)
            && !batch[index + 1..]
                .iter()
                .enumerate()
                .any(|(later, pending)| {
                    pending.key == batch[index].key && applied(index + 1 + later)
                })
    };
    // The outcomes are complete only if the panic came after every swap was applied.
    let landed = outcomes.len() == batch.len()
        && (0..batch.len())
            .filter(|&index| last_applied(index))
            .any(|index| {
                let pending = &batch[index];
                stored(db, &pending.key).is_ok_and(|stored| {
                    stored.is_some_and(|(version, json)| {
                        version == pending.new.version() && json == pending.new.json().as_ref()
                    })
                })
            });
    let outcomes: Vec<_> = if landed {
        for (pending, outcome) in batch.iter().zip(&outcomes) {
            if matches!(outcome, Ok(SwapOutcome::Swapped)) {
                cache.committed(&pending.key, &pending.new);
            }
        }
        outcomes
    } else {
        // Not written, or not known: the next read goes to the file.
        for pending in batch.iter() {
            cache.forget(&pending.key);
        }
        batch.iter().map(|_| Err(failed())).collect()
    };
    handed.answer(
        batch
            .drain(..)
            .zip(outcomes)
            .map(|(pending, outcome)| (pending.runtime, pending.reply, outcome)),
    );
}

/// The version and JSON stored for `key`, read in a transaction of its own.
pub(super) fn stored(db: &Database, key: &ObjectKey) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    use redb::ReadableDatabase;
    let read = db.begin_read().map_err(storage)?;
    let table = match read.open_table(OBJECTS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(storage(error)),
    };
    let entry = table
        .get((key.tenant_id(), key.user_id()))
        .map_err(storage)?;
    Ok(entry.map(|entry| {
        let (version, json) = entry.value();
        (version, json.to_vec())
    }))
}
